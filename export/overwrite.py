"""What an export may overwrite at its --out: a model and manifest it wrote before, never a file that is not
ours (an unrelated `000.json` beside `--out data/000.onnx`), and never a calibration silently. A threshold
calibrated for the very same graph (same sha256) is carried into the new manifest; one calibrated for another
graph would no longer hold, so the export refuses to drop it and says what to do."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

from export.errors import ExportError
from runtime.errors import ManifestError
from runtime.manifest import Manifest, load_manifest


def previous_export(out_path: Path) -> Optional[Manifest]:
    """The manifest of an earlier export at `out_path` (NAME.onnx + NAME.json), None when neither file exists.
    ExportError when something there is not ours: a NAME.json that is not a toolkit manifest, or a NAME.onnx
    without one."""
    out_path = Path(out_path)
    mpath = out_path.with_suffix(".json")
    if not mpath.exists():
        if out_path.exists():
            raise ExportError(f"{out_path} exists without a manifest {mpath.name} beside it: it is not a model this "
                              f"toolkit exported; choose another --out or move the file")
        return None
    try:
        return load_manifest(mpath)
    except ManifestError as e:
        raise ExportError(f"{mpath} exists and is not a manifest of this toolkit ({e}); exporting to {out_path} "
                          f"would overwrite it: choose another --out or move the file") from None


def carry_calibration(previous: Optional[Manifest], manifest: Manifest, model_bytes: bytes, out_path: Path) -> bool:
    """Copy the previous export's calibrated threshold into `manifest` when the new graph is byte-identical;
    True when one was carried. ExportError when the previous one was calibrated for another graph."""
    if previous is None or (previous.threshold is None and previous.threshold_provenance is None):
        return False
    digest = hashlib.sha256(model_bytes).hexdigest()
    if digest != previous.sha256:
        t = previous.threshold
        what = f"threshold {t.value:g} ({t.rule}, {t.date or 'undated'})" if t is not None else "a threshold record"
        raise ExportError(f"{out_path.with_suffix('.json')} holds {what} calibrated for another graph; this export "
                          f"would drop it: export to another --out and calibrate that model, or delete the old "
                          f"files first if the calibration is no longer wanted")
    manifest.threshold = previous.threshold
    manifest.threshold_provenance = previous.threshold_provenance
    return True


__all__ = ["previous_export", "carry_calibration"]
