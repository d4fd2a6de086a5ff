"""The training loop on a few real images: a step lowers the loss, checkpoints, resume, DDP."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from face_expr_ros.core.weights import load_weights
from face_expr_ros.training.config import load_config
from face_expr_ros.training.train import Trainer

TINY = {"batch_size": 4, "val_every_steps": 3, "log_every_steps": 1, "threads": 1,
        "net.width": 0.25, "net.feature_dim": 64, "net.n_identity": 10, "net.input_size": 64,
        "data.sets": {"helen_train": 1.0}, "data.max_per_set": 60, "data.workers": 0}


def tiny_config(tmp_path: Path, data_root: Path, **extra):
    return load_config(None, {**TINY, "output": str(tmp_path / "run"), "data.root": str(data_root),
                              **extra})


def test_a_gradient_step_lowers_the_loss_on_its_batch(tmp_path, data_root, face_model):
    torch.manual_seed(0)
    trainer = Trainer(tiny_config(tmp_path, data_root, lr=1e-3))
    batch = next(iter(trainer.train_loader()))
    trainer.net.eval()  # fixed batch-norm statistics: the same function before and after the step
    before = trainer.compute_loss(batch).total
    trainer.optimizer.zero_grad()
    before.backward()
    for group in trainer.optimizer.param_groups:
        group["lr"] = 1e-3
    trainer.optimizer.step()
    with torch.no_grad():
        after = trainer.compute_loss(batch).total
    assert after < before


def test_run_writes_metrics_weights_and_resumes(tmp_path, data_root, face_model):
    config = tiny_config(tmp_path, data_root, max_steps=3)
    result = Trainer(config).fit(progress=False)
    out = Path(config.output)
    assert result["steps"] == 3 and result["stop_reason"].startswith("step budget")
    metrics = (out / "metrics.csv").read_text()
    for key in ("train_mse", "train_consistency", "val_nme68", "val_nme51"):
        assert key in metrics
    net = load_weights(out / "best.safetensors")
    assert net.config.width == 0.25
    resumed = Trainer(tiny_config(tmp_path, data_root, max_steps=5), resume=True)
    assert resumed.step == 3
    assert resumed.fit(progress=False)["steps"] == 5


def test_weight_average_is_what_is_validated_saved_and_resumed(tmp_path, data_root, face_model):
    config = tiny_config(tmp_path, data_root, max_steps=3, ema_decay=0.5, lr=1e-2)
    trainer = Trainer(config)
    key = next(k for k, v in trainer.net.state_dict().items() if v.is_floating_point())
    seen, update = [], trainer.ema.update_parameters

    def spy(net):  # the weights after each optimiser step, as the average receives them
        seen.append(net.state_dict()[key].clone())
        update(net)

    trainer.ema.update_parameters = spy
    trainer.fit(progress=False)
    assert len(seen) == 3
    expected = seen[0]  # the average starts as a copy, then decays by 0.5 per step
    for weights in seen[1:]:
        expected = 0.5 * expected + 0.5 * weights
    kept = trainer.kept_net.state_dict()
    torch.testing.assert_close(kept[key], expected)
    assert not torch.equal(kept[key], trainer.net.state_dict()[key])
    saved = load_weights(Path(config.output) / "last.safetensors").state_dict()
    assert torch.allclose(saved[key], kept[key])
    resumed = Trainer(tiny_config(tmp_path, data_root, max_steps=4, ema_decay=0.5), resume=True)
    assert torch.equal(resumed.kept_net.state_dict()[key], kept[key])
    with pytest.raises(ValueError, match="ema_decay"):
        Trainer(tiny_config(tmp_path, data_root, ema_decay=1.5))


def test_training_records_each_faces_predicted_box_for_own_framing(tmp_path, data_root,
                                                                   face_model):
    trainer = Trainer(tiny_config(tmp_path, data_root, max_steps=2, **{"data.own_framing": 0.5}))
    assert torch.isnan(trainer.train_set.framing).all()
    trainer.fit(progress=False)
    recorded = torch.isfinite(trainer.train_set.framing).all(1)
    assert int(recorded.sum()) > 0  # the faces of the 2 batches (a repeat may share a row)
    boxes = trainer.train_set.framing[recorded]
    assert bool((boxes[:, 2:] > boxes[:, :2]).all())  # x1 > x0, y1 > y0


def failure_report(stderr: str, keep: int = 2000) -> str:
    """A failed torchrun's stderr: its head (the first rank's error usually comes first), every
    line that names an error or a signal, and its tail (torchrun's summary)."""
    marks = ("error", "traceback", "signal", "abort", "exception", "killed", "fatal")
    flagged = [line for line in stderr.splitlines() if any(m in line.lower() for m in marks)]
    return (f"--- head ---\n{stderr[:keep]}\n--- error lines ---\n" + "\n".join(flagged[-40:])
            + f"\n--- tail ---\n{stderr[-keep:]}")


def test_failure_report_keeps_the_head_the_errors_and_the_tail():
    stderr = "start\n" + "noise\n" * 2000 + "RuntimeError: rank 0 died\n" + "noise\n" * 2000 + "end"
    report = failure_report(stderr, keep=100)
    assert report.startswith("--- head ---\nstart") and "RuntimeError: rank 0 died" in report
    assert report.endswith("end") and len(report) < 500


GLOO_TEARDOWN_ATTEMPTS = 3
"""Runs of the DDP test when gloo aborts a rank while the process group closes: seen in about one
CI run in five on a loaded 2-core machine, after both ranks finished and agreed (train.train
closes with a barrier, which made it rarer, not gone; not reproduced in 4 runs on a quieter one).
Any other failure, or the abort three times running, fails."""


def gloo_teardown_abort(stderr: str) -> bool:
    """The run trained to its end and a rank died at the teardown (the abort above)."""
    return ("training stopped" in stderr
            and "terminate called without an active exception" in stderr
            and "Traceback" not in stderr.split("training stopped")[0])


def test_gloo_teardown_abort_is_recognised_only_after_training_stopped():
    abort = "terminate called without an active exception\nSIGABRT"
    assert gloo_teardown_abort("INFO training stopped: step budget reached (2)\n" + abort)
    assert not gloo_teardown_abort(abort), "before the end of training it is a real failure"
    assert not gloo_teardown_abort("Traceback ...\nINFO training stopped\n" + abort)
    assert not gloo_teardown_abort("INFO training stopped\nRuntimeError: rank 1")


def test_two_process_ddp_ranks_agree(tmp_path, data_root, face_model):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for attempt in range(GLOO_TEARDOWN_ATTEMPTS):
        out = tmp_path / f"ddp{attempt}"
        overrides = [f"{k}={json.dumps(v)}" for k, v in {
            **TINY, "max_steps": 2, "val_every_steps": 2, "output": str(out),
            "data.root": str(data_root)}.items()]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               "2", "-m", "face_expr_ros.cli", "train", "--no-progress", "--set", *overrides]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        if done.returncode == 0 or not gloo_teardown_abort(done.stderr):
            break
        print(f"attempt {attempt + 1}: gloo aborted a rank after training stopped; again")
    assert done.returncode == 0, failure_report(done.stderr)
    result = json.loads((out / "result.json").read_text())
    assert result["world_size"] == 2 and result["steps"] == 2
    hashes = result["rank_weight_hashes"]
    assert len(hashes) == 2 and hashes[0] == hashes[1]


