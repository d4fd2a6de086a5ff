"""Dynamic jaw landmarks from contour curves on the mesh (the patent's claims 3-6).

Landmarks 17-67 (brows, eyes, nose, mouth) are fixed vertices (core.feature_landmarks). The 17 jaw
landmarks (iBUG 0-16) are not: the jaw line a person sees is the face's outline, which slides over
the surface as the head turns. Each jaw landmark therefore owns a curve on the mesh surface; per
pose, the curve point that lies furthest out in the camera-aligned frame centred on the face is that
landmark:

* cheek curves (landmarks 0-6 and 10-16): horizontal slices of the neutral mesh at the height of
  the curve's anchor (``feature_landmarks.jaw_anchor_vertices``: ICT's static jaw vertex, or the
  one fitted to human labels near it), from near the midline out to a little past the anchor; the
  chosen point has the largest ``|x - c_x|`` on the curve's own side, ``side * (x - c_x)``;
* chin curves (landmarks 7-9): slices in half-planes through an axis along z through the face
  centre (radial), from just below the lowest cheek curve down over the chin; the chosen point
  has the largest ``(x - c_x)^2 + (y - c_y)^2``.

The face centre ``c`` is the centroid of the posed nose and eye-corner vertices (iBUG 27-36, 39,
42, 45): points that expressions barely move, so the centre follows the head, not the mouth.

Every curve point is a fixed barycentric combination of the three vertices of one triangle, so the
curves deform with identity and expression. See ``docs/contour.md`` for the construction, the
numbers and the measured distances to the rendered outline.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .facemodel import N_JAW, FaceModel
from .feature_landmarks import feature_landmark_vertices, jaw_anchor_vertices

CHIN_LANDMARKS = (7, 8, 9)
"""Jaw landmarks on chin (radial) curves; the others are on cheek (horizontal) curves."""
CENTRE_LANDMARKS = (27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45)
"""iBUG landmarks whose vertices' centroid is the face centre: nose and eye corners."""
SPACING_CM = 0.1
"""Distance between consecutive curve points on the neutral mesh (the densification step)."""
OUTER_MARGIN_CM = 0.5
"""How far a curve goes past its static jaw vertex (arc length). Larger lets the near-side jaw
move further towards the ear, but a frontal face then picks the curve's end (the face keeps
widening towards the ears), which moves the frontal jaw away from the ICT vertex by this much."""
MIDLINE_GAP_CM = 0.2
"""Cheek curves stop this far from the midline x = 0, so a row's left and right curves stay
apart."""


