"""Message conversions (ros_convert): images, faces, transforms, markers, mesh decimation."""
from __future__ import annotations

import array

import cv2
import numpy as np
import pytest

from face_expr_ros.core import camera as cam

RNG = np.random.default_rng(11)


@pytest.fixture(scope="module")
def rc(ros_env):
    """The ros_convert module (needs the ROS messages: ros_env skips or fails without them)."""
    from face_expr_ros.ros import convert as ros_convert

    return ros_convert


@pytest.fixture
def header(rc):
    from std_msgs.msg import Header

    h = Header(frame_id="camera_color_optical_frame")
    h.stamp.sec, h.stamp.nanosec = 1234, 5678
    return h


def make_image(pixels: np.ndarray, encoding: str, pad: int = 0):
    """An Image of (H, W, C) or (H, W) uint8 ``pixels`` with ``pad`` bytes of padding per row."""
    from sensor_msgs.msg import Image

    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1)
    padded = np.concatenate([rows, np.full((h, pad), 77, np.uint8)], axis=1)
    msg = Image(height=h, width=w, encoding=encoding, step=rows.shape[1] + pad)
    msg.data = array.array("B", padded.tobytes())
    return msg


RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
ALPHA = RNG.integers(0, 256, (5, 7, 1), dtype=np.uint8)
GREY = RNG.integers(0, 256, (5, 7), dtype=np.uint8)


@pytest.mark.parametrize("encoding, pixels, expected", [
    ("rgb8", RGB, RGB),
    ("bgr8", RGB[:, :, ::-1], RGB),
    ("8UC3", RGB[:, :, ::-1], RGB),
    ("rgba8", np.concatenate([RGB, ALPHA], axis=2), RGB),
    ("bgra8", np.concatenate([RGB[:, :, ::-1], ALPHA], axis=2), RGB),
    ("8UC4", np.concatenate([RGB[:, :, ::-1], ALPHA], axis=2), RGB),
    ("mono8", GREY, np.repeat(GREY[:, :, None], 3, axis=2)),
    ("8UC1", GREY, np.repeat(GREY[:, :, None], 3, axis=2)),
])
@pytest.mark.parametrize("pad", [0, 3])
def test_image_encodings_with_padded_rows(rc, encoding, pixels, expected, pad):
    msg = make_image(np.ascontiguousarray(pixels), encoding, pad)
    out = rc.image_to_rgb(msg)
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected)


def test_image_round_trip_rgb8_and_bgr8(rc, header):
    for encoding in ("rgb8", "bgr8"):
        msg = rc.rgb_to_image(RGB, header, encoding=encoding)
        assert (msg.width, msg.height, msg.step, msg.encoding) == (7, 5, 21, encoding)
        assert msg.header.stamp.sec == 1234 and msg.header.frame_id == header.frame_id
        np.testing.assert_array_equal(rc.image_to_rgb(msg), RGB)
    with pytest.raises(ValueError, match="encoding must be one of rgb8, bgr8"):
        rc.rgb_to_image(RGB, header, encoding="mono8")
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        rc.rgb_to_image(RGB.astype(np.float32), header)


def test_decoded_image_does_not_alias_the_message(rc):
    msg = make_image(RGB, "rgb8")
    out = rc.image_to_rgb(msg)
    out[:] = 0
    np.testing.assert_array_equal(rc.image_to_rgb(msg), RGB)


