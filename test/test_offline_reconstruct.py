"""``face_expr reconstruct`` end to end: the JSON contract, ARKit names, overlays, meshes, exit codes
and one test per kind of bad input (issue 11)."""
import json
import os

import numpy as np
import pytest

from face_expr_ros import cli
from face_expr_ros.core.arkit import ARKIT_NAMES
from face_expr_ros.core.export import write_image
from face_expr_ros.core.face_json import validate_record
from face_expr_ros.core.gltf import read_accessor, read_glb
from face_expr_ros.core.reconstruct import Reconstructor
from face_expr_ros.offline.examples import astronaut, faces_frame


@pytest.fixture(scope="module")
def photos(tmp_path_factory, face_model):
    folder = tmp_path_factory.mktemp("photos")
    write_image(folder / "astronaut.png", astronaut())
    write_image(folder / "two.png", faces_frame(640, 480, 2))
    write_image(folder / "blank.png", np.full((120, 160, 3), 90, np.uint8))
    return folder


@pytest.fixture(scope="module")
def direct(face_model):
    """What the core API says for the astronaut (the command must report the same)."""
    return Reconstructor(face_model=face_model, device="cpu").reconstruct(astronaut())


def run(face_model, *args) -> int:
    return cli.main(["reconstruct", "--face-model", face_model.path, "--device", "cpu", *map(str, args)])


def no_temporaries(folder) -> bool:
    return not [p for p in folder.rglob("*") if p.name.startswith(".") and ".tmp" in p.name]


def test_json_contract_matches_the_core_api(face_model, photos, direct, tmp_path, capsys):
    assert run(face_model, photos / "astronaut.png", photos / "two.png", "--out", tmp_path) == 0
    record = json.loads((tmp_path / "astronaut.json").read_text())
    validate_record(record, face_model.expression_names)
    assert (record["image"], record["width"], record["height"]) == (str(photos / "astronaut.png"), 512, 512)
    assert len(record["faces"]) == len(direct) == 1
    face, ref = record["faces"][0], direct[0]
    np.testing.assert_allclose(face["landmarks68"], ref.landmarks, atol=1e-6)
    np.testing.assert_allclose(list(face["expression"].values()), ref.coefficients, atol=1e-6)
    assert face["selected_templates"] == [face_model.expression_names[i] for i in ref.selected]
    pose = face["pose"]
    np.testing.assert_allclose(pose["rotation_matrix"], ref.rotation, atol=1e-9)
    np.testing.assert_allclose(list(pose["euler_deg"].values()), ref.euler_deg, atol=1e-9)
    # core convention: the model origin lands at u = x + cx, v = cy - y
    x, y, z = pose["translation"]
    np.testing.assert_allclose([x + 255.5, 255.5 - y, z], [*ref.translation, 0.0], atol=1e-9)
    assert pose["scale"] == pytest.approx(ref.scale)
    two = json.loads((tmp_path / "two.json").read_text())
    validate_record(two)
    assert len(two["faces"]) == 2 and two["faces"][0]["box"][0] < 320 < two["faces"][1]["box"][0]
    assert "2 image(s), 3 face(s)" in capsys.readouterr().out
    assert no_temporaries(tmp_path)


def test_landmarks_follow_the_model_pose(face_model, photos, tmp_path):
    """The sellion landmark sits where s R V + t puts the model's sellion vertex (same pose)."""
    from face_expr_ros.core.synthesis import synthesize

    assert run(face_model, photos / "astronaut.png", "--out", tmp_path) == 0
    face = json.loads((tmp_path / "astronaut.json").read_text())["faces"][0]
    names = face_model.expression_names
    coefficients = np.array([face["expression"][n] for n in names])
    selected = np.array([names.index(n) for n in face["selected_templates"]])
    vertices = synthesize(face_model, coefficients, selected, np.array(face["identity"]))
    pose = face["pose"]
    posed = pose["scale"] * vertices[face_model.landmarks68[27]] @ np.array(pose["rotation_matrix"]).T
    posed += pose["translation"]
    np.testing.assert_allclose([posed[0] + 255.5, 255.5 - posed[1]], face["landmarks68"][27], atol=0.5)


