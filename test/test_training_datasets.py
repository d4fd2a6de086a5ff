"""Readers, image loading, index, teacher merge, splits and `face_expr data report`.

Files the tests write cover the formats and the bad cases; the shared data is read only a few
images per set.
"""
import json
import struct
import zlib
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from face_expr_ros.training import datasets as ds


# ---------------------------------------------------------------------------------------------
# .pts and keypoints CSV
# ---------------------------------------------------------------------------------------------
def _points(n=68):
    return np.stack([np.arange(n) * 1.5 + 10.25, np.arange(n) * 0.5 + 20.0], 1)


def test_read_pts_with_and_without_header_and_base(tmp_path):
    pts = _points()
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in pts)
    with_header = tmp_path / "a.pts"
    with_header.write_text(f"version: 1\nn_points: 68\n{{\n{body}\n}}\n")
    bare = tmp_path / "b.pts"
    bare.write_text(body + "\n")
    np.testing.assert_allclose(ds.read_pts(with_header), pts, atol=1e-3)
    np.testing.assert_allclose(ds.read_pts(bare), pts, atol=1e-3)
    np.testing.assert_allclose(ds.read_pts(with_header, base=1), pts - 1, atol=1e-3)
    assert ds.read_pts(bare).dtype == np.float32


def test_read_pts_rejects_a_wrong_point_count(tmp_path):
    path = tmp_path / "c.pts"
    path.write_text("version: 1\nn_points: 68\n{\n1 2\n3 4\n}\n")
    with pytest.raises(ValueError, match="n_points 68"):
        ds.read_pts(path)


def test_read_keypoints_csv_subtracts_the_base(tmp_path):
    pts = np.round(_points())
    header = "image," + ",".join(f"x{i},y{i}" for i in range(68))
    row = "face_1.jpg," + ",".join(f"{x:g},{y:g}" for x, y in pts)
    path = tmp_path / "k.csv"
    path.write_text(f"{header}\n{row}\nbroken.jpg,1,2\n")
    table = ds.read_keypoints_csv(path, base=1)
    assert list(table) == ["face_1.jpg"]  # the malformed row is skipped
    np.testing.assert_allclose(table["face_1.jpg"], pts - 1)
    np.testing.assert_allclose(ds.read_keypoints_csv(path, base=0)["face_1.jpg"], pts)


