"""Open-loop camera-like runs through ROS for bench/latency.py (and bench/soak.py).

A camera does not wait for the node: frames go out at a fixed rate (30 fps) whether or not the
last one was answered. Each node under test (face_expr_node, bench/mediapipe_node.py and
bench/floor_node.py, which answers at once: the cost of DDS and rclpy alone) runs as a subprocess
pinned to the same CPUs; the bench publishes prebuilt frames of a slowly moving scene (the frame
shifted by up to ``SHIFT_PX`` pixels, a sine of period ``SHIFT_PERIOD`` frames) and records, per
frame, whether and when the answer (FaceExpressionArray with the frame's stamp) came back.

Reported per node: p50 and p95 of publish -> answer (answered frames), the share of frames
answered, and the CPU cores the node's process used (its user + system CPU time from /proc over
the wall time of the run).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

SHIFT_PX = 24
SHIFT_PERIOD = 90
JPEG_QUALITY = 90


@dataclass
class OpenLoopResult:
    """One open-loop run: latencies (ms) of the answered frames, counts, CPU cores used."""

    sent: int = 0
    latencies: list[float] = field(default_factory=list)
    cpu_cores: float = float("nan")
    faces: int = -1
    longest_gap_s: float = float("nan")

    @property
    def answered(self) -> float:
        return len(self.latencies) / self.sent if self.sent else float("nan")

    def p(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def moving_frames(rgb: np.ndarray, n: int = SHIFT_PERIOD) -> list[np.ndarray]:
    """``n`` frames of ``rgb`` shifted horizontally by ``SHIFT_PX sin(2 pi k / n)`` pixels."""
    return [np.roll(rgb, int(round(SHIFT_PX * np.sin(2 * np.pi * k / n))), axis=1)
            for k in range(n)]


def image_messages(frames: list[np.ndarray], compressed: bool) -> list:
    """Prebuilt sensor_msgs/Image (rgb8) or CompressedImage (JPEG) messages of ``frames``."""
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import Header

    from face_expr_ros.ros.demo import FRAME_ID
    from face_expr_ros.ros.convert import rgb_to_image

    header = Header(frame_id=FRAME_ID)
    if not compressed:
        return [rgb_to_image(f, header) for f in frames]
    out = []
    for f in frames:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        assert ok, "JPEG encoding failed"
        out.append(CompressedImage(header=Header(frame_id=FRAME_ID), format="jpeg",
                                   data=data.tobytes()))
    return out


class Publisher:
    """The client's image publisher for a transport: ``image`` or ``image/compressed``."""

    def __init__(self, client, compressed: bool):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage

        self.client = client
        self.pub = client.image_pub if not compressed else client.node.create_publisher(
            CompressedImage, "image/compressed",
            QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))

    def connected(self) -> bool:
        return self.pub.get_subscription_count() > 0 and self.client.sub.get_publisher_count() > 0


def run_open_loop(client, publisher: Publisher, messages: list, pid: int, seconds: float,
                  rate: float = 30.0, warmup_s: float = 2.0, linger_s: float = 1.0,
                  on_frame=None) -> OpenLoopResult:
    """Publish ``messages`` in a loop at ``rate`` Hz for ``warmup_s`` (not counted) then
    ``seconds``; ``on_frame(k, result)``, if given, is called after each measured frame."""
    from builtin_interfaces.msg import Time

    result = OpenLoopResult()
    sent_at: dict[int, float] = {}
    client.answers.clear()
    start = time.monotonic()
    measure_from = start + warmup_s
    cpu_start = wall_start = None
    k = 0
    while True:
        due = start + k / rate
        now = time.monotonic()
        if now < due:
            client.executor.spin_once(timeout_sec=min(due - now, 0.005))
            continue
        if due >= measure_from + seconds:
            break
        if cpu_start is None and due >= measure_from:
            cpu_start, wall_start = cpu_seconds(pid), time.monotonic()
            client.answers.clear()
        stamp = client.new_stamp()
        msg = messages[k % len(messages)]
        msg.header.stamp = Time(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000)
        publisher.pub.publish(msg)
        if cpu_start is not None:
            sent_at[stamp] = time.monotonic()
            if on_frame is not None:
                on_frame(k, result)
        k += 1
    end = time.monotonic() + linger_s
    while time.monotonic() < end:
        client.executor.spin_once(timeout_sec=0.01)
    result.cpu_cores = (cpu_seconds(pid) - cpu_start) / (time.monotonic() - wall_start - linger_s)
    result.sent = len(sent_at)
    answers = sorted((received, stamp) for stamp, (received, msg) in client.answers.items()
                     if stamp in sent_at)
    result.latencies = [(received - sent_at[stamp]) * 1e3 for received, stamp in answers]
    if answers:
        result.faces = len(client.answers[answers[-1][1]][1].faces)
        times = [wall_start] + [r for r, _ in answers]
        result.longest_gap_s = float(np.max(np.diff(times))) if len(times) > 1 else float("nan")
    client.answers.clear()
    return result