def test_blendshape_distillation_and_fine_tuning(tmp_path, data_root, face_model):
    """Teacher blendshape scores reach the loss through the pairs; init_weights starts from a net."""
    import numpy as np

    from face_expr_ros.core.arkit import ARKIT_NAMES
    from face_expr_ros.core.weights import save_weights
    from face_expr_ros.training.datasets import build_index, set_folder

    helen = set_folder("helen_train", data_root)
    entries = build_index("helen_train", data_root)
    cache = tmp_path / "teacher"
    cache.mkdir()
    smile = {n: (0.9 if n.startswith("mouthSmile") else 0.0) for n in ARKIT_NAMES if n != "tongueOut"}
    lines = [json.dumps({"set": "helen_train", "image": e.path.relative_to(helen).as_posix(),
                         "status": "ok", "teacher": "mediapipe", "box": [0, 0, 1, 1], "score": 1.0,
                         "landmarks68": e.landmarks.tolist(), "blendshapes": smile}) for e in entries]
    (cache / "annotations.jsonl").write_text("\n".join(lines) + "\n")
    start = tmp_path / "start.safetensors"
    torch.manual_seed(0)
    first = Trainer(tiny_config(tmp_path, data_root))
    save_weights(start, first.net)
    config = tiny_config(tmp_path, data_root, **{"data.teacher_cache": str(cache),
                                                 "loss.blendshapes": 1.0,
                                                 "init_weights": str(start)})
    trainer = Trainer(config)
    for a, b in zip(trainer.net.state_dict().values(), first.net.state_dict().values()):
        torch.testing.assert_close(a, b)  # started from the given weights
    batch = next(iter(trainer.train_loader()))
    assert batch["blendshape_mask"].sum(1).tolist() == [51.0] * 4  # tongueOut: no teacher score
    smile_index = ARKIT_NAMES.index("mouthSmileLeft")
    assert np.allclose(batch["blendshapes"][:, smile_index].numpy(), 0.9)
    terms = trainer.compute_loss(batch)
    assert terms.blendshapes > 0
    torch.testing.assert_close(terms.total, terms.mse + terms.consistency + 1e-3 * terms.identity_prior
                               + 1e-3 * terms.expression_sparsity + terms.blendshapes)
    other = tmp_path / "other.safetensors"
    save_weights(other, Trainer(tiny_config(tmp_path, data_root, **{"net.n_identity": 5})).net)
    with pytest.raises(ValueError, match="differs"):
        Trainer(tiny_config(tmp_path, data_root, init_weights=str(other)))


