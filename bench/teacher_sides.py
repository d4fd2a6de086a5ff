"""Which side do the teacher's ``...Left`` blendshapes describe? Measured on the teacher cache.

    .venv/bin/python bench/teacher_sides.py [CACHE]     (default ~/.cache/face_expr_ros/teacher)

ARKit's ``eyeBlinkLeft`` is the subject's left eye. For every annotated face with blendshape scores,
the asymmetry of the scores (Left - Right) is correlated with the asymmetry the same face's 68
landmarks show on the subject's left minus right side (iBUG 42-47 / 54 are the subject's left eye /
mouth corner): eye closure = 1 - eye aspect ratio, smile = mouth-corner height. A positive
correlation means "Left" = the subject's left (training.teacher.MEDIAPIPE_SIDES_MIRRORED = False).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from face_expr_ros.training.datasets import load_teacher_cache  # noqa: E402
from face_expr_ros.training.metrics import interocular_np  # noqa: E402

SUBJECT_RIGHT_EYE, SUBJECT_LEFT_EYE = list(range(36, 42)), list(range(42, 48))


def eye_aspect_ratio(points: np.ndarray) -> float:
    p = points
    return float((np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4]))
                 / (2 * np.linalg.norm(p[0] - p[3])))


def asymmetries(record: dict) -> tuple[float, float, float, float] | None:
    scores, points = record.get("blendshapes"), record.get("landmarks68")
    if not scores or not points:
        return None
    pts = np.asarray(points, np.float64)
    size = float(interocular_np(pts))  # outer eye corners 36-45
    if size < 10:
        return None
    blink = scores["eyeBlinkLeft"] - scores["eyeBlinkRight"]
    closure = (1 - eye_aspect_ratio(pts[SUBJECT_LEFT_EYE])) - (1 - eye_aspect_ratio(pts[SUBJECT_RIGHT_EYE]))
    smile = scores["mouthSmileLeft"] - scores["mouthSmileRight"]
    mouth_centre = (pts[51, 1] + pts[57, 1]) / 2
    lift = ((mouth_centre - pts[54, 1]) - (mouth_centre - pts[48, 1])) / size  # y down: up = +
    return blink, closure, smile, lift


def main() -> None:
    cache = Path(sys.argv[1] if len(sys.argv) > 1 else "~/.cache/face_expr_ros/teacher").expanduser()
    rows = [a for r in load_teacher_cache(cache).values()
            if r.get("status") == "ok" and r.get("teacher") == "mediapipe" and (a := asymmetries(r))]
    data = np.array(rows)
    print(f"{len(data)} faces with blendshapes and landmarks in {cache}")
    print("| teacher asymmetry (Left - Right) | landmark asymmetry (subject's left - right) | correlation |")
    print("|---|---|---|")
    print(f"| eyeBlink | eye closure (1 - aspect ratio) | {np.corrcoef(data[:, 0], data[:, 1])[0, 1]:+.3f} |")
    print(f"| mouthSmile | mouth-corner lift | {np.corrcoef(data[:, 2], data[:, 3])[0, 1]:+.3f} |")


if __name__ == "__main__":
    main()
