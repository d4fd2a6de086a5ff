"""Software rendering of face meshes: z-buffered rasterisation and Gouraud shading in numpy.

No OpenGL is assumed (robots, CI, containers). Rendering is vectorised: triangles are grouped by the
size of their pixel bounding boxes, barycentric coordinates are evaluated on every pixel centre of
all boxes of a group at once, and the nearest fragment per pixel wins (a sort, not a loop).

Coordinates (``vertices_px``): x right and y down in image pixels with pixel centres at integers
(OpenCV), z = depth in the same pixel units with LARGER z = CLOSER to the viewer. This is what
:func:`camera_to_pixels` makes of posed points ``s R V + t`` in the core camera frame (x right, y up,
z towards the viewer). Images are RGB ``uint8`` (convert to BGR only when writing with OpenCV).

Example::

    R = euler_to_matrix(30, 0, 0)
    vertices = synthesize(model, coefficients)
    scale, translation = frame_vertices(vertices[:model.face_area_vertex_count], R, (512, 512))
    px = camera_to_pixels(pose_points(vertices, R, translation, scale), image_center((512, 512)))
    rgb = render_mesh(px, model.triangles, (512, 512))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import cv2
import numpy as np

from .camera import project_orthographic
from .facemodel import FaceModel

Size = tuple[int, int]
"""(height, width) in pixels, as ``image.shape[:2]``."""
Region = Literal["head", "face"]

SKIN_RGB = (222, 184, 160)
BACK_RGB = (52, 30, 30)
"""Back faces are seen only through the mesh's holes (open mouth, eye sockets): dark like a cavity."""
DEFAULT_LIGHT = (-0.35, 0.45, 1.0)
"""Towards the light in the core camera frame (x right, y up, z to the viewer): upper left, front."""

# Fragments evaluated per vectorised step: bounds the temporary arrays to a few tens of MB.
_CHUNK_PIXELS = 1 << 20
# Barycentric tolerance: pixel centres exactly on a shared edge belong to both triangles (no cracks).
_INSIDE_EPS = 1e-9


