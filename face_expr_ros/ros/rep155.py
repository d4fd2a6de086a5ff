"""REP-155 (ROS4HRI) output of face_expr_node: what HRI stacks (pyhri/libhri, hri_rviz,
hri_engagement, hri_emotion_recognizer, hri_face_identification...) read as face perception.

Published (docs/node.md, "REP-155 output"), every message with the image's header:

- ``/humans/faces/tracked`` (hri_msgs/IdsList): every processed frame, the ids that have topics;
- per face id, from the frame the tracker confirms it to the frame it drops it:
  ``/humans/faces/<id>/roi`` (NormalizedRegionOfInterest2D, c = detection score),
  ``/landmarks`` (FacialLandmarks: the 68 points normalised, the two pupils = eye-contour centres
  with c = 0, i.e. not measured), ``/facs`` (FacialActionUnits through :mod:`core.facs`),
  ``/cropped`` and ``/aligned`` (sensor_msgs/Image rgb8, ``humans.faces.width`` x ``height``,
  built only while someone subscribes) and ``/expression`` (Expression, only for weights with an
  emotion head: ``face.emotion`` not None).

The per-face publishers are created when a face id first appears and destroyed when the tracker
drops it, so thousands of faces over a robot's day leave no publishers behind.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from hri_msgs.msg import (Expression, FacialActionUnits, FacialLandmarks, IdsList,
                          NormalizedPointOfInterest2D, NormalizedRegionOfInterest2D)
from sensor_msgs.msg import Image

from ..core.emotions import EMOTIONS, valence_arousal
from ..core.face_crops import aligned_crop, eye_centres, padded_crop
from ..core.reduced_image import ReducedImage, image_size as full_image_size
from ..core.facs import action_units
from .convert import box_to_roi, rgb_to_image

TOPIC_PREFIX = "/humans/faces"
N_AUS = 99  # hri_msgs/FacialActionUnits: one slot per FACS code 0..98
N_LANDMARKS = 70  # hri_msgs/FacialLandmarks: the 68 iBUG points, then the two pupils
RIGHT_PUPIL, LEFT_PUPIL = FacialLandmarks.RIGHT_PUPIL, FacialLandmarks.LEFT_PUPIL
PUPIL_CONFIDENCE = 0.0  # the pupils are not estimated: their point is the eye contour's centre
DEFAULT_SIZE = 128  # REP-155's default /humans/faces/width and /height
SMALL_QOS_DEPTH = 5


# ---------------------------------------------------------------------------------------------
# Messages of one face (pure functions: the tests call them on constructed faces)
# ---------------------------------------------------------------------------------------------
def normalized_roi(header: Any, box: Sequence[float], image_size: tuple[int, int],
                   confidence: float) -> NormalizedRegionOfInterest2D:
    """The face's RegionOfInterest (:func:`convert.box_to_roi`, as in FaceExpression.roi) divided by
    the image's (width, height): edges in [0, 1], c = ``confidence``."""
    roi = box_to_roi(box, image_size)
    width, height = float(image_size[0]), float(image_size[1])
    return NormalizedRegionOfInterest2D(
        header=header, xmin=roi.x_offset / width, ymin=roi.y_offset / height,
        xmax=(roi.x_offset + roi.width) / width, ymax=(roi.y_offset + roi.height) / height,
        c=float(confidence))


def facial_landmarks(header: Any, landmarks68: np.ndarray, image_size: tuple[int, int],
                     confidence: float) -> FacialLandmarks:
    """68 iBUG landmarks (pixels) normalised by the image size and clipped to [0, 1] (the message's
    range), c = ``confidence``; the pupils (68, 69) are the eye contours' centres with c = 0."""
    width, height = float(image_size[0]), float(image_size[1])
    points = np.asarray(landmarks68, np.float64).reshape(68, 2)
    right, left = eye_centres(points)
    xy = np.vstack((points, right, left)) / np.array([width, height])
    xy = np.clip(xy, 0.0, 1.0)
    c = np.full(N_LANDMARKS, float(confidence))
    c[[RIGHT_PUPIL, LEFT_PUPIL]] = PUPIL_CONFIDENCE
    msg = FacialLandmarks(header=header, height=int(image_size[1]), width=int(image_size[0]))
    msg.landmarks = [NormalizedPointOfInterest2D(x=float(x), y=float(y), c=float(ci))
                     for (x, y), ci in zip(xy, c)]
    return msg


def facial_action_units(header: Any, names: Sequence[str], coefficients: np.ndarray,
                        confidence: float) -> FacialActionUnits:
    """intensity[code] from :func:`core.facs.action_units`, confidence[code] = ``confidence`` for
    the estimated units; every other code 0 with confidence 0 (not estimated)."""
    codes, values = action_units(names, coefficients)
    intensity = np.zeros(N_AUS, np.float32)
    certainty = np.zeros(N_AUS, np.float32)
    intensity[codes] = values
    certainty[codes] = float(confidence)
    msg = FacialActionUnits(header=header)
    msg.intensity = intensity.tolist()
    msg.confidence = certainty.tolist()
    return msg


def expression(header: Any, emotion: np.ndarray | None) -> Expression | None:
    """The most probable of :data:`core.emotions.EMOTIONS` (hri_msgs/Expression's words) with its
    probability as confidence; valence and arousal from :func:`core.emotions.valence_arousal` (the
    categories' circumplex positions weighted by their probabilities). None without an emotion."""
    if emotion is None:
        return None
    p = np.asarray(emotion, np.float64).reshape(-1)
    if p.shape != (len(EMOTIONS),) or not np.all(np.isfinite(p)):
        raise ValueError(f"emotion must be {len(EMOTIONS)} finite probabilities, got {p}")
    best = int(np.argmax(p))
    valence, arousal = valence_arousal(p)
    return Expression(header=header, expression=EMOTIONS[best], valence=valence, arousal=arousal,
                      confidence=float(np.clip(p[best], 0.0, 1.0)))


