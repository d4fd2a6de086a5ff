"""Cached face crops: each training photo is read and warped once per data set, not once per sample.

For every entry of a set (with landmarks) the cache holds, as uint8 arrays memory-mapped from
``$XDG_CACHE_HOME/face_expr_ros/crops/<set>-<key>/`` (default ``~/.cache``):

- ``crops.npy`` (N, S, S, 3): a square around the landmark box, :attr:`CacheParams.extent` times
  the network crop's side (room for the framing jitter and the augmentation's rotation and zoom),
  at S pixels (the set's median native resolution, at most :attr:`CacheParams.max_side`);
  ``to_cache`` (N, 2, 3) maps image pixels to its pixels, so the landmarks follow exactly;
- ``negatives.npy`` (N, 2, s, s, 3): crops that hold no face (0: a background patch of the photo
  away from the face) and half a face (1: the network's framing shifted by about half the face),
  for the presence head; ``has_negative`` (N, 2) says which exist (tight thumbnails have none).

The key hashes the set, the parameters and every entry's image path and landmarks, so a changed
teacher cache builds a new folder. Written under a temporary name and renamed when complete.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..core.align import CROP_MARGIN, landmark_box, landmark_side, warp_crop
from ..core.camera import crop_affine
from .datasets import IndexEntry, load_image_rgb

log = logging.getLogger(__name__)
FORMAT = "face_expr_crops/1"


@dataclass(frozen=True)
class CacheParams:
    """How the cached crops are framed (part of the cache key)."""

    margin: float = CROP_MARGIN      # the network crop's margin (core.align)
    extent: float = 1.4              # cached side / network crop side
    max_side: int = 192              # pixels
    min_side: int = 48
    negative_size: int = 128         # pixels of a negative crop
    half_shift: tuple[float, float] = (0.45, 0.65)  # half-face shift, fraction of the box side
    background_min: float = 0.35     # smallest background patch side, fraction of the crop side
    inside_min: float = 0.75         # a half-face crop needs this much of its area in the image


def cache_params(net) -> CacheParams:
    """The cache framing for a network (core.network.NetworkConfig): its margin, and a side cap
    that keeps the network crop's native pixels (192 at the 128 px input, in proportion above)."""
    return CacheParams(margin=net.crop_margin,
                       max_side=max(CacheParams.max_side, 2 * round(0.75 * net.input_size)))


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "face_expr_ros" / "crops"


def cache_key(set_name: str, entries: list[IndexEntry], params: CacheParams) -> str:
    digest = hashlib.sha256(json.dumps([FORMAT, set_name, asdict(params)]).encode())
    for entry in entries:
        digest.update(entry.path.as_posix().encode())
        digest.update(np.round(np.asarray(entry.landmarks, np.float64), 2).tobytes())
    return digest.hexdigest()[:16]


def cache_side(entries: list[IndexEntry], params: CacheParams) -> int:
    """The set's crop side: the median native side of the cached square, clamped, even."""
    native = np.median([landmark_side(e.landmarks) for e in entries]) * (1 + params.margin) * params.extent
    return int(np.clip(round(native / 2) * 2, params.min_side, params.max_side))


def to_cache_affine(landmarks: np.ndarray, side: int, params: CacheParams) -> np.ndarray:
    """Image pixels -> cached crop pixels: the network's framing, ``extent`` times wider."""
    return crop_affine(landmark_box(landmarks), side, (1 + params.margin) * params.extent - 1)


def half_face_affine(landmarks: np.ndarray, size: int, params: CacheParams,
                     rng: np.random.Generator) -> np.ndarray:
    """The network's framing shifted by ``half_shift`` of the box side in a random direction."""
    x0, y0, x1, y1 = landmark_box(landmarks)
    side = max(x1 - x0, y1 - y0)
    angle = rng.uniform(0, 2 * np.pi)
    shift = rng.uniform(*params.half_shift) * side * np.array([np.cos(angle), np.sin(angle)])
    box = np.array([x0, y0, x1, y1]) + np.tile(shift, 2)
    return crop_affine(box, size, params.margin)


def inside_fraction(affine: np.ndarray, size: int, shape: tuple[int, ...]) -> float:
    """Fraction of a crop's area (through the image->crop ``affine``) that lies in the image."""
    scale = float(np.hypot(affine[0, 0], affine[1, 0]))
    x0, y0 = -affine[0, 2] / scale, -affine[1, 2] / scale  # axis-aligned crops only
    x1, y1 = x0 + size / scale, y0 + size / scale
    w = max(0.0, min(x1, shape[1]) - max(x0, 0.0))
    h = max(0.0, min(y1, shape[0]) - max(y0, 0.0))
    return w * h / (size / scale) ** 2


