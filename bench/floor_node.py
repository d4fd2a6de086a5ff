"""The floor of bench/latency.py's open-loop table: a node that answers every frame at once.

    python bench/floor_node.py --ros-args -r __ns:=/floor [-p image_transport:=compressed]

Subscribes to ``image`` (sensor_msgs/Image) or ``image/compressed`` (sensor_msgs/CompressedImage),
RELIABLE, keep last 1, as face_expr_node does, and publishes an empty
face_expr_msgs/FaceExpressionArray with the image's header from the subscription callback, without
decoding the frame: its latency is the cost of moving a frame through DDS and rclpy.
"""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image

    from face_expr_msgs.msg import FaceExpressionArray

    rclpy.init(args=sys.argv if argv is None else argv)
    node = rclpy.create_node("floor_node")
    compressed = node.declare_parameter("image_transport", "raw").value == "compressed"
    pub = node.create_publisher(FaceExpressionArray, "faces/expression", 10)

    def answer(msg) -> None:
        pub.publish(FaceExpressionArray(header=msg.header))

    node.create_subscription(CompressedImage if compressed else Image,
                             "image/compressed" if compressed else "image", answer,
                             QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