# ---------------------------------------------------------------------------------------------
# Publishers
# ---------------------------------------------------------------------------------------------
class _FaceTopics:
    """The publishers of one face id, under ``/humans/faces/<id>/``."""

    def __init__(self, node: Any, face_id: str) -> None:
        ns = f"{TOPIC_PREFIX}/{face_id}"
        self.roi = node.create_publisher(NormalizedRegionOfInterest2D, f"{ns}/roi", SMALL_QOS_DEPTH)
        self.landmarks = node.create_publisher(FacialLandmarks, f"{ns}/landmarks", SMALL_QOS_DEPTH)
        self.facs = node.create_publisher(FacialActionUnits, f"{ns}/facs", SMALL_QOS_DEPTH)
        self.expression = node.create_publisher(Expression, f"{ns}/expression", SMALL_QOS_DEPTH)
        self.cropped = node.create_publisher(Image, f"{ns}/cropped", 1)
        self.aligned = node.create_publisher(Image, f"{ns}/aligned", 1)

    def all(self) -> tuple[Any, ...]:
        return (self.roi, self.landmarks, self.facs, self.expression, self.cropped, self.aligned)

    def wants_images(self) -> bool:
        return self.cropped.get_subscription_count() > 0 or self.aligned.get_subscription_count() > 0

    def publish(self, header: Any, rgb: np.ndarray | ReducedImage, face: Any,
                size: tuple[int, int]) -> None:
        full_size = full_image_size(rgb)
        self.roi.publish(normalized_roi(header, face.box, full_size, face.score))
        self.landmarks.publish(facial_landmarks(header, face.landmarks, full_size, face.score))
        self.facs.publish(facial_action_units(header, face.names, face.coefficients, face.score))
        emotion = expression(header, face.emotion)
        if emotion is not None:
            self.expression.publish(emotion)
        # the images cost a warp each: only for subscribers (a cheap count of matched readers)
        want_cropped = self.cropped.get_subscription_count() > 0
        want_aligned = self.aligned.get_subscription_count() > 0
        if want_cropped or want_aligned:
            roi = box_to_roi(face.box, full_size)
            region = (roi.x_offset, roi.y_offset, roi.width, roi.height)
            if want_cropped:
                self.cropped.publish(rgb_to_image(padded_crop(rgb, region, size)[0], header))
            if want_aligned:
                image = aligned_crop(rgb, region, face.landmarks, size)[0]
                self.aligned.publish(rgb_to_image(image, header))


class Rep155Output:
    """The REP-155 topics of one node: ``/humans/faces/tracked`` and the per-face topics.

    Args:
        node: the rclpy node that owns the publishers.
    """

    def __init__(self, node: Any) -> None:
        self._node = node
        self._tracked = node.create_publisher(IdsList, f"{TOPIC_PREFIX}/tracked", SMALL_QOS_DEPTH)
        self._faces: dict[str, _FaceTopics] = {}

    @property
    def face_ids(self) -> list[str]:
        """The ids that have topics now (in the order they appeared)."""
        return list(self._faces)

    def wants_images(self) -> bool:
        """Does any face's ``cropped`` or ``aligned`` topic have a subscriber?"""
        return any(topics.wants_images() for topics in self._faces.values())

    def publish(self, header: Any, rgb: np.ndarray | ReducedImage, faces: Sequence[Any],
                dropped_ids: Sequence[str], size: tuple[int, int] = (DEFAULT_SIZE, DEFAULT_SIZE)
                ) -> None:
        """One processed frame: drop the tracker's dropped ids, publish every confirmed face
        (non-empty ``face.id``), then the tracked list.

        Args:
            header: the image's header.
            rgb: (H, W, 3) uint8 the image the faces come from (or a
                core.reduced_image.ReducedImage of it).
            faces: core Faces (their ``id`` is the tracker's, a valid REP-155 id:
                core.tracking.ID_PREFIX).
            dropped_ids: the tracker's ids dropped at this frame.
            size: (width, height) of ``cropped`` and ``aligned``.
        """
        for track_id in dropped_ids:
            self._remove(track_id)
        for face in faces:
            if not face.id:
                continue  # not confirmed yet: no topics (REP-155 ids are for tracked faces)
            topics = self._faces.get(face.id)
            if topics is None:
                topics = self._faces[face.id] = _FaceTopics(self._node, face.id)
            topics.publish(header, rgb, face, size)
        self._tracked.publish(IdsList(header=header, ids=list(self._faces)))

    def clear(self, header: Any | None = None) -> None:
        """Destroy every face's topics and publish an empty tracked list (deactivate)."""
        for face_id in list(self._faces):
            self._remove(face_id)
        msg = IdsList(ids=[])
        if header is not None:
            msg.header = header
        else:
            msg.header.stamp = self._node.get_clock().now().to_msg()
        self._tracked.publish(msg)

    def close(self) -> None:
        """:meth:`clear`, then destroy the tracked list's publisher."""
        self.clear()
        self._node.destroy_publisher(self._tracked)

    def _remove(self, face_id: str) -> None:
        topics = self._faces.pop(face_id, None)
        if topics is not None:
            for pub in topics.all():
                self._node.destroy_publisher(pub)
