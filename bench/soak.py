"""Soak: face_expr_node for minutes at 30 fps with faces entering, moving and leaving.

    .venv/bin/python bench/soak.py                 # 10 minutes (--minutes M)

The node (its defaults: tracking mode) runs as a subprocess pinned to CPUs 0,1 (OMP_NUM_THREADS 2,
OMP_WAIT_POLICY PASSIVE, as bench/latency.py's); the bench publishes 640x480 rgb8 frames at 30 fps,
open loop, of ``offline.synthetic.entering_faces_frame`` (two astronaut heads crossing the frame
in opposite directions every 20 s, then 4 s without a face). Reported:

- the node's RSS (VmRSS) after the first minute and at the end, and its growth;
- publish -> answer latency p50 / p95 in the first and in the last minute, share answered;
- the longest time without an answer (a stall; the node answers every processed frame, also
  frames without a face);
- the node's /diagnostics counters at the end against the bench's counts: every frame sent and
  not answered must be a ``dropped_frames`` (or never received: ``frames_received`` < sent).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from face_expr_ros.ros.demo import Client, NodeProcess, ros_environment, wait_connected  # noqa: E402
from face_expr_ros.offline.synthetic import entering_faces_frame  # noqa: E402

RATE = 30.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def diagnostics_values(messages: list) -> dict[str, str]:
    """The key -> value of the newest face_expr status in the received DiagnosticArrays."""
    for array in reversed(messages):
        for status in array.status:
            if "face expression pipeline" in status.name:
                return {kv.key: kv.value for kv in status.values}
    return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--cpus", default="0,1")
    args = parser.parse_args(argv)
    from builtin_interfaces.msg import Time
    from diagnostic_msgs.msg import DiagnosticArray

    from face_expr_ros.ros.convert import rgb_to_image

    domain = ros_environment()
    print(f"bench/soak.py: {args.minutes:g} min at {RATE:g} fps, 640x480; ROS_DOMAIN_ID={domain}; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    threads = str(len(args.cpus.split(",")))
    node = NodeProcess("face_expr_ros.ros.node", "/soak", {}, ["taskset", "-c", args.cpus],
                       {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
                        "OMP_WAIT_POLICY": "PASSIVE"}, name="face_expr_node[soak]")
    client = Client("/soak", name="bench_soak")
    diagnostics: list = []
    client.node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    try:
        wait_connected(client, [node], 120.0)
        _, info = client.make_messages(entering_faces_frame(0.0), client.new_stamp())
        sent: dict[int, float] = {}
        answered: dict[int, float] = {}
        rss: list[tuple[float, float]] = []
        start = time.monotonic()
        duration = args.minutes * 60.0
        k = 0
        next_rss = start
        while True:
            due = start + k / RATE
            now = time.monotonic()
            if now < due:
                client.executor.spin_once(timeout_sec=min(due - now, 0.005))
                for stamp, (received, _) in list(client.answers.items()):
                    answered[stamp] = received
                client.answers.clear()
                continue
            if due - start >= duration:
                break
            if now >= next_rss:
                rss.append((now - start, rss_mb(node.process.pid)))
                next_rss += 10.0
            stamp = client.new_stamp()
            header_stamp = Time(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000)
            image = rgb_to_image(entering_faces_frame(k / RATE), info.header)
            image.header.stamp = info.header.stamp = header_stamp
            client.info_pub.publish(info)
            client.image_pub.publish(image)
            sent[stamp] = time.monotonic()
            k += 1
            client.executor.spin_once(timeout_sec=0.0)  # answers also when behind schedule
        linger = time.monotonic() + 2.5  # the last answers and a diagnostics message
        while time.monotonic() < linger:
            client.executor.spin_once(timeout_sec=0.01)
        for stamp, (received, _) in client.answers.items():
            answered[stamp] = received
        rss.append((time.monotonic() - start, rss_mb(node.process.pid)))
        report(sent, answered, rss, diagnostics_values(diagnostics), start)
    finally:
        client.close()
        node.stop()
    print(f"load average now {os.getloadavg()[0]:.1f}")
    return 0


def report(sent: dict[int, float], answered: dict[int, float], rss: list[tuple[float, float]],
           diag: dict[str, str], start: float) -> None:
    stamps = sorted(sent)
    latency = {s: (answered[s] - sent[s]) * 1e3 for s in stamps if s in answered}
    first = [latency[s] for s in stamps if s in latency and sent[s] - start < 60.0]
    end_t = sent[stamps[-1]] - start
    last = [latency[s] for s in stamps if s in latency and sent[s] - start >= end_t - 60.0]
    times = sorted(answered[s] for s in stamps if s in answered)
    longest_gap = float(np.max(np.diff([start] + times))) if times else float("nan")
    after_minute = next((mb for t, mb in rss if t >= 60.0), rss[0][1])

    def pct(values: list[float], q: float) -> str:
        return f"{np.percentile(values, q):.1f}" if values else "n/a"

    unanswered = len(stamps) - len(latency)
    print("\n| measure | value |\n|---|---|")
    rows = [
        ("frames sent / answered", f"{len(stamps)} / {len(latency)} "
                                   f"({100 * len(latency) / len(stamps):.1f} %)"),
        ("latency p50 / p95, first minute (ms)", f"{pct(first, 50)} / {pct(first, 95)}"),
        ("latency p50 / p95, last minute (ms)", f"{pct(last, 50)} / {pct(last, 95)}"),
        ("longest time without an answer (s)", f"{longest_gap:.2f}"),
        ("node RSS after 1 min / at the end (MB)", f"{after_minute:.0f} / {rss[-1][1]:.0f} "
                                                   f"(growth {rss[-1][1] - after_minute:+.1f})"),
        ("diagnostics frames_received / processed / dropped_frames",
         f"{diag.get('frames_received', '?')} / {diag.get('frames_processed', '?')} / "
         f"{diag.get('dropped_frames', '?')}"),
        ("diagnostics bad_messages / processing_errors",
         f"{diag.get('bad_messages', '?')} / {diag.get('processing_errors', '?')}"),
        ("unanswered frames (bench) vs dropped + never received (diagnostics)",
         f"{unanswered} vs {_accounted(diag, len(stamps))}"),
    ]
    for name, value in rows:
        print(f"| {name} | {value} |")


def _accounted(diag: dict[str, str], sent: int) -> str:
    try:
        received, dropped = int(diag["frames_received"]), int(diag["dropped_frames"])
        errors = int(diag["bad_messages"]) + int(diag["processing_errors"])
    except (KeyError, ValueError):
        return "n/a (no diagnostics received)"
    return f"{dropped + errors} + {sent - received}"


if __name__ == "__main__":
    sys.exit(main())
