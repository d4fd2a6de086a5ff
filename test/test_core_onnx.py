"""The ONNX Runtime backend: export, equality with torch, metadata checks, the cache, the auto rule,
``face_expr export-onnx`` and the node's ``backend`` parameter.

One export of the shipped weights per module (about 9 s); onnxruntime, onnx and onnxscript are the
``[onnx]`` extra that CI installs, so a missing one skips here and fails under CI=true.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import skip_or_fail
from face_expr_ros.core import backend as backend_module
from face_expr_ros.core import onnx_backend
from face_expr_ros.core.network import FaceNet, NetworkConfig
from face_expr_ros.core.onnx_backend import OnnxBackendError, OnnxFaceNet
from face_expr_ros.core.weights import PACKAGE_WEIGHTS, load_weights, read_metadata

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def onnx_packages():
    for module in ("onnxruntime", "onnx", "onnxscript"):
        try:
            __import__(module)
        except ImportError as err:
            skip_or_fail(f"{module} is not importable ({err}); pip install -e '.[onnx]'")


@pytest.fixture(scope="module")
def net():
    """The shipped weights on the CPU (eval mode)."""
    return load_weights(PACKAGE_WEIGHTS)


@pytest.fixture(scope="module")
def exported(onnx_packages, net, tmp_path_factory) -> Path:
    return onnx_backend.export_onnx(net, tmp_path_factory.mktemp("onnx") / "net.onnx")


@pytest.fixture(scope="module")
def runner(exported, net) -> OnnxFaceNet:
    return OnnxFaceNet(exported, net.config, onnx_backend.weights_hash_of(net), "cpu", threads=1)


@pytest.fixture()
def cache_home(tmp_path, monkeypatch) -> Path:
    """An empty $XDG_CACHE_HOME for this test."""
    home = tmp_path / "xdg_cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


def perturbed(net: FaceNet) -> FaceNet:
    """A copy of ``net`` with one bias changed: other weights, same architecture."""
    other = FaceNet(net.config)
    other.load_state_dict(net.state_dict())
    with torch.no_grad():
        other.expression_head.bias[0] += 0.5
    return other.eval()


# ---- export -----------------------------------------------------------------------------------

def test_export_records_weights_hash_config_opset_and_a_dynamic_batch(exported, net):
    import onnx

    model = onnx.load(str(exported))
    onnx.checker.check_model(model)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta[onnx_backend.META_HASH] == read_metadata(PACKAGE_WEIGHTS)["sha256"]
    assert json.loads(meta[onnx_backend.META_CONFIG]) == net.config.to_dict()
    assert meta[onnx_backend.META_FORMAT] == onnx_backend.FORMAT
    assert {o.domain: o.version for o in model.opset_import}[""] == onnx_backend.OPSET
    (images,) = model.graph.input
    dims = images.type.tensor_type.shape.dim
    assert images.name == "images" and dims[0].dim_param and not dims[0].HasField("dim_value")
    assert [d.dim_value for d in dims[1:]] == [3, 128, 128]
    assert [o.name for o in model.graph.output] == list(onnx_backend.output_names(net.config))
    assert not [p for p in exported.parent.iterdir() if p != exported], "temporary files left"


@pytest.mark.parametrize("batch", [1, 4])
def test_onnx_runtime_equals_torch_on_every_output(runner, net, batch):
    images = torch.rand(batch, 3, 128, 128, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        expected = net(images)
    got = runner(images)
    for name, a, b in zip(onnx_backend.OUTPUT_NAMES, got.astuple(), expected.astuple()):
        assert a.shape == b.shape and a.dtype == b.dtype == torch.float32, name
        assert a.device == b.device, name
        torch.testing.assert_close(a, b, atol=TOLERANCE, rtol=0, msg=name)
    # not vacuous: the outputs vary over the batch, and a different input changes them
    assert float((got.expression - runner(images.flip(-1)).expression).abs().max()) > 1e-3


def test_reconstructor_onnx_equals_torch_on_a_real_face(exported, face_model):
    from face_expr_ros.core.reconstruct import Reconstructor
    from face_expr_ros.offline.examples import astronaut

    image = astronaut()
    by_backend = {}
    for backend in ("torch", "onnx"):
        rec = Reconstructor(face_model=face_model, device="cpu", backend=backend,
                            onnx_model=exported)
        assert rec.backend == backend and backend in rec.backend_reason
        by_backend[backend] = rec.reconstruct(image)
    torch_faces, onnx_faces = by_backend["torch"], by_backend["onnx"]
    assert len(torch_faces) == len(onnx_faces) == 1
    a, b = onnx_faces[0], torch_faces[0]
    np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)  # pixels
    np.testing.assert_allclose(a.coefficients, b.coefficients, atol=TOLERANCE)
    np.testing.assert_allclose(a.identity, b.identity, atol=TOLERANCE)
    np.testing.assert_allclose(a.rotation, b.rotation, atol=TOLERANCE)
    np.testing.assert_allclose(a.translation, b.translation, atol=1e-3)
    assert abs(a.scale - b.scale) <= 1e-4 * b.scale
    np.testing.assert_array_equal(a.selected, b.selected)


# ---- errors -----------------------------------------------------------------------------------

def test_an_export_of_other_weights_is_refused_with_the_fix(exported, net):
    other = perturbed(net)
    with pytest.raises(OnnxBackendError, match="other weights") as err:
        onnx_backend.load_onnx_net(other, exported)
    assert "face_expr export-onnx" in str(err.value)


def test_a_different_network_config_is_refused(exported, net):
    metadata = {onnx_backend.META_FORMAT: onnx_backend.FORMAT,
                onnx_backend.META_HASH: "abc",
                onnx_backend.META_CONFIG: json.dumps(NetworkConfig(width=0.25).to_dict())}
    with pytest.raises(OnnxBackendError, match="network config"):
        onnx_backend.check_metadata(metadata, net.config, "abc", exported)
    onnx_backend.check_metadata({**metadata, onnx_backend.META_CONFIG: json.dumps(
        net.config.to_dict())}, net.config, "abc", exported)  # the same config passes


def test_an_onnx_file_without_our_metadata_is_refused(exported, net, tmp_path):
    import onnx

    model = onnx.load(str(exported))
    del model.metadata_props[:]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(model, str(foreign))
    with pytest.raises(OnnxBackendError, match="not a face_expr_ros network export"):
        onnx_backend.load_onnx_net(net, foreign)


@pytest.mark.parametrize("content", ["garbage", "truncated", "safetensors"])
def test_corrupt_or_non_onnx_files_are_clear_errors(onnx_packages, exported, net, tmp_path, content):
    bad = tmp_path / "bad.onnx"
    if content == "garbage":
        bad.write_bytes(b"this is not a protobuf \x00\xff" * 10)
    elif content == "truncated":
        bad.write_bytes(exported.read_bytes()[: exported.stat().st_size // 2])
    else:
        shutil.copy(PACKAGE_WEIGHTS, bad)
    with pytest.raises(OnnxBackendError, match="not a loadable ONNX model") as err:
        onnx_backend.load_onnx_net(net, bad)
    assert str(bad) in str(err.value)


def test_a_missing_file_names_the_path_and_the_command(onnx_packages, net, tmp_path):
    with pytest.raises(OnnxBackendError, match="does not exist.*export-onnx"):
        onnx_backend.load_onnx_net(net, tmp_path / "nowhere.onnx")


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (3, 128, 128), (2, 1, 128, 128)])
def test_a_wrong_input_shape_says_what_is_expected(runner, shape):
    with pytest.raises(ValueError, match=r"\(B, 3, 128, 128\)"):
        runner(torch.zeros(shape))


def test_without_onnxruntime_onnx_is_an_error_with_the_install_command(net, monkeypatch):
    def missing():
        raise OnnxBackendError(f"the onnx backend needs onnxruntime, which is not importable "
                               f"(No module named 'onnxruntime'); {onnx_backend.INSTALL_HINT}")

    monkeypatch.setattr(onnx_backend, "import_onnxruntime", missing)
    with pytest.raises(OnnxBackendError, match="pip install onnxruntime"):
        backend_module.choose_backend(net, "onnx", "cpu")
    choice = backend_module.choose_backend(net, "auto", "cpu")
    assert choice.name == "torch" and choice.network is net
    assert "pip install onnxruntime" in choice.reason


def test_import_onnxruntime_names_the_extra_when_it_is_missing(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    with pytest.raises(OnnxBackendError, match=r"pip install onnxruntime.*\[onnx\]"):
        onnx_backend.import_onnxruntime()


# ---- the cache and the auto rule --------------------------------------------------------------

def test_cache_location_follows_xdg_cache_home(cache_home, net):
    path = onnx_backend.cached_model_path(onnx_backend.weights_hash_of(net))
    name = f"{read_metadata(PACKAGE_WEIGHTS)['sha256']}.onnx"
    assert path == cache_home / "face_expr_ros" / "onnx" / name


def test_auto_uses_a_cached_model_on_cpu_without_exporting(cache_home, exported, net, monkeypatch):
    cached = onnx_backend.cached_model_path(onnx_backend.weights_hash_of(net))
    cached.parent.mkdir(parents=True)
    shutil.copy(exported, cached)

    def no_export(*_args, **_kwargs):
        raise AssertionError("exported although a cached model matched")

    monkeypatch.setattr(onnx_backend, "export_onnx", no_export)
    choice = backend_module.choose_backend(net, "auto", "cpu")
    assert choice.name == "onnx" and choice.network.path == cached
    assert "auto: CPU and onnxruntime" in choice.reason


def test_a_stale_cache_file_is_exported_again_atomically(cache_home, exported, net, caplog):
    other = perturbed(net)
    cached = onnx_backend.cached_model_path(onnx_backend.weights_hash_of(other))
    cached.parent.mkdir(parents=True)
    shutil.copy(exported, cached)  # a file of other weights under this hash's name
    torch.manual_seed(3)
    random_state = torch.get_rng_state()
    with caplog.at_level(logging.WARNING, logger="face_expr_ros.core.onnx_backend"):
        runner = onnx_backend.load_onnx_net(other, device="cpu", threads=1)
    assert "exporting it again" in caplog.text
    assert torch.equal(torch.get_rng_state(), random_state), "the export drew random numbers"
    assert runner.path == cached
    assert runner.metadata[onnx_backend.META_HASH] == onnx_backend.weights_hash_of(other)
    images = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        torch.testing.assert_close(runner(images).expression, other(images).expression,
                                   atol=TOLERANCE, rtol=0)
    assert sorted(p.name for p in cached.parent.iterdir()) == [cached.name], "temporary files left"


def test_auto_picks_torch_on_cuda_without_touching_onnx(net, monkeypatch):
    def fail(*_args, **_kwargs):
        raise AssertionError("onnx consulted for a CUDA device")

    monkeypatch.setattr(onnx_backend, "import_onnxruntime", fail)
    choice = backend_module.choose_backend(net, "auto", torch.device("cuda"))
    assert choice.name == "torch" and choice.network is net and "cuda" in choice.reason


def test_auto_picks_torch_when_it_cannot_export(onnx_packages, cache_home, net, monkeypatch):
    monkeypatch.setattr(onnx_backend, "exporter_available", lambda: "exporting needs onnxscript")
    choice = backend_module.choose_backend(net, "auto", "cpu")
    assert choice.name == "torch" and "onnxscript" in choice.reason
    assert not cache_home.exists(), "nothing written"


def test_unknown_backends_are_rejected(net):
    with pytest.raises(ValueError, match="auto, torch, onnx"):
        backend_module.choose_backend(net, "tensorrt", "cpu")


def test_providers_cuda_when_asked_and_present_else_cpu(caplog):
    cpu, cuda = "CPUExecutionProvider", "CUDAExecutionProvider"
    assert onnx_backend.providers_for("cpu", [cuda, cpu]) == [cpu]
    assert onnx_backend.providers_for("cuda:1", [cuda, cpu]) == [(cuda, {"device_id": 1}), cpu]
    with caplog.at_level(logging.WARNING):
        assert onnx_backend.providers_for("cuda", [cpu]) == [cpu]
    assert "onnxruntime-gpu" in caplog.text


# ---- face_expr export-onnx --------------------------------------------------------------------

def test_cli_exports_checks_and_leaves_no_temporary_files(onnx_packages, net, tmp_path, capsys):
    from face_expr_ros.cli import main

    out = tmp_path / "out" / "net.onnx"
    out.parent.mkdir()
    code = main(["export-onnx", "--weights", str(PACKAGE_WEIGHTS), "-o", str(out), "--check"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert f"wrote {out}" in printed and f"opset {onnx_backend.OPSET}" in printed
    assert "check: max |onnx - torch| = " in printed and printed.rstrip().endswith("ok")
    error = float(printed.split("max |onnx - torch| = ")[1].split()[0])
    assert error <= TOLERANCE
    assert [p.name for p in out.parent.iterdir()] == ["net.onnx"], "temporary files left"
    onnx_backend.load_onnx_net(net, out)  # loads and matches the shipped weights


def test_cli_refuses_a_non_onnx_name_and_missing_weights(tmp_path, capsys):
    from face_expr_ros.cli import main

    assert main(["export-onnx", "-o", str(tmp_path / "net.txt")]) == 2
    assert "use a .onnx name" in capsys.readouterr().err
    assert main(["export-onnx", "--weights", str(tmp_path / "none.safetensors"),
                 "-o", str(tmp_path / "n.onnx")]) == 1
    assert "network weights not found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_eval_takes_a_backend_choice():
    from face_expr_ros.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["eval", "--backend", "onnx"]).backend == "onnx"
    assert parser.parse_args(["eval"]).backend == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["eval", "--backend", "tensorrt"])


# ---- the node's parameters --------------------------------------------------------------------

@pytest.fixture(scope="module")
def node_parameters():
    try:
        from face_expr_ros.ros import parameters as node_parameters
    except ImportError as err:
        skip_or_fail(f"rcl_interfaces (ROS 2) is not importable ({err}); bash .ci/setup_venv.sh")
    return node_parameters


def test_backend_parameter_accepts_auto_torch_onnx_only(node_parameters):
    spec = node_parameters.PARAMETERS_BY_NAME["backend"]
    assert spec.default == "auto" and spec.applies == "configure"
    for value in ("auto", "torch", "onnx"):
        assert node_parameters.check_value("backend", value) == value
    with pytest.raises(ValueError, match="backend must be one of auto, torch, onnx"):
        node_parameters.check_value("backend", "tensorrt")
    assert node_parameters.descriptor_for(spec).additional_constraints == "one of: auto, torch, onnx"
    onnx_model = node_parameters.PARAMETERS_BY_NAME["onnx_model"]
    assert onnx_model.default == "" and onnx_model.applies == "configure"
    assert set(node_parameters.PARAMETERS_BY_NAME["backend"].choices) == set(backend_module.BACKENDS)


def test_cache_dir_default_is_under_the_home(monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert onnx_backend.cache_dir() == Path.home() / ".cache" / "face_expr_ros" / "onnx"
    assert os.fspath(onnx_backend.cache_dir()).endswith(os.path.join("face_expr_ros", "onnx"))


def test_cli_backend_choices_are_the_core_ones():
    from face_expr_ros.cli.options import BACKEND_CHOICES
    from face_expr_ros.core.backend import BACKENDS

    assert BACKEND_CHOICES == BACKENDS


def test_export_of_a_network_with_heads_has_their_outputs(onnx_packages, tmp_path):
    """Emotion and presence heads are graph outputs; the runner returns them like torch."""
    torch.manual_seed(0)
    config = NetworkConfig(input_size=64, width=0.25, feature_dim=64, n_identity=8,
                           emotion_head=True, presence_head=True)
    got = exported_outputs_match_torch(FaceNet(config).eval(), tmp_path / "heads.onnx")
    assert list(got) == list(onnx_backend.output_names(config))
    assert "emotion_logits" in got and "presence_logit" in got
    assert onnx_backend.output_names(NetworkConfig()) == onnx_backend.OUTPUT_NAMES


def test_export_of_a_grown_network_matches_torch(onnx_packages, tmp_path):
    """Added blocks and the residual perceptron (trained away from the identity) export and run
    like torch."""
    torch.manual_seed(0)
    config = NetworkConfig(input_size=64, width=0.25, feature_dim=64, n_identity=8, extra_blocks=3,
                           head_hidden=32)
    net = FaceNet(config).eval()
    with torch.no_grad():  # not the identity any more, as after training
        net.neck.outer.weight.normal_(std=0.1)
        for block in net.backbone.extra:
            block.block[-1][1].weight.fill_(0.3)
    exported_outputs_match_torch(net, tmp_path / "grown.onnx")


def exported_outputs_match_torch(net: FaceNet, path) -> dict:
    """Export ``net`` (64 px input), run it in ONNX Runtime on three random crops and check every
    output against torch; returns ONNX Runtime's outputs by name."""
    path = onnx_backend.export_onnx(net, path)
    runner = OnnxFaceNet(path, net.config, onnx_backend.weights_hash_of(net), "cpu", threads=1)
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net(images).outputs()
    got = runner(images).outputs()
    assert list(got) == list(expected)
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, atol=TOLERANCE, rtol=0, msg=name)
    return got
