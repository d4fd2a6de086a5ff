"""``face_expr video IN --out DIR``: expressions and head pose of every frame of a video or bag.

Writes into DIR, named after IN (``clip.mp4`` -> ``clip.csv``, ...; docs/video.md):

- ``<name>.csv``: Live Link Face layout, one row per processed frame, the main face (offline.livelink);
- ``<name>.jsonl``: one JSON line per processed frame, every face with its track id (offline.frame_json);
- ``<name>_overlay.mp4`` with ``--overlay``: the frames with the posed mesh and landmarks.

Frames go through ``core.Reconstructor`` with the node's tracker (stable ids, One-Euro smoothing of
coefficients and pose, the node's default parameters) in the node's tracking mode (faces followed by
their landmarks; ``--detect-every-frame`` detects every frame), timestamped with the frame times. Frames
that cannot be decoded are skipped, counted and reported. Outputs appear complete or not at all
(offline.outputs). Heavy modules are imported inside the handler (``face_expr --help`` stays fast).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .options import add_model_options, positive_int

if TYPE_CHECKING:
    from ..core.reconstruct import Reconstructor
    from ..offline.frames import FrameSource

EXIT_OK, EXIT_INTERRUPTED = 0, 130
OVERLAY_FOURCC = "mp4v"


def add_video_command(commands: argparse._SubParsersAction) -> None:
    """Register ``face_expr video``."""
    p = commands.add_parser(
        "video", help="per-frame expressions of a video or rosbag2 bag: Live Link Face CSV, JSON "
                      "lines, overlay video",
        description="Reconstruct every frame of a video file (anything OpenCV/FFmpeg reads) or of "
                    "an image topic of a rosbag2 bag (.db3 or .mcap; no ROS needed) with the "
                    "node's tracking and smoothing. Writes DIR/NAME.csv (Live Link Face layout: "
                    "Timecode, BlendShapeCount, 52 ARKit blendshapes, HeadYaw/Pitch/Roll in "
                    "radians, the main face), DIR/NAME.jsonl (every face of every frame) and with "
                    "--overlay DIR/NAME_overlay.mp4. See docs/video.md.")
    p.add_argument("input", type=Path, metavar="IN",
                   help="video file, or rosbag2 bag (its folder or its .db3/.mcap file)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="output folder, created if missing (files named after IN)")
    p.add_argument("--topic", default=None,
                   help="bag image topic (sensor_msgs/Image or CompressedImage); default: the "
                        "bag's only image topic")
    p.add_argument("--overlay", action="store_true",
                   help="also write NAME_overlay.mp4 (mesh and landmarks over the frames, mp4v)")
    p.add_argument("--arkit", action="store_true",
                   help="JSON lines: the 52 ARKit expression names instead of the model's 53")
    p.add_argument("--no-smoothing", action="store_true",
                   help="raw per-frame values (track ids are still kept)")
    p.add_argument("--min-hits", type=positive_int, default=2, metavar="N",
                   help="frames a face must be seen before it is reported (the node's default 2 "
                        "ignores one-frame false detections; 1 reports a face from its first frame)")
    p.add_argument("--detect-every-frame", action="store_true",
                   help="run the face detector on every frame (default: the node's tracking "
                        "mode, faces followed by their landmarks, detection every 0.5 s of "
                        "video and when a face is lost; docs/node.md)")
    p.add_argument("--every", type=positive_int, default=1, metavar="N",
                   help="process every N-th frame (default 1: all)")
    p.add_argument("--max-frames", type=positive_int, default=None, metavar="N",
                   help="stop after N processed frames")
    add_model_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run_video)


@dataclass
class VideoResult:
    """What a run did: frames processed, frames with a face, unreadable frame indices, files."""

    processed: int = 0
    with_face: int = 0
    main_face_rows: int = 0
    unreadable: list[int] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)


def run_video(args: argparse.Namespace) -> int:
    """The handler: outputs checked, input opened, frames processed, outputs renamed, summary."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        with _sigterm_as_interrupt():
            result = process_video(args)
    except KeyboardInterrupt:
        print("face_expr video: interrupted; no output written", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(_summary(args.input, result))
    return EXIT_OK


def process_video(args: argparse.Namespace) -> VideoResult:
    """Everything but the messages; raises the expected errors (OSError family) with a reason."""
    from ..offline.frames import open_frames
    from ..offline.outputs import AtomicOutputs

    outputs = AtomicOutputs(args.out)  # a missing or read-only DIR fails here, before any work
    with outputs, open_frames(args.input, args.topic) as source:
        name = _output_name(args.input, getattr(source, "topic", None))
        paths = {kind: outputs.add(f"{name}{suffix}") for kind, suffix in _suffixes(args).items()}
        reconstructor = _reconstructor(args)
        result = _process_frames(source, reconstructor, paths, args)
        result.written = outputs.commit()
    return result


def _suffixes(args: argparse.Namespace) -> dict[str, str]:
    suffixes = {"csv": ".csv", "jsonl": ".jsonl"}
    if args.overlay:
        suffixes["overlay"] = "_overlay.mp4"
    return suffixes


def _output_name(path: Path, topic: str | None) -> str:
    """Outputs' base name: the video's stem; a bag's folder name and topic (``bag_camera_image``)."""
    path = Path(path)
    if topic is None:
        return path.stem
    folder = path if path.is_dir() else path.parent
    return f"{folder.name}_{topic.strip('/').replace('/', '_')}"


def _reconstructor(args: argparse.Namespace) -> "Reconstructor":
    from ..core.reconstruct import Reconstructor
    from ..core.tracking import Tracker

    tracker = Tracker(min_hits=args.min_hits, smoothing=not args.no_smoothing)
    return Reconstructor(weights=args.weights, face_model=args.face_model, device=args.device,
                         tracker=tracker, backend=args.backend,
                         follow=not args.detect_every_frame)


def _process_frames(source: "FrameSource", reconstructor: "Reconstructor",
                    paths: dict[str, Path], args: argparse.Namespace) -> VideoResult:
    from ..offline.frame_json import frame_record
    from ..offline.livelink import LiveLinkWriter, MainFace, timecode
    from ..offline.overlay import draw_overlay
    from ..offline.video_writer import RgbVideoWriter

    result = VideoResult()
    main_face = MainFace()
    overlay = (RgbVideoWriter(paths["overlay"], source.fps / args.every, OVERLAY_FOURCC)
               if "overlay" in paths else None)
    with open(paths["csv"], "w", encoding="utf-8", newline="") as csv_file, \
            open(paths["jsonl"], "w", encoding="utf-8") as jsonl_file, overlay or nullcontext():
        rows = LiveLinkWriter(csv_file, source.fps)
        for frame in _progress(source, args):
            faces = reconstructor.reconstruct(frame.rgb, timestamp=frame.time_s)
            main = main_face.pick(faces, reconstructor.tracker.track_ids)
            rows.write(frame.time_s, main)
            height, width = frame.rgb.shape[:2]
            record = frame_record(frame.index, frame.time_s, timecode(frame.time_s, source.fps),
                                  source.name, width, height, faces, arkit=args.arkit)
            jsonl_file.write(json.dumps(record) + "\n")
            if overlay is not None:
                overlay.write(draw_overlay(frame.rgb, faces))
            result.processed += 1
            result.with_face += bool(faces)
            result.main_face_rows += main is not None
            if args.max_frames is not None and result.processed >= args.max_frames:
                break
    result.unreadable = list(source.unreadable)
    return result


def _progress(source: "FrameSource", args: argparse.Namespace) -> Iterator[Any]:
    """The source's frames behind a tqdm bar on stderr (log lines printed above the bar)."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    total = None
    if source.frame_count is not None:
        total = math.ceil(source.frame_count / args.every)
    if args.max_frames is not None:
        total = min(total, args.max_frames) if total is not None else args.max_frames
    with logging_redirect_tqdm():
        yield from tqdm(source.frames(args.every), total=total, unit="frame", desc=source.name,
                        disable=args.no_progress, file=sys.stderr, leave=False)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt while inside (temporary files removed, as on Ctrl-C)."""
    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave SIGTERM alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _summary(source: Path, result: VideoResult) -> str:
    lines = [f"{source}: {result.processed} frames processed, a face in {result.with_face}, the "
             f"main face in {result.main_face_rows} CSV rows"]
    if result.unreadable:
        shown = ", ".join(str(i) for i in result.unreadable[:20])
        more = ", ..." if len(result.unreadable) > 20 else ""
        lines.append(f"{len(result.unreadable)} unreadable frames skipped (indices {shown}{more})")
    lines += [f"wrote {path}" for path in result.written]
    return "\n".join(lines)
