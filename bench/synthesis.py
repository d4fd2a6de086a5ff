"""Benchmark: dense vs sparse expression synthesis, and contour (jaw) landmark selection.

Run: ``.venv/bin/python bench/synthesis.py`` (about 30 s; one torch thread, CPU).
Prints milliseconds per call (median of repeats) and vertices per second.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from face_expr_ros.core import contour, synthesis  # noqa: E402
from face_expr_ros.core.camera import euler_to_matrix  # noqa: E402
from face_expr_ros.core.facemodel import load_face_model  # noqa: E402
from face_expr_ros.core.network import FaceParams  # noqa: E402
from face_expr_ros.core.projection import LandmarkProjector  # noqa: E402

ACTIVE = (1, 5, 20, 53)


def time_ms(fn: Callable[[], object], repeats: int = 20, min_seconds: float = 0.3) -> float:
    """Median wall time of ``fn`` in ms, after one warm-up call."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
        if len(times) >= 200:
            break
    return statistics.median(times)


def bench_synthesis(model) -> None:
    rng = np.random.default_rng(0)
    n_vertices = model.n_vertices
    identity = rng.normal(size=model.n_identity).astype(np.float32)
    print(f"\nSynthesis, V = {n_vertices} vertices, {model.n_identity} identity modes")
    print("numpy synthesize: dense = selected None (all templates), sparse = selected indices;")
    print("'+id' adds 100 identity modes, 'expr' passes identity=None (identity cached per face)")
    print(f"{'active':>6} | {'dense+id ms':>11} | {'sparse+id ms':>12} | {'dense expr ms':>13} | "
          f"{'sparse expr ms':>14} | {'sparse expr Mvert/s':>19}")
    print("-" * 92)
    for active in ACTIVE:
        beta = np.zeros(model.n_expressions, np.float32)
        chosen = rng.choice(model.n_expressions, active, replace=False)
        beta[chosen] = rng.uniform(0.2, 1.0, active)
        selected = synthesis.select_templates(beta, top_k=None)
        dense = time_ms(lambda: synthesis.synthesize(model, beta, None, identity))
        sparse = time_ms(lambda: synthesis.synthesize(model, beta, selected, identity))
        dense_e = time_ms(lambda: synthesis.synthesize(model, beta, None))
        sparse_e = time_ms(lambda: synthesis.synthesize(model, beta, selected))
        print(f"{active:>6} | {dense:>11.2f} | {sparse:>12.2f} | {dense_e:>13.2f} | "
              f"{sparse_e:>14.2f} | {n_vertices / sparse_e / 1e3:>19.2f}")

    neutral = torch.as_tensor(model.neutral)
    identity_basis = torch.as_tensor(model.identity_basis)
    expression_basis = torch.as_tensor(model.expression_basis)
    print(f"\ntorch blend_shapes (dense, all {model.n_expressions} templates)")
    print(f"{'batch':>6} | {'ms / call':>9} | {'ms / face':>9} | {'Mvert/s':>8}")
    print("-" * 42)
    for batch in (1, 16):
        alpha = torch.randn(batch, model.n_identity)
        beta = torch.rand(batch, model.n_expressions)
        with torch.no_grad():
            ms = time_ms(lambda: synthesis.blend_shapes(neutral, identity_basis, expression_basis,
                                                        alpha, beta), repeats=5)
        print(f"{batch:>6} | {ms:>9.2f} | {ms / batch:>9.2f} | {batch * n_vertices / ms / 1e3:>8.2f}")


def bench_contour(model) -> None:
    t0 = time.perf_counter()
    curves = contour.build_contour_curves(model)
    build_ms = (time.perf_counter() - t0) * 1e3
    print(f"\nContour landmarks: {curves.n_curves} curves x {curves.n_points} points "
          f"(built once in {build_ms:.0f} ms)")
    rng = np.random.default_rng(1)
    meshes = []
    for _ in range(16):
        beta = rng.uniform(0, 0.5, model.n_expressions).astype(np.float32)
        rotation = euler_to_matrix(rng.uniform(-60, 60), rng.uniform(-20, 20), 0).astype(np.float32)
        meshes.append(synthesis.synthesize(model, beta) @ rotation.T)
    posed = np.stack(meshes)
    posed_t = torch.as_tensor(posed)
    print(f"{'variant':>26} | {'ms / call':>9} | {'ms / face':>9}")
    print("-" * 52)
    ms = time_ms(lambda: contour.jaw_landmarks_np(posed[0], curves), repeats=50)
    print(f"{'numpy jaw, 1 face':>26} | {ms:>9.3f} | {ms:>9.3f}")
    ms = time_ms(lambda: contour.model_landmarks_np(model, posed[0]), repeats=50)
    print(f"{'numpy all 68, 1 face':>26} | {ms:>9.3f} | {ms:>9.3f}")
    for batch in (1, 16):
        with torch.no_grad():
            ms = time_ms(lambda: contour.model_landmarks(posed_t[:batch], curves), repeats=50)
        print(f"{f'torch all 68, batch {batch}':>26} | {ms:>9.3f} | {ms / batch:>9.3f}")
    grad_input = posed_t[:16].clone().requires_grad_(True)

    def forward_backward() -> None:
        contour.model_landmarks(grad_input, curves).sum().backward()

    ms = time_ms(forward_backward, repeats=20)
    print(f"{'torch fwd+bwd, batch 16':>26} | {ms:>9.3f} | {ms / 16:>9.3f}")


def bench_projection(model) -> None:
    """The network's parameters -> 68 crop landmarks: LandmarkProjector (torch, training) against
    its numpy twin (inference on the CPU, core.reconstruct)."""
    projector = LandmarkProjector(model, 40)
    rng = np.random.default_rng(2)
    print("\nLandmark projection (network parameters -> 68 landmarks, 40 identity modes)")
    print(f"{'variant':>26} | {'ms / call':>9} | {'ms / face':>9}")
    print("-" * 52)
    for batch in (1, 3):
        arrays = (rng.normal(size=(batch, 40)).astype(np.float32),
                  rng.uniform(0, 0.5, (batch, model.n_expressions)).astype(np.float32),
                  np.stack([euler_to_matrix(rng.uniform(-40, 40), 0, 0) for _ in range(batch)]
                           ).astype(np.float32),
                  np.zeros((batch, 3), np.float32), np.full(batch, 5.0, np.float32))
        params = FaceParams(*(torch.from_numpy(a) for a in arrays))
        with torch.no_grad():
            ms = time_ms(lambda: projector(params, 128).numpy(), repeats=50)
        print(f"{f'torch, batch {batch}':>26} | {ms:>9.3f} | {ms / batch:>9.3f}")
        ms = time_ms(lambda: projector.landmarks_np(*arrays, 128), repeats=50)
        print(f"{f'numpy twin, batch {batch}':>26} | {ms:>9.3f} | {ms / batch:>9.3f}")


def main() -> None:
    torch.set_num_threads(1)
    model = load_face_model()
    print(f"face model: {model.path}; torch {torch.__version__}, threads {torch.get_num_threads()}")
    start = time.perf_counter()
    bench_synthesis(model)
    bench_contour(model)
    bench_projection(model)
    print(f"\ntotal {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
