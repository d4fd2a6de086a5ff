"""Example frames made at run time from ``skimage.data.astronaut()`` (NASA, public domain).

Nothing to download, nothing bundled but scikit-image's image. Used by ``face_expr demo``
(:func:`example_frames`), the synthetic clips (offline.synthetic), bench/latency.py
(:func:`faces_frame`) and the tests.
"""
from __future__ import annotations

import numpy as np

WIDTH, HEIGHT = 640, 480
EXPECTED_FACES = {"frontal": 1, "shifted": 1, "rotated_15": 1, "scaled_0.5": 1, "two_faces": 2,
                  "no_face": 0}
"""Frames of :func:`example_frames` in order and the number of faces in each."""
# Where the astronaut's face is in skimage.data.astronaut() (512x512), x0, y0, x1, y1 and centre.
ASTRONAUT_HEAD = (70, 0, 370, 300)  # a square crop with the head and shoulders
# A tighter square around the face: MediaPipe's short-range BlazeFace (bench/mediapipe_node.py)
# misses three heads side by side at 640x480 with the crop above, and finds them with this one.
ASTRONAUT_FACE = (140, 40, 310, 210)
ASTRONAUT_FACE_CENTRE = (222.5, 119.0)


class ExampleImageError(RuntimeError):
    """The example image cannot be loaded (scikit-image missing; the message says how to fix it)."""


def astronaut() -> np.ndarray:
    """(512, 512, 3) uint8 RGB: ``skimage.data.astronaut()`` (NASA, public domain)."""
    try:
        from skimage.data import astronaut as load
    except ImportError as err:
        raise ExampleImageError(f"the example image comes from scikit-image ({err}); "
                                "pip install scikit-image") from None
    return np.ascontiguousarray(load())


def _paste(canvas: np.ndarray, image: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``image`` warped by the 2x3 ``affine`` over ``canvas`` (same size as canvas)."""
    import cv2

    h, w = canvas.shape[:2]
    warped = cv2.warpAffine(image, affine, (w, h), flags=cv2.INTER_AREA
                            if abs(np.linalg.det(affine[:, :2])) < 1 else cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.ones(image.shape[:2], np.float32), affine, (w, h))[..., None]
    return np.clip(canvas * (1.0 - mask) + warped * mask + 0.5, 0, 255).astype(np.uint8)


def _background(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """A heavily blurred, stretched copy of ``image``: a background without any face.

    The blur grows with the frame (sigma 25 px at 640 px): a detector that downscales a 1280x720
    frame to 640x360 found the astronaut's face in a sigma-25 blur of it."""
    import cv2

    sigma = 25.0 * max(1.0, max(width, height) / 640.0)
    return cv2.GaussianBlur(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA),
                            (0, 0), sigma)


def example_frames(width: int = WIDTH, height: int = HEIGHT) -> dict[str, np.ndarray]:
    """The demo's frames, name -> (height, width, 3) uint8 RGB, in :data:`EXPECTED_FACES` order."""
    import cv2

    a = astronaut()
    bg = _background(a, width, height)
    s = height / a.shape[0]
    base = np.array([[s, 0.0, (width - a.shape[1] * s) / 2.0], [0.0, s, 0.0]])
    shifted = base + np.array([[0.0, 0.0, 0.18 * width], [0.0, 0.0, 0.08 * height]])
    face = base @ np.array([*ASTRONAUT_FACE_CENTRE, 1.0])
    # +15 deg in OpenCV's convention = counter-clockwise as the viewer sees it = roll +15 (core)
    turn = np.vstack((cv2.getRotationMatrix2D((float(face[0]), float(face[1])), 15.0, 1.0),
                      [0.0, 0.0, 1.0]))
    rotated = (turn @ np.vstack((base, [0.0, 0.0, 1.0])))[:2]
    # half the size of the frontal frame, centred
    half = np.array([[0.5 * s, 0.0, (width - 0.5 * s * a.shape[1]) / 2.0],
                     [0.0, 0.5 * s, (height - 0.5 * s * a.shape[0]) / 2.0]])
    frames = {
        "frontal": _paste(bg, a, base),
        "shifted": _paste(bg, a, shifted),
        "rotated_15": _paste(bg, a, rotated),
        "scaled_0.5": _paste(bg, a, half),
        "two_faces": faces_frame(width, height, 2, a, bg),
        # the lower right of the photo (suit, helmet): real texture, no face
        "no_face": cv2.resize(a[260:, 200:], (width, height), interpolation=cv2.INTER_LINEAR),
    }
    return frames


def faces_frame(width: int, height: int, n_faces: int, image: np.ndarray | None = None,
                background: np.ndarray | None = None,
                crop: tuple[int, int, int, int] = ASTRONAUT_HEAD) -> np.ndarray:
    """``n_faces`` astronaut heads side by side (every other one mirrored), blurred background.

    Used by the demo (two faces) and bench/latency.py (1 and 3 faces at 640x480 and 1280x720).
    """
    a = astronaut() if image is None else image
    canvas = _background(a, width, height) if background is None else background
    x0, y0, x1, y1 = crop
    head = np.ascontiguousarray(a[y0:y1, x0:x1])
    side = min(0.9 * width / n_faces, 0.75 * height)
    k = side / head.shape[0]
    gap = (width - n_faces * side) / (n_faces + 1)
    for i in range(n_faces):
        tile = head if i % 2 == 0 else np.ascontiguousarray(head[:, ::-1])
        left = gap + i * (side + gap)
        canvas = _paste(canvas, tile, np.array([[k, 0.0, left], [0.0, k, (height - side) / 2.0]]))
    return canvas
