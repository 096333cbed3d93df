"""The `--out DIR` of `python -m runtime`, one or several cameras: `inspect.jsonl` (one strict-JSON record a line:
a NaN would make the line unparseable) and, unless `--save none`, the `overlays/` folder."""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

from runtime import strict_json
from runtime.errors import writing


class RunOutput:
    """Opens `out` (None: writes nothing); `write(record)` appends a line, `overlays` is the folder or None."""

    def __init__(self, out: Optional[str], save: str):
        self._log = None
        self.overlays: Optional[str] = None
        if out:
            with writing(f"--out {out}"):
                os.makedirs(out, exist_ok=True)
                self._log = open(os.path.join(out, "inspect.jsonl"), "w", encoding="utf-8")
                if save != "none":
                    self.overlays = os.path.join(out, "overlays")
                    os.makedirs(self.overlays, exist_ok=True)

    def write(self, record: Dict[str, Any]) -> None:
        if self._log is not None:
            with writing(self._log.name):
                self._log.write(strict_json.dumps(record) + "\n")
                self._log.flush()

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


__all__ = ["RunOutput"]