# ---------------------------------------------------------------------------------------------
# Image decoding: every kind of file becomes (H, W, 3) uint8 RGB, or a counted skip
# ---------------------------------------------------------------------------------------------
def _png_palette(path: Path, indices: np.ndarray, palette: list[tuple[int, int, int]]) -> None:
    """Write an 8-bit palette PNG by hand (OpenCV cannot write one)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    h, w = indices.shape
    raw = b"".join(b"\x00" + bytes(row) for row in indices.astype(np.uint8))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
                     + chunk(b"PLTE", bytes(np.array(palette, np.uint8).ravel()))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_grayscale_rgba_palette_and_16bit_load_as_rgb(tmp_path):
    gray = np.full((5, 7), 90, np.uint8)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    bgra = np.zeros((5, 7, 4), np.uint8)
    bgra[:] = (50, 100, 200, 128)  # B, G, R, A
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    _png_palette(tmp_path / "palette.png", np.array([[0, 1], [1, 0]]), [(255, 0, 0), (0, 0, 255)])
    deep = np.full((4, 4, 3), 32896, np.uint16)  # 0x8080 -> 0x80
    deep[0, 0] = (0, 0, 65535)  # BGR: red at full scale
    cv2.imwrite(str(tmp_path / "deep.png"), deep)

    for name in ("gray", "rgba", "palette", "deep"):
        image = ds.load_image_rgb(tmp_path / f"{name}.png")
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, name
    assert (ds.load_image_rgb(tmp_path / "gray.png") == 90).all()
    assert tuple(ds.load_image_rgb(tmp_path / "rgba.png")[2, 3]) == (200, 100, 50)
    palette = ds.load_image_rgb(tmp_path / "palette.png")
    assert tuple(palette[0, 0]) == (255, 0, 0) and tuple(palette[0, 1]) == (0, 0, 255)
    deep_rgb = ds.load_image_rgb(tmp_path / "deep.png")
    assert tuple(deep_rgb[0, 0]) == (255, 0, 0) and tuple(deep_rgb[1, 1]) == (128, 128, 128)


def _bad_files(folder: Path) -> dict[str, Path]:
    """One good JPEG and the bad kinds, written into ``folder``."""
    good = np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)
    ok, jpeg = cv2.imencode(".jpg", good)
    ok2, png = cv2.imencode(".png", good)
    assert ok and ok2
    files = {"good": folder / "good.jpg", "empty": folder / "empty.jpg",
             "truncated_jpeg": folder / "cut.jpg", "truncated_png": folder / "cut.png",
             "corrupt": folder / "noise.jpg", "text": folder / "notes.png"}
    files["good"].write_bytes(jpeg.tobytes())
    files["empty"].write_bytes(b"")
    files["truncated_jpeg"].write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    files["truncated_png"].write_bytes(png.tobytes()[: len(png) // 2])
    files["corrupt"].write_bytes(b"\xff\xd8" + bytes(range(256)) * 4 + b"\xff\xd9")
    files["text"].write_text("this is not an image\n")
    return files


def test_bad_files_are_skipped_counted_and_warned(tmp_path, caplog):
    files = _bad_files(tmp_path)
    entries = [ds.IndexEntry(p, None, {}, None, "utkface") for p in files.values()]
    stats = ds.ReadStats()
    samples = list(ds.iter_samples("utkface", entries=entries, stats=stats))
    assert [s.path for s in samples] == [files["good"]]
    assert samples[0].image.shape == (32, 32, 3)
    assert stats.listed == 6 and stats.read == 1 and stats.n_skipped == 5
    assert stats.skipped["empty file"] == 1
    assert stats.skipped["truncated JPEG (no end-of-image marker)"] == 1
    assert stats.skipped["truncated PNG (no IEND chunk)"] == 1
    assert stats.skipped["not a readable image"] == 2
    assert sum("skipped" in r.getMessage() for r in caplog.records) == 5


# ---------------------------------------------------------------------------------------------
# Teacher cache
# ---------------------------------------------------------------------------------------------
def _fake_root(tmp_path: Path) -> Path:
    """A data root with a tiny utkface set of two 20x20 images."""
    images = tmp_path / "data" / "utkface" / "images"
    images.mkdir(parents=True)
    for name in ("30_1_2_20170116.jpg.chip.jpg", "41_0_0_20170117.jpg.chip.jpg"):
        cv2.imwrite(str(images / name), np.full((20, 20, 3), 128, np.uint8))
    return tmp_path / "data"


def test_teacher_cache_later_lines_win_and_a_truncated_tail_is_ignored(tmp_path):
    root = _fake_root(tmp_path)
    pts = _points().tolist()
    lines = [
        {"set": "utkface", "image": "images/30_1_2_20170116.jpg.chip.jpg", "status": "failed",
         "teacher": "t", "box": [0, 0, 1, 1], "score": 0.0, "landmarks68": []},
        {"set": "utkface", "image": "images/30_1_2_20170116.jpg.chip.jpg", "status": "ok",
         "teacher": "t", "box": [0, 0, 20, 20], "score": 0.9, "landmarks68": pts},
        {"set": "utkface", "image": "images/41_0_0_20170117.jpg.chip.jpg", "status": "no_face",
         "teacher": "t", "box": None, "score": 0.0, "landmarks68": None},
    ]
    cache = tmp_path / "cache"
    cache.mkdir()
    text = "".join(json.dumps(r) + "\n" for r in lines)
    tail = json.dumps({**lines[1], "landmarks68": (np.array(pts) + 5).tolist()})[:40]  # interrupted
    (cache / ds.TEACHER_FILE).write_text(text + tail)

    index = ds.build_index("utkface", root, teacher_cache=cache)
    by_name = {e.path.name: e for e in index}
    merged = by_name["30_1_2_20170116.jpg.chip.jpg"]
    assert merged.landmark_source == "teacher"
    np.testing.assert_allclose(merged.landmarks, pts)
    assert by_name["41_0_0_20170117.jpg.chip.jpg"].landmarks is None
    assert merged.labels == {"age": 30, "gender": 1, "race": 2, "date": "20170116"}
    sample = next(ds.iter_samples("utkface", root, cache))
    assert sample.landmark_source == "teacher" and sample.landmarks.shape == (68, 2)


def test_missing_teacher_cache_raises_unless_missing_ok(tmp_path):
    with pytest.raises(FileNotFoundError):
        ds.load_teacher_cache(tmp_path)
    assert ds.load_teacher_cache(tmp_path, missing_ok=True) == {}


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------
def test_subjects_and_split_are_deterministic():
    def entry(set_name, name):
        return ds.IndexEntry(Path("/x") / name, None, {}, None, set_name)

    assert ds.subject_of("helen_train", "100040721_2.jpg") == "100040721"
    assert ds.subject_of("ytf_train", "Luis_Fonsi_21.jpg") == "Luis_Fonsi"
    assert ds.subject_of("lfw_gray", "AJ_Cook_0001.jpg") == "AJ_Cook"
    assert ds.subject_of("ytf_train", "1084239450_e76e00b7e7.jpg") == "1084239450_e76e00b7e7.jpg"
    for k in range(40):  # several subjects: each keeps all its images on one side
        word = "Ann_" + "".join(chr(97 + int(c)) for c in str(k))  # letters only, as names are
        for set_name, a, b in (("helen_train", f"{1000 + k}_1.jpg", f"{1000 + k}_2.jpg"),
                               ("ytf_train", f"{word}_1.jpg", f"{word}_90.jpg"),
                               ("lfw_gray", f"{word}_0001.jpg", f"{word}_0002.jpg")):
            first, second = entry(set_name, a), entry(set_name, b)
            assert ds.subject_of(set_name, first.path) == ds.subject_of(set_name, second.path)
            assert ds.split_of(first) == ds.split_of(second)
    names = [entry("fer2013_train", f"Training_{i}.jpg") for i in range(4000)]
    counts = Counter(ds.split_of(e) for e in names)
    assert 0.08 < counts["val"] / 4000 < 0.12
    assert [ds.split_of(e) for e in names[:50]] == [ds.split_of(e) for e in names[:50]]


# ---------------------------------------------------------------------------------------------
# The shared sets (a few files each)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("set_name", list(ds.DATASETS))
def test_shared_sets_index_and_read(data_root, set_name):
    index = ds.build_index(set_name, data_root)
    assert len(index) > 100
    samples = list(ds.iter_samples(set_name, entries=index[:: len(index) // 3][:3]))
    assert len(samples) == 3
    for s in samples:
        assert s.image.dtype == np.uint8 and s.image.ndim == 3 and s.image.shape[2] == 3
        assert s.set_name == set_name
        if set_name in ("helen_train", "ytf_train"):
            h, w = s.image.shape[:2]
            assert s.landmark_source == "human" and s.landmarks.shape == (68, 2)
            centre = s.landmarks.mean(0)
            assert 0 < centre[0] < w and 0 < centre[1] < h
        else:
            assert s.landmarks is None and s.landmark_source is None
    if set_name == "fer2013_train":
        assert {e.labels["emotion"] for e in index} <= set(ds.EMOTION_NAMES)
    if set_name == "lfw_gray":
        assert sum("emotion" in e.labels for e in index) > len(index) // 2
    if set_name == "utkface":
        assert sum("age" in e.labels for e in index) > 0.99 * len(index)


def test_ytf_rows_are_read_with_the_measured_base(data_root):
    csv_path = data_root / "ytf_train" / "keypoints.csv"
    first = csv_path.read_text().splitlines()[1].split(",")
    entry = next(e for e in ds.build_index("ytf_train", data_root) if e.path.name == first[0])
    raw = np.asarray(first[1:], np.float32).reshape(68, 2)
    np.testing.assert_allclose(entry.landmarks, raw - ds.YTF_COORDINATE_BASE)
    assert ds.YTF_COORDINATE_BASE == 1  # measured against a teacher: docs/data.md


# ---------------------------------------------------------------------------------------------
# face_expr data report
# ---------------------------------------------------------------------------------------------
def test_report_set_names_match_the_registry():
    from face_expr_ros.training.report import SET_NAMES

    assert set(SET_NAMES) == set(ds.DATASETS)


def test_data_report_prints_counts_and_writes_a_sheet(data_root, tmp_path, capsys):
    from face_expr_ros.cli import main

    sheet = tmp_path / "sheet.png"
    code = main(["data", "report", "--data", str(data_root), "--limit", "3", "--sets", "helen_train",
                 "lfw_gray", "--detector", "none", "--sheet", str(sheet)])
    out = capsys.readouterr().out
    assert code == 0
    helen = next(line for line in out.splitlines() if line.startswith("helen_train "))
    assert "3/3" in helen and "100.0%" in helen
    lfw = next(line for line in out.splitlines() if line.startswith("lfw_gray "))
    assert "0.0%" in lfw
    image = cv2.imread(str(sheet))
    assert image is not None and image.shape[0] > 2 * 160 and not list(tmp_path.glob(".*"))


def test_teacher_blendshapes_follow_the_measured_side_convention(monkeypatch):
    from face_expr_ros.core.arkit import ARKIT_NAMES
    from face_expr_ros.training import teacher

    scores = {n: 0.0 for n in ARKIT_NAMES if n != "tongueOut"}
    scores.update(eyeBlinkLeft=0.8, jawLeft=0.3)
    record = {"status": "ok", "blendshapes": scores}
    values = ds.teacher_blendshapes(record)
    assert values.shape == (52,) and np.isnan(values[ARKIT_NAMES.index("tongueOut")])
    assert values[ARKIT_NAMES.index("eyeBlinkLeft")] == pytest.approx(0.8)
    monkeypatch.setattr(teacher, "MEDIAPIPE_SIDES_MIRRORED", True)
    mirrored = ds.teacher_blendshapes(record)
    assert mirrored[ARKIT_NAMES.index("eyeBlinkRight")] == pytest.approx(0.8)
    assert mirrored[ARKIT_NAMES.index("jawLeft")] == pytest.approx(0.3)  # a direction, not a side
    assert ds.teacher_blendshapes({"status": "ok"}) is None
    assert ds.teacher_blendshapes({"status": "no_face", "blendshapes": scores}) is None