def test_arkit_names(face_model, photos, tmp_path):
    assert run(face_model, photos / "astronaut.png", "--out", tmp_path / "ict") == 0
    assert run(face_model, photos / "astronaut.png", "--out", tmp_path / "ark", "--arkit") == 0
    ict = json.loads((tmp_path / "ict" / "astronaut.json").read_text())["faces"][0]["expression"]
    ark = json.loads((tmp_path / "ark" / "astronaut.json").read_text())
    validate_record(ark, ARKIT_NAMES)
    ark = ark["faces"][0]["expression"]
    assert ark["browInnerUp"] == pytest.approx((ict["browInnerUp_L"] + ict["browInnerUp_R"]) / 2)
    assert ark["mouthSmileLeft"] == pytest.approx(ict["mouthSmile_L"])
    assert ark["jawLeft"] == pytest.approx(ict["jawLeft"]) and ark["tongueOut"] == 0.0


def test_no_face_gives_an_empty_list_and_a_warning(face_model, photos, tmp_path, capsys):
    assert run(face_model, photos / "blank.png", "--out", tmp_path) == 0
    record = json.loads((tmp_path / "blank.json").read_text())
    assert record == {"image": str(photos / "blank.png"), "width": 160, "height": 120, "faces": []}
    assert "warning: " in capsys.readouterr().err


def test_overlay_and_meshes(face_model, photos, direct, tmp_path):
    from face_expr_ros.core.imageio import load_image

    for fmt in ("obj", "ply", "glb"):
        assert run(face_model, photos / "astronaut.png", "--out", tmp_path, "--mesh", fmt, "--overlay") == 0
    overlay = load_image(tmp_path / "astronaut_overlay.png").rgb
    x0, y0, x1, y1 = direct[0].box.astype(int)
    changed = np.abs(overlay.astype(int) - astronaut()).sum(2) > 30
    assert changed[y0:y1, x0:x1].mean() > 0.5 and changed.mean() < 0.2  # drawn on the face only
    obj_lines = (tmp_path / "astronaut_face0.obj").read_text().splitlines()
    vertices = np.array([[float(v) for v in ln.split()[1:]] for ln in obj_lines if ln.startswith("v ")])
    np.testing.assert_allclose(vertices, direct[0].model_vertices(), atol=1e-5)
    ply = (tmp_path / "astronaut_face0.ply").read_bytes()
    header, body = ply.split(b"end_header\n", 1)
    assert b"binary_little_endian" in header and f"element vertex {face_model.n_vertices}".encode() in header
    np.testing.assert_allclose(np.frombuffer(body, "<f4", face_model.n_vertices * 3).reshape(-1, 3),
                               direct[0].model_vertices(), atol=1e-5)
    document, blob = read_glb(tmp_path / "astronaut_face0.glb")
    mesh = document["meshes"][0]
    assert mesh["extras"]["targetNames"] == list(face_model.expression_names)
    primitive = mesh["primitives"][0]
    base = read_accessor(document, blob, primitive["attributes"]["POSITION"])
    targets = [read_accessor(document, blob, t["POSITION"]) for t in primitive["targets"]]
    shown = base + sum(w * t for w, t in zip(mesh["weights"], targets))
    np.testing.assert_allclose(shown, direct[0].model_vertices() * 0.01, atol=1e-6)
    from scipy.spatial.transform import Rotation
    np.testing.assert_allclose(Rotation.from_quat(document["nodes"][0]["rotation"]).as_matrix(),
                               direct[0].rotation, atol=1e-6)
    indices = read_accessor(document, blob, primitive["indices"]).reshape(-1, 3)
    np.testing.assert_array_equal(indices, face_model.triangles)
    assert no_temporaries(tmp_path)


# ---------------------------------------------------------------------------------------------
# Inputs: folders, globs, bad files (one line each, the others still processed, exit 1)
# ---------------------------------------------------------------------------------------------
def test_folders_and_globs(face_model, photos, tmp_path):
    nested = tmp_path / "in" / "sub"
    nested.mkdir(parents=True)
    write_image(nested / "astronaut.png", astronaut())
    write_image(tmp_path / "in" / "astronaut.jpg", astronaut())  # same stem: astronaut-2.json
    assert run(face_model, tmp_path / "in", str(photos / "b*.png"), "--out", tmp_path / "out") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "astronaut-2.json", "astronaut.json", "blank.json"]


BAD_FILES = {
    "missing.jpg": (None, "no such file"),
    "empty.jpg": (b"", "empty file"),
    "text.jpg": (b"this is not a JPEG\n" * 10, "not an image"),
}


def _truncated_jpeg(path) -> None:
    write_image(path, astronaut())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("name", [*BAD_FILES, "truncated.jpg", "empty_folder"])
