"""Evaluation metrics on constructed cases."""
from __future__ import annotations

import json

import numpy as np
import pytest

from face_expr_ros.training.evaluate import auc
from face_expr_ros.training.metrics import nme_per_image


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
