"""The training side's data sets: the torch-free readers of `imagesets` (MVTec AD / MPDD, VisA, a plain folder;
decoding at the model's size), under the name the training code has always used."""
from __future__ import annotations

from imagesets import *  # noqa: F401,F403
from imagesets import __all__  # noqa: F401
