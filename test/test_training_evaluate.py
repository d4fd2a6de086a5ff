"""Evaluation metrics on constructed cases."""
from __future__ import annotations

import json

import numpy as np
import pytest

from face_expr_ros.training.evaluate import auc
from face_expr_ros.training.metrics import REGIONS, nme_per_image, nme_regions


def test_auc_separated_reversed_tied_and_empty():
    assert auc([0.9, 0.8], [0.1, 0.2, 0.3]) == 1.0
    assert auc([0.1], [0.5, 0.6]) == 0.0
    assert auc([0.5, 0.5], [0.5]) == 0.5
    assert auc([0.2, 0.6], [0.4]) == 0.5
    with pytest.raises(ValueError):
        auc([], [0.1])


def test_nme_is_point_error_over_outer_interocular():
    truth = np.zeros((68, 2))
    truth[45] = [40.0, 0.0]  # outer eye corners 36 and 45, 40 px apart
    all68, inner = nme_per_image(truth + [0.0, 4.0], truth)
    assert all68 == pytest.approx(0.1) and inner == pytest.approx(0.1)
    jaw_only = truth.copy()
    jaw_only[:17] += [8.0, 0.0]
    all68, inner = nme_per_image(jaw_only, truth)
    assert inner == 0 and all68 == pytest.approx(17 * 0.2 / 68)
    regions = nme_regions(jaw_only, truth)
    assert regions["jaw"] == pytest.approx(0.2)  # 8 px / 40 px on every jaw point, nothing else
    assert all(regions[k] == 0 for k in ("brows", "nose", "eyes", "mouth"))
    mouth = truth.copy()
    mouth[48:] += [0.0, 2.0]
    assert nme_regions(mouth, truth)["mouth"] == pytest.approx(0.05)
    assert sum(REGIONS[k].stop - REGIONS[k].start for k in REGIONS) == 68


def test_blendshape_agreement_against_a_known_teacher(data_root, face_model, tmp_path):
    """Constant teacher scores: the reported mean |diff| is the one computed here by hand."""
    from face_expr_ros.core.arkit import ARKIT_NAMES, to_arkit
    from face_expr_ros.core.reconstruct import Reconstructor
    from face_expr_ros.training.datasets import (build_index, load_image_rgb, load_teacher_cache,
                                                 set_folder, split_of)
    from face_expr_ros.training.evaluate import blendshape_agreement, faces_of

    helen = set_folder("helen_train", data_root)
    val = [e for e in build_index("helen_train", data_root) if split_of(e) == "val"][:3]
    scores = {n: 0.5 for n in ARKIT_NAMES if n != "tongueOut"}
    records = [{"set": "helen_train", "image": e.path.relative_to(helen).as_posix(), "status": "ok",
                "teacher": "mediapipe", "landmarks68": e.landmarks.tolist(), "blendshapes": scores}
               for e in val]
    (tmp_path / "annotations.jsonl").write_text("\n".join(map(json.dumps, records)) + "\n")
    cache = load_teacher_cache(tmp_path)
    rec = Reconstructor(face_model=face_model, device="cpu", max_faces=1)
    result = blendshape_agreement(rec, "helen_train", cache, data_root, limit=3)
    ours = np.array([to_arkit(f.names, f.coefficients) for e in val
                     for f in faces_of(rec, load_image_rgb(e.path))[:1]])
    known = [i for i, n in enumerate(ARKIT_NAMES) if n != "tongueOut"]
    assert result["faces"] == len(ours) == 3
    assert result["mae"] == pytest.approx(np.abs(ours[:, known] - 0.5).mean())


def test_evaluate_landmarks_counts_no_face_as_one_and_leaves_out_unreadable(tmp_path, monkeypatch,
                                                                            caplog):
    """One iterator serves all evaluations: (entry, face or None), unreadable files logged."""
    import types

    import cv2

    from face_expr_ros.training import datasets
    from face_expr_ros.training.evaluate import evaluate_landmarks, largest_faces

    truth = np.zeros((68, 2))
    truth[:, 0] = np.arange(68)
    truth[45] = truth[36] + [40.0, 0.0]
    cv2.imwrite(str(tmp_path / "face.png"), np.full((100, 100, 3), 200, np.uint8))
    cv2.imwrite(str(tmp_path / "blank.png"), np.zeros((100, 100, 3), np.uint8))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    entries = [datasets.IndexEntry(tmp_path / name, truth, {}, "human", "s")
               for name in ("face.png", "broken.png", "blank.png")]

    class Stub:  # finds a face, 4 px below the truth, in bright images only
        def detect(self, image):
            return [object()] if image.mean() > 100 else []

        def reconstruct_boxes(self, image, detections):
            return [types.SimpleNamespace(landmarks=truth + [0.0, 4.0])] if detections else []

    found = [(e.path.name, face is not None) for e, face in largest_faces(Stub(), entries)]
    assert found == [("face.png", True), ("blank.png", False)]
    assert any("broken.png" in r.getMessage() for r in caplog.records)
    assert [e.path.name for e, _ in largest_faces(Stub(), entries, limit=1)] == ["face.png"]
    monkeypatch.setattr(datasets, "build_index", lambda set_name, root=None: entries)
    monkeypatch.setattr(datasets, "split_of", lambda entry, *args: "val")
    result = evaluate_landmarks(Stub(), ["s"])["s"]
    assert result["faces"] == 2
    assert result["nme68"] == pytest.approx((0.1 + 1.0) / 2)
    assert result["nme51"] == pytest.approx((0.1 + 1.0) / 2)
    assert result["failure_rate"] == 0.5


