"""Networks (plain nn.Modules, no method logic)."""
