"""face_expr_ros: facial expression capture for ROS 2 robots.

`face_expr_ros.core` is ROS-free (face model, camera, contour landmarks, synthesis, rendering);
`face_expr_ros.ros.node` is the ROS 2 node on top of it.
"""

__version__ = "0.1.0"
