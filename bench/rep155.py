"""Cost of the REP-155 output per processed frame (in-process, real rclpy publishers).

    .venv/bin/python bench/rep155.py [--frames 300] [--faces 2]

Times ``ros.rep155.Rep155Output.publish`` for a 640x480 frame with N confirmed faces: without any
subscriber (roi, landmarks, facs, tracked only: the images are skipped), and with a subscriber on
every face's ``cropped`` and ``aligned`` (then both images are built and sent); and one
``get_subscription_count()`` call (what decides whether the images are built).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--faces", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from face_expr_ros.core.facemodel import load_face_model
    from face_expr_ros.core.reconstruct import Face
    from face_expr_ros.offline.examples import faces_frame
    from face_expr_ros.ros.rep155 import Rep155Output

    names = load_face_model().expression_names
    rgb = faces_frame(640, 480, args.faces)
    rng = np.random.default_rng(0)
    faces = []
    for i in range(args.faces):
        x0 = 40 + i * 300
        faces.append(Face(id=str(i + 1), box=np.array([x0, 100.0, x0 + 200, 300]), score=0.9,
                          names=names, coefficients=rng.uniform(0, 1, len(names)),
                          selected=np.array([0]), identity=np.zeros(3), rotation=np.eye(3),
                          translation=np.array([x0 + 100.0, 200]), scale=5.0,
                          landmarks=np.column_stack((rng.uniform(x0, x0 + 200, 68),
                                                     rng.uniform(100, 300, 68))), model=None))
    rclpy.init()
    node = rclpy.create_node("bench_rep155")
    out = Rep155Output(node)
    header = Header(frame_id="camera")
    out.publish(header, rgb, faces, [])  # creates the per-face publishers

    def per_frame_ms() -> float:
        start = time.perf_counter()
        for _ in range(args.frames):
            out.publish(header, rgb, faces, [])
        return (time.perf_counter() - start) * 1000.0 / args.frames

    bare = per_frame_ms()
    pub = out._faces["f1"].cropped
    start = time.perf_counter()
    for _ in range(10000):
        pub.get_subscription_count()
    count_us = (time.perf_counter() - start) * 1e6 / 10000
    subs = [node.create_subscription(Image, f"/humans/faces/f{i + 1}/{kind}", lambda m: None, 1)
            for i in range(args.faces) for kind in ("cropped", "aligned")]
    deadline = time.monotonic() + 10
    while any(s.get_publisher_count() == 0 for s in subs) and time.monotonic() < deadline:
        time.sleep(0.05)
    images = per_frame_ms()
    print(f"| faces | no image subscriber ms/frame | cropped + aligned subscribed ms/frame | "
          f"get_subscription_count us |\n|---|---|---|---|\n"
          f"| {args.faces} | {bare:.2f} | {images:.2f} | {count_us:.1f} |")
    out.close()
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
