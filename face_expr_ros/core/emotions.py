"""The 7 emotion categories of the network's emotion head, in output order.

The words are hri_msgs/Expression's constants (REP-155), so the node publishes them as they are;
:data:`LABEL_TO_EMOTION` maps the data sets' label nouns (``training.datasets.EMOTION_NAMES``) onto
them. "contempt" (a few LFW labels) has no REP-155 word and no class here: such faces carry no
emotion label.
"""
from __future__ import annotations

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "surprised", "disgusted", "scared")

LABEL_TO_EMOTION: dict[str, str] = {
    "neutral": "neutral", "happiness": "happy", "sadness": "sad", "anger": "angry",
    "surprise": "surprised", "disgust": "disgusted", "fear": "scared",
}


def emotion_index(label: str | None) -> int:
    """Index into :data:`EMOTIONS` of a data set's label noun; -1 for none or an unmapped one."""
    if label is None or label not in LABEL_TO_EMOTION:
        return -1
    return EMOTIONS.index(LABEL_TO_EMOTION[label])


# Valence and arousal of each category: approximate positions on Russell's circumplex of affect
# (J. A. Russell, "A circumplex model of affect", 1980), a convention, not a measurement of this
# network. hri_msgs/Expression carries both in [-1, 1]; :func:`valence_arousal` takes their
# probability-weighted mean.
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0), "happy": (0.8, 0.5), "sad": (-0.7, -0.4), "angry": (-0.6, 0.7),
    "surprised": (0.2, 0.8), "disgusted": (-0.7, 0.3), "scared": (-0.6, 0.8),
}


def valence_arousal(probabilities) -> tuple[float, float]:
    """(valence, arousal) in [-1, 1]: the :data:`CIRCUMPLEX` positions weighted by ``probabilities``
    ((7,) over :data:`EMOTIONS`, normalised here)."""
    import numpy as np

    p = np.clip(np.asarray(probabilities, np.float64).reshape(len(EMOTIONS)), 0.0, None)
    total = p.sum()
    if not total > 0:
        return 0.0, 0.0
    va = (p / total) @ np.array([CIRCUMPLEX[e] for e in EMOTIONS])
    return float(va[0]), float(va[1])
