"""From network parameters to the projected 68 landmarks (the second landmark set) and meshes, in torch.

Only the vertices that the landmarks need (the contour curves' and the fixed feature vertices,
about 900 of 11,248) are synthesised, so the landmark path is cheap enough for every training step.
Inference has a numpy twin (:meth:`LandmarkProjector.landmarks_np`, the same numbers): for a few
faces per frame torch's per-operation overhead costs more than the arithmetic (bench/synthesis.py,
"Landmark projection": 0.46 against 0.82 ms for one face on 1 thread, 2 CPUs).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .camera import pose_points, project_orthographic
from .contour import N_JAW, contour_curves, jaw_landmarks_np, model_landmarks
from .facemodel import FaceModel
from .network import FaceParams
from .synthesis import blend_shapes


class LandmarkProjector(nn.Module):
    """Buffers of the face model restricted to the landmark vertices, and the projection.

    Args:
        model: the face model.
        n_identity: identity modes the network predicts (the first K of the model).
    """

    def __init__(self, model: FaceModel, n_identity: int):
        super().__init__()
        if not 0 < n_identity <= model.n_identity:
            raise ValueError(f"n_identity must be in 1..{model.n_identity}, got {n_identity}")
        curves = contour_curves(model)
        needed = curves.needed_vertex_ids
        self.curves = curves.subset()
        self.register_buffer("neutral", torch.from_numpy(model.neutral[needed]))
        self.register_buffer("identity_basis", torch.from_numpy(
            np.ascontiguousarray(model.identity_basis[:n_identity, needed])))
        self.register_buffer("expression_basis", torch.from_numpy(
            np.ascontiguousarray(model.expression_basis[:, needed])))
        # the numpy twin's bases, flattened: (K, U*3) and (E, U*3), float32 as the buffers
        self._np_neutral = self.neutral.numpy().reshape(-1)
        self._np_identity = self.identity_basis.numpy().reshape(n_identity, -1)
        self._np_expression = self.expression_basis.numpy().reshape(len(model.expression_basis), -1)

    def posed_vertices(self, params: FaceParams, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, U, 3) posed landmark-support vertices: ``s R V + t`` in crop pixels, y up."""
        shape = blend_shapes(self.neutral, self.identity_basis, self.expression_basis,
                             params.identity, params.expression, mask)
        return pose_points(shape, params.rotation, params.translation, params.scale)

    def forward(self, params: FaceParams, input_size: int,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 68, 2) landmarks in crop pixels (x right, y down), dynamic jaw contour included."""
        landmarks3d = model_landmarks(self.posed_vertices(params, mask), self.curves)
        centre = (input_size - 1) / 2.0
        return project_orthographic(landmarks3d) + centre

    def landmarks_np(self, identity: np.ndarray, expression: np.ndarray, rotation: np.ndarray,
                     translation: np.ndarray, scale: np.ndarray, input_size: int) -> np.ndarray:
        """numpy :meth:`forward` for inference (no mask, no gradient): (B, K) identity, (B, E)
        expression, (B, 3, 3) rotation, (B, 3) translation, (B,) scale -> (B, 68, 2) landmarks
        in crop pixels (x right, y down), float64."""
        identity = np.asarray(identity, np.float32)
        shapes = (self._np_neutral + identity @ self._np_identity
                  + np.asarray(expression, np.float32) @ self._np_expression)
        shapes = shapes.reshape(len(identity), -1, 3)
        posed = pose_points(shapes.astype(np.float64), np.asarray(rotation, np.float64),
                            np.asarray(translation, np.float64), np.asarray(scale, np.float64))
        features = self.curves.landmark_vertex_ids[N_JAW:]
        out = np.empty((len(posed), 68, 2))
        for k, vertices in enumerate(posed):
            jaw, _ = jaw_landmarks_np(vertices, self.curves)
            points = np.concatenate((jaw, vertices[features]), axis=0)
            out[k] = project_orthographic(points) + (input_size - 1) / 2.0
        return out
