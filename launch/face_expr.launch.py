"""Launch face_expr_node, optionally a camera driver and RViz (docs/node.md, "Launch").

    ros2 launch face_expr_ros face_expr.launch.py                         # your camera's image_raw
    ros2 launch face_expr_ros face_expr.launch.py camera:=usb_cam use_rviz:=true
    ros2 launch face_expr_ros face_expr.launch.py camera:=realsense namespace:=head
    ros2 launch face_expr_ros face_expr.launch.py image:=/camera/image_raw \\
        camera_info:=/camera/camera_info params_file:=/path/my_face_expr.yaml

Arguments:
    image, camera_info: topics the node subscribes to (remappings of its ``image`` and
        ``camera_info``; with image_transport: compressed in the params file it reads
        ``<image>/compressed``). Default "": ``image_raw`` and ``camera_info`` in the namespace
        (what usb_cam and v4l2_camera publish), ``camera/color/image_raw`` and
        ``camera/color/camera_info`` with camera:=realsense.
    namespace: namespace of every node started here ("" = none).
    params_file: the node's parameters (default: the installed config/face_expr.yaml).
    camera: none | usb_cam | v4l2_camera | realsense: start that driver too (its ROS package
        must be installed: ros-$ROS_DISTRO-usb-cam, -v4l2-camera, -realsense2-camera).
    video_device: /dev/videoN for usb_cam and v4l2_camera.
    frame_id: optical frame of the camera started here (usb_cam, v4l2_camera) and RViz's
        fixed frame; realsense names its own: camera_color_optical_frame.
    use_rviz: start RViz with config/face_expr.rviz.
    rep155: true | false: the REP-155 (ROS4HRI) topics under /humans/faces (overrides the params
        file's ``rep155``; needs hri_msgs).

launch and launch_ros are imported inside generate_launch_description, so this file can be
imported (and checked by test/test_launch_config.py) where ROS 2's launch is not installed.
"""
import os

PACKAGE = "face_expr_ros"
EXECUTABLE = "face_expr_node"
PARAMS_FILE = os.path.join("config", "face_expr.yaml")
RVIZ_FILE = os.path.join("config", "face_expr.rviz")
CAMERAS = ("none", "usb_cam", "v4l2_camera", "realsense")


def generate_launch_description():
    from ament_index_python.packages import get_package_share_directory
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument
    from launch.conditions import IfCondition, LaunchConfigurationEquals
    from launch.substitutions import LaunchConfiguration, PythonExpression
    from launch_ros.actions import Node

    share = get_package_share_directory(PACKAGE)
    camera = LaunchConfiguration("camera")
    frame_id = LaunchConfiguration("frame_id")
    video_device = LaunchConfiguration("video_device")
    namespace = LaunchConfiguration("namespace")  # given to every Node ("" = none)

    def per_camera(name, default, realsense):
        """The argument's value, or by camera when empty."""
        return PythonExpression([
            "'", LaunchConfiguration(name), "' or ('", realsense, "' if '", camera,
            "' == 'realsense' else '", default, "')"])

    arguments = [
        DeclareLaunchArgument("image", default_value="",
                              description="Image topic (\"\": image_raw, or camera/color/image_raw "
                                          "with camera:=realsense)"),
        DeclareLaunchArgument("camera_info", default_value="",
                              description="CameraInfo topic (\"\": camera_info, or "
                                          "camera/color/camera_info with camera:=realsense)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="Namespace of the nodes started here"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, PARAMS_FILE),
                              description="Parameters of face_expr_node"),
        DeclareLaunchArgument("camera", default_value="none", choices=list(CAMERAS),
                              description="Camera driver to start as well"),
        DeclareLaunchArgument("video_device", default_value="/dev/video0",
                              description="Video device of usb_cam / v4l2_camera"),
        DeclareLaunchArgument("frame_id", default_value="camera_optical_frame",
                              description="Optical frame of usb_cam / v4l2_camera; RViz fixed frame"),
        DeclareLaunchArgument("use_rviz", default_value="false", choices=["true", "false"],
                              description="Start RViz with config/face_expr.rviz"),
        DeclareLaunchArgument("rep155", default_value="true", choices=["true", "false"],
                              description="Publish the REP-155 (ROS4HRI) topics under "
                                          "/humans/faces (needs hri_msgs)"),
    ]

    face_expr = Node(
        namespace=namespace, package=PACKAGE, executable=EXECUTABLE, name=EXECUTABLE, output="screen",
        parameters=[LaunchConfiguration("params_file"), {"rep155": LaunchConfiguration("rep155")}],
        remappings=[("image", per_camera("image", "image_raw", "camera/color/image_raw")),
                    ("camera_info", per_camera("camera_info", "camera_info",
                                               "camera/color/camera_info"))])

    cameras = [
        Node(condition=LaunchConfigurationEquals("camera", "usb_cam"),
             namespace=namespace, package="usb_cam", executable="usb_cam_node_exe", name="usb_cam",
             output="screen",
             parameters=[{"video_device": video_device, "frame_id": frame_id,
                          "image_width": 640, "image_height": 480}]),
        Node(condition=LaunchConfigurationEquals("camera", "v4l2_camera"),
             namespace=namespace, package="v4l2_camera", executable="v4l2_camera_node", name="v4l2_camera",
             output="screen",
             parameters=[{"video_device": video_device, "camera_frame_id": frame_id,
                          "image_size": [640, 480]}]),
        # topics <namespace>/camera/color/...; frame camera_color_optical_frame
        Node(condition=LaunchConfigurationEquals("camera", "realsense"),
             namespace=namespace, package="realsense2_camera", executable="realsense2_camera_node",
             name="camera",
             output="screen",
             parameters=[{"camera_name": "camera", "enable_color": True, "enable_depth": False,
                          "rgb_camera.color_profile": "640x480x30"}]),
    ]

    rviz = Node(condition=IfCondition(LaunchConfiguration("use_rviz")),
                namespace=namespace, package="rviz2", executable="rviz2", name="face_expr_rviz",
                output="screen",
                arguments=["-d", os.path.join(share, RVIZ_FILE), "-f", PythonExpression([
                    "'camera_color_optical_frame' if '", camera, "' == 'realsense' else '",
                    frame_id, "'"])])

    return LaunchDescription([*arguments, face_expr, *cameras, rviz])