def background_affine(landmarks: np.ndarray, shape: tuple[int, ...], size: int,
                      params: CacheParams, rng: np.random.Generator,
                      tries: int = 30) -> np.ndarray | None:
    """A square of the photo that misses the (margin-grown) face square, or None if none fits."""
    x0, y0, x1, y1 = landmark_box(landmarks)
    crop_side = max(x1 - x0, y1 - y0) * (1 + params.margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    face = (cx - crop_side / 2, cy - crop_side / 2, cx + crop_side / 2, cy + crop_side / 2)
    height, width = shape[:2]
    smallest = max(16.0, params.background_min * crop_side)
    for _ in range(tries):
        side = rng.uniform(smallest, max(smallest, 1.2 * crop_side))
        if side > min(width, height):
            continue
        px, py = rng.uniform(0, width - side), rng.uniform(0, height - side)
        if px + side <= face[0] or px >= face[2] or py + side <= face[1] or py >= face[3]:
            return crop_affine((px, py, px + side, py + side), size)
    return None


def _build_one(job: tuple[int, str, np.ndarray, int, CacheParams]) -> tuple[int, dict | None]:
    """Read one photo and cut its crop and negatives (a worker's task)."""
    index, path, landmarks, side, params = job
    try:
        image = load_image_rgb(path)
    except OSError as err:
        log.warning("crop cache: skipping unreadable %s: %s", path, err)
        return index, None
    rng = np.random.default_rng(int.from_bytes(hashlib.sha1(path.encode()).digest()[:8], "big"))
    to_cache = to_cache_affine(landmarks, side, params)
    size = params.negative_size
    negatives = np.zeros((2, size, size, 3), np.uint8)
    has = np.zeros(2, bool)
    background = background_affine(landmarks, image.shape, size, params, rng)
    if background is not None:
        negatives[0], has[0] = warp_crop(image, background, size), True
    half = half_face_affine(landmarks, size, params, rng)
    if inside_fraction(half, size, image.shape) >= params.inside_min:
        negatives[1], has[1] = warp_crop(image, half, size), True
    return index, {"crop": warp_crop(image, to_cache, side), "to_cache": to_cache,
                   "negatives": negatives, "has": has}


@dataclass
class CropCache:
    """One set's cached crops (arrays memory-mapped read-only); ``index`` maps image path -> row."""

    folder: Path
    crops: np.ndarray
    negatives: np.ndarray
    has_negative: np.ndarray
    to_cache: np.ndarray
    valid: np.ndarray
    index: dict[str, int]

    @classmethod
    def open(cls, folder: Path) -> "CropCache":
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{folder}: not a crop cache ({meta.get('format')!r})")
        arrays = np.load(folder / "arrays.npz")
        return cls(folder, np.load(folder / "crops.npy", mmap_mode="r"),
                   np.load(folder / "negatives.npy", mmap_mode="r"), arrays["has_negative"],
                   arrays["to_cache"], arrays["valid"],
                   {path: i for i, path in enumerate(meta["paths"])})


def build_crop_cache(set_name: str, entries: list[IndexEntry], params: CacheParams = CacheParams(),
                     workers: int = 1, root: Path | None = None) -> CropCache:
    """The cache of ``entries`` (those with landmarks): opened if present, else built first."""
    entries = [e for e in entries if e.landmarks is not None]
    if not entries:
        raise ValueError(f"crop cache {set_name}: no entries with landmarks")
    folder = (root or cache_root()) / f"{set_name}-{cache_key(set_name, entries, params)}"
    if (folder / "meta.json").is_file():
        return CropCache.open(folder)
    side = cache_side(entries, params)
    log.info("crop cache %s: %d faces at %d px -> %s", set_name, len(entries), side, folder)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n, size = len(entries), params.negative_size
    crops = np.lib.format.open_memmap(tmp / "crops.npy", "w+", np.uint8, (n, side, side, 3))
    negatives = np.lib.format.open_memmap(tmp / "negatives.npy", "w+", np.uint8,
                                          (n, 2, size, size, 3))
    has, to_cache, valid = np.zeros((n, 2), bool), np.zeros((n, 2, 3)), np.zeros(n, bool)
    jobs = [(i, str(e.path), np.asarray(e.landmarks, np.float64), side, params)
            for i, e in enumerate(entries)]
    for index, result in _map(jobs, workers):
        if result is None:
            continue
        crops[index], negatives[index] = result["crop"], result["negatives"]
        has[index], to_cache[index], valid[index] = result["has"], result["to_cache"], True
    crops.flush()
    negatives.flush()
    del crops, negatives
    np.savez(tmp / "arrays.npz", has_negative=has, to_cache=to_cache, valid=valid)
    meta = {"format": FORMAT, "set": set_name, "side": side, "params": asdict(params),
            "paths": [str(e.path) for e in entries]}
    (tmp / "meta.json").write_text(json.dumps(meta))
    try:
        os.replace(tmp, folder)
    except OSError:  # another process finished the same cache first
        shutil.rmtree(tmp, ignore_errors=True)
    return CropCache.open(folder)


def _map(jobs: list, workers: int):
    from tqdm import tqdm

    if workers <= 1:
        yield from tqdm(map(_build_one, jobs), total=len(jobs), unit="img", mininterval=10)
        return
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from tqdm(pool.imap_unordered(_build_one, jobs, chunksize=64), total=len(jobs),
                        unit="img", mininterval=10)