def test_teacher_rotation_emotion_and_presence_terms_and_fresh_heads(tmp_path, data_root, face_model):
    """The new targets reach the loss through the pairs and the crop cache; weights without the
    heads start a run that has them (fresh heads); a step on its batch lowers the total."""
    import numpy as np

    from face_expr_ros.core.camera import euler_to_matrix
    from face_expr_ros.core.weights import save_weights
    from face_expr_ros.training.datasets import build_index, set_folder

    helen = set_folder("helen_train", data_root)
    entries = build_index("helen_train", data_root)[:60]
    cache = tmp_path / "teacher"
    cache.mkdir()
    transform = np.eye(4)
    transform[:3, :3] = euler_to_matrix(20.0, 10.0, 0.0)
    lines = [json.dumps({"set": "helen_train", "image": e.path.relative_to(helen).as_posix(),
                         "status": "ok", "teacher": "mediapipe", "box": [0, 0, 1, 1], "score": 1.0,
                         "landmarks68": e.landmarks.tolist(), "transform": transform.tolist()})
             for e in entries]
    (cache / "annotations.jsonl").write_text("\n".join(lines) + "\n")
    start = tmp_path / "start.safetensors"
    torch.manual_seed(0)
    save_weights(start, Trainer(tiny_config(tmp_path, data_root)).net)  # no heads
    config = tiny_config(tmp_path, data_root, **{
        "data.teacher_cache": str(cache), "data.crop_cache": True, "data.cache_workers": 1,
        "init_weights": str(start), "net.emotion_head": True, "net.presence_head": True,
        "loss.rotation": 1.0, "loss.presence": 1.0, "loss.emotion": 1.0,
        "loss.coefficient_emotion": 1.0, "lr": 1e-3})
    trainer = Trainer(config)
    assert trainer.net.emotion_head is not None and trainer.net.presence_head is not None
    batch = next(iter(trainer.train_loader()))
    assert batch["rotation_mask"].tolist() == [1.0] * 4
    torch.testing.assert_close(batch["rotation"][0], torch.as_tensor(transform[:3, :3]).float())
    assert batch["negative"].shape == (4, 3, 64, 64)
    assert (batch["emotion"] == -1).all()  # helen has no emotion labels: those terms are 0
    trainer.net.eval()
    terms = trainer.compute_loss(batch)
    assert terms.rotation > 0 and terms.presence > 0 and float(terms.emotion.detach()) == 0
    trainer.optimizer.zero_grad()
    terms.total.backward()
    trainer.optimizer.step()
    with torch.no_grad():
        after = trainer.compute_loss(batch)
    assert after.total < terms.total and after.rotation < terms.rotation


def test_blendshape_scale_is_the_teachers_spread_with_a_floor():
    import numpy as np

    from face_expr_ros.training.datasets import IndexEntry
    from face_expr_ros.training.train import blendshape_scale

    scores = np.zeros((4, 52), np.float32)
    scores[:, 0] = [0.0, 0.5, 0.0, 0.5]  # std 0.25
    scores[:, 51] = np.nan  # never scored
    entries = [IndexEntry(Path("x"), None, {}, None, "s", s) for s in scores]
    entries.append(IndexEntry(Path("y"), None, {}, None, "s", None))  # no teacher scores
    scale = blendshape_scale(entries, floor=0.02)
    assert abs(scale[0] - 0.25) < 1e-6 and scale[1] == np.float32(0.02) and scale[51] == 1.0
    assert (blendshape_scale([]) == 1).all()


