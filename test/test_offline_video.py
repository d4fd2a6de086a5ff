"""``face_expr video``: Live Link Face CSV, JSON lines, overlay, bags, bad frames and bad inputs.

Clips are synthesised here (a still astronaut head, face_expr_ros.offline.synthetic) and kept tiny
(160x120, a few frames): the machine running the tests may have 2 shared CPUs.
"""
import csv
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from face_expr_ros.cli import main
from face_expr_ros.core.arkit import ARKIT_NAMES, LIVE_LINK_NAMES
from face_expr_ros.core.face_json import validate_record
from face_expr_ros.offline import livelink
from face_expr_ros.offline.frame_json import contract_view
from face_expr_ros.offline.jitter import measure, read_track
from face_expr_ros.offline.livelink import MainFace, timecode
from face_expr_ros.offline.synthetic import still_head_frames, write_video

W, H, FPS = 160, 120, 10.0
EXPECTED_HEADER = ["Timecode", "BlendShapeCount", *LIVE_LINK_NAMES, "HeadYaw", "HeadPitch",
                   "HeadRoll"]


@pytest.fixture(scope="module")
def frames():
    return still_head_frames(6, W, H, noise_sigma=3.0, seed=1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, frames):
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames, FPS, "mp4v")


def run(capsys, *argv):
    """``face_expr video ...`` -> (exit code, stdout, stderr)."""
    code = main(["video", *map(str, argv), "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("face_expr video: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ---------------------------------------------------------------------------------------------
# Video -> CSV, JSON lines, overlay
# ---------------------------------------------------------------------------------------------
def test_video_writes_csv_jsonl_and_overlay(face_model, clip, tmp_path, capsys):
    code, out, err = run(capsys, clip, "--out", tmp_path, "--overlay")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.csv", "clip.jsonl",
                                                          "clip_overlay.mp4"]  # no temp files
    assert "6 frames processed" in out

    header, rows = read_csv(tmp_path / "clip.csv")
    assert header == EXPECTED_HEADER and len(header) == 57
    assert len(rows) == 6
    assert all(int(r[1]) == len(r) - 2 == 55 for r in rows)
    # the node's tracker: a face is reported from its 2nd frame (min_hits 2), row 0 stays empty
    assert rows[0][2:] == [""] * 55
    values = np.array([[float(v) for v in r[2:]] for r in rows[1:]])
    assert np.all((values[:, :52] >= 0) & (values[:, :52] <= 1))
    assert np.all(values[:, 52:] == np.clip(values[:, 52:], -math.pi / 2, math.pi / 2))
    assert values[:, ARKIT_NAMES.index("tongueOut")].max() == 0.0  # not in the model
    codes = [r[0] for r in rows]
    assert codes[0] == "00:00:00:00.000" and codes[1] == "00:00:00:01.000"
    assert codes == sorted(codes) and len(set(codes)) == len(codes)

    records = read_jsonl(tmp_path / "clip.jsonl")
    assert [r["frame"] for r in records] == list(range(6))
    assert [r["timecode"] for r in records] == codes
    assert np.allclose([r["time_s"] for r in records], np.arange(6) / FPS)
    for record in records:
        validate_record(contract_view(record))
        assert (record["width"], record["height"]) == (W, H)
    assert records[0]["faces"] == []
    ids = {f["id"] for r in records[1:] for f in r["faces"]}
    assert len(ids) == 1 and all(len(r["faces"]) == 1 for r in records[1:])
    # the CSV's head angles are the JSON's Euler angles in radians, same signs
    euler = np.array([[r["faces"][0]["pose"]["euler_deg"][a] for a in ("yaw", "pitch", "roll")]
                      for r in records[1:]])
    assert np.allclose(values[:, 52:], np.radians(euler), atol=2e-6)

    capture = cv2.VideoCapture(str(tmp_path / "clip_overlay.mp4"))
    read = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        read.append(bgr)
    capture.release()
    assert len(read) == 6 and read[0].shape == (H, W, 3)


def test_arkit_names_every_and_max_frames(face_model, clip, tmp_path, capsys):
    code, _, err = run(capsys, clip, "--out", tmp_path, "--arkit", "--every", "2",
                       "--max-frames", "2", "--min-hits", "1", "--no-smoothing")
    assert code == 0, err
    records = read_jsonl(tmp_path / "clip.jsonl")
    assert [r["frame"] for r in records] == [0, 2]
    for record in records:
        validate_record(contract_view(record), ARKIT_NAMES)
        assert len(record["faces"]) == 1  # min_hits 1: the face from the first frame
    _, rows = read_csv(tmp_path / "clip.csv")
    assert [r[0] for r in rows] == ["00:00:00:00.000", "00:00:00:02.000"]
    assert all(r[2] != "" for r in rows)


def test_smoothing_reduces_jitter_on_a_still_head(face_model, tmp_path, capsys):
    clip = write_video(tmp_path / "still.avi",
                       still_head_frames(12, W, H, noise_sigma=6.0, seed=2), fps=30.0)
    jitter = {}
    for smoothing in (True, False):
        out = tmp_path / ("smoothed" if smoothing else "raw")
        out.mkdir()
        extra = [] if smoothing else ["--no-smoothing"]
        code, _, err = run(capsys, clip, "--out", out, "--min-hits", "1", *extra)
        assert code == 0, err
        jitter[smoothing] = measure(*read_track(out / "still.jsonl"))
    smoothed, raw = jitter[True], jitter[False]
    assert smoothed.frames == raw.frames == 12
    assert raw.angle_step.mean() > 0 and raw.coefficient_step > 0  # the noise does make jitter
    assert smoothed.angle_step.mean() < 0.7 * raw.angle_step.mean()
    assert smoothed.coefficient_step < 0.7 * raw.coefficient_step


# ---------------------------------------------------------------------------------------------
# Live Link Face details
# ---------------------------------------------------------------------------------------------
def test_timecode_format():
    assert timecode(0.0, 30) == "00:00:00:00.000"
    assert timecode(3661.5, 30) == "01:01:01:15.000"
    assert timecode(1 / 60, 30) == "00:00:00:00.500"  # half a frame
    assert timecode(0.1 * 3, 10) == "00:00:00:03.000"  # 0.30000000000000004 s is frame 3
    assert timecode(0.3 - 1e-9, 10) == "00:00:00:03.000"  # rounded to 1/1000 frame
    assert timecode(1 - 1e-9, 30) == "00:00:01:00.000"  # ... also across a second
    assert timecode(0.3, 9.99999997) == "00:00:00:03.000"  # an estimated frame rate
    codes = [timecode(i / 29.97, 29.97) for i in range(200)]
    assert codes == sorted(codes) and len(set(codes)) == 200
    with pytest.raises(ValueError, match="fps"):
        timecode(1.0, 0)


def test_main_face_follows_the_first_largest_track():
    def face(track_id, side):
        return SimpleNamespace(id=track_id, area=side * side)

    main_face = MainFace()
    assert main_face.pick([], []) is None
    small, large = face("1", 10), face("2", 30)
    assert main_face.pick([small, large], ["1", "2"]) is large
    # the other face grows larger: the file keeps following track 2
    assert main_face.pick([face("1", 50), face("2", 30)], ["1", "2"]).id == "2"
    # track 2 missed in this frame but still tracked: an empty row, no switch
    assert main_face.pick([face("1", 50)], ["1", "2"]) is None
    # track 2 ended: the largest face seen next becomes the main face
    assert main_face.pick([face("1", 50), face("3", 60)], ["1", "3"]).id == "3"


def test_header_constants():
    assert list(livelink.HEADER) == EXPECTED_HEADER
    assert livelink.BLEND_SHAPE_COUNT == 55


# ---------------------------------------------------------------------------------------------
# rosbag2 bags
# ---------------------------------------------------------------------------------------------
def write_bag(folder: Path, storage: str, frames, topics: dict[str, str],
              truncated: tuple[int, ...] = ()) -> Path:
    """A rosbag2 bag at ``folder`` with ``frames`` on each topic (topic -> rgb8, bgr8, jpeg, text).

    ``truncated``: indices of jpeg messages whose JPEG is cut in half (valid message, bad image).
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.LATEST)
    types = store.types
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(folder, version=9, storage_plugin=plugin) as writer:
        for topic, kind in topics.items():
            msgtype = {"jpeg": "sensor_msgs/msg/CompressedImage",
                       "text": "std_msgs/msg/String"}.get(kind, "sensor_msgs/msg/Image")
            connection = writer.add_connection(topic, msgtype, typestore=store)
            for i, rgb in enumerate(frames):
                stamp_ns = 1_700_000_000_000_000_000 + i * 100_000_000  # 10 fps
                header = types["std_msgs/msg/Header"](
                    stamp=types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9,
                                                               nanosec=stamp_ns % 10**9),
                    frame_id="camera_optical_frame")
                msg = _message(types, kind, header, rgb)
                if i in truncated:
                    msg.data = msg.data[:len(msg.data) // 2]
                writer.write(connection, stamp_ns, store.serialize_cdr(msg, msgtype))
    return folder


def _message(types, kind, header, rgb):
    h, w = rgb.shape[:2]
    if kind == "text":
        return types["std_msgs/msg/String"](data="hello")
    if kind == "jpeg":
        ok, jpeg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        return types["sensor_msgs/msg/CompressedImage"](header=header, format="jpeg",
                                                       data=jpeg.ravel())
    pixels = rgb if kind == "rgb8" else rgb[..., ::-1]
    return types["sensor_msgs/msg/Image"](header=header, height=h, width=w, encoding=kind,
                                          is_bigendian=0, step=w * 3,
                                          data=np.ascontiguousarray(pixels).ravel())


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_bag_topics_give_one_row_per_message(face_model, frames, tmp_path, capsys, storage):
    bag = write_bag(tmp_path / f"bag_{storage}", storage, frames[:4],
                    {"/cam/rgb": "rgb8", "/cam/bgr": "bgr8", "/cam/compressed": "jpeg",
                     "/chatter": "text"})
    stored = next(bag.glob("*.mcap" if storage == "mcap" else "*.db3"))
    results = {}
    for topic in ("/cam/rgb", "/cam/bgr", "/cam/compressed"):
        out = tmp_path / f"out{topic.replace('/', '_')}"
        out.mkdir()
        source = stored if topic == "/cam/bgr" else bag  # the storage file itself works too
        code, _, err = run(capsys, source, "--out", out, "--topic", topic, "--min-hits", "1")
        assert code == 0, err
        name = f"{bag.name}{topic.replace('/', '_')}"
        assert sorted(p.name for p in out.iterdir()) == [f"{name}.csv", f"{name}.jsonl"]
        _, rows = read_csv(out / f"{name}.csv")
        assert len(rows) == 4 and all(r[2] != "" for r in rows)
        assert [r[0] for r in rows] == [f"00:00:00:0{i}.000" for i in range(4)]  # 10 fps stamps
        records = read_jsonl(out / f"{name}.jsonl")
        results[topic] = [r["faces"][0]["pose"]["euler_deg"]["yaw"] for r in records]
    # rgb8 and bgr8 carry the same pixels: decoded alike, the same results
    assert results["/cam/rgb"] == results["/cam/bgr"]
    assert np.allclose(results["/cam/compressed"], results["/cam/rgb"], atol=3.0)


def test_bag_topic_choice_errors_list_topics(face_model, frames, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    two = write_bag(tmp_path / "two", "mcap", frames[:1], {"/a/image": "rgb8", "/b/image": "jpeg"})
    code, _, err = run(capsys, two, "--out", out)
    assert_one_line_error(code, err, "2 image topics", "--topic", "/a/image (sensor_msgs/msg/Image)",
                          "/b/image (sensor_msgs/msg/CompressedImage)")
    code, _, err = run(capsys, two, "--out", out, "--topic", "/nope")
    assert_one_line_error(code, err, "no topic '/nope'", "/a/image", "/b/image")
    text = write_bag(tmp_path / "text", "sqlite3", frames[:1], {"/chatter": "text"})
    code, _, err = run(capsys, text, "--out", out)
    assert_one_line_error(code, err, "no sensor_msgs/Image or CompressedImage topic",
                          "/chatter (std_msgs/msg/String)")
    code, _, err = run(capsys, text, "--out", out, "--topic", "/chatter")
    assert_one_line_error(code, err, "/chatter is std_msgs/msg/String")
    one = write_bag(tmp_path / "one", "sqlite3", frames[:2], {"/only/image": "rgb8"})
    code, _, err = run(capsys, one, "--out", out, "--max-frames", "1")  # the only image topic
    assert code == 0, err
    assert list(out.iterdir()) and all(p.name.startswith("one_only_image") for p in out.iterdir())


def test_bag_with_undecodable_messages_counts_them(face_model, frames, tmp_path, capsys):
    import sqlite3

    bag = write_bag(tmp_path / "bag", "sqlite3", frames[:4], {"/cam": "jpeg"}, truncated=(1,))
    # message 2: bytes that are no CDR message at all (a damaged storage file)
    db = sqlite3.connect(next(bag.glob("*.db3")))
    rows = db.execute("SELECT id, data FROM messages ORDER BY timestamp").fetchall()
    db.execute("UPDATE messages SET data = ? WHERE id = ?", (bytes(rows[2][1][:40]), rows[2][0]))
    db.commit()
    db.close()
    out = tmp_path / "out"
    out.mkdir()
    code, stdout, err = run(capsys, bag, "--out", out, "--min-hits", "1")
    assert code == 0, err
    assert "2 unreadable frames skipped (indices 1, 2)" in stdout
    assert "truncated JPEG" in err and "cannot deserialise" in err
    assert [r["frame"] for r in read_jsonl(out / "bag_cam.jsonl")] == [0, 3]


# ---------------------------------------------------------------------------------------------
# Bad frames and bad inputs
# ---------------------------------------------------------------------------------------------
def corrupt_mjpeg(path: Path, frame_indices) -> None:
    """Zero the first bytes of the given frames' JPEGs in an MJPG AVI (the decoder rejects them)."""
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 3) if data[i:i + 3] == b"\xff\xd8\xff"]
    ends = [data.index(b"\xff\xd9", s) for s in starts]  # end-of-image markers
    for k in frame_indices:
        data[starts[k]:ends[k]] = bytes(ends[k] - starts[k])  # the chunk keeps its size
    path.write_bytes(bytes(data))


