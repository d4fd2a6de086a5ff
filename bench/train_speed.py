"""Training throughput and network inference time (CPU; CUDA too when torch sees a GPU).

    .venv/bin/python bench/train_speed.py [--weights FILE]
    .venv/bin/python bench/train_speed.py --data CONFIG [--items 300] [--steps 20]

Prints: parameters and MACs; inference ms per face at batch 1, 4, 16 on 1 and 2 CPU threads (and
CUDA); training images/s (both views, forward + backward + optimiser step) on random crops.
With ``--data``: the training samples/s of CONFIG's data pipeline read from the photos (before the
crop cache) and from the crop cache (training/crop_cache.py; built first when missing), one
process, and end to end (the Trainer's steps with its DataLoader) both ways.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from face_expr_ros.core.facemodel import load_face_model
from face_expr_ros.core.network import FaceNet, NetworkConfig, count_macs, count_parameters
from face_expr_ros.core.projection import LandmarkProjector
from face_expr_ros.training import losses


def timed(fn, repeats: int, warmup: int = 3) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup``."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def inference_table(net: FaceNet, devices: list[tuple[str, int | None]]) -> None:
    size = net.config.input_size
    print("\nInference, ms per face (median)")
    print(f"{'device':<10} {'threads':>7} " + " ".join(f"{'batch ' + str(b):>9}" for b in (1, 4, 16)))
    for device, threads in devices:
        if threads:
            torch.set_num_threads(threads)
        model = net.to(device).eval()
        row = []
        for batch in (1, 4, 16):
            x = torch.rand(batch, 3, size, size, device=device)
            with torch.no_grad():
                row.append(timed(lambda: model(x), repeats=20) * 1000 / batch)
        print(f"{device:<10} {threads or '-':>7} " + " ".join(f"{ms:>9.2f}" for ms in row))


def training_speed(config: NetworkConfig, device: str, threads: int | None, batch: int = 32) -> float:
    if threads:
        torch.set_num_threads(threads)
    net = FaceNet(config).to(device).train()
    projector = LandmarkProjector(load_face_model(), config.n_identity).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    size = config.input_size
    x, x_aug = torch.rand(batch, 3, size, size, device=device), torch.rand(batch, 3, size, size, device=device)
    l1 = torch.rand(batch, 68, 2, device=device) * size
    affine = torch.eye(2, 3, device=device).expand(batch, 2, 3)
    perm = torch.arange(68, device=device).expand(batch, 68)

    def step():
        p = net(x)
        l2 = projector(p, size)
        l2a = projector(net(x_aug), size)
        terms = losses.total_loss(l1, l2, l1, l2a, affine, perm, p.identity, p.expression)
        opt.zero_grad()
        terms.total.backward()
        opt.step()

    seconds = timed(step, repeats=5, warmup=2)
    return batch / seconds


def data_speed(config_path: str, items: int, steps: int) -> None:
    """Samples/s of the data pipeline (one process) and of whole training steps, photos vs cache."""
    import dataclasses

    from face_expr_ros.training.config import load_config
    from face_expr_ros.training.train import Trainer

    print(f"\nTraining data, samples per second ({config_path}; one sample = both views"
          " and, with the presence loss, a negative)")
    print(f"{'source':<8} {'pipeline':>9} {'end to end':>11}")
    for cached in (False, True):
        config = load_config(config_path, {"data.crop_cache": cached, "max_steps": steps,
                                           "val_every_steps": 10**9, "output": "/tmp/train_speed"})
        trainer = Trainer(config)
        dataset = trainer.train_set
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:items]
        start = time.perf_counter()
        for index in order.tolist():
            dataset[index]
        pipeline = items / (time.perf_counter() - start)
        loader = iter(trainer.train_loader())
        batch = next(loader)  # workers started
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(batch, 10**9, _NoBar())
            batch = next(loader)
        end_to_end = steps * config.batch_size / (time.perf_counter() - start)
        print(f"{'cache' if cached else 'photos':<8} {pipeline:>9.1f} {end_to_end:>11.1f}")
        del loader, trainer, dataset


class _NoBar:
    def update(self, _n):
        pass

    def set_postfix(self, **_kw):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", help="time this network (default: a fresh default network)")
    parser.add_argument("--data", metavar="CONFIG", help="time CONFIG's training data instead")
    parser.add_argument("--items", type=int, default=300, help="samples read per source (--data)")
    parser.add_argument("--steps", type=int, default=20, help="training steps per source (--data)")
    args = parser.parse_args()
    if args.data:
        data_speed(args.data, args.items, args.steps)
        return
    if args.weights:
        from face_expr_ros.core.weights import load_weights

        net = load_weights(args.weights)
    else:
        net = FaceNet(NetworkConfig())
    config = net.config
    print(f"network: input {config.input_size}px, width {config.width}, "
          f"{count_parameters(net) / 1e6:.2f} M parameters, "
          f"{count_macs(net, config.input_size) / 1e6:.1f} M MACs per face; torch {torch.__version__}")
    devices: list[tuple[str, int | None]] = [("cpu", 1), ("cpu", 2)]
    if torch.cuda.is_available():
        devices.append(("cuda", None))
    inference_table(net, devices)
    print("\nTraining, images per second (two views each; batch 32)")
    for device, threads in devices:
        rate = training_speed(config, device, threads)
        print(f"{device:<10} {threads or '-':>7} {rate:>9.1f}")


if __name__ == "__main__":
    main()