def test_bad_input_is_reported_and_the_rest_processed(face_model, photos, tmp_path, capsys, name):
    bad = tmp_path / name
    if name == "truncated.jpg":
        _truncated_jpeg(bad)
        reason = "truncated JPEG"
    elif name == "empty_folder":
        bad.mkdir()
        (bad / "notes.txt").write_text("no images here")
        reason = "folder has no images"
    else:
        content, reason = BAD_FILES[name]
        if content is not None:
            bad.write_bytes(content)
    out = tmp_path / "out"
    assert run(face_model, bad, photos / "astronaut.png", "--out", out) == 1
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ": error: " in ln]
    assert len(errors) == 1 and str(bad) in errors[0] and reason in errors[0]
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.json"]  # nothing for the bad one


def test_unwritable_output_folder_fails_before_any_work(face_model, photos, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    assert run(face_model, photos / "astronaut.png", "--out", blocker / "out") == 1
    assert "cannot create it" in capsys.readouterr().err
    assert run(face_model, photos / "astronaut.png", "--out", blocker) == 1
    assert "not a folder" in capsys.readouterr().err
    assert run(face_model, photos / "astronaut.png", "--out", "/proc") == 1  # no new files, even for root
    assert "cannot write to /proc" in capsys.readouterr().err
    created = tmp_path / "new" / "deeper"
    assert run(face_model, photos / "blank.png", "--out", created) == 0  # missing folders are created
    assert [p.name for p in created.iterdir()] == ["blank.json"]
    if os.geteuid() != 0:  # root may write anywhere: only a normal user sees permissions
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        assert run(face_model, photos / "astronaut.png", "--out", locked) == 1
        assert "not writable" in capsys.readouterr().err
        assert not list(locked.iterdir())


# ---------------------------------------------------------------------------------------------
# Image kinds: the face is found and the landmarks agree with the plain RGB image
# ---------------------------------------------------------------------------------------------
def _save_kind(path, kind: str) -> None:
    from PIL import Image

    rgb = astronaut()
    if kind == "gray":
        Image.fromarray(rgb).convert("L").save(path)
    elif kind == "rgba":
        Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).save(path)
    elif kind == "cmyk":
        Image.fromarray(rgb).convert("CMYK").save(path, quality=95)
    elif kind == "gray16":
        Image.fromarray((rgb.mean(2) * 257).astype(np.uint16)).save(path)


@pytest.mark.parametrize("kind,suffix", [("gray", ".png"), ("rgba", ".png"), ("cmyk", ".jpg"),
                                         ("gray16", ".png")])
def test_image_kinds(face_model, direct, tmp_path, kind, suffix):
    from face_expr_ros.core.imageio import load_image

    path = tmp_path / f"{kind}{suffix}"
    _save_kind(path, kind)
    loaded = load_image(path)
    assert loaded.rgb.shape == (512, 512, 3) and loaded.rgb.dtype == np.uint8
    assert run(face_model, path, "--out", tmp_path / "out") == 0
    faces = json.loads((tmp_path / "out" / f"{kind}.json").read_text())["faces"]
    assert len(faces) == 1
    error = np.linalg.norm(np.array(faces[0]["landmarks68"]) - direct[0].landmarks, axis=1).mean()
    assert error < 3.0  # px, on a ~90 px face: same face, same place


def test_exif_rotated_photo_is_read_upright(face_model, direct, tmp_path):
    from PIL import Image

    upright = Image.fromarray(astronaut()[:, :400])  # not square: the size must swap
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": store the image turned 90 CCW
    upright.rotate(90, expand=True).save(tmp_path / "phone.jpg", quality=95, exif=exif)
    assert run(face_model, tmp_path / "phone.jpg", "--out", tmp_path / "out") == 0
    record = json.loads((tmp_path / "out" / "phone.json").read_text())
    assert (record["width"], record["height"]) == (400, 512)
    assert len(record["faces"]) == 1
    error = np.linalg.norm(np.array(record["faces"][0]["landmarks68"]) - direct[0].landmarks, axis=1)
    assert error.mean() < 3.0
    assert abs(record["faces"][0]["pose"]["euler_deg"]["roll"] - direct[0].euler_deg[2]) < 5