def test_unreadable_frames_are_skipped_counted_and_reported(face_model, frames, tmp_path, capsys):
    clip = write_video(tmp_path / "bad.avi", frames, FPS)
    corrupt_mjpeg(clip, [2, 4])
    out = tmp_path / "out"
    out.mkdir()
    code, stdout, err = run(capsys, clip, "--out", out, "--min-hits", "1")
    assert code == 0, err
    assert "2 unreadable frames skipped (indices 2, 4)" in stdout
    assert "frame 2 skipped" in err and "frame 4 skipped" in err
    _, rows = read_csv(out / "bad.csv")
    assert len(rows) == 4
    records = read_jsonl(out / "bad.jsonl")
    assert [r["frame"] for r in records] == [0, 1, 3, 5]
    assert [r["timecode"] for r in records] == [r[0] for r in rows]
    assert records[2]["timecode"] == "00:00:00:03.000"  # times stay those of the source frames
    assert all(len(r["faces"]) == 1 for r in records)


def test_video_with_no_readable_frame_is_an_error(face_model, frames, tmp_path, capsys):
    clip = write_video(tmp_path / "allbad.avi", frames[:3], FPS)
    corrupt_mjpeg(clip, [0, 1, 2])
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run(capsys, clip, "--out", out)
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        f"face_expr video: error: {clip}: none of its 3 frames could be decoded")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "folder"])
def test_bad_inputs_fail_with_one_line(tmp_path, capsys, kind):
    out = tmp_path / "out"
    out.mkdir()
    path = tmp_path / "in.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a video\n" * 20)
    elif kind == "folder":
        path = tmp_path / "not_a_bag"
        path.mkdir()
    code, _, err = run(capsys, path, "--out", out)
    expected = {"missing": "no such file or folder", "empty": "empty file (0 bytes)",
                "text": "not a video OpenCV can read", "folder": "no metadata.yaml"}[kind]
    assert_one_line_error(code, err, str(path), expected)
    assert list(out.iterdir()) == []


