"""The training loop: ``face_expr train --config FILE`` (single process, or DDP under torchrun).

Each step: network(crop) -> L2 (projected model landmarks, dynamic jaw), network(A(crop)) -> L2',
loss = MSE(L2, L1) + w_c consistency(L1, L2, L2', L3, A) + priors (losses.py). Validation: NME on
the validation split (subjects never in training). Stops at a validation plateau (``patience``),
``max_steps``, ``max_minutes`` or ``max_epochs``. Checkpoints: ``last.pt`` (model + optimiser,
for --resume, read with ``weights_only=True``) and ``best.safetensors`` (weights only). With
``ema_decay`` the validated and saved weights are the exponential moving average of the trained
ones (:func:`ema_model`).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler, WeightedRandomSampler

from ..core.arkit import arkit_matrix
from ..core.facemodel import load_face_model
from ..core.network import N_EMOTIONS, FaceNet, resample_pooling
from ..core.projection import LandmarkProjector
from ..core.reconstruct import pick_device
from ..core.weights import load_weights, save_weights, tensor_hash
from . import losses
from .config import TrainConfig, config_to_dict
from .crop_cache import build_crop_cache, cache_params
from .datasets import build_index, load_teacher_cache, split_of
from .metrics import nme
from .pairs import LandmarkPairs, PairParams

log = logging.getLogger(__name__)


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Distributed:
    """Join the process group when started by torchrun (RANK/WORLD_SIZE set); gloo on CPU."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return Distributed()
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend)
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def training_device(name: str, local_rank: int = 0) -> torch.device:
    """core.reconstruct.pick_device, with each torchrun process on its own GPU."""
    device = pick_device(name)
    return torch.device("cuda", local_rank) if device.type == "cuda" and device.index is None else device


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def build_datasets(config: TrainConfig) -> tuple[LandmarkPairs, LandmarkPairs, list[float]]:
    """Train/val pair datasets over the configured sets, and per-item sampling weights."""
    data = config.data
    cache = load_teacher_cache(Path(data.teacher_cache).expanduser()) if data.teacher_cache else None
    train_entries, val_entries, weights, crops = [], [], [], {}
    for set_name, set_weight in data.sets.items():
        entries = [e for e in build_index(set_name, data.root, cache) if e.landmarks is not None]
        if data.max_per_set:
            entries = entries[: data.max_per_set]
        if not entries:
            log.warning("set %s has no landmarks (annotate it first): left out", set_name)
            continue
        if data.crop_cache:
            crops[set_name] = build_crop_cache(set_name, entries, cache_params(config.net),
                                               data.cache_workers)
        tr = [e for e in entries if split_of(e, data.val_fraction) == "train"]
        va = [e for e in entries if split_of(e, data.val_fraction) == "val"]
        train_entries += tr
        val_entries += va
        # each set contributes set_weight x (its share if all sets were the same size)
        weights += [set_weight / max(len(tr), 1)] * len(tr)
    params = PairParams(size=config.net.input_size, margin=config.net.crop_margin,
                        own_framing=data.own_framing)
    if config.val_max_faces and len(val_entries) > config.val_max_faces:
        # a fixed subset drawn from every set, the same in every run with this seed
        keep = np.random.default_rng(config.seed).choice(len(val_entries), config.val_max_faces,
                                                         replace=False)
        val_entries = [val_entries[i] for i in sorted(keep)]
    return (LandmarkPairs(train_entries, params, train=True, caches=crops,
                          negatives=config.loss.presence > 0),
            LandmarkPairs(val_entries, params, train=False, caches=crops), weights)