@dataclass(frozen=True)
class ContourCurves:
    """The 17 jaw contour curves of a face model, ``C = 17`` curves of ``P`` points each.

    Point ``p`` of curve ``c`` is ``sum_k weights[c, p, k] * V[vertex_ids[c, p, k]]`` for any mesh
    ``V`` (neutral, identity, expression, posed). Curves shorter than ``P`` repeat their last
    point; points are ordered from the inner end (midline or chin start) outwards.

    Attributes:
        vertex_ids: (C, P, 3) int64 vertices of the triangle holding each point.
        weights: (C, P, 3) float32 barycentric weights (each row sums to 1).
        is_chin: (C,) bool, True where the curve is a chin curve (score ``x^2 + y^2``),
            False for cheek curves (score ``side * x``).
        side: (C,) float32, +1 for curves on the subject's left (model x > 0: landmarks 9-16),
            -1 on the subject's right (0-7), 0 for the middle chin curve.
        lengths: (C,) int64 number of real (unpadded) points per curve.
        centre_vertex_ids: (M,) int64 vertices whose centroid is the face centre.
        landmark_vertex_ids: (68,) int64 iBUG landmark vertices; 17-67 are used as they are.
    """

    vertex_ids: np.ndarray
    weights: np.ndarray
    is_chin: np.ndarray
    side: np.ndarray
    lengths: np.ndarray
    centre_vertex_ids: np.ndarray
    landmark_vertex_ids: np.ndarray
    _torch: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_curves(self) -> int:
        return int(self.vertex_ids.shape[0])

    @property
    def n_points(self) -> int:
        return int(self.vertex_ids.shape[1])

    @property
    def needed_vertex_ids(self) -> np.ndarray:
        """(U,) sorted vertices that the landmarks depend on (curves, centre, fixed landmarks)."""
        return np.unique(np.concatenate((self.vertex_ids.ravel(), self.centre_vertex_ids,
                                         self.landmark_vertex_ids)))

    def subset(self) -> "ContourCurves":
        """The same curves indexing into ``V[needed_vertex_ids]`` instead of the full mesh.

        Lets inference synthesise only the ``U`` needed vertices
        (``synthesis.synthesize(..., vertex_ids=curves.needed_vertex_ids)``).
        """
        needed = self.needed_vertex_ids

        def remap(ids: np.ndarray) -> np.ndarray:
            return np.searchsorted(needed, ids).astype(np.int64)

        return ContourCurves(remap(self.vertex_ids), self.weights, self.is_chin, self.side,
                             self.lengths, remap(self.centre_vertex_ids),
                             remap(self.landmark_vertex_ids))

    def points(self, vertices: np.ndarray) -> np.ndarray:
        """(C, P, 3) curve points on a (V, 3) mesh."""
        corners = np.asarray(vertices)[self.vertex_ids]  # (C, P, 3 corners, 3 xyz)
        return np.einsum("cpk,cpkd->cpd", self.weights, corners)  # sum_k w_cpk V_cpk

    def tensors(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
        """(vertex_ids, weights, is_chin, side, centre_vertex_ids, landmark_vertex_ids) as torch
        tensors on ``device``, cached per device."""
        key = str(torch.device(device))
        if key not in self._torch:
            self._torch[key] = tuple(
                torch.as_tensor(a, device=device)
                for a in (self.vertex_ids, self.weights, self.is_chin, self.side,
                          self.centre_vertex_ids, self.landmark_vertex_ids))
        return self._torch[key]


# ---------------------------------------------------------------------------------------------
# Construction (once per model, on the neutral mesh)
# ---------------------------------------------------------------------------------------------
_CACHE: dict[int, tuple[weakref.ref, ContourCurves]] = {}


def contour_curves(model: FaceModel) -> ContourCurves:
    """The model's :class:`ContourCurves`, built on first use and cached while ``model`` lives."""
    hit = _CACHE.get(id(model))
    if hit is not None and hit[0]() is model:
        return hit[1]
    curves = build_contour_curves(model)
    _CACHE[id(model)] = (weakref.ref(model), curves)
    return curves


@dataclass(frozen=True)
class SliceMesh:
    """What slicing a model's neutral face area needs, computed once per model.

    Attributes:
        neutral: (V, 3) float64 neutral mesh.
        edges: (E, 2) unique edges of the face-area triangles (smaller vertex first).
        triangle_edges: (T, 3) each face-area triangle's edges (rows of ``edges``).
        centre: (3,) the neutral face centre (centroid of ``CENTRE_LANDMARKS``' vertices).
        centre_ids: (M,) those vertices.
    """

    neutral: np.ndarray
    edges: np.ndarray
    triangle_edges: np.ndarray
    centre: np.ndarray
    centre_ids: np.ndarray

    @classmethod
    def of(cls, model: FaceModel) -> "SliceMesh":
        neutral = model.neutral.astype(np.float64)
        triangles = model.triangles[(model.triangles < model.face_area_vertex_count).all(axis=1)]
        edges, triangle_edges = _edges(triangles)
        centre_ids = np.asarray(model.landmarks68, dtype=np.int64)[list(CENTRE_LANDMARKS)]
        return cls(neutral, edges, triangle_edges, neutral[centre_ids].mean(axis=0), centre_ids)


def lowest_cheek_height(anchors: np.ndarray) -> float:
    """The y of the lowest cheek row, from the (17, 3) neutral anchor points: where the chin
    curves start (halfway between it and each chin anchor)."""
    return float(min(anchors[k, 1] for k in range(N_JAW) if k not in CHIN_LANDMARKS))


def jaw_curve(mesh: SliceMesh, k: int, anchor: np.ndarray, lowest_cheek_y: float,
              spacing: float = SPACING_CM, outer_margin: float = OUTER_MARGIN_CM,
              midline_gap: float = MIDLINE_GAP_CM) -> tuple[np.ndarray, np.ndarray]:
    """Jaw landmark ``k``'s curve through the neutral point ``anchor`` (its static vertex).

    Returns:
        ids (P, 3) int64 and weights (P, 3) float64 of the curve points, inner end first.
    Raises:
        ValueError: the slice does not pass through the face area near ``anchor``.
    """
    if k in CHIN_LANDMARKS:
        normal, outward, keep = _chin_slice(anchor, mesh.centre, lowest_cheek_y)
    else:
        normal, outward, keep = _cheek_slice(anchor, midline_gap)
    offset = mesh.neutral @ normal - anchor @ normal
    chain = _slice_chain(mesh.neutral, mesh.edges, mesh.triangle_edges, offset, anchor)
    if chain is None:
        raise ValueError(f"jaw landmark {k}: its slice does not reach the face area")
    ids, weights, points = _resample(mesh.neutral, *chain, spacing)
    # Rows through the eye or lips may curl into the opening: a cheek curve starts at its
    # front-most point.
    return _trim(ids, weights, points, anchor, outward, keep,
                 cut_at_max_z=k not in CHIN_LANDMARKS, outer_margin=outer_margin)


def build_contour_curves(model: FaceModel, spacing: float = SPACING_CM,
                         outer_margin: float = OUTER_MARGIN_CM,
                         midline_gap: float = MIDLINE_GAP_CM,
                         anchor_vertex_ids: np.ndarray | None = None) -> ContourCurves:
    """Slice the neutral face area into the 17 jaw curves (see the module docstring).

    Args:
        spacing: distance between curve points on the neutral mesh, cm.
        outer_margin: arc length a curve runs past its static jaw vertex, cm.
        midline_gap: cheek curves keep ``|x| >= midline_gap`` (cm) so left and right stay apart.
        anchor_vertex_ids: (17,) the curves' static vertices; default
            :func:`~.feature_landmarks.jaw_anchor_vertices` (fitted to human labels on the ICT
            mesh, the model's own ``landmarks68[:17]`` on any other).
    Raises:
        ValueError: a slice does not pass through the face area near its static jaw vertex, or
            ``anchor_vertex_ids`` is not 17 vertices of the face area.
    """
    mesh = SliceMesh.of(model)
    anchors = (jaw_anchor_vertices(model) if anchor_vertex_ids is None
               else np.asarray(anchor_vertex_ids, dtype=np.int64))
    if anchors.shape != (N_JAW,) or anchors.min() < 0 or \
            anchors.max() >= model.face_area_vertex_count:
        raise ValueError(f"anchor_vertex_ids must be {N_JAW} face-area vertices, got {anchors!r}")
    static = mesh.neutral[anchors]
    lowest = lowest_cheek_height(static)
    curves = [jaw_curve(mesh, k, static[k], lowest, spacing, outer_margin, midline_gap)
              for k in range(N_JAW)]
    n_points = max(len(c[0]) for c in curves)
    vertex_ids = np.stack([_pad(ids, n_points) for ids, _ in curves])
    weights = np.stack([_pad(w, n_points) for _, w in curves]).astype(np.float32)
    return ContourCurves(vertex_ids=vertex_ids.astype(np.int64), weights=weights,
                         is_chin=np.isin(np.arange(N_JAW), CHIN_LANDMARKS),
                         side=np.sign(static[:, 0]).astype(np.float32),
                         lengths=np.array([len(c[0]) for c in curves], dtype=np.int64),
                         centre_vertex_ids=mesh.centre_ids,
                         landmark_vertex_ids=feature_landmark_vertices(model))


def _cheek_slice(static: np.ndarray, midline_gap: float):
    """Plane normal, outward measure and inner-part test of a cheek row through ``static``."""
    side = np.sign(static[0])

    def outward(p: np.ndarray) -> np.ndarray:
        return side * p[:, 0]

    def keep(p: np.ndarray) -> np.ndarray:
        return side * p[:, 0] >= midline_gap

    return np.array([0.0, 1.0, 0.0]), outward, keep


def _chin_slice(static: np.ndarray, centre: np.ndarray, lowest_cheek_y: float):
    """Plane normal, outward measure and inner-part test of the radial chin curve through
    ``static``: the half-plane from the z-axis line through ``centre`` towards ``static``."""
    direction = np.array([static[0] - centre[0], static[1] - centre[1], 0.0])
    direction /= np.linalg.norm(direction)
    # Start halfway (in y) between the lowest cheek row and the chin vertex: no cheek row
    # reaches the chin curves.
    r_start = (centre[1] - 0.5 * (lowest_cheek_y + static[1])) / -direction[1]

    def outward(p: np.ndarray) -> np.ndarray:
        return (p[:, :2] - centre[:2]) @ direction[:2]

    def keep(p: np.ndarray) -> np.ndarray:
        return outward(p) >= r_start

    return np.cross(direction, [0.0, 0.0, 1.0]), outward, keep


def _edges(triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique edges (E, 2) (smaller vertex first) and each triangle's edges (T, 3)."""
    pairs = np.concatenate((triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]))
    edges, inverse = np.unique(np.sort(pairs, axis=1), axis=0, return_inverse=True)
    return edges, inverse.reshape(3, -1).T


def _slice_chain(vertices: np.ndarray, edges: np.ndarray, triangle_edges: np.ndarray,
                 offset: np.ndarray, near: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The connected piece of the slice ``offset == 0`` that passes nearest to ``near``.

    ``offset`` is linear in space (a plane's signed distance), so it is linear along each edge and
    the plane crosses an edge where it changes sign. Each triangle with two crossed edges links
    them; a manifold mesh makes every piece a chain or a loop.
    Returns:
        (edge_pairs (N, 2), fractions (N,)): the crossed edges in chain order and where along each
        edge (a -> b) the plane crosses; None if the plane misses the mesh.
    """
    # A vertex exactly on the plane would give a triangle three crossings: nudge it off.
    offset = np.where(np.abs(offset) < 1e-9, 1e-9, offset)
    crossing = (offset[edges[:, 0]] > 0) != (offset[edges[:, 1]] > 0)
    crossed = crossing[triangle_edges]  # (T, 3): 0 or 2 crossed edges per triangle
    two = crossed.sum(axis=1) == 2
    neighbours: dict[int, list[int]] = {}
    for a, b in triangle_edges[two][crossed[two]].reshape(-1, 2):  # the two edges per triangle
        neighbours.setdefault(int(a), []).append(int(b))
        neighbours.setdefault(int(b), []).append(int(a))
    if not neighbours:
        return None
    nodes = np.array(sorted(neighbours))
    fractions = _edge_fraction(edges[nodes], offset)
    points = _lerp(vertices[edges[nodes, 0]], vertices[edges[nodes, 1]], fractions)
    start = int(nodes[np.argmin(np.linalg.norm(points - near, axis=1))])
    chain = np.array(_walk(neighbours, start))
    return edges[chain], _edge_fraction(edges[chain], offset)


def _walk(neighbours: dict[int, list[int]], start: int) -> list[int]:
    """Order the chain or loop through ``start``; a loop is opened opposite ``start``."""
    def follow(previous: int, node: int) -> list[int]:
        out = []
        while node != start:
            out.append(node)
            ahead = [n for n in neighbours[node] if n != previous]
            if not ahead:
                return out
            previous, node = node, ahead[0]
        out.append(start)  # came back: a loop
        return out

    first = follow(start, neighbours[start][0])
    if first[-1] == start:
        loop = [start] + first[:-1]
        half = len(loop) // 2
        return loop[half:] + loop[:half]
    second = follow(start, neighbours[start][1]) if len(neighbours[start]) > 1 else []
    return second[::-1] + [start] + first


def _edge_fraction(edge_pairs: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Fraction t along each edge (a -> b) where the linear ``offset`` is zero."""
    oa, ob = offset[edge_pairs[:, 0]], offset[edge_pairs[:, 1]]
    return oa / (oa - ob)


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return (1.0 - t)[:, None] * a + t[:, None] * b


def _resample(vertices: np.ndarray, edge_pairs: np.ndarray, fractions: np.ndarray,
              spacing: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points every ``spacing`` cm along the chain (the densification by interpolation).

    A point between two consecutive crossings lies in the triangle holding both crossed edges, so
    it is a barycentric combination of that triangle's three vertices.
    Returns:
        ids (N, 3) int64, weights (N, 3) float64, points (N, 3) on ``vertices``.
    """
    nodes = _lerp(vertices[edge_pairs[:, 0]], vertices[edge_pairs[:, 1]], fractions)
    arc = np.concatenate(([0.0], np.cumsum(np.linalg.norm(np.diff(nodes, axis=0), axis=1))))
    samples = np.linspace(0.0, arc[-1], max(int(np.ceil(arc[-1] / spacing)), 1) + 1)
    seg = np.clip(np.searchsorted(arc, samples, side="right") - 1, 0, max(len(nodes) - 2, 0))
    nxt = np.minimum(seg + 1, len(nodes) - 1)
    u = np.clip((samples - arc[seg]) / np.maximum(arc[nxt] - arc[seg], 1e-12), 0.0, 1.0)
    ta, tb = fractions[seg], fractions[nxt]
    ids4 = np.concatenate((edge_pairs[seg], edge_pairs[nxt]), axis=1)
    w4 = np.stack(((1 - u) * (1 - ta), (1 - u) * ta, u * (1 - tb), u * tb), axis=1)
    ids = np.empty((len(samples), 3), dtype=np.int64)
    weights = np.zeros((len(samples), 3))
    for i in range(len(samples)):  # merge the vertex the two edges share
        unique, slot = np.unique(ids4[i], return_inverse=True)
        unique = np.concatenate((unique, unique[:1]))[:3]  # same edge twice: pad with weight 0
        ids[i] = unique
        np.add.at(weights[i], slot, w4[i])
    points = np.einsum("nk,nkd->nd", weights, vertices[ids])  # sum_k w_nk V_nk
    return ids, weights, points


def _trim(ids: np.ndarray, weights: np.ndarray, points: np.ndarray, static: np.ndarray,
          outward: Callable[[np.ndarray], np.ndarray], keep: Callable[[np.ndarray], np.ndarray],
          cut_at_max_z: bool, outer_margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Cut the resampled chain to the curve: inner end .. static vertex + ``outer_margin``.

    Args:
        outward: (N, 3) -> (N,), grows away from the face centre along the curve.
        keep: (N, 3) -> (N,) bool, where the inner part may lie.
        cut_at_max_z: start the curve at the front-most point of its inner part.
    Returns:
        ids (P, 3), weights (P, 3), ordered from the inner end outwards.
    """
    at = int(np.argmin(np.linalg.norm(points - static, axis=1)))
    ahead, behind = min(at + 3, len(points) - 1), max(at - 3, 0)
    if outward(points[ahead:ahead + 1])[0] < outward(points[behind:behind + 1])[0]:
        ids, weights, points = ids[::-1], weights[::-1], points[::-1]
        at = len(points) - 1 - at
    step = np.linalg.norm(np.diff(points, axis=0), axis=1)
    arc = np.concatenate(([0.0], np.cumsum(step))) - np.concatenate(([0.0], np.cumsum(step)))[at]
    end = int(np.nonzero(arc <= outer_margin + 1e-9)[0][-1])
    kept = keep(points[: at + 1])
    begin = at
    while begin > 0 and kept[begin - 1]:
        begin -= 1
    if cut_at_max_z:
        begin += int(np.argmax(points[begin: at + 1, 2]))
    return ids[begin: end + 1], weights[begin: end + 1]


def _pad(array: np.ndarray, n: int) -> np.ndarray:
    """Repeat the last row so that ``array`` has ``n`` rows."""
    return np.concatenate((array, np.repeat(array[-1:], n - len(array), axis=0)))

# ---------------------------------------------------------------------------------------------
# Selection (per pose)
# ---------------------------------------------------------------------------------------------
def face_centre(posed_vertices: torch.Tensor, curves: ContourCurves) -> torch.Tensor:
    """(B, V, 3) posed vertices -> (B, 3) face centre: centroid of the nose and eye corners."""
    ids = curves.tensors(posed_vertices.device)[4]
    return posed_vertices[:, ids].mean(dim=1)


def jaw_landmarks(posed_vertices: torch.Tensor, curves: ContourCurves,
                  centre: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic jaw landmarks (iBUG 0-16) of posed faces, batched and differentiable.

    Per curve, the point furthest out in the camera-aligned frame centred on the face is chosen:
    on cheek curves the largest ``|x - c_x|`` on the curve's own side, i.e. the largest
    ``side * (x - c_x)``; on chin curves the largest ``(x - c_x)^2 + (y - c_y)^2``. (A plain
    ``|x - c_x|`` picks the wrong end once a whole curve has crossed the centre, as the far
    cheek does beyond ~45 degrees of yaw; on its own side the two agree.)
    The choice is discrete (no gradient); the chosen point is a fixed barycentric combination of
    three vertices, so its position is differentiable in the vertices.

    Args:
        posed_vertices: (B, V, 3) vertices in the core camera frame (x image right, y image up,
            z towards the viewer), e.g. ``s R V + t``; any V that ``curves`` indexes into.
        curves: :func:`contour_curves` of the model (or its :meth:`ContourCurves.subset`).
        centre: (B, 3) face centre; default :func:`face_centre`.
    Returns:
        positions: (B, 17, 3) jaw landmarks in the frame of ``posed_vertices``.
        indices: (B, 17) int64 chosen point of each curve (no gradient).

    Example:
        >>> curves = contour_curves(model)
        >>> jaw, idx = jaw_landmarks(posed, curves)   # posed: (B, V, 3)
    """
    if posed_vertices.ndim != 3 or posed_vertices.shape[-1] != 3:
        raise ValueError(f"posed_vertices must be (B, V, 3), got {tuple(posed_vertices.shape)}")
    vertex_ids, weights, is_chin, side = curves.tensors(posed_vertices.device)[:4]
    weights = weights.to(posed_vertices.dtype)
    batch = posed_vertices.shape[0]
    if centre is None:
        centre = face_centre(posed_vertices, curves)
    with torch.no_grad():
        corners = posed_vertices.detach()[:, vertex_ids]  # (B, C, P, 3 corners, 3 xyz)
        points = torch.einsum("cpk,bcpkd->bcpd", weights, corners)  # sum_k w_cpk V_bcpk
        xy = points[..., :2] - centre.detach()[:, None, None, :2]
        cheek = side.to(xy.dtype)[:, None] * xy[..., 0]
        score = torch.where(is_chin[:, None], (xy ** 2).sum(-1), cheek)  # (B, C, P)
        indices = score.argmax(dim=-1)  # (B, C)
    chosen_ids = vertex_ids[torch.arange(vertex_ids.shape[0], device=indices.device), indices]
    chosen_w = weights[torch.arange(weights.shape[0], device=indices.device), indices]  # (B,C,3)
    rows = torch.arange(batch, device=posed_vertices.device)[:, None, None]
    corners = posed_vertices[rows, chosen_ids]  # (B, C, 3 corners, 3 xyz)
    positions = torch.einsum("bck,bckd->bcd", chosen_w, corners)  # sum_k w_bck V_bck
    return positions, indices


def model_landmarks(posed_vertices: torch.Tensor, curves: ContourCurves,
                    centre: torch.Tensor | None = None) -> torch.Tensor:
    """The 68 model landmarks: dynamic jaw (0-16) + fixed feature vertices (17-67).

    Args:
        posed_vertices: (B, V, 3) posed vertices (core camera frame).
        curves: :func:`contour_curves` of the model (or its subset).
        centre: (B, 3) face centre; default :func:`face_centre`.
    Returns:
        (B, 68, 3) landmarks, differentiable in ``posed_vertices``; project them for L2.
    """
    jaw, _ = jaw_landmarks(posed_vertices, curves, centre)
    features = curves.tensors(posed_vertices.device)[5][N_JAW:]
    return torch.cat((jaw, posed_vertices[:, features]), dim=1)


def jaw_landmarks_np(posed_vertices: np.ndarray, curves: ContourCurves,
                     centre: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """numpy :func:`jaw_landmarks` for one face.

    Args:
        posed_vertices: (V, 3) posed vertices (core camera frame).
        centre: (3,) face centre; default the centroid of ``curves.centre_vertex_ids``.
    Returns:
        positions (17, 3) float32 and indices (17,) int64.
    """
    vertices = np.asarray(posed_vertices, dtype=np.float32)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"posed_vertices must be (V, 3), got {vertices.shape}")
    if centre is None:
        centre = vertices[curves.centre_vertex_ids].mean(axis=0)
    xy = curves.points(vertices)[..., :2] - np.asarray(centre, dtype=np.float32)[:2]  # (C, P, 2)
    indices = choose_on_curves(xy, curves.is_chin, curves.side)
    rows = np.arange(curves.n_curves)
    corners = vertices[curves.vertex_ids[rows, indices]]  # (C, 3 corners, 3 xyz)
    positions = np.einsum("ck,ckd->cd", curves.weights[rows, indices], corners)
    return positions.astype(np.float32), indices.astype(np.int64)


def choose_on_curves(xy: np.ndarray, is_chin: np.ndarray, side: np.ndarray) -> np.ndarray:
    """numpy choice of :func:`jaw_landmarks`: (..., C) index of the chosen point of each curve.

    Args:
        xy: (..., C, P, 2) curve points relative to the face centre, x along the camera-aligned x
            (any scale; y may point up or down: only its square counts).
        is_chin: (C,) bool, chin curves (largest ``x^2 + y^2``); the others are cheek curves
            (largest ``side * x``).
        side: (C,) the cheek curves' sides (:attr:`ContourCurves.side`).
    """
    score = np.where(np.asarray(is_chin)[:, None], (xy ** 2).sum(-1),
                     np.asarray(side, dtype=xy.dtype)[:, None] * xy[..., 0])
    return score.argmax(axis=-1)


def model_landmarks_np(model: FaceModel, posed_vertices: np.ndarray,
                       centre: np.ndarray | None = None) -> np.ndarray:
    """(V, 3) posed vertices of ``model`` -> (68, 3) landmarks, dynamic jaw + fixed features.

    Convenient for the renderer and the CLI; the curves are built once per model and cached.
    """
    curves = contour_curves(model)
    jaw, _ = jaw_landmarks_np(posed_vertices, curves, centre)
    features = np.asarray(posed_vertices, dtype=np.float32)[curves.landmark_vertex_ids[N_JAW:]]
    return np.concatenate((jaw, features), axis=0)