def test_huge_jpeg_is_decoded_reduced_and_reported_in_full_pixels(face_model, direct, tmp_path, capsys):
    """20000 x 20000 (400 MP, 1.2 GB as RGB): decoded at 1/4 by the JPEG decoder, results in full pixels."""
    from PIL import Image

    from face_expr_ros.core.imageio import load_image

    canvas = Image.new("L", (20000, 20000), 128)
    face = Image.fromarray(astronaut()).convert("L").resize((4096, 4096), Image.BILINEAR)
    offset = (8000, 6000)
    canvas.paste(face, offset)
    path = tmp_path / "huge.jpg"
    canvas.save(path, quality=80)
    del canvas
    loaded = load_image(path)
    assert (loaded.width, loaded.height, loaded.reduction) == (20000, 20000, 4)
    assert loaded.rgb.shape == (5000, 5000, 3)
    del loaded
    assert run(face_model, path, "--out", tmp_path / "out") == 0
    assert "decoded at 1/4 scale" in capsys.readouterr().out
    record = json.loads((tmp_path / "out" / "huge.json").read_text())
    assert (record["width"], record["height"]) == (20000, 20000) and len(record["faces"]) == 1
    expected = (direct[0].landmarks + 0.5) * 8 - 0.5 + offset  # the 512 px face scaled 8x
    error = np.linalg.norm(np.array(record["faces"][0]["landmarks68"]) - expected, axis=1).mean()
    assert error < 8 * 4.0  # within ~4 px of the original 512 px image


def test_large_non_jpeg_is_refused_with_the_limit(face_model, photos, tmp_path, capsys):
    assert run(face_model, photos / "astronaut.png", "--out", tmp_path, "--max-megapixels", "0.1") == 1
    err = capsys.readouterr().err
    assert "512x512" in err and "limit of 0.1 MP" in err and "downscale it first" in err


def test_torch_and_onnx_backends_agree(face_model, photos, tmp_path):
    records = {}
    for backend in ("torch", "onnx"):
        assert run(face_model, photos / "two.png", "--out", tmp_path / backend, "--backend", backend) == 0
        records[backend] = json.loads((tmp_path / backend / "two.json").read_text())["faces"]
    assert len(records["torch"]) == len(records["onnx"]) == 2
    for a, b in zip(records["torch"], records["onnx"]):
        np.testing.assert_allclose(list(a["expression"].values()), list(b["expression"].values()), atol=1e-4)
        np.testing.assert_allclose(a["landmarks68"], b["landmarks68"], atol=1e-2)  # px
        np.testing.assert_allclose(a["pose"]["rotation_matrix"], b["pose"]["rotation_matrix"], atol=1e-4)


def test_bad_weights_and_device_are_one_line_errors(face_model, photos, tmp_path, capsys):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not weights")
    assert cli.main(["reconstruct", str(photos / "astronaut.png"), "--out", str(tmp_path / "o"),
                     "--weights", str(junk)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("face_expr reconstruct: error:") and "junk" in err[0]
    import torch

    if not torch.cuda.is_available():
        assert cli.main(["reconstruct", str(photos / "astronaut.png"), "--out", str(tmp_path / "o"),
                         "--device", "cuda"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "torch sees no GPU" in err[0]


def test_reduced_decode_maps_faces_once_and_draws_the_overlay_in_place(face_model, direct, tmp_path):
    """A JPEG decoded at 1/2: JSON in full pixels, the overlay (at the decoded size) on the face."""
    import dataclasses

    from PIL import Image

    from face_expr_ros.core.imageio import load_image
    from face_expr_ros.offline.results import to_full_image

    face = dataclasses.replace(direct[0])
    full = to_full_image(face, 2)
    np.testing.assert_allclose(full.landmarks, direct[0].landmarks * 2 + 0.5)
    np.testing.assert_allclose(full.box, direct[0].box * 2)
    assert full.scale == pytest.approx(direct[0].scale * 2)
    np.testing.assert_array_equal(face.landmarks, direct[0].landmarks)  # the input is not changed
    Image.fromarray(astronaut()).resize((1024, 1024), Image.BICUBIC).save(tmp_path / "big.jpg", quality=95)
    assert run(face_model, tmp_path / "big.jpg", "--out", tmp_path / "out", "--overlay",
               "--max-megapixels", "0.5") == 0
    record = json.loads((tmp_path / "out" / "big.json").read_text())
    assert (record["width"], record["height"]) == (1024, 1024)
    error = np.linalg.norm(np.array(record["faces"][0]["landmarks68"]) - (direct[0].landmarks * 2 + 0.5), axis=1)
    assert error.mean() < 2 * 3.0
    overlay = load_image(tmp_path / "out" / "big_overlay.png").rgb
    assert overlay.shape == (512, 512, 3)
    x0, y0, x1, y1 = direct[0].box.astype(int)
    changed = np.abs(overlay.astype(int) - load_image(tmp_path / "big.jpg", max_pixels=500_000).rgb).sum(2) > 30
    assert changed[y0:y1, x0:x1].mean() > 0.5 and changed.mean() < 0.2
