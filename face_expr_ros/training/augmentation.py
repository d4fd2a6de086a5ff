"""Training augmentation: a random affine (with flip) and photometric degradations of robot cameras.

The geometric part is one 2x3 matrix ``A`` that maps pixels of the input image to pixels of the
augmented image, **flip included** (a flipped ``A`` has a negative determinant). Landmarks follow
with :func:`transform_landmarks`: ``L3 = A(L1)`` and, when flipped, the point order is permuted by
:data:`FLIP_PERMUTATION_68` so that index 45 stays the subject's left eye outer corner::

    L3[k] = A(L1[FLIP_PERMUTATION_68[k]])       (flipped)
    L3[k] = A(L1[k])                             (not flipped)

A loss that maps the prediction ``L2`` on the original image through ``A`` must do the same:
``transform_landmarks(A, L2, flipped)`` and compare with the prediction on the augmented image.
The permutation is an involution (applying it twice is the identity), so it does not matter
whether it is applied before or after ``A``.

All randomness comes from the ``numpy.random.Generator`` passed in (seeded by the caller).
Defaults are listed in :class:`AugmentParams` and docs/data.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..core.align import warp_crop
from ..core.camera import apply_affine, compose_affine


def _flip_permutation_68() -> np.ndarray:
    """iBUG-68 index of each point's mirror partner (subject's left <-> right)."""
    perm = np.arange(68)
    pairs = [(i, 16 - i) for i in range(8)]                     # jaw 0-16, 8 is the chin
    pairs += [(17 + i, 26 - i) for i in range(5)]               # brows 17-21 <-> 26-22
    pairs += [(31, 35), (32, 34)]                               # nostrils; 27-30, 33 on the midline
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lip; 51, 57 midline
    pairs += [(60, 64), (61, 63), (65, 67)]                     # inner lip; 62, 66 midline
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


FLIP_PERMUTATION_68: np.ndarray = _flip_permutation_68()
"""(68,) int: after a horizontal flip, new point k is the mirror of old point ``FLIP_PERMUTATION_68[k]``."""


@dataclass(frozen=True)
class AugmentParams:
    """Ranges of the random augmentation (probabilities per sample)."""

    rotation_deg: float = 20.0             # uniform in [-r, r], about the image centre
    scale_range: tuple[float, float] = (0.9, 1.1)   # log-uniform zoom
    shift_fraction: float = 0.06           # uniform shift, fraction of the image side
    flip_probability: float = 0.5
    brightness: float = 0.25               # added, fraction of 255, uniform in [-b, b]
    contrast: float = 0.3                  # factor in [1 - c, 1 + c] about the mean
    saturation: float = 0.3                # factor in [1 - s, 1 + s] towards/away from gray
    gray_probability: float = 0.5          # half the data is gray (lfw, fer are gray already)
    blur_probability: float = 0.2
    blur_sigma_max: float = 1.5            # Gaussian sigma, pixels of the output
    motion_blur_probability: float = 0.15
    motion_blur_max_length: int = 9        # pixels, random direction
    low_light_probability: float = 0.15
    low_light_gain: tuple[float, float] = (0.25, 0.6)   # exposure gain, then sensor noise
    low_light_noise: float = 6.0           # Gaussian noise sigma in 0..255 units
    occlusion_probability: float = 0.25
    occlusion_max_count: int = 2
    occlusion_max_fraction: float = 0.25   # rectangle side, fraction of the image side


@dataclass
class Augmented:
    """One augmented sample.

    Attributes:
        image: (S, S, 3) uint8 RGB, the augmented image.
        landmarks: (68, 2) float32 ``transform_landmarks(affine, input landmarks, flipped)``, or None.
        affine: (2, 3) input pixels -> augmented pixels, flip included.
        flipped: whether ``affine`` contains a horizontal flip (point order permuted).
    """

    image: np.ndarray
    landmarks: np.ndarray | None
    affine: np.ndarray
    flipped: bool


# ---------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------
def transform_landmarks(affine, landmarks, flipped: bool):
    """Map (..., 68, 2) landmarks through a 2x3 ``affine`` (numpy or torch), re-indexing on a flip.

    Returns ``A(L)[..., FLIP_PERMUTATION_68, :]`` if ``flipped`` else ``A(L)``; same type as input.
    """
    mapped = apply_affine(affine, landmarks)
    if not flipped:
        return mapped
    if mapped.shape[-2] != len(FLIP_PERMUTATION_68):
        raise ValueError(f"a flip re-indexes 68 iBUG points, got {mapped.shape[-2]} points")
    return mapped[..., FLIP_PERMUTATION_68, :]


def random_affine(rng: np.random.Generator, in_size: tuple[int, int], out_size: int,
                  params: AugmentParams = AugmentParams()) -> tuple[np.ndarray, bool]:
    """A random 2x3 affine from (H, W) input pixels to an ``out_size`` square, and the flip flag.

    The input's centre goes to the output's centre, scaled by ``out_size / max(H, W)`` times a
    random zoom, rotated, shifted, and mirrored about the output's vertical centre line.
    """
    h, w = in_size
    centre_in = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    centre_out = (out_size - 1) / 2.0
    angle = np.radians(rng.uniform(-params.rotation_deg, params.rotation_deg))
    lo, hi = np.log(params.scale_range)
    zoom = np.exp(rng.uniform(lo, hi)) * out_size / max(h, w)
    shift = rng.uniform(-params.shift_fraction, params.shift_fraction, 2) * out_size
    flipped = bool(rng.random() < params.flip_probability)
    c, s = np.cos(angle), np.sin(angle)
    linear = zoom * np.array([[c, -s], [s, c]])
    affine = np.hstack((linear, (centre_out + shift - linear @ centre_in)[:, None]))
    if flipped:  # x -> (S - 1) - x: pixel centres 0 and S - 1 swap
        affine = compose_affine(np.array([[-1.0, 0.0, out_size - 1.0], [0.0, 1.0, 0.0]]), affine)
    return affine, flipped


# ---------------------------------------------------------------------------------------------
# Photometric operations: (H, W, 3) uint8 RGB -> (H, W, 3) uint8 RGB
# ---------------------------------------------------------------------------------------------
def color_jitter(image: np.ndarray, rng: np.random.Generator, brightness: float = 0.25,
                 contrast: float = 0.3, saturation: float = 0.3) -> np.ndarray:
    """Random brightness (additive), contrast (about the mean) and saturation (towards gray)."""
    x = image.astype(np.float32)
    gray = _luma(x)[..., None]
    x = gray + (x - gray) * rng.uniform(1 - saturation, 1 + saturation)
    x = x.mean() + (x - x.mean()) * rng.uniform(1 - contrast, 1 + contrast)
    x = x + 255.0 * rng.uniform(-brightness, brightness)
    return _to_uint8(x)


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """Luma (ITU-R BT.601) copied into the three channels: R = G = B."""
    return np.repeat(_to_uint8(_luma(image.astype(np.float32)))[..., None], 3, axis=2)


def gaussian_blur(image: np.ndarray, rng: np.random.Generator, sigma_max: float = 1.5) -> np.ndarray:
    """Gaussian blur with sigma uniform in [0.3, sigma_max] pixels (defocus, small faces)."""
    sigma = rng.uniform(0.3, max(sigma_max, 0.3))
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma)


def motion_blur(image: np.ndarray, rng: np.random.Generator, max_length: int = 9) -> np.ndarray:
    """Line-kernel blur of random length (3..max_length px) and direction (a moving robot/head)."""
    length = int(rng.integers(3, max(max_length, 3) + 1))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    rotation = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), rng.uniform(0, 180), 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    return cv2.filter2D(image, -1, kernel / max(kernel.sum(), 1e-6), borderType=cv2.BORDER_REPLICATE)


def low_light(image: np.ndarray, rng: np.random.Generator, gain: tuple[float, float] = (0.25, 0.6),
              noise: float = 6.0) -> np.ndarray:
    """Under-exposure: a gain in ``gain`` then Gaussian sensor noise of sigma ``noise`` (0..255)."""
    x = image.astype(np.float32) * rng.uniform(*gain)
    return _to_uint8(x + rng.normal(0.0, noise, x.shape).astype(np.float32))


def occlude(image: np.ndarray, rng: np.random.Generator, max_count: int = 2,
            max_fraction: float = 0.25) -> np.ndarray:
    """1..max_count rectangles of a random flat colour, sides up to ``max_fraction`` of the image."""
    out = image.copy()
    h, w = image.shape[:2]
    for _ in range(int(rng.integers(1, max(max_count, 1) + 1))):
        rh = int(rng.integers(2, max(3, int(h * max_fraction) + 1)))
        rw = int(rng.integers(2, max(3, int(w * max_fraction) + 1)))
        y, x = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
        out[y:y + rh, x:x + rw] = rng.integers(0, 256, 3, dtype=np.uint8)
    return out


def photometric(image: np.ndarray, rng: np.random.Generator,
                params: AugmentParams = AugmentParams()) -> np.ndarray:
    """The photometric chain, in the order a camera degrades a scene: colour jitter, occlusions,
    blur or motion blur, low light (gain + sensor noise), gray (last, so the whole image is gray)."""
    out = color_jitter(image, rng, params.brightness, params.contrast, params.saturation)
    if rng.random() < params.occlusion_probability:
        out = occlude(out, rng, params.occlusion_max_count, params.occlusion_max_fraction)
    if rng.random() < params.motion_blur_probability:
        out = motion_blur(out, rng, params.motion_blur_max_length)
    elif rng.random() < params.blur_probability:
        out = gaussian_blur(out, rng, params.blur_sigma_max)
    if rng.random() < params.low_light_probability:
        out = low_light(out, rng, params.low_light_gain, params.low_light_noise)
    if rng.random() < params.gray_probability:
        out = to_grayscale(out)
    return out


def augment(image: np.ndarray, landmarks: np.ndarray | None, rng: np.random.Generator,
            out_size: int | None = None, params: AugmentParams = AugmentParams(),
            source: tuple[np.ndarray, np.ndarray] | None = None) -> Augmented:
    """Random affine (with flip) then photometric degradations.

    Args:
        image: (H, W, 3) uint8 RGB (typically an aligned crop, see core.align).
        landmarks: (68, 2) pixels of ``image`` or None.
        out_size: side of the square output (default ``max(H, W)``).
        source: (larger image, its 2x3 affine to ``image``'s pixels): the augmented view is
            warped from it (``A`` composed with that affine), so a rotated or zoomed-out view
            shows the real surroundings instead of ``image``'s replicated border. ``A``, the
            landmarks and the result are as without it.
    Returns:
        :class:`Augmented` with the image, moved landmarks, the 2x3 affine and the flip flag.
    """
    size = out_size or max(image.shape[:2])
    affine, flipped = random_affine(rng, image.shape[:2], size, params)
    if source is None:
        warped = warp_crop(image, affine, size)
    else:
        warped = warp_crop(source[0], compose_affine(affine, source[1]), size)
    warped = photometric(warped, rng, params)
    moved = None
    if landmarks is not None:
        moved = transform_landmarks(affine, np.asarray(landmarks, np.float64), flipped).astype(np.float32)
    return Augmented(warped, moved, affine, flipped)


def _luma(x: np.ndarray) -> np.ndarray:
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