def test_probe_accuracy_separable_random_and_grouped():
    from face_expr_ros.training.compare import probe_accuracy

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(7), 30)
    centres = rng.normal(size=(7, 10)) * 4
    separable = centres[labels] + rng.normal(size=(len(labels), 10))
    assert probe_accuracy(separable, labels) > 0.95
    noise = rng.normal(size=(len(labels), 10))
    assert probe_accuracy(noise, labels) < 0.35  # chance is 1/7
    # one feature that identifies the subject, who always shows the same emotion: a leak that
    # ungrouped folds reward and subject-grouped folds do not
    subjects = np.arange(len(labels)) % 70
    labels_by_subject = subjects % 7
    leak = np.column_stack([subjects, rng.normal(size=len(labels))]).astype(float)
    from sklearn.preprocessing import OneHotEncoder

    onehot = OneHotEncoder(sparse_output=False).fit_transform(subjects[:, None])
    features = np.hstack([onehot, leak[:, 1:]])
    ungrouped = probe_accuracy(features, labels_by_subject)
    grouped = probe_accuracy(features, labels_by_subject, groups=subjects)
    assert ungrouped > 0.9 and grouped < 0.35
    constant = np.hstack([separable, np.ones((len(labels), 1))])  # a constant column is dropped
    assert probe_accuracy(constant, labels) > 0.95


def test_pose_agreement_slope_and_mean_difference():
    from face_expr_ros.training.compare import pose_agreement

    rng = np.random.default_rng(1)
    teacher = rng.uniform(-40, 40, size=(200, 3))
    compressed = teacher * np.array([0.5, 1.0, 1.0]) + np.array([0.0, 3.0, 0.0])
    out = pose_agreement(compressed, teacher)
    assert out["faces"] == 200
    assert abs(out["yaw"]["slope"] - 0.5) < 1e-9 and abs(out["pitch"]["slope"] - 1.0) < 1e-9
    np.testing.assert_allclose(out["yaw"]["mad"], np.abs(0.5 * teacher[:, 0]).mean())
    np.testing.assert_allclose(out["pitch"]["mad"], 3.0)
    assert out["roll"]["mad"] == 0 and abs(out["roll"]["slope"] - 1) < 1e-9
    assert np.isnan(pose_agreement(np.zeros((1, 3)), np.zeros((1, 3)))["yaw"]["slope"])


def test_blendshape_stats_and_nme_summary():
    from face_expr_ros.training.compare import blendshape_stats, nme_summary

    rng = np.random.default_rng(2)
    teacher = rng.uniform(0, 1, size=(50, 52))
    teacher[:, 51] = np.nan  # tongueOut: no teacher score
    same = np.nan_to_num(teacher)
    out = blendshape_stats(same, teacher)
    assert out["mae"] == 0 and abs(out["mean_correlation"] - 1) < 1e-12
    shuffled = blendshape_stats(same[::-1], teacher)
    assert shuffled["mae"] > 0.2 and abs(shuffled["mean_correlation"]) < 0.3
    summary = nme_summary([0.05, 0.2, 1.0], [0.04, 0.1, 1.0])
    assert summary["faces"] == 3 and abs(summary["failure_rate"] - 2 / 3) < 1e-12
    assert abs(summary["nme68"] - 1.25 / 3) < 1e-12 and summary["nme68_median"] == 0.2
    assert nme_summary([], []) == {"faces": 0}
    with_regions = nme_summary([0.05, 0.2], [0.04, 0.1], {"jaw": [0.1, 0.3]})
    assert with_regions["nme_jaw"] == pytest.approx(0.2)


def test_paired_nme_is_not_decided_by_one_face():
    """One teacher face on another person (NME 1.37) makes the teacher's mean the worse one while
    the teacher is closer on every other face: the paired rows say so."""
    from face_expr_ros.training.compare import paired_nme

    teacher = np.full(10, 0.03)
    teacher[0] = 1.37
    ours = np.full(10, 0.05)
    assert ours.mean() < teacher.mean()
    out = paired_nme(ours, teacher)
    assert out["faces"] == 10 and out["closer"] == pytest.approx(0.1)
    assert out["median_difference"] == pytest.approx(0.02)
    better = paired_nme(teacher[1:] - 0.01, teacher[1:])
    assert better["closer"] == 1.0 and better["median_difference"] == pytest.approx(-0.01)
    assert paired_nme([], []) == {"faces": 0}
    with pytest.raises(ValueError, match="same faces"):
        paired_nme(ours, teacher[:5])


def test_format_comparison_has_one_column_per_network_and_the_teacher():
    from face_expr_ros.training.compare import format_comparison, table_rows

    column = {"landmarks": {"helen_train": {"nme68": 0.05, "nme51": 0.04}},
              "smile_auc_lfw": {"auc": 0.9}, "pose": {"yaw": {"slope": 0.95}, "faces": 10}}
    text = format_comparison({"a.safetensors": column, "teacher": {"smile_auc_lfw": {"auc": 0.8}}})
    lines = text.splitlines()
    assert lines[0] == "| what | a.safetensors | teacher |"
    assert len(lines) == 2 + len(table_rows())
    assert "| helen_train nme68 | 0.0500 | - |" in lines
    assert "| smile AUC (lfw, happiness vs neutral) | 0.900 | 0.800 |" in lines
    assert "| yaw: slope ours vs teacher | 0.950 | - |" in lines
    column["paired"] = {"helen_train": {"closer": 0.25, "median_difference": 0.011}}
    lines = format_comparison({"a": column, "teacher": {}}).splitlines()
    assert "|   helen_train: median per-face NME68, ours - teacher | +0.0110 | - |" in lines
    assert "|   helen_train: share of faces closer than the teacher (NME68) | 0.250 | - |" in lines
