"""Frames of an image topic in a rosbag2 bag (sqlite3 ``.db3`` or ``.mcap``), read with ``rosbags``.

No ROS installation is needed: ``rosbags`` reads the storage and deserialises the messages itself
(with the message definitions stored in the bag, else those of the latest ROS 2 release).

The topic: ``--topic`` if given; else the bag's only sensor_msgs/Image or CompressedImage topic.
Errors list the topics the bag has. A frame's time is its header stamp (the camera's time), or the
recording time when the stamp is zero, in seconds from the first frame. The frame rate used for
timecodes is estimated as (messages - 1) / the bag's duration.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

from ..core.image_msgs import ImageConversionError
from .frame_source import DEFAULT_FPS, Frame, FrameSource, FrameSourceError
from .image_msgs import IMAGE_TYPES, message_to_rgb


class BagFrames(FrameSource):
    """Frames of one image topic of a rosbag2 bag."""

    def __init__(self, path: Path, reader: Any, connection: Any, fps: float) -> None:
        super().__init__(path, f"{path.name}:{connection.topic}", fps, int(connection.msgcount))
        self.topic = connection.topic
        self._reader = reader
        self._connection = connection

    @classmethod
    def open(cls, path: Path, topic: str | None) -> "BagFrames":
        """Open the bag at ``path`` (its folder, or a .db3/.mcap file in it) and pick the topic.

        Raises:
            FrameSourceError: not a rosbag2 bag, unreadable, no such topic, no or several image
                topics without ``topic`` (the message lists the topics).
        """
        folder = bag_folder(path)
        try:
            from rosbags.highlevel import AnyReader, AnyReaderError
            from rosbags.typesys import Stores, get_typestore
        except ImportError as err:
            raise FrameSourceError(f"{path}: reading rosbag2 bags needs the rosbags package "
                                   f"({err}); pip install 'rosbags>=0.10' (the 'bag' extra)") from None
        reader = AnyReader([folder], default_typestore=get_typestore(Stores.LATEST))
        try:
            reader.open()
        except (AnyReaderError, OSError) as err:
            raise FrameSourceError(f"{path}: not a readable rosbag2 bag ({err})") from None
        try:
            connection = _pick_connection(folder, reader.connections, topic)
        except FrameSourceError:
            reader.close()
            raise
        return cls(folder, reader, connection, _estimate_fps(reader, connection))

    def frames(self, every: int = 1) -> Iterator[Frame]:
        """Decoded frames of the topic; a message that fails to decode is skipped and counted."""
        first_ns: int | None = None
        decoded = 0
        for index, (connection, log_ns, raw) in enumerate(
                self._reader.messages(connections=[self._connection])):
            if index % every:
                continue
            try:
                msg = self._reader.deserialize(raw, connection.msgtype)
            except Exception as err:  # noqa: BLE001 - corrupt bytes fail in many ways; one frame
                self._skip(index, f"cannot deserialise the {connection.msgtype} message "
                                  f"({type(err).__name__}: {err})")
                continue
            try:
                rgb = message_to_rgb(msg, connection.msgtype)
            except ImageConversionError as err:
                self._skip(index, f"{connection.msgtype}: {err}")
                continue
            stamp_ns = _stamp_ns(msg) or int(log_ns)
            first_ns = stamp_ns if first_ns is None else first_ns
            decoded += 1
            yield Frame(index, max(0.0, (stamp_ns - first_ns) / 1e9), rgb)  # stamps may step back
        if decoded == 0 and self.unreadable:
            raise FrameSourceError(f"{self.name}: none of its {len(self.unreadable)} image "
                                   "messages could be decoded")
        if decoded == 0:
            raise FrameSourceError(f"{self.name}: the topic has no messages")

    def close(self) -> None:
        self._reader.close()


def bag_folder(path: Path) -> Path:
    """The bag's folder (the one with metadata.yaml) for the folder itself or a file in it."""
    folder = path if path.is_dir() else path.parent
    if not (folder / "metadata.yaml").is_file():
        what = "folder" if path.is_dir() else f"{path.suffix} file's folder"
        raise FrameSourceError(
            f"{path}: not a rosbag2 bag (the {what} has no metadata.yaml; a bag is the folder "
            "`ros2 bag record` writes; `ros2 bag reindex` rebuilds a lost metadata.yaml)")
    return folder


def describe_topics(connections: Any) -> str:
    """``/a (sensor_msgs/msg/Image), /b (std_msgs/msg/String)``, or ``none``."""
    listed = sorted({(c.topic, c.msgtype) for c in connections})
    return ", ".join(f"{t} ({m})" for t, m in listed) or "none"


def _pick_connection(folder: Path, connections: Any, topic: str | None) -> Any:
    images = [c for c in connections if c.msgtype in IMAGE_TYPES]
    if topic is not None:
        named = [c for c in connections if c.topic == topic]
        if not named:
            raise FrameSourceError(f"{folder}: no topic {topic!r}; the bag has "
                                   f"{describe_topics(connections)}")
        chosen = [c for c in named if c.msgtype in IMAGE_TYPES]
        if not chosen:
            raise FrameSourceError(f"{folder}: topic {topic} is {named[0].msgtype}, not "
                                   f"{' or '.join(IMAGE_TYPES)}; image topics: "
                                   f"{describe_topics(images)}")
        return chosen[0]
    topics = sorted({c.topic for c in images})
    if not topics:
        raise FrameSourceError(f"{folder}: no sensor_msgs/Image or CompressedImage topic; the bag "
                               f"has {describe_topics(connections)}")
    if len(topics) > 1:
        raise FrameSourceError(f"{folder}: {len(topics)} image topics, choose one with --topic: "
                               f"{describe_topics(images)}")
    return next(c for c in images if c.topic == topics[0])


def _estimate_fps(reader: Any, connection: Any) -> float:
    count, duration_s = int(connection.msgcount), reader.duration / 1e9
    fps = (count - 1) / duration_s if count > 1 and duration_s > 0 else DEFAULT_FPS
    return round(fps, 3) if math.isfinite(fps) and fps > 0 else DEFAULT_FPS


def _stamp_ns(msg: Any) -> int:
    """The header stamp in nanoseconds (0 when the message has none or it is zero)."""
    stamp = getattr(getattr(msg, "header", None), "stamp", None)
    if stamp is None:
        return 0
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
