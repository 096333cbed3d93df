"""One labelled image of a data set: what every reader returns."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

GOOD = 0
DEFECT = 1


@dataclass(frozen=True)
class Sample:
    """``path`` of the image; ``label`` 0 good, 1 defect; ``defect_type`` ('good' for good images, the
    folder name in MVTec/MPDD, 'anomaly' in VisA); ``mask_path`` of the ground truth, None for good images."""

    path: str
    label: int
    defect_type: str
    mask_path: Optional[str] = None

    @property
    def is_defect(self) -> bool:
        return self.label == DEFECT