@dataclass(frozen=True)
class Raster:
    """What each pixel sees after z-buffering.

    Attributes:
        triangle: (H, W) int64 index into the rasterised triangles, -1 where no triangle covers.
        barycentric: (H, W, 3) float64 weights of the triangle's three vertices (0 where uncovered).
        depth: (H, W) float64 interpolated z (larger = closer), ``-inf`` where uncovered.
    """

    triangle: np.ndarray
    barycentric: np.ndarray
    depth: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool: covered pixels."""
        return self.triangle >= 0


# ---------------------------------------------------------------------------------------------
# Framing: model -> pixels
# ---------------------------------------------------------------------------------------------
def image_center(size: Size) -> np.ndarray:
    """(2,) principal point (cx, cy) at the centre of an image of ``size`` = (h, w)."""
    h, w = size
    return np.array([(w - 1) / 2.0, (h - 1) / 2.0])


def frame_vertices(vertices: np.ndarray, rotation: np.ndarray, size: Size,
                   fill: float = 0.8) -> tuple[float, np.ndarray]:
    """Scale and translation that fit rotated ``vertices`` into an image, centred.

    ``s R V + t`` (core camera frame, pixels, y up) has its x-y bounding box centred on the origin
    and as large as fits into ``fill`` times the image's width and height; with the principal
    point at :func:`image_center` the box is centred in the image.

    Args:
        vertices: (N, 3) model-space points to frame (e.g. the face area), cm.
        rotation: (3, 3) core rotation R.
        size: (h, w) of the image.
        fill: fraction of the image the box spans, in (0, 1].
    Returns:
        scale (pixels per cm) and translation (3,) in pixels.
    """
    if not 0.0 < fill <= 1.0:
        raise ValueError(f"fill must be in (0, 1], got {fill}")
    rotated = np.asarray(vertices, np.float64) @ np.asarray(rotation, np.float64).T  # R v per row
    low, high = rotated.min(0), rotated.max(0)
    extent = np.maximum(high - low, 1e-9)
    h, w = size
    scale = fill * min(w / extent[0], h / extent[1])
    translation = -scale * (low + high) / 2.0
    return float(scale), translation


def camera_to_pixels(points_cam: np.ndarray, principal_point: np.ndarray) -> np.ndarray:
    """Posed points (core camera frame, pixels, y up) -> (N, 3) ``vertices_px`` for rendering.

    x, y follow :func:`camera.project_orthographic` (``u = x + cx``, ``v = -y + cy``); z is kept as
    depth (larger = closer), which is what the z-buffer compares.
    """
    points = np.asarray(points_cam, np.float64)
    uv = project_orthographic(points, np.asarray(principal_point, np.float64))
    return np.concatenate((uv, points[..., 2:3]), axis=-1)


def region_triangles(model: FaceModel, region: Region = "head") -> np.ndarray:
    """Triangles of the whole head (``"head"``: face, back of the head, neck) or the face area only.

    The face area is vertices ``< model.face_area_vertex_count``; its triangles use no other vertex.
    Returns:
        (T', 3) int64 vertex indices into the full vertex array.
    """
    if region == "head":
        return model.triangles
    if region == "face":
        inside = (model.triangles < model.face_area_vertex_count).all(axis=1)
        return model.triangles[inside]
    raise ValueError(f"region must be 'head' or 'face', got {region!r}")


# ---------------------------------------------------------------------------------------------
# Rasterisation
# ---------------------------------------------------------------------------------------------
def rasterize(vertices_px: np.ndarray, triangles: np.ndarray, size: Size) -> Raster:
    """Z-buffered coverage of triangles sampled at pixel centres; the largest z wins.

    Both windings are rasterised (culling is the shader's choice). A pixel centre on an edge shared
    by two triangles is covered by both, so meshes show no cracks.

    Args:
        vertices_px: (N, 3) x, y in pixels (y down), z larger = closer.
        triangles: (T, 3) vertex indices.
        size: (h, w) of the image.
    Returns:
        :class:`Raster` with per-pixel triangle index, barycentric weights and depth.
    """
    h, w = int(size[0]), int(size[1])
    vertices = _check_vertices(vertices_px)
    tris = _check_triangles(triangles, len(vertices))
    corners = vertices[tris]  # (T, 3 corners, xyz)
    to_bary = _barycentric_matrices(corners[..., :2])
    x0, y0, width, height, usable = _pixel_boxes(corners[..., :2], h, w, to_bary)
    pixels, tri_ids, bary = _fragments(np.flatnonzero(usable), x0, y0, width, height, to_bary, w)
    depth = np.einsum("fk,fk->f", bary, corners[tri_ids, :, 2])  # sum_k b_k z_k
    return _resolve_depth(pixels, tri_ids, bary, depth, h, w)


def _check_vertices(vertices_px: np.ndarray) -> np.ndarray:
    vertices = np.asarray(vertices_px, np.float64)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices_px must have shape (N, 3) (x, y, depth), got {vertices.shape}")
    return vertices


def _check_triangles(triangles: np.ndarray, n_vertices: int) -> np.ndarray:
    tris = np.asarray(triangles)
    if tris.ndim != 2 or tris.shape[1] != 3 or tris.dtype.kind not in "iu":
        raise ValueError(f"triangles must be (T, 3) integers, got {tris.dtype} {tris.shape}")
    if tris.size and (tris.min() < 0 or tris.max() >= n_vertices):
        raise ValueError(f"triangles index vertices {tris.min()}..{tris.max()}, there are {n_vertices}")
    return tris.astype(np.int64, copy=False)


def _barycentric_matrices(xy: np.ndarray) -> np.ndarray:
    """(T, 3, 2) corners -> (T, 3, 3) M with barycentrics ``b = M @ (x, y, 1)``; NaN if degenerate."""
    homogeneous = np.concatenate((xy, np.ones(xy.shape[:2] + (1,))), axis=2)  # rows (x_k, y_k, 1)
    # b^T [x_k y_k 1]_k = (x, y, 1)  =>  M = inv(corner matrix)^T; degenerate ones give det ~ 0.
    det = np.linalg.det(homogeneous)
    solvable = np.abs(det) > 1e-12
    matrices = np.full(homogeneous.shape, np.nan)
    matrices[solvable] = np.linalg.inv(homogeneous[solvable]).transpose(0, 2, 1)
    return matrices


def _pixel_boxes(xy: np.ndarray, h: int, w: int, to_bary: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per triangle the first pixel centre (x0, y0) and count (width, height) of its clipped box."""
    low = np.ceil(xy.min(axis=1))
    high = np.floor(xy.max(axis=1))
    x0 = np.clip(low[:, 0], 0, w).astype(np.int64)
    y0 = np.clip(low[:, 1], 0, h).astype(np.int64)
    width = np.clip(high[:, 0], -1, w - 1).astype(np.int64) - x0 + 1
    height = np.clip(high[:, 1], -1, h - 1).astype(np.int64) - y0 + 1
    usable = (width > 0) & (height > 0) & np.isfinite(to_bary).all(axis=(1, 2))
    return x0, y0, width, height, usable


def _padded(count: np.ndarray) -> np.ndarray:
    """Round box sides up so that few distinct sizes remain while wasting under ~25% of the area."""
    step = np.left_shift(1, np.maximum(0, np.floor(np.log2(np.maximum(count, 1))).astype(np.int64) - 2))
    return -(-count // step) * step


def _fragments(candidates: np.ndarray, x0: np.ndarray, y0: np.ndarray, width: np.ndarray,
               height: np.ndarray, to_bary: np.ndarray,
               image_w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (pixel, triangle, barycentric) fragments with the pixel centre inside the triangle.

    Triangles whose padded boxes have the same size are evaluated together: one array of
    (triangles, box rows, box columns) per group, so the work is numpy-wide, not a Python loop.
    """
    if len(candidates) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3))
    box_w, box_h = _padded(width[candidates]), _padded(height[candidates])
    order = np.lexsort((box_h, box_w))
    candidates, box_w, box_h = candidates[order], box_w[order], box_h[order]
    starts = np.flatnonzero(np.r_[True, (box_w[1:] != box_w[:-1]) | (box_h[1:] != box_h[:-1])])
    ends = np.r_[starts[1:], len(candidates)]
    pixels, tri_ids, barys = [], [], []
    for start, end in zip(starts, ends):
        bw, bh = int(box_w[start]), int(box_h[start])
        per_chunk = max(1, _CHUNK_PIXELS // (bw * bh))
        for chunk in range(start, end, per_chunk):
            ids = candidates[chunk:min(chunk + per_chunk, end)]
            p, b = _box_fragments(ids, x0, y0, width, height, to_bary, bw, bh, image_w)
            pixels.append(p[0])
            tri_ids.append(ids[p[1]])
            barys.append(b)
    return np.concatenate(pixels), np.concatenate(tri_ids), np.concatenate(barys)


def _box_fragments(ids: np.ndarray, x0: np.ndarray, y0: np.ndarray, width: np.ndarray,
                   height: np.ndarray, to_bary: np.ndarray, bw: int, bh: int,
                   image_w: int) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Fragments of triangles ``ids`` sharing one padded box size (bh, bw).

    Returns:
        ((flat pixel index, position in ids) per fragment, (F, 3) barycentrics).
    """
    dx = np.arange(bw)
    dy = np.arange(bh)
    px = (x0[ids, None, None] + dx[None, None, :]).astype(np.float64)  # (n, 1, bw)
    py = (y0[ids, None, None] + dy[None, :, None]).astype(np.float64)  # (n, bh, 1)
    m = to_bary[ids]
    # b_k = M_k0 x + M_k1 y + M_k2 for each corner k, over the whole box: (n, 3, bh, bw)
    bary = (m[:, :, 0, None, None] * px[:, None] + m[:, :, 1, None, None] * py[:, None]
            + m[:, :, 2, None, None])
    in_box = (dx[None, None, :] < width[ids, None, None]) & (dy[None, :, None] < height[ids, None, None])
    inside = in_box & (bary >= -_INSIDE_EPS).all(axis=1)
    which, row, col = np.nonzero(inside)
    flat = (y0[ids][which] + row) * image_w + x0[ids][which] + col
    return (flat, which), bary[which, :, row, col]


def _resolve_depth(pixels: np.ndarray, tri_ids: np.ndarray, bary: np.ndarray, depth: np.ndarray,
                   h: int, w: int) -> Raster:
    """Keep per pixel the fragment with the largest depth; ties go to the lower triangle index.

    ``ufunc.at`` scatters (a max, then a min among the nearest) are several times faster than
    sorting the fragments by (pixel, depth).
    """
    zbuffer = np.full(h * w, -np.inf)
    np.maximum.at(zbuffer, pixels, depth)
    nearest = depth == zbuffer[pixels]
    triangle = np.full(h * w, np.iinfo(np.int64).max)
    np.minimum.at(triangle, pixels[nearest], tri_ids[nearest])
    winners = np.flatnonzero(nearest & (tri_ids == triangle[pixels]))
    triangle[triangle == np.iinfo(np.int64).max] = -1
    weights = np.zeros((h * w, 3))
    weights[pixels[winners]] = bary[winners]
    return Raster(triangle.reshape(h, w), weights.reshape(h, w, 3), zbuffer.reshape(h, w))


# ---------------------------------------------------------------------------------------------
# Shading
# ---------------------------------------------------------------------------------------------
def vertex_normals(vertices_px: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals in the core camera frame (x right, y up, z to the viewer).

    Pixel coordinates have y down, which mirrors the mesh; flipping y back makes counter-clockwise
    triangles (seen from outside) have normals that point outwards, as in model space.
    Returns:
        (N, 3) float64; zero for vertices no triangle uses.
    """
    camera = _check_vertices(vertices_px) * np.array([1.0, -1.0, 1.0])
    face = triangle_normals(camera, triangles, unit=False)  # length = 2 x area: area weighting
    tris = _check_triangles(triangles, len(camera))
    normals = np.stack([np.bincount(tris.ravel(), np.repeat(face[:, c], 3), minlength=len(camera))
                        for c in range(3)], axis=1).astype(np.float64)  # int64 when T = 0
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)


def triangle_normals(points: np.ndarray, triangles: np.ndarray, unit: bool = True) -> np.ndarray:
    """(T, 3) normals ``(b - a) x (c - a)`` of triangles over right-handed (N, 3) ``points``."""
    a, b, c = (points[triangles[:, k]] for k in range(3))
    normals = np.cross(b - a, c - a)
    if not unit:
        return normals
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)


def lambert(normals: np.ndarray, light_dir: Sequence[float], ambient: float) -> np.ndarray:
    """(N,) intensity ``ambient + (1 - ambient) max(0, n . l)`` for unit (N, 3) normals."""
    light = np.asarray(light_dir, np.float64)
    norm = np.linalg.norm(light)
    if light.shape != (3,) or norm == 0:
        raise ValueError(f"light_dir must be a non-zero 3-vector, got {light_dir!r}")
    return ambient + (1.0 - ambient) * np.clip(normals @ (light / norm), 0.0, None)


def render_mesh(vertices_px: np.ndarray, triangles: np.ndarray, image: np.ndarray | Size,
                color: Sequence[float] | np.ndarray = SKIN_RGB,
                light_dir: Sequence[float] = DEFAULT_LIGHT, ambient: float = 0.3,
                alpha: float = 1.0, back_color: Sequence[float] | None = BACK_RGB,
                supersample: int = 1) -> np.ndarray:
    """Render a mesh with Gouraud-shaded Lambert lighting over an image (or a black one).

    Args:
        vertices_px: (N, 3) x, y pixels (y down, centres at integers), z larger = closer, all in
            pixel units (as :func:`camera_to_pixels` gives).
        triangles: (T, 3) vertex indices, counter-clockwise seen from outside in model space.
        image: (H, W, 3) uint8 RGB background (not modified), or a size (h, w) for black.
        color: RGB of the surface, (3,), or per vertex (N, 3), 0..255.
        light_dir: direction towards the light, core camera frame (x right, y up, z to the viewer).
        ambient: intensity of surfaces facing away from the light, in [0, 1].
        alpha: opacity of the mesh over the background, in [0, 1].
        back_color: RGB of back faces (seen through holes such as an open mouth), or None to cull
            them (the background shows through).
        supersample: render at this factor and average down: antialiased edges.
    Returns:
        (H, W, 3) uint8 RGB.
    """
    background = _background(image)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if supersample < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    vertices = _check_vertices(vertices_px)
    tris = _check_triangles(triangles, len(vertices))
    out = background.copy()
    window = _mesh_window(vertices, tris, background.shape[:2])
    if window is None:  # nothing of the mesh inside the image
        return out
    x0, y0, x1, y1 = window  # only these pixels can change: shade and blend just them
    local = vertices - np.array([x0, y0, 0.0])  # integer shift: the same pixel centres
    h, w = y1 - y0, x1 - x0
    shade = _vertex_shading(local, tris, color, light_dir, ambient)
    k = int(supersample)
    # Pixel centre i of the big image covers [i - 0.5, i + 0.5] / k of the small one.
    scaled = np.concatenate(((local[:, :2] + 0.5) * k - 0.5, local[:, 2:] * k), axis=1)
    raster = rasterize(scaled, tris, (h * k, w * k))
    rgb, coverage = _shade_pixels(raster, tris, shade, local, back_color)
    if k > 1:  # box filter: mean of each k x k block
        rgb = rgb.reshape(h, k, w, k, 3).mean(axis=(1, 3))
        coverage = coverage.reshape(h, k, w, k).mean(axis=(1, 3))
        rgb = rgb / np.maximum(coverage, 1e-9)[..., None]  # un-premultiply
    weight = alpha * coverage[..., None]
    below = out[y0:y1, x0:x1].astype(np.float64)
    out[y0:y1, x0:x1] = np.clip(np.rint((1.0 - weight) * below + weight * rgb), 0, 255)
    return out


def _mesh_window(vertices: np.ndarray, tris: np.ndarray,
                 size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), end exclusive: the image pixels the triangles can cover (their vertices'
    box, one pixel wider for rounding), or None when it misses the image."""
    used = vertices[np.unique(tris)] if tris.size else vertices[:0]
    finite = used[np.isfinite(used[:, :2]).all(axis=1)]
    if not len(finite):
        return None
    h, w = size
    low = np.floor(finite[:, :2].min(axis=0)).astype(np.int64) - 1
    high = np.ceil(finite[:, :2].max(axis=0)).astype(np.int64) + 2
    x0, y0 = max(int(low[0]), 0), max(int(low[1]), 0)
    x1, y1 = min(int(high[0]), w), min(int(high[1]), h)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _background(image: np.ndarray | Size) -> np.ndarray:
    """The (H, W, 3) uint8 image to draw over (a black one for a size)."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}")
        return image
    h, w = (int(v) for v in image)
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive (h, w), got {image!r}")
    return np.zeros((h, w, 3), np.uint8)


def _vertex_shading(vertices: np.ndarray, tris: np.ndarray, color: Sequence[float] | np.ndarray,
                    light_dir: Sequence[float], ambient: float) -> np.ndarray:
    """(N, 3) lit RGB per vertex (Gouraud: light at the vertices, interpolate in between)."""
    if not 0.0 <= ambient <= 1.0:
        raise ValueError(f"ambient must be in [0, 1], got {ambient}")
    colors = np.asarray(color, np.float64)
    if colors.shape not in ((3,), (len(vertices), 3)):
        raise ValueError(f"color must be (3,) or ({len(vertices)}, 3) RGB, got {colors.shape}")
    intensity = lambert(vertex_normals(vertices, tris), light_dir, ambient)
    return np.broadcast_to(colors, (len(vertices), 3)) * intensity[:, None]


def _shade_pixels(raster: Raster, tris: np.ndarray, shade: np.ndarray, vertices: np.ndarray,
                  back_color: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) premultiplied colour and (H, W) coverage from the raster."""
    covered = raster.mask
    tri = raster.triangle[covered]
    bary = raster.barycentric[covered]
    rgb = np.zeros(raster.triangle.shape + (3,))
    coverage = covered.astype(np.float64)
    rgb[covered] = np.einsum("fk,fkc->fc", bary, shade[tris[tri]])  # sum_k b_k colour_k
    # Facing: normal z in the camera frame, i.e. winding in y-up coordinates (see vertex_normals).
    facing = triangle_normals(vertices * np.array([1.0, -1.0, 1.0]), tris, unit=False)[:, 2]
    back = facing[tri] <= 0
    if back.any():
        pixels = np.flatnonzero(covered)[back]
        if back_color is None:
            rgb.reshape(-1, 3)[pixels] = 0.0
            coverage.reshape(-1)[pixels] = 0.0
        else:
            rgb.reshape(-1, 3)[pixels] = np.asarray(back_color, np.float64)
    return rgb, coverage


# ---------------------------------------------------------------------------------------------
# Masks and overlays
# ---------------------------------------------------------------------------------------------
def silhouette_mask(vertices_px: np.ndarray, triangles: np.ndarray, size: Size) -> np.ndarray:
    """(H, W) bool: pixel centres covered by any triangle (the same sampling as :func:`render_mesh`)."""
    return rasterize(vertices_px, triangles, size).mask


def draw_landmarks(image: np.ndarray, points: np.ndarray, color: Sequence[int] = (0, 255, 0),
                   radius: float = 2.0) -> np.ndarray:
    """Filled dots at (N, 2) pixel ``points`` on a copy of the (H, W, 3) uint8 RGB ``image``.

    ``color`` is RGB like the image. Sub-pixel positions are kept (OpenCV's fixed-point ``shift``).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}")
    pts = np.asarray(points, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {pts.shape}")
    out = np.ascontiguousarray(image).copy()
    shift = 4  # 1/16 pixel
    fixed = np.rint(pts[np.isfinite(pts).all(axis=1)] * (1 << shift)).astype(np.int64)
    color_tuple = tuple(int(c) for c in color)
    for x, y in fixed:
        cv2.circle(out, (int(x), int(y)), int(round(radius * (1 << shift))), color_tuple, -1,
                   cv2.LINE_AA, shift)
    return out
