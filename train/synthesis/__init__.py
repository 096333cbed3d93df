"""Anomaly synthesis for training (torch; all randomness from a passed CPU ``torch.Generator``)."""
from __future__ import annotations

from train.synthesis.corrupt import augment_textures, make_training_batch, random_rotate, synthesize_anomalies
from train.synthesis.cutpaste import large_cutpaste
from train.synthesis.perlin import perlin_mask, perlin_masks, perlin_noise
from train.synthesis.textures import load_texture_folder

__all__ = ["augment_textures", "large_cutpaste", "load_texture_folder", "make_training_batch", "perlin_mask",
           "perlin_masks", "perlin_noise", "random_rotate", "synthesize_anomalies"]