def blendshape_scale(entries, floor: float = 0.02) -> np.ndarray:
    """(52,) the teacher's standard deviation of each blendshape over ``entries`` (at least
    ``floor``; 1 where no entry has a score): the divisor of the standardised distillation."""
    scores = np.array([e.blendshapes for e in entries if e.blendshapes is not None], np.float64)
    if not len(scores):
        return np.ones(52, np.float32)
    scored = np.isfinite(scores).any(axis=0)  # tongueOut: never scored by the teacher
    std = np.ones(scores.shape[1])
    std[scored] = np.maximum(np.nanstd(scores[:, scored], axis=0), floor)
    return std.astype(np.float32)


def ema_model(net: torch.nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of ``net``'s parameters and buffers (the batch-norm running
    statistics too, so the averaged weights are validated with statistics that match them):
    ``ema = decay * ema + (1 - decay) * net`` after every optimiser step, starting from a copy."""
    if not 0.0 < decay < 1.0:
        raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
    return AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def rotation_errors_deg(predicted: torch.Tensor, target: torch.Tensor,
                        mask: torch.Tensor) -> torch.Tensor:
    """Geodesic angles (degrees) between predicted and target rotations where ``mask`` is 1."""
    cos = ((predicted.transpose(-1, -2) @ target).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))[mask > 0].cpu()


class Trainer:
    """Owns the network, the projector, the optimiser and the loop; see the module docstring."""

    def __init__(self, config: TrainConfig, resume: bool = False):
        self.config = config
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = training_device(config.device, int(os.environ.get("LOCAL_RANK", 0)))
        self.dist = init_distributed(self.device)
        seed_everything(config.seed + self.dist.rank)
        self.out = Path(config.output)
        self.model = load_face_model()
        self.net = FaceNet(config.net).to(self.device)
        if config.init_weights:
            self._init_from(config.init_weights)
        # (52, E) ARKit view of the coefficients, for the blendshape distillation term
        self.arkit = torch.as_tensor(arkit_matrix(self.model.expression_names), dtype=torch.float32,
                                     device=self.device)
        self.projector = LandmarkProjector(self.model, config.net.n_identity).to(self.device)
        self.ddp = (DistributedDataParallel(self.net) if self.dist.world > 1 else self.net)
        self.ema = ema_model(self.net, config.ema_decay) if config.ema_decay else None
        # a linear probe of the 53 coefficients for the emotions (training only, not shipped): its
        # cross-entropy makes the coefficients carry what tells the emotions apart
        self.probe = torch.nn.Linear(config.net.n_expressions, N_EMOTIONS).to(self.device)
        self.optimizer = torch.optim.AdamW(
            list(self.net.parameters()) + list(self.probe.parameters()), lr=config.lr,
            weight_decay=config.weight_decay)
        self.train_set, self.val_set, self.weights = build_datasets(config)
        self.blend_scale = torch.as_tensor(blendshape_scale(self.train_set.entries),
                                           device=self.device)
        self.step, self.epoch, self.best, self.bad_validations = 0, 0, math.inf, 0
        self.started, self.minutes_before = time.monotonic(), 0.0
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(config_to_dict(self.config), indent=2))
        if resume:
            self.load_checkpoint()

    # ------------------------------------------------------------------ data
    def train_loader(self) -> DataLoader:
        if self.dist.world > 1:
            sampler = DistributedSampler(self.train_set, self.dist.world, self.dist.rank,
                                         shuffle=True, seed=self.config.seed)
            sampler.set_epoch(self.epoch)
        else:
            generator = torch.Generator().manual_seed(self.config.seed + self.epoch)
            sampler = WeightedRandomSampler(self.weights, len(self.train_set), generator=generator)
        return DataLoader(self.train_set, batch_size=self.config.batch_size, sampler=sampler,
                          num_workers=self.config.data.workers, drop_last=True,
                          persistent_workers=False, pin_memory=self.device.type == "cuda")

    def total_steps(self) -> int:
        per_epoch = max(1, len(self.train_set) // (self.config.batch_size * self.dist.world))
        steps = per_epoch * self.config.max_epochs
        return min(steps, self.config.max_steps) if self.config.max_steps else steps

    # ------------------------------------------------------------------ one step
    def landmarks(self, images: torch.Tensor,
                  net: torch.nn.Module | None = None) -> tuple[torch.Tensor, object]:
        params = (net or self.ddp)(images)
        return self.projector(params, self.config.net.input_size), params

    @property
    def kept_net(self) -> FaceNet:
        """The weights that are validated and saved: the moving average with ``ema_decay``."""
        return self.ema.module if self.ema is not None else self.net

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> losses.LossTerms:
        b = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        weights = self.config.loss
        negatives = None
        if weights.presence > 0 and self.net.presence_head is not None and "negative" in b:
            # a quarter batch of no-face / half-face crops in the same forward pass as the faces:
            # a pass of negatives alone would pull the batch-norm running statistics towards them
            # (measured: validation NME68 0.084 against 0.077 with the statistics re-estimated)
            negatives = b["negative"][: max(1, len(b["negative"]) // 4)]
        faces = len(b["image"])
        images = b["image"] if negatives is None else torch.cat((b["image"], negatives))
        l2_all, params_all = self.landmarks(images)
        l2, params = l2_all[:faces], params_all[:faces]
        if self.train_set.params.own_framing > 0:
            self.train_set.record_framing(b["index"], b["to_crop"], l2)
        l2_aug = None
        if self.config.loss.consistency > 0:
            l2_aug, _ = self.landmarks(b["image_aug"])
        scale = self.blend_scale if weights.blendshapes_standardised else None
        distill = (params.expression @ self.arkit.T, b["blendshapes"], b["blendshape_mask"], scale)
        terms = losses.total_loss(b["l1"], l2, b["l3"], l2_aug, b["affine"], b["permutation"],
                                  params.identity, params.expression, weights, distill)
        if weights.rotation > 0:
            terms.add("rotation", losses.rotation_distance(params.rotation, b["rotation"],
                                                           b["rotation_mask"]), weights.rotation)
        if weights.emotion > 0 and params.emotion_logits is not None:
            terms.add("emotion", losses.labelled_cross_entropy(params.emotion_logits, b["emotion"]),
                      weights.emotion)
        if weights.coefficient_emotion > 0:
            terms.add("coefficient_emotion", losses.labelled_cross_entropy(
                self.probe(params.expression), b["emotion"]), weights.coefficient_emotion)
        if negatives is not None:
            logits = params_all.presence_logit  # the faces 1, the negatives 0
            targets = (torch.arange(len(logits), device=logits.device) < faces).float()
            terms.add("presence", losses.presence_loss(logits, targets), weights.presence)
        return terms

    def _init_from(self, path: str) -> None:
        """Start from trained weights (fine-tuning); their network config must be this run's."""
        source = load_weights(Path(path).expanduser(), "cpu")
        # the optional heads may differ, and so may the input size: the backbone is convolutional
        # with a global pooling, so its weights carry over to another resolution; the run's
        # scale prior must then follow the input size (core.network.NetworkConfig.scale_prior)
        free = {"emotion_head": self.config.net.emotion_head,
                "presence_head": self.config.net.presence_head,
                "input_size": self.config.net.input_size, "scale_prior": self.config.net.scale_prior,
                "pooling": self.config.net.pooling,
                "extra_blocks": self.config.net.extra_blocks,
                "head_hidden": self.config.net.head_hidden}
        if dataclasses.replace(source.config, **free) != self.config.net:
            raise ValueError(f"init_weights {path}: network config {source.config} differs from "
                             f"the run's {self.config.net} (beyond the optional heads and the "
                             "input size)")
        resized = self.config.net.input_size / source.config.input_size
        if not np.isclose(self.config.net.scale_prior, source.config.scale_prior * resized,
                          rtol=1e-3):
            raise ValueError(f"init_weights {path}: input size {source.config.input_size} -> "
                             f"{self.config.net.input_size} needs net.scale_prior "
                             f"{source.config.scale_prior * resized:.4f} (the source's "
                             f"{source.config.scale_prior:.4f} x {resized:g}), got "
                             f"{self.config.net.scale_prior:.4f}")
        if source.config.pooling != "mean" and source.config.pooling != self.config.net.pooling:
            raise ValueError(f"init_weights {path}: its learned {source.config.pooling} pooling "
                             f"does not carry over to net.pooling {self.config.net.pooling!r}")
        grown = (source.config.extra_blocks <= self.config.net.extra_blocks
                 and source.config.head_hidden in (0, self.config.net.head_hidden))
        if not grown:
            raise ValueError(f"init_weights {path}: its extra_blocks {source.config.extra_blocks} "
                             f"and head_hidden {source.config.head_hidden} do not carry over to "
                             f"the run's {self.config.net.extra_blocks} and "
                             f"{self.config.net.head_hidden} (a network may only grow)")
        # added blocks and the perceptron start as the identity (core.network), so a grown network
        # starts with the source's outputs; heads the source lacks keep their fresh initialisation; heads the run drops are ignored;
        # so does a depthwise pooling the source lacks (it starts as the mean, which is what a
        # mean-pooled source was trained with)
        # a learned depthwise pooling is resampled to this run's map (a copy at the same size)
        own = self.net.state_dict()
        weights = {k: v for k, v in source.state_dict().items() if k in own}
        if "backbone.pool.weight" in weights:
            weights["backbone.pool.weight"] = resample_pooling(
                weights["backbone.pool.weight"], own["backbone.pool.weight"].shape[-1])
        self.net.load_state_dict(weights, strict=False)

    def lr_at(self, step: int, total: int, minutes: float | None = None) -> float:
        """Linear warm-up, then cosine decay to 0 at the step budget, or at ``max_minutes`` when
        that comes first (``minutes``: time trained so far), so a run cut by its time budget on
        a busy machine still ends at a low learning rate."""
        warmup = min(500, total // 20 + 1)
        if step < warmup:
            return self.config.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if minutes is not None and self.config.max_minutes:
            progress = max(progress, minutes / self.config.max_minutes)
        return self.config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        net = self.kept_net
        net.eval()
        loader = DataLoader(self.val_set, batch_size=self.config.batch_size,
                            num_workers=self.config.data.workers)
        errors68, errors51, blend_error, blend_count = [], [], 0.0, 0.0
        angles, hits, labelled = [], 0, 0
        for batch in loader:
            l2, params = self.landmarks(batch["image"].to(self.device), net)
            angles.append(rotation_errors_deg(params.rotation, batch["rotation"].to(self.device),
                                              batch["rotation_mask"].to(self.device)))
            if params.emotion_logits is not None:
                known = batch["emotion"].to(self.device) >= 0
                hits += int((params.emotion_logits.argmax(-1) == batch["emotion"].to(self.device))[known].sum())
                labelled += int(known.sum())
            l1 = batch["l1"].to(self.device)
            errors68.append(nme(l2, l1).cpu())
            errors51.append(nme(l2[:, 17:], l1[:, 17:], l1).cpu())
            mask = batch["blendshape_mask"].to(self.device)
            arkit = params.expression @ self.arkit.T
            blend_error += float(((arkit - batch["blendshapes"].to(self.device)).abs() * mask).sum())
            blend_count += float(mask.sum())
        net.train()
        e68, e51, angle = torch.cat(errors68), torch.cat(errors51), torch.cat(angles)
        extra = {"val_rotation_deg": float(angle.mean()) if len(angle) else float("nan")}
        if labelled:
            extra["val_emotion_accuracy"] = hits / labelled
        return {**extra,"val_nme68": float(e68.mean()), "val_nme51": float(e51.mean()),
                "val_failure_rate": float((e68 > 0.10).float().mean()), "val_faces": len(e68),
                # mean |ours - teacher| over the teacher's blendshape scores (NaN without any)
                "val_blendshape_mae": blend_error / blend_count if blend_count else float("nan")}

    # ------------------------------------------------------------------ loop
    def stop_reason(self, total: int) -> str | None:
        if self.step >= total:
            return f"step budget reached ({total})"
        minutes = self.minutes_trained()
        if self.config.max_minutes and minutes >= self.config.max_minutes:
            return f"time budget reached ({self.config.max_minutes} min)"
        if self.bad_validations >= self.config.patience:
            return f"converged: no validation improvement in {self.config.patience} validations"
        return None

    def minutes_trained(self) -> float:
        """Minutes of training, over resumed runs (the checkpoint carries the earlier ones)."""
        return self.minutes_before + (time.monotonic() - self.started) / 60

    def fit(self, progress: bool = True) -> dict:
        from tqdm import tqdm

        total = self.total_steps()
        bar = tqdm(total=total, initial=self.step, disable=not (progress and self.dist.main),
                   unit="step", dynamic_ncols=True)
        self.net.train()
        reason = None
        while reason is None and self.epoch < self.config.max_epochs:
            for batch in self.train_loader():
                reason = self.train_step(batch, total, bar)
                if reason:
                    break
            else:
                self.epoch += 1
        reason = reason or f"epoch budget reached ({self.config.max_epochs})"
        if self.step % self.config.val_every_steps and self.step < total:
            self.validation_round()  # stopped between validations (time, epochs): keep the end
        bar.close()
        result = {"stop_reason": reason, "steps": self.step, "epochs": self.epoch,
                  "best_val_nme68": self.best, "minutes": self.minutes_trained(),
                  "world_size": self.dist.world, "rank_weight_hashes": self.rank_hashes()}
        if self.dist.main:
            (self.out / "result.json").write_text(json.dumps(result, indent=2))
            log.info("training stopped: %s", reason)
        return result

    def rank_hashes(self) -> list[str]:
        """The weights' hash on every rank (DDP keeps them equal; a difference is a bug)."""
        mine = tensor_hash(dict(self.kept_net.named_parameters()))
        if self.dist.world == 1:
            return [mine]
        hashes: list[str] = [""] * self.dist.world
        dist.all_gather_object(hashes, mine)
        return hashes

    def train_step(self, batch: dict, total: int, bar) -> str | None:
        minutes = self.minutes_trained()
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step, total, minutes)
        terms = self.compute_loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.net)
        self.step += 1
        bar.update(1)
        if self.dist.main and self.step % self.config.log_every_steps == 0:
            row = {"step": self.step, "epoch": self.epoch, "lr": self.optimizer.param_groups[0]["lr"],
                   **{f"train_{k}": v for k, v in terms.as_floats().items()}}
            self.log_row(row)
            bar.set_postfix(loss=f"{row['train_total']:.4f}")
        if self.step % self.config.val_every_steps == 0 or self.step >= total:
            self.validation_round()
        return self.stop_reason(total)

    def validation_round(self) -> None:
        metrics = self.validate()
        improved = metrics["val_nme68"] < self.best - self.config.min_delta
        if improved:
            self.best, self.bad_validations = metrics["val_nme68"], 0
        else:
            self.bad_validations += 1
        if self.dist.main:
            self.log_row({"step": self.step, "epoch": self.epoch, **metrics})
            if improved:
                save_weights(self.out / "best.safetensors", self.kept_net,
                             extra={"step": self.step, **metrics})
            save_weights(self.out / "last.safetensors", self.kept_net,
                         extra={"step": self.step, **metrics})
            self.save_checkpoint()

    # ------------------------------------------------------------------ logs and checkpoints
    def log_row(self, row: dict) -> None:
        path = self.out / "metrics.csv"
        new = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["step", "epoch", "key", "value"])
            for key, value in row.items():
                if key not in ("step", "epoch"):
                    writer.writerow([row["step"], row["epoch"], key, value])
        writer_tb = self._tensorboard()
        if writer_tb is not None:
            for key, value in row.items():
                if key not in ("step", "epoch"):
                    writer_tb.add_scalar(key, value, row["step"])

    def _tensorboard(self):
        if not hasattr(self, "_tb"):
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.out / "tensorboard"))
            except ImportError:  # tensorboard is optional
                self._tb = None
        return self._tb

    def save_checkpoint(self) -> None:
        state = {"net": self.net.state_dict(), "probe": self.probe.state_dict(),
                 "optimizer": self.optimizer.state_dict(),
                 **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
                 "step": torch.tensor(self.step), "epoch": torch.tensor(self.epoch),
                 "best": torch.tensor(self.best),
                 "bad_validations": torch.tensor(self.bad_validations),
                 "minutes": torch.tensor(self.minutes_trained(), dtype=torch.float64)}
        tmp = self.out / ".last.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.out / "last.pt")

    def load_checkpoint(self) -> None:
        path = self.out / "last.pt"
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint {path}")
        state = torch.load(path, map_location=self.device, weights_only=True)  # never unpickles code
        self.net.load_state_dict(state["net"])
        if "probe" in state:
            self.probe.load_state_dict(state["probe"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            if "ema" in state:
                self.ema.load_state_dict(state["ema"])
            else:  # a run that had no average: it starts from the resumed weights
                log.info("--resume: the checkpoint has no weight average; it starts here")
                self.ema = ema_model(self.net, self.config.ema_decay)
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.best, self.bad_validations = float(state["best"]), int(state["bad_validations"])
        self.minutes_before = float(state.get("minutes", 0.0))
        log.info("resumed from %s at step %d", path, self.step)


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    trainer = Trainer(config, resume)
    try:
        result = trainer.fit(progress)
        if dist.is_initialized():
            # leave together: a rank that tears its gloo connections down while the other still
            # uses them aborts it ("terminate called without an active exception", SIGABRT;
            # seen about once in five CI runs of test_two_process_ddp_ranks_agree). Not on an
            # error: the other rank may be gone, and torchrun stops the rest.
            dist.barrier()
        return result
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@torch.no_grad()
def recalibrate_batch_norm(net: torch.nn.Module, batches) -> int:
    """Re-estimate every batch-norm layer's running statistics as the plain average over
    ``batches`` (dicts with ``image`` and ``image_aug``: both views, as training saw them, but no
    negative crops), the weights unchanged; returns the number of batches used. Training passes
    that mix other inputs (or eval-time statistics that lag a fine-tuning) leave statistics that
    do not fit the faces the network sees at run time."""
    layers = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = net.training
    net.train()
    device = next(net.parameters()).device
    count = 0
    for batch in batches:
        net(batch["image"].to(device))
        net(batch["image_aug"].to(device))
        count += 1
    for m, momentum in zip(layers, momenta):
        m.momentum = momentum
    net.train(was_training)
    return count


def precise_batch_norm(config: TrainConfig, weights_name: str = "best.safetensors",
                       batches: int = 30) -> dict:
    """``face_expr train --precise-bn N``: OUTPUT/``weights_name`` with its batch-norm statistics
    re-estimated on N training batches of faces, validated before and after, written as
    OUTPUT/precise_bn.safetensors (with both validations in its metadata)."""
    import itertools

    run = Path(config.output)
    # a side folder for the trainer's own files: the run's config.json stays the run's
    trainer = Trainer(dataclasses.replace(config, init_weights=str(run / weights_name),
                                          output=str(run / "precise_bn")))
    before = trainer.validate()
    trainer.train_set.negatives = False
    used = recalibrate_batch_norm(trainer.net, itertools.islice(trainer.train_loader(), batches))
    after = trainer.validate()
    out = save_weights(run / "precise_bn.safetensors", trainer.net,
                       extra={"source": weights_name, "precise_bn_batches": used,
                              "before": before, **after})
    return {"weights": str(out), "batches": used, "before": before, "after": after}

