"""Evaluation metrics on constructed cases."""
from __future__ import annotations

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
