"""Training pairs: an aligned crop with its landmarks (L1) and a randomly transformed copy (L3).

For each annotated face: crop a square around the landmarks (with a small random jitter, since at
run time the crop comes from a detector), giving the network input and L1 in its pixels; then the
random affine A of :mod:`.augmentation` (rotation, zoom, shift, flip) and photometric degradations
give the second input and ``L3 = A(L1)`` (re-indexed on a flip).
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ..core.align import CROP_MARGIN, landmark_box, warp_crop
from ..core.camera import apply_affine, crop_affine
from .augmentation import FLIP_PERMUTATION_68, AugmentParams, augment
from .datasets import IndexEntry, load_image_rgb

log = logging.getLogger(__name__)
IDENTITY_PERMUTATION = np.arange(68)


@dataclass(frozen=True)
class PairParams:
    size: int = 128
    margin: float = CROP_MARGIN   # crop side = landmark box side * (1 + margin), as core.align
    # Random framing like a detector's (core.align: the detector->landmark box ratio spans
    # 0.75-0.87 between the 10th and 90th percentiles on helen, +-7 % about its median)
    jitter_shift: float = 0.05    # of the box side, uniform, per axis
    jitter_scale: float = 0.08    # log-uniform +-
    augment: AugmentParams = AugmentParams()


def jittered_crop_affine(landmarks: np.ndarray, params: PairParams,
                         rng: np.random.Generator | None) -> np.ndarray:
    """Image -> crop affine around the landmark box, randomly shifted and scaled when ``rng``."""
    x0, y0, x1, y1 = landmark_box(landmarks)
    side = max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if rng is not None:
        cx, cy = np.array([cx, cy]) + rng.uniform(-params.jitter_shift, params.jitter_shift, 2) * side
        side *= np.exp(rng.uniform(-params.jitter_scale, params.jitter_scale))
    half = side / 2
    return crop_affine((cx - half, cy - half, cx + half, cy + half), params.size, params.margin)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(S, S, 3) uint8 -> (3, S, S) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


class LandmarkPairs(Dataset):
    """Items: dict of ``image`` (3,S,S), ``l1`` (68,2), ``image_aug``, ``l3``, ``affine`` (2,3),
    ``permutation`` (68,), ``set_index``, ``blendshapes`` and ``blendshape_mask`` (52,). Unreadable images are replaced by another random item
    (logged and counted in ``skipped``), so an epoch never stops on a bad file."""

    def __init__(self, entries: list[IndexEntry], params: PairParams = PairParams(),
                 train: bool = True, seed: int = 0):
        usable = [e for e in entries if e.landmarks is not None]
        if not usable:
            raise ValueError("no entries with landmarks: annotate the sets first (face_expr annotate)")
        self.entries = usable
        self.params = params
        self.train = train
        self.seed = seed
        self.skipped = 0
        self.set_names = sorted({e.set_name for e in usable})

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        for attempt in range(10):
            entry = self.entries[index]
            try:
                image = load_image_rgb(entry.path)
            except OSError as err:
                self.skipped += 1
                log.warning("skipping unreadable %s: %s", entry.path, err)
                index = random.Random(index + attempt).randrange(len(self.entries))
                continue
            return self._pair(image, entry, index)
        raise RuntimeError("10 unreadable images in a row: check the data folder")

    def _rng(self, index: int) -> np.random.Generator:
        # Training: fresh randomness per call (torch seeds each worker); validation: fixed per item.
        if self.train:
            return np.random.default_rng(torch.randint(0, 2**62, ()).item())
        return np.random.default_rng([self.seed, index])

    def _pair(self, image: np.ndarray, entry: IndexEntry, index: int) -> dict[str, torch.Tensor]:
        rng = self._rng(index)
        size = self.params.size
        to_crop = jittered_crop_affine(entry.landmarks, self.params, rng if self.train else None)
        crop = warp_crop(image, to_crop, size)
        l1 = apply_affine(to_crop, entry.landmarks.astype(np.float64))
        aug = augment(crop, l1, rng, size, self.params.augment)
        permutation = FLIP_PERMUTATION_68 if aug.flipped else IDENTITY_PERMUTATION
        return {
            "image": to_tensor(crop), "l1": torch.from_numpy(l1).float(),
            "image_aug": to_tensor(aug.image), "l3": torch.from_numpy(aug.landmarks).float(),
            "affine": torch.from_numpy(aug.affine).float(),
            "permutation": torch.from_numpy(np.asarray(permutation, dtype=np.int64)),
            "set_index": torch.tensor(self.set_names.index(entry.set_name)),
            **blendshape_target(entry.blendshapes),
        }


N_ARKIT = 52


def blendshape_target(scores: np.ndarray | None) -> dict[str, torch.Tensor]:
    """``blendshapes`` (52,) teacher scores (0 where missing) and ``blendshape_mask`` (52,) for the
    unaugmented crop (the expression loss uses the first view only, so flips need no re-indexing)."""
    values = np.zeros(N_ARKIT, np.float32) if scores is None else np.asarray(scores, np.float32)
    mask = np.isfinite(values).astype(np.float32)
    return {"blendshapes": torch.from_numpy(np.nan_to_num(values, nan=0.0)),
            "blendshape_mask": torch.from_numpy(mask if scores is not None else np.zeros(N_ARKIT, np.float32))}