def test_recalibrate_batch_norm_averages_the_views_statistics():
    from face_expr_ros.training.train import recalibrate_batch_norm

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1, bias=False), torch.nn.BatchNorm2d(4))
    torch.nn.init.eye_(net[0].weight[:, :, 0, 0][:3])  # channels 0-2 copy the input
    with torch.no_grad():
        net[0].weight[3] = 0
    net[1].running_mean.fill_(5.0)  # stale statistics, e.g. from passes of other inputs
    batches = [{"image": torch.full((2, 3, 4, 4), v), "image_aug": torch.full((2, 3, 4, 4), v + 1)}
               for v in (0.0, 2.0)]
    assert recalibrate_batch_norm(net.eval(), batches) == 2
    torch.testing.assert_close(net[1].running_mean[:3], torch.full((3,), 1.5))  # mean of 0,1,2,3
    assert not net.training and net[1].momentum == 0.1  # mode and momentum restored


def test_fine_tuning_at_another_input_size_needs_the_scaled_scale_prior(tmp_path, data_root,
                                                                         face_model):
    """The weights carry over to another input size (convolutional backbone, global pooling) when
    the scale prior follows it (else a clear error); the crop cache keeps the native pixels."""
    from face_expr_ros.core.weights import save_weights
    from face_expr_ros.training.crop_cache import cache_params

    torch.manual_seed(0)
    small = Trainer(tiny_config(tmp_path, data_root))
    start = tmp_path / "start.safetensors"
    save_weights(start, small.net)
    prior = small.net.config.scale_prior
    with pytest.raises(ValueError, match="needs net.scale_prior"):
        Trainer(tiny_config(tmp_path, data_root, **{"net.input_size": 96,
                                                    "init_weights": str(start)}))
    big = Trainer(tiny_config(tmp_path, data_root, **{"net.input_size": 96,
                                                      "net.scale_prior": prior * 1.5,
                                                      "init_weights": str(start)}))
    for a, b in zip(big.net.state_dict().values(), small.net.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert cache_params(big.config.net).max_side == 192, "the 128 px input's cache side at most"
    assert cache_params(type(big.config.net)(input_size=160)).max_side == 240


def test_fine_tuning_mean_pooled_weights_into_depthwise_pooling(tmp_path, data_root, face_model):
    """A depthwise-pooled run starts from mean-pooled weights as the same function, and its
    saved weights (with the pooling) load back."""
    from face_expr_ros.core.weights import save_weights

    source = tmp_path / "mean.safetensors"
    save_weights(source, Trainer(tiny_config(tmp_path, data_root)).net)
    deep = Trainer(tiny_config(tmp_path, data_root, init_weights=str(source), max_steps=1,
                               **{"net.pooling": "depthwise"}))
    mean_net = load_weights(source).eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(deep.net.eval()(images).expression, mean_net(images).expression,
                                   atol=1e-5, rtol=1e-5)
    deep.fit(progress=False)
    loaded = load_weights(Path(deep.config.output) / "last.safetensors")
    assert loaded.config.pooling == "depthwise" and loaded.backbone.pool is not None
    with pytest.raises(ValueError, match="does not carry over"):  # its learned pooling would be lost
        Trainer(tiny_config(tmp_path, data_root,
                            init_weights=str(Path(deep.config.output) / "last.safetensors")))


def test_learned_depthwise_pooling_is_resampled_to_another_input_size(tmp_path, data_root,
                                                                      face_model):
    """A depthwise-pooled network fine-tunes at a larger input: the kernel, resampled to the new
    map, keeps each channel's sum; everything else is carried as it is."""
    from face_expr_ros.core.weights import save_weights

    torch.manual_seed(0)
    small = Trainer(tiny_config(tmp_path, data_root, **{"net.pooling": "depthwise"}))
    with torch.no_grad():  # a learned, uneven kernel
        small.net.backbone.pool.weight.uniform_(0.0, 0.2)
    start = tmp_path / "deep.safetensors"
    save_weights(start, small.net)
    big = Trainer(tiny_config(tmp_path, data_root, init_weights=str(start),
                              **{"net.pooling": "depthwise", "net.input_size": 96,
                                 "net.scale_prior": small.net.config.scale_prior * 1.5}))
    before, after = small.net.backbone.pool.weight, big.net.backbone.pool.weight
    assert before.shape[-1] == 2 and after.shape[-1] == 3
    torch.testing.assert_close(after.sum((2, 3)), before.sum((2, 3)))
    torch.testing.assert_close(after[..., 0, 0], before[..., 0, 0] * after.sum((2, 3)) /
                               torch.nn.functional.interpolate(
                                   before, size=(3, 3), mode="bilinear",
                                   align_corners=True).sum((2, 3)))
    small_state = small.net.state_dict()
    for key, value in big.net.state_dict().items():
        if key != "backbone.pool.weight":
            torch.testing.assert_close(value, small_state[key])
    big.net.eval()(torch.rand(1, 3, 96, 96))  # the resampled kernel fits the new map


def test_fine_tuning_into_a_grown_network_starts_from_the_same_outputs(tmp_path, data_root,
                                                                      face_model):
    """init_weights into a network with added blocks and a perceptron: the same outputs at the
    start, the grown weights train and load back, and a network never shrinks silently."""
    from face_expr_ros.core.weights import save_weights

    source = tmp_path / "small.safetensors"
    save_weights(source, Trainer(tiny_config(tmp_path, data_root)).net)
    grow = {"net.extra_blocks": 2, "net.head_hidden": 16}
    grown = Trainer(tiny_config(tmp_path, data_root, init_weights=str(source), max_steps=2, **grow))
    small_net = load_weights(source).eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(grown.net.eval()(images).expression,
                                   small_net(images).expression, atol=1e-6, rtol=1e-6)
    grown.fit(progress=False)
    saved = Path(grown.config.output) / "last.safetensors"
    loaded = load_weights(saved)
    assert loaded.config.extra_blocks == 2 and loaded.config.head_hidden == 16
    assert loaded.neck.outer.weight.abs().sum() > 0, "the perceptron trained away from zero"
    with pytest.raises(ValueError, match="may only grow"):
        Trainer(tiny_config(tmp_path, data_root, init_weights=str(saved)))
    with pytest.raises(ValueError, match="may only grow"):
        Trainer(tiny_config(tmp_path, data_root, init_weights=str(saved),
                            **{"net.extra_blocks": 2, "net.head_hidden": 32}))


def test_config_base_merges_sections_and_every_shipped_config_loads(tmp_path):
    (tmp_path / "a.yaml").write_text("lr: 0.001\nbatch_size: 8\nnet: {width: 0.25, feature_dim: 64}\n"
                                     "data: {sets: {helen_train: 3.0, lfw_gray: 1.0}, workers: 0}\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nlr: 0.002\nnet: {pooling: depthwise}\n"
                                     "data: {sets: {helen_train: 1.0}}\n")
    config = load_config(tmp_path / "b.yaml", {"loss.rotation": 0.5})
    assert config.lr == 0.002 and config.batch_size == 8  # the variant's key wins, the rest stays
    assert config.net.width == 0.25 and config.net.pooling == "depthwise"  # a section is merged
    assert config.data.sets == {"helen_train": 1.0} and config.data.workers == 0  # values replace
    assert config.loss.rotation == 0.5
    (tmp_path / "c.yaml").write_text("base: d.yaml\n")
    (tmp_path / "d.yaml").write_text("base: c.yaml\n")
    with pytest.raises(ValueError, match="includes itself"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "e.yaml").write_text("base: a.yaml\nnet: {depth: 3}\n")
    with pytest.raises(ValueError, match="unknown keys"):
        load_config(tmp_path / "e.yaml")
    configs = Path(__file__).resolve().parents[1] / "face_expr_ros" / "training" / "configs"
    for path in sorted(configs.glob("*.yaml")):
        load_config(path)  # every shipped config (and its bases) is complete and known
    variant = load_config(configs / "own_framing.yaml")
    assert variant.data.own_framing == 0.3 and variant.ema_decay == 0.999
    assert variant.loss.feature_points == 3.0  # from feature_points.yaml, two bases down


def test_repeated_set_options_are_all_kept():
    from face_expr_ros.cli.main import build_parser
    args = build_parser().parse_args(["train", "--set", "max_minutes=175", "max_steps=9000",
                                      "--set", "threads=1"])
    assert dict(args.overrides) == {"max_minutes": 175, "max_steps": 9000, "threads": 1}