def test_bad_images_give_specific_errors(rc):
    from sensor_msgs.msg import Image

    err = rc.ImageConversionError
    depth = make_image(np.zeros((4, 4, 2), np.uint8), "16UC1")
    with pytest.raises(err, match=r"unsupported image encoding '16UC1' \(supported: rgb8, bgr8"):
        rc.image_to_rgb(depth)
    depth.encoding = "mono16"
    with pytest.raises(err, match="'mono16'.*depth or 16-bit"):
        rc.image_to_rgb(depth)
    with pytest.raises(err, match=r"zero size \(width=0, height=480\)"):
        rc.image_to_rgb(Image(width=0, height=480, encoding="rgb8"))
    short = make_image(RGB, "rgb8")
    short.step = 20
    with pytest.raises(err, match="step 20 is less than width \\* bytes per pixel = 7 \\* 3 = 21"):
        rc.image_to_rgb(short)
    truncated = make_image(RGB, "rgb8")
    truncated.data = truncated.data[:-1]
    with pytest.raises(err, match="data has 104 bytes, expected step \\* height = 21 \\* 5 = 105"):
        rc.image_to_rgb(truncated)
    huge = Image(width=8000, height=8000, encoding="rgb8", step=24000)  # no data needed
    with pytest.raises(err, match="8000x8000 = 64.0 Mpx exceeds max_pixels = 40.0 Mpx"):
        rc.image_to_rgb(huge)
    with pytest.raises(err, match="exceeds max_pixels"):
        rc.image_to_rgb(make_image(RGB, "rgb8"), max_pixels=34)
    assert issubclass(err, ValueError)


def smooth_test_image() -> np.ndarray:
    """A smooth RGB image (JPEG keeps it within a few levels)."""
    y, x = np.mgrid[0:48, 0:64]
    return np.stack([x * 4, y * 5, 255 - x * 2], axis=2).astype(np.uint8)


def make_compressed(rgb: np.ndarray, ext: str, fmt: str):
    from sensor_msgs.msg import CompressedImage

    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    msg = CompressedImage(format=fmt)
    msg.data = array.array("B", buf.tobytes())
    return msg


def test_compressed_png_and_jpeg(rc):
    rgb = smooth_test_image()
    png = rc.compressed_to_rgb(make_compressed(rgb, ".png", "png"))
    np.testing.assert_array_equal(png, rgb)  # lossless, and in RGB order
    jpeg = rc.compressed_to_rgb(make_compressed(rgb, ".jpg", "rgb8; jpeg compressed bgr8"))
    assert jpeg.shape == rgb.shape and jpeg.dtype == np.uint8
    assert np.abs(jpeg.astype(int) - rgb).mean() < 3.0


