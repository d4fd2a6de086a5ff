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