def test_unusable_output_folder_fails_before_work(clip, tmp_path, capsys, monkeypatch):
    code, _, err = run(capsys, clip, "--out", clip / "sub")  # a folder can't be made under a file
    assert_one_line_error(code, err, "cannot create it")
    code, _, err = run(capsys, clip, "--out", clip)
    assert_one_line_error(code, err, "is not a folder")
    # /proc takes no new files, for root too
    code, _, err = run(capsys, clip, "--out", "/proc")
    assert_one_line_error(code, err, "cannot write to /proc")
    # a folder without write permission (what a non-root user sees)
    from face_expr_ros.core import export

    out = tmp_path / "readonly"
    out.mkdir()
    monkeypatch.setattr(export.os, "access", lambda *_args, **_kw: False)
    code, _, err = run(capsys, clip, "--out", out)
    assert_one_line_error(code, err, "not writable")
    assert list(out.iterdir()) == []


def test_interrupt_or_failure_leaves_no_files(face_model, clip, tmp_path, capsys, monkeypatch):
    from face_expr_ros.core.reconstruct import Reconstructor

    original = Reconstructor.reconstruct
    calls = []

    def interrupted(self, image, timestamp=None):
        calls.append(timestamp)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, image, timestamp)

    monkeypatch.setattr(Reconstructor, "reconstruct", interrupted)
    code, _, err = run(capsys, clip, "--out", tmp_path, "--overlay")
    assert code == 130 and "interrupted; no output written" in err
    assert list(tmp_path.iterdir()) == []

    def failing(self, image, timestamp=None):
        raise RuntimeError("a bug in the middle of the run")

    monkeypatch.setattr(Reconstructor, "reconstruct", failing)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["video", str(clip), "--out", str(tmp_path), "--no-progress"])
    assert list(tmp_path.iterdir()) == []


def test_bags_without_rosbags_installed_say_how_to_get_it(frames, tmp_path, capsys, monkeypatch):
    bag = write_bag(tmp_path / "bag", "sqlite3", frames[:1], {"/cam": "rgb8"})
    monkeypatch.setitem(sys.modules, "rosbags.highlevel", None)  # import fails as if not installed
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run(capsys, bag, "--out", out)
    assert_one_line_error(code, err, "needs the rosbags package", "pip install")
    assert list(out.iterdir()) == []


def test_bad_weights_is_a_one_line_error_and_leaves_no_files(clip, tmp_path, capsys):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not weights")
    out = tmp_path / "out"
    code, _, err = run(capsys, clip, "--out", out, "--weights", junk)
    assert_one_line_error(code, err, "junk.safetensors")
    assert list(out.iterdir()) == []