def test_compressed_errors(rc):
    from sensor_msgs.msg import CompressedImage

    err = rc.ImageConversionError
    good = make_compressed(smooth_test_image(), ".jpg", "jpeg")
    corrupt = CompressedImage(format="jpeg")
    corrupt.data = array.array("B", b"\xff\xd8" + bytes(RNG.integers(0, 256, 500, np.uint8))
                               + b"\xff\xd9")
    with pytest.raises(err, match=r"format 'jpeg', 504 bytes\) could not be decoded"):
        rc.compressed_to_rgb(corrupt)
    truncated = CompressedImage(format="jpeg")
    truncated.data = good.data[: len(good.data) // 2]
    with pytest.raises(err, match="truncated JPEG"):
        rc.compressed_to_rgb(truncated)
    with pytest.raises(err, match="has no data"):
        rc.compressed_to_rgb(CompressedImage(format="jpeg"))
    depth = make_compressed(smooth_test_image(), ".png", "16UC1; compressedDepth png")
    with pytest.raises(err, match="compressed depth image"):
        rc.compressed_to_rgb(depth)
    with pytest.raises(err, match="64x48 = 0.0 Mpx exceeds max_pixels"):
        rc.compressed_to_rgb(good, max_pixels=1000)


# ---------------------------------------------------------------------------------------------
# Faces, transforms
# ---------------------------------------------------------------------------------------------
def face_kwargs(names, box=(100.4, 50.6, 220.2, 190.0), rotation=None):
    n = len(names)
    return dict(face_id="3", confidence=0.93, box=box, image_size=(640, 480), names=names,
                coefficients=np.linspace(0, 1, n), selected=[0, 5, n - 1],
                identity=RNG.normal(size=10), position=np.array([0.05, -0.02, 0.8]),
                face_rotation=cam.face_frame_rotation(
                    cam.euler_to_matrix(20, -5, 10) if rotation is None else rotation),
                landmarks=RNG.uniform(0, 400, (68, 2)))


def test_face_to_msg_fields(rc, header, face_model):
    names = face_model.expression_names
    kwargs = face_kwargs(names)
    msg = rc.face_to_msg(header, **kwargs)
    assert msg.header.stamp.sec == 1234 and msg.header.frame_id == header.frame_id
    assert msg.id == "3" and msg.confidence == pytest.approx(0.93)
    assert len(msg.names) == 53 and list(msg.names) == list(names)
    np.testing.assert_allclose(msg.coefficients, np.linspace(0, 1, 53), atol=1e-7)
    assert list(msg.selected) == [0, 5, 52] and msg.selected.typecode == "H"
    np.testing.assert_allclose(msg.identity, kwargs["identity"], rtol=1e-6)
    assert len(msg.landmarks) == 136
    np.testing.assert_allclose(np.array(msg.landmarks).reshape(68, 2), kwargs["landmarks"],
                               rtol=1e-6)
    assert msg.landmarks[2] == pytest.approx(kwargs["landmarks"][1, 0], rel=1e-6)  # x1 at 2
    p, o = msg.head_pose.position, msg.head_pose.orientation
    np.testing.assert_allclose([p.x, p.y, p.z], kwargs["position"])
    q = np.array([o.x, o.y, o.z, o.w])
    assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(q, cam.matrix_to_quaternion(kwargs["face_rotation"]), atol=1e-12)
    roi = msg.roi
    assert (roi.x_offset, roi.y_offset, roi.width, roi.height) == (100, 50, 121, 140)


def test_roi_is_clipped_to_the_image(rc, header):
    names = [f"e{i}" for i in range(53)]
    msg = rc.face_to_msg(header, **face_kwargs(names, box=(-20.5, 400.2, 100.0, 530.0)))
    roi = msg.roi
    assert (roi.x_offset, roi.y_offset, roi.width, roi.height) == (0, 400, 100, 80)
    with pytest.raises(ValueError, match="no pixel inside the 640x480 image"):
        rc.face_to_msg(header, **face_kwargs(names, box=(700, 10, 800, 100)))


def test_face_to_msg_rejects_bad_values(rc, header):
    names = [f"e{i}" for i in range(53)]
    bad = face_kwargs(names)
    bad["coefficients"] = np.zeros(52)
    with pytest.raises(ValueError, match="expected 53 values, got 52"):
        rc.face_to_msg(header, **bad)
    bad = face_kwargs(names)
    bad["selected"] = [53]
    with pytest.raises(ValueError, match=r"selected indices must be in \[0, 53\)"):
        rc.face_to_msg(header, **bad)
    bad = face_kwargs(names)
    bad["face_rotation"] = np.diag([1.0, 1.0, -1.0])
    with pytest.raises(ValueError, match="not a proper rotation"):
        rc.face_to_msg(header, **bad)


def test_array_sorted_by_area_largest_first(rc, header):
    names = ["a"]
    boxes = [(0, 0, 50, 50), (0, 0, 200, 100), (10, 10, 30, 30), (0, 0, 100, 100)]
    faces = []
    for i, b in enumerate(boxes):
        kwargs = face_kwargs(names, box=b)
        kwargs.update(face_id=str(i), selected=[0])
        faces.append(rc.face_to_msg(header, **kwargs))
    array_msg = rc.faces_to_array_msg(header, faces)
    assert [f.id for f in array_msg.faces] == ["1", "3", "0", "2"]
    assert array_msg.header.frame_id == header.frame_id
    assert rc.faces_to_array_msg(header, []).faces == []


def rotate(quaternion_msg, vector) -> np.ndarray:
    q = [quaternion_msg.x, quaternion_msg.y, quaternion_msg.z, quaternion_msg.w]
    return cam.quaternion_to_matrix(np.array(q)) @ np.asarray(vector, dtype=float)


def test_transforms_of_a_frontal_face(rc, header):
    r = cam.euler_to_matrix(0.0, 0.0, 0.0)
    position = np.array([0.1, 0.0, 1.2])
    face_tf, gaze_tf = rc.pose_to_transforms(header, "7", position, cam.face_frame_rotation(r),
                                             cam.gaze_frame_rotation(r))
    assert (face_tf.child_frame_id, gaze_tf.child_frame_id) == ("face_7", "gaze_7")
    for tf in (face_tf, gaze_tf):
        assert tf.header.frame_id == "camera_color_optical_frame"
        assert (tf.header.stamp.sec, tf.header.stamp.nanosec) == (1234, 5678)
        t = tf.transform.translation
        np.testing.assert_allclose([t.x, t.y, t.z], position)
    # face_<id>: x out of the face = towards the camera (optical -z), z up (optical -y)
    face_q, gaze_q = face_tf.transform.rotation, gaze_tf.transform.rotation
    np.testing.assert_allclose(rotate(face_q, [1, 0, 0]), [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(rotate(face_q, [0, 0, 1]), [0, -1, 0], atol=1e-12)
    # gaze_<id>: z along the gaze (towards the camera)
    np.testing.assert_allclose(rotate(gaze_q, [0, 0, 1]), [0, 0, -1], atol=1e-12)


def test_transforms_reuse_the_message_pose_with_the_same_values(rc, header, face_model):
    """The node passes face_to_msg's head_pose: same values as building the pose again."""
    kwargs = face_kwargs(face_model.expression_names)
    gaze_rotation = cam.gaze_frame_rotation(cam.euler_to_matrix(20, -5, 10))
    msg = rc.face_to_msg(header, **kwargs)
    built = rc.pose_to_transforms(header, "3", kwargs["position"], kwargs["face_rotation"],
                                  gaze_rotation)
    reused = rc.pose_to_transforms(header, "3", kwargs["position"], kwargs["face_rotation"],
                                   gaze_rotation, face_pose=msg.head_pose)
    assert reused == built
    t, q = reused[0].transform.translation, reused[0].transform.rotation
    p, o = msg.head_pose.position, msg.head_pose.orientation
    assert [t.x, t.y, t.z, q.x, q.y, q.z, q.w] == [p.x, p.y, p.z, o.x, o.y, o.z, o.w]
    assert q is not o, "the transform copies the message's values, it does not share them"


def test_transforms_follow_yaw(rc, header):
    # yaw + : the nose moves towards image right (optical +x)
    r = cam.euler_to_matrix(30.0, 0.0, 0.0)
    face_tf, _ = rc.pose_to_transforms(header, "1", np.zeros(3), cam.face_frame_rotation(r),
                                       cam.gaze_frame_rotation(r))
    x_axis = rotate(face_tf.transform.rotation, [1, 0, 0])
    np.testing.assert_allclose(x_axis, [np.sin(np.radians(30)), 0, -np.cos(np.radians(30))],
                               atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Markers, decimation
# ---------------------------------------------------------------------------------------------
def test_mesh_marker(rc, header):
    from visualization_msgs.msg import Marker

    vertices = RNG.normal(size=(10, 3))
    triangles = RNG.integers(0, 10, (7, 3))
    m = rc.mesh_to_marker(header, "4", vertices, triangles, color=(1, 0, 0, 0.5), marker_id=4,
                          lifetime=0.5)
    assert m.type == Marker.TRIANGLE_LIST and m.action == Marker.ADD
    assert len(m.points) == 21 and (m.ns, m.id, m.text) == ("face_mesh", 4, "4")
    np.testing.assert_allclose([m.points[4].x, m.points[4].y, m.points[4].z],
                               vertices[triangles[1, 1]])
    assert (m.lifetime.sec, m.lifetime.nanosec) == (0, 500_000_000)
    assert (m.scale.x, m.pose.orientation.w, m.color.a) == (1.0, 1.0, 0.5)
    assert m.header.frame_id == header.frame_id
    d = rc.delete_marker(header, 4)
    assert (d.action, d.id, d.ns) == (Marker.DELETE, 4, "face_mesh")
    with pytest.raises(ValueError, match=r"indices must be in \[0, 10\)"):
        rc.mesh_to_marker(header, "4", vertices, triangles + 5)
    with pytest.raises(ValueError, match="color"):
        rc.mesh_to_marker(header, "4", vertices, triangles, color=(1, 0, 0))


def nearest_distances(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    from scipy.spatial import cKDTree

    return cKDTree(reference).query(points)[0]


def test_decimation_of_the_face_model(rc, header, face_model):
    f = face_model.face_area_vertex_count
    triangles = face_model.triangles[(face_model.triangles < f).all(axis=1)]
    vertices = face_model.neutral[:f].astype(np.float64)
    for target in (500, 2000):
        mesh = rc.decimate_mesh(vertices, triangles, target)
        assert 0.7 * target <= len(mesh.triangles) <= 1.1 * target, (target, len(mesh.triangles))
        # kept vertices are input vertices (on the surface); every input vertex has a kept one
        # within the cell diagonal, so the decimated surface stays within a cell of the original
        np.testing.assert_array_equal(mesh.vertices, vertices[mesh.vertex_index])
        assert nearest_distances(vertices, mesh.vertices).max() < np.sqrt(3) * mesh.cell_size
        t = mesh.triangles
        assert t.min() >= 0 and t.max() == len(mesh.vertices) - 1  # all vertices used
        assert np.all((t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]) & (t[:, 0] != t[:, 2]))
        # triangle centroids lie near the original surface
        centroids = mesh.vertices[t].mean(axis=1)
        assert nearest_distances(centroids, vertices).max() < mesh.cell_size * np.sqrt(3)
        # a posed copy decimates with the same index
        posed = cam.pose_points(vertices, cam.euler_to_matrix(10, 5, 0), np.zeros(3), 0.01)
        marker = rc.mesh_to_marker(header, "1", posed[mesh.vertex_index], t)
        assert len(marker.points) == 3 * len(t)


def test_decimation_edge_cases(rc):
    vertices = RNG.normal(size=(20, 3))
    triangles = RNG.integers(0, 20, (30, 3))
    same = rc.decimate_mesh(vertices, triangles, 100)
    assert same.cell_size == 0.0 and len(same.triangles) == 30
    with pytest.raises(ValueError, match="target_triangles must be >= 1"):
        rc.decimate_mesh(vertices, triangles, 0)
    with pytest.raises(ValueError, match="cell_size must be > 0"):
        rc.cluster_mesh(vertices, triangles, 0.0)
    # a flat 20 x 20 grid of unit squares (800 triangles) with cells of 2 units: 200 are left
    y, x = np.mgrid[0:21, 0:21]
    grid = np.column_stack([x.ravel(), y.ravel(), np.zeros(x.size)]).astype(float)
    idx = np.arange(21 * 21).reshape(21, 21)
    a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
    c, d = idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    tri = np.concatenate([np.column_stack([a, b, d]), np.column_stack([a, d, c])])
    mesh = rc.cluster_mesh(grid, tri, 2.0)
    assert len(mesh.triangles) == 2 * 10 * 10


def test_faces_to_messages_matches_the_single_conversions(rc, header, face_model):
    """The node's and the latency bench's one conversion: messages, transforms and poses per face."""
    from face_expr_ros.core.reconstruct import Face
    from face_expr_ros.ros.demo import camera_matrix

    def face(face_id, yaw, u):
        names = face_model.expression_names
        return Face(id=face_id, box=np.array([u - 40.0, 100, u + 40, 200]), score=0.9, names=names,
                    coefficients=np.full(len(names), 0.1), selected=np.array([0]),
                    identity=np.zeros(4), rotation=cam.euler_to_matrix(yaw, 0, 0),
                    translation=np.array([u, 150.0]), scale=5.0,
                    landmarks=np.tile([[u, 150.0]], (68, 1)), model=face_model)

    K = camera_matrix(640, 480)
    faces = [face("f1", 10.0, 200.0), face("f2", -20.0, 450.0)]
    messages, transforms, poses = rc.faces_to_messages(header, faces, K, (640, 480))
    # the tracker's ids, the same in messages and frames
    assert [m.id for m in messages] == ["f1", "f2"] and len(transforms) == 4 and len(poses) == 2
    for f, m, pose in zip(faces, messages, poses):
        expected = f.optical_pose(K)
        np.testing.assert_allclose(pose.position, expected.position)
        single = rc.face_to_msg(header, f.id, f.score, f.box, (640, 480), f.names, f.coefficients,
                                f.selected, f.identity, expected.position, expected.face_rotation,
                                f.landmarks)
        assert m == single
    assert [t.child_frame_id for t in transforms] == ["face_f1", "gaze_f1", "face_f2", "gaze_f2"]
