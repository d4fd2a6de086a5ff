"""Training pairs: an aligned crop with its landmarks (L1) and a randomly transformed copy (L3).

For each annotated face: crop a square around the landmarks (with a small random jitter, since at
run time the crop comes from a detector), giving the network input and L1 in its pixels; then the
random affine A of :mod:`.augmentation` (rotation, zoom, shift, flip) and photometric degradations
give the second input and ``L3 = A(L1)`` (re-indexed on a flip).

Own framing (``PairParams.own_framing``): the tracking mode frames a face's next crop on the
network's own landmarks of the previous frame, whose errors are the network's, not a detector's.
With probability ``own_framing`` a training crop is framed on the landmark box this network
predicted for the same face when it was last drawn (:meth:`LandmarkPairs.record_framing`, called
by the trainer after each forward pass), so the network learns to read the crops it frames itself.
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
from ..core.emotions import emotion_index
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
    own_framing: float = 0.0      # probability of framing on the network's own last prediction
    own_jitter: float = 0.5       # the jitter then, as a fraction of the above (the motion's error)


def jittered_crop_affine(landmarks: np.ndarray, params: PairParams,
                         rng: np.random.Generator | None) -> np.ndarray:
    """Image -> crop affine around the landmark box, randomly shifted and scaled when ``rng``."""
    return jittered_box_affine(landmark_box(landmarks), params, rng)


def jittered_box_affine(box: np.ndarray, params: PairParams, rng: np.random.Generator | None,
                        jitter: float = 1.0) -> np.ndarray:
    """Image -> crop affine around a landmark box (x0, y0, x1, y1), shifted and scaled at random
    (``jitter`` x the params' ranges) when ``rng``."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if rng is not None:
        shift, scale = params.jitter_shift * jitter, params.jitter_scale * jitter
        cx, cy = np.array([cx, cy]) + rng.uniform(-shift, shift, 2) * side
        side *= np.exp(rng.uniform(-scale, scale))
    half = side / 2
    return crop_affine((cx - half, cy - half, cx + half, cy + half), params.size, params.margin)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(S, S, 3) uint8 -> (3, S, S) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


class LandmarkPairs(Dataset):
    """Training items (``train=True``): dict of ``image`` (3,S,S), ``l1`` (68,2), ``image_aug``,
    ``l3``, ``affine`` (2,3), ``permutation`` (68,), ``blendshapes`` and ``blendshape_mask`` (52,),
    ``rotation`` (3,3) and ``rotation_mask`` () the teacher's head rotation, ``emotion`` () the
    :data:`core.emotions.EMOTIONS` index of the human label or -1, ``index`` () the item's
    index and ``to_crop`` (2, 3) its source -> crop affine (:meth:`record_framing`); with ``negatives`` also
    ``negative`` (3,S,S), an augmented crop holding no face or half a face, and
    ``negative_valid`` (). Validation items (``train=False``): the unjittered crop only (no
    second view, no negative). Unreadable images are replaced by another random item (logged), so
    an epoch never stops on a bad file.

    ``caches``: set name -> :class:`.crop_cache.CropCache`; entries found there are cut from the
    cached crop (same framing and landmarks, no photo read), the others from their photo.
    """

    def __init__(self, entries: list[IndexEntry], params: PairParams = PairParams(),
                 train: bool = True, caches: dict | None = None, negatives: bool = False):
        usable = [e for e in entries if e.landmarks is not None]
        if not usable:
            raise ValueError("no entries with landmarks: annotate the sets first (face_expr annotate)")
        self.entries = usable
        self.params = params
        self.train = train
        self.caches = caches or {}
        self.rows = [self._cache_row(e) for e in usable]
        # every (cache, row, kind) negative, drawn uniformly
        self.negative_pool = [(c, int(r), int(k)) for c in self.caches.values()
                              for r, k in zip(*np.nonzero(c.has_negative & c.valid[:, None]))]
        self.negatives = negatives and train and bool(self.negative_pool)
        if not 0.0 <= params.own_framing <= 1.0:
            raise ValueError(f"own_framing is a probability, got {params.own_framing}")
        # each item's last predicted landmark box in its source's pixels (NaN: none yet); in
        # shared memory, so that loader processes read what the trainer wrote
        self.framing = torch.full((len(usable), 4), float("nan"), dtype=torch.float64)
        if train and params.own_framing > 0:
            self.framing.share_memory_()

    def record_framing(self, index: torch.Tensor, to_crop: torch.Tensor,
                       landmarks: torch.Tensor) -> None:
        """Keep the landmark boxes of (B, 68, 2) ``landmarks`` predicted in the crops of items
        ``index`` (B,) (``to_crop`` (B, 2, 3) their source -> crop affines), in source pixels:
        the framing of their next own-framed crop."""
        affine = to_crop.detach().double().cpu()
        points = landmarks.detach().double().cpu() - affine[:, None, :, 2]
        source = torch.linalg.solve(affine[:, None, :, :2], points[..., None])[..., 0]
        boxes = torch.cat((source.amin(1), source.amax(1)), dim=1)
        self.framing[index.cpu().long()] = boxes

    def _cache_row(self, entry: IndexEntry) -> int | None:
        cache = self.caches.get(entry.set_name)
        row = cache.index.get(str(entry.path)) if cache is not None else None
        return row if row is not None and cache.valid[row] else None

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        for attempt in range(10):
            entry, row = self.entries[index], self.rows[index]
            try:
                source = self._source(entry, row)
            except OSError as err:
                log.warning("skipping unreadable %s: %s", entry.path, err)
                index = random.Random(index + attempt).randrange(len(self.entries))
                continue
            return self._pair(*source, entry, index)
        raise RuntimeError("10 unreadable images in a row: check the data folder")

    def _source(self, entry: IndexEntry, row: int | None) -> tuple[np.ndarray, np.ndarray]:
        """(image, its landmarks): the cached crop and the landmarks in its pixels, or the photo."""
        if row is None:
            return load_image_rgb(entry.path), entry.landmarks.astype(np.float64)
        cache = self.caches[entry.set_name]
        return (np.asarray(cache.crops[row]),
                apply_affine(cache.to_cache[row], entry.landmarks.astype(np.float64)))

    def _framing(self, index: int, landmarks: np.ndarray,
                 rng: np.random.Generator | None) -> np.ndarray:
        """The crop affine: around the labels' box (jittered like a detector's), or with
        probability ``own_framing`` around the network's last prediction for this item."""
        if rng is not None and self.params.own_framing > 0 and rng.random() < self.params.own_framing:
            box = self.framing[index].numpy()
            if np.isfinite(box).all():
                return jittered_box_affine(box, self.params, rng, self.params.own_jitter)
        return jittered_crop_affine(landmarks, self.params, rng)

    def _pair(self, image: np.ndarray, landmarks: np.ndarray, entry: IndexEntry,
              index: int) -> dict[str, torch.Tensor]:
        size = self.params.size
        # Training: fresh randomness per call (torch seeds each worker); validation: no randomness
        # (the crop is not jittered and no second view is made).
        rng = np.random.default_rng(torch.randint(0, 2**62, ()).item()) if self.train else None
        to_crop = self._framing(index, landmarks, rng)
        crop = warp_crop(image, to_crop, size)
        l1 = apply_affine(to_crop, landmarks)
        item = {"image": to_tensor(crop), "l1": torch.from_numpy(l1).float(),
                "index": torch.tensor(index), "to_crop": torch.from_numpy(to_crop).float(),
                **blendshape_target(entry.blendshapes), **rotation_target(entry.rotation),
                "emotion": torch.tensor(emotion_index(entry.labels.get("emotion")))}
        if not self.train:
            return item
        # the second view is warped from the (larger) source, through the crop's affine
        aug = augment(crop, l1, rng, size, self.params.augment, source=(image, to_crop))
        permutation = FLIP_PERMUTATION_68 if aug.flipped else IDENTITY_PERMUTATION
        item.update({
            "image_aug": to_tensor(aug.image), "l3": torch.from_numpy(aug.landmarks).float(),
            "affine": torch.from_numpy(aug.affine).float(),
            "permutation": torch.from_numpy(np.asarray(permutation, dtype=np.int64)),
        })
        if self.negatives:
            item.update(self._negative(rng))
        return item

    def _negative(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """A random no-face / half-face crop, augmented like a second view."""
        cache, row, kind = self.negative_pool[int(rng.integers(len(self.negative_pool)))]
        patch = np.asarray(cache.negatives[row, kind])
        aug = augment(patch, None, rng, self.params.size, self.params.augment)
        return {"negative": to_tensor(aug.image), "negative_valid": torch.tensor(1.0)}


def rotation_target(rotation: np.ndarray | None) -> dict[str, torch.Tensor]:
    """``rotation`` (3, 3) the teacher's (identity where missing) and ``rotation_mask`` ()."""
    if rotation is None:
        return {"rotation": torch.eye(3), "rotation_mask": torch.tensor(0.0)}
    return {"rotation": torch.from_numpy(np.asarray(rotation, np.float32)),
            "rotation_mask": torch.tensor(1.0)}


N_ARKIT = 52


def blendshape_target(scores: np.ndarray | None) -> dict[str, torch.Tensor]:
    """``blendshapes`` (52,) teacher scores (0 where missing) and ``blendshape_mask`` (52,) for the
    unaugmented crop (the expression loss uses the first view only, so flips need no re-indexing)."""
    if scores is None:
        return {"blendshapes": torch.zeros(N_ARKIT, dtype=torch.float32),
                "blendshape_mask": torch.zeros(N_ARKIT, dtype=torch.float32)}
    values = np.asarray(scores, np.float32)
    return {"blendshapes": torch.from_numpy(np.nan_to_num(values, nan=0.0)),
            "blendshape_mask": torch.from_numpy(np.isfinite(values).astype(np.float32))}
