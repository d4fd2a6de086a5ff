"""Image messages read from a bag -> RGB arrays, by message type name.

The messages are ``rosbags``' deserialised objects (the ROS messages' fields); decoding is
core.image_msgs, the node's own decoder, so a bag accepts and rejects exactly what the node does.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.image_msgs import ImageConversionError, compressed_to_rgb, image_to_rgb

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)


def message_to_rgb(msg: Any, msgtype: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an Image or CompressedImage message (``msgtype`` says which)."""
    if msgtype == IMAGE_TYPE:
        return image_to_rgb(msg)
    if msgtype == COMPRESSED_TYPE:
        return compressed_to_rgb(msg)
    raise ImageConversionError(f"{msgtype} is not an image message type ({', '.join(IMAGE_TYPES)})")
