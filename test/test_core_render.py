"""Software renderer: z-buffer, shading, coverage, framing and the pose convention on faces."""
import numpy as np
import pytest

from face_expr_ros.core import render
from face_expr_ros.core.camera import euler_to_matrix, pose_points

RED, GREEN = (255, 0, 0), (0, 255, 0)
FLAT = dict(ambient=1.0)  # intensity 1 everywhere: the output is the surface colour


def front_facing(corners_px: np.ndarray) -> np.ndarray:
    """(3, 3) corners ordered so the triangle faces the viewer (counter-clockwise with y up)."""
    normal_z = render.triangle_normals(corners_px * [1.0, -1.0, 1.0], np.array([[0, 1, 2]]), unit=False)
    return corners_px if normal_z[0, 2] > 0 else corners_px[[0, 2, 1]]


FAR = np.array([[5.0, 5.0, 1.0], [45.0, 8.0, 1.0], [10.0, 50.0, 1.0]])
NEAR = np.array([[55.0, 55.0, 5.0], [8.0, 30.0, 5.0], [30.0, 8.0, 5.0]])


def coverage(corners: np.ndarray, size=(60, 60)) -> np.ndarray:
    return render.silhouette_mask(corners, np.array([[0, 1, 2]]), size)


@pytest.mark.parametrize("near_first", [False, True])
def test_nearer_triangle_wins_regardless_of_draw_order(near_first):
    far, near = front_facing(FAR), front_facing(NEAR)
    drawn = [(near, GREEN), (far, RED)] if near_first else [(far, RED), (near, GREEN)]
    vertices = np.concatenate([corners for corners, _ in drawn])
    colors = np.repeat(np.array([color for _, color in drawn], float), 3, axis=0)  # per vertex
    triangles = np.array([[0, 1, 2], [3, 4, 5]])
    image = render.render_mesh(vertices, triangles, (60, 60), color=colors, **FLAT)
    overlap = coverage(far) & coverage(near)
    assert overlap.sum() > 50
    assert (image[overlap] == GREEN).all()
    assert (image[coverage(far) & ~coverage(near)] == RED).all()
    raster = render.rasterize(vertices, triangles, (60, 60))
    np.testing.assert_allclose(raster.depth[overlap], 5.0)


def test_surface_facing_the_light_is_brighter():
    light = (0.0, 0.0, 1.0)
    flat = front_facing(np.array([[10.0, 10.0, 0.0], [50.0, 10.0, 0.0], [10.0, 50.0, 0.0]]))
    tilted = flat.copy()
    tilted[:, 2] = np.tan(np.radians(60)) * tilted[:, 0]  # turned 60 degrees away about y
    brightness = []
    for corners in (flat, tilted):
        image = render.render_mesh(corners, np.array([[0, 1, 2]]), (60, 60), color=(200, 200, 200),
                                   light_dir=light, ambient=0.1)
        mask = render.silhouette_mask(corners, np.array([[0, 1, 2]]), (60, 60))
        brightness.append(image[mask].mean())
    assert brightness[0] == pytest.approx(200, abs=1)
    assert brightness[1] == pytest.approx(200 * (0.1 + 0.9 * np.cos(np.radians(60))), abs=2)


def test_back_faces_dark_or_culled():
    corners = front_facing(np.array([[10.0, 10.0, 0.0], [50.0, 10.0, 0.0], [10.0, 50.0, 0.0]]))
    back = np.array([[0, 2, 1]])
    shaded = render.render_mesh(corners, back, (60, 60), color=(200, 200, 200), back_color=(9, 9, 9))
    culled = render.render_mesh(corners, back, (60, 60), color=(200, 200, 200), back_color=None)
    assert shaded.max() == 9
    assert culled.max() == 0


def test_silhouette_area_matches_the_analytic_area():
    xy = np.array([[20.3, 30.7], [180.2, 50.1], [90.5, 170.9]])
    vertices = np.column_stack((xy, np.zeros(3)))
    mask = render.silhouette_mask(vertices, np.array([[0, 1, 2]]), (200, 200))
    (x0, y0), (x1, y1), (x2, y2) = xy
    area = abs((x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)) / 2
    assert mask.sum() == pytest.approx(area, rel=0.02)


def test_alpha_blends_over_the_background():
    corners = front_facing(np.array([[0.0, 0.0, 0.0], [40.0, 0.0, 0.0], [0.0, 40.0, 0.0]]))
    background = np.full((20, 20, 3), 100, np.uint8)
    out = render.render_mesh(corners, np.array([[0, 1, 2]]), background, color=(200, 200, 200),
                             alpha=0.5, **FLAT)
    assert out[2, 2].tolist() == [150, 150, 150]
    assert (background == 100).all()  # the input is not modified


def test_draw_landmarks_marks_the_points_on_a_copy():
    image = np.zeros((40, 40, 3), np.uint8)
    out = render.draw_landmarks(image, np.array([[10.0, 20.0], [30.5, 5.25]]), color=(1, 2, 3), radius=2)
    assert out[20, 10].tolist() == [1, 2, 3]
    assert out[5, 30].tolist() == [1, 2, 3] or out[5, 31].tolist() == [1, 2, 3]
    assert image.max() == 0


def test_rejects_wrong_shapes_clearly():
    with pytest.raises(ValueError, match=r"vertices_px must have shape \(N, 3\)"):
        render.rasterize(np.zeros((4, 2)), np.array([[0, 1, 2]]), (10, 10))
    with pytest.raises(ValueError, match="triangles index vertices"):
        render.rasterize(np.zeros((3, 3)), np.array([[0, 1, 3]]), (10, 10))


# ---------------------------------------------------------------------------------------------
# On the face model
# ---------------------------------------------------------------------------------------------
SIZE = (256, 256)


def posed_pixels(model, yaw=0.0, pitch=0.0, roll=0.0):
    """(V, 3) vertices_px of the neutral face in a SIZE image, framed on the face area."""
    rotation = euler_to_matrix(yaw, pitch, roll)
    scale, translation = render.frame_vertices(model.neutral[: model.face_area_vertex_count],
                                               rotation, SIZE)
    posed = pose_points(model.neutral.astype(np.float64), rotation, translation, scale)
    return render.camera_to_pixels(posed, render.image_center(SIZE))


def test_frontal_face_is_left_right_symmetric(face_model):
    pixels = posed_pixels(face_model)
    mask = render.silhouette_mask(pixels, face_model.triangles, SIZE)
    mirrored = mask[:, ::-1]
    iou = (mask & mirrored).sum() / (mask | mirrored).sum()
    assert iou > 0.97


def test_frontal_face_is_framed_and_lit(face_model):
    pixels = posed_pixels(face_model)
    image = render.render_mesh(pixels, face_model.triangles, SIZE)
    covered = image.sum(axis=2) > 0
    assert 0.2 < covered.mean() < 0.8
    nose = np.rint(pixels[face_model.landmarks68[30], :2]).astype(int)
    cheek = np.rint(pixels[face_model.landmarks68[2], :2]).astype(int)
    # The nose tip faces the camera (and the light): lit, not shaded as an inside-out surface.
    assert image[nose[1], nose[0]].mean() > image[cheek[1], cheek[0]].mean() > 80


@pytest.mark.parametrize("yaw", [30.0, -30.0])
def test_yaw_turns_the_nose_to_the_documented_side(face_model, yaw):
    pixels = posed_pixels(face_model, yaw=yaw)
    nose = pixels[face_model.landmarks68[30]]
    eyes_mid = pixels[face_model.landmarks68[[36, 45]], 0].mean()
    # yaw + = the subject turns to their left = the nose moves to the image right.
    assert np.sign(nose[0] - eyes_mid) == np.sign(yaw)
    assert abs(nose[0] - eyes_mid) > 5
    # The nose tip is the visible surface at its own pixel: larger z is closer.
    raster = render.rasterize(pixels, face_model.triangles, SIZE)
    u, v = np.rint(nose[:2]).astype(int)
    assert raster.depth[v, u] == pytest.approx(nose[2], abs=2.0)


def test_pitch_down_moves_the_nose_below_the_eyes(face_model):
    level = posed_pixels(face_model)
    down = posed_pixels(face_model, pitch=20.0)
    lm = face_model.landmarks68

    def nose_below_eyes(p):  # image y grows downwards
        return p[lm[30], 1] - p[lm[[36, 45]], 1].mean()

    assert nose_below_eyes(down) > nose_below_eyes(level) + 3


def test_face_region_uses_face_area_vertices_only(face_model):
    tris = render.region_triangles(face_model, "face")
    assert 0 < len(tris) < len(face_model.triangles)
    assert tris.max() < face_model.face_area_vertex_count
    with pytest.raises(ValueError, match="region"):
        render.region_triangles(face_model, "body")


def test_nothing_to_draw_leaves_the_background():
    background = np.full((8, 8, 3), 7, np.uint8)
    empty = np.zeros((0, 3), np.int64)
    assert (render.render_mesh(np.zeros((3, 3)), empty, background) == 7).all()
    off_image = np.array([[-50.0, -50.0, 0.0], [-40.0, -50.0, 0.0], [-50.0, -40.0, 0.0]])
    assert not render.silhouette_mask(off_image, np.array([[0, 1, 2]]), (8, 8)).any()


def test_only_the_mesh_window_is_drawn_and_it_does_not_depend_on_the_frame(face_model):
    """render_mesh shades just the pixels the mesh can cover: the same face drawn into a larger
    frame at an integer offset gives the same pixels (within one grey level of rounding), and
    everything outside the mesh's box is the background, untouched."""
    vertices = posed_pixels(face_model) * np.array([0.5, 0.5, 0.5])  # a 128 px face
    triangles = render.region_triangles(face_model, "face")
    small_bg = np.full((140, 140, 3), 40, np.uint8)
    small = render.render_mesh(vertices, triangles, small_bg, alpha=0.7, supersample=2)
    big_bg = np.full((400, 600, 3), 40, np.uint8)
    big = render.render_mesh(vertices + np.array([300.0, 200.0, 0.0]), triangles, big_bg,
                             alpha=0.7, supersample=2)
    window = big[200:340, 300:440]
    assert np.abs(window.astype(int) - small).max() <= 1
    assert (small != 40).any()
    outside = np.ones(big.shape[:2], bool)
    outside[200:340, 300:440] = False
    assert (big[outside] == 40).all()
    assert (big_bg == 40).all()  # the background is not modified
    off = render.render_mesh(vertices - 1000.0, triangles, big_bg)
    assert off is not big_bg and (off == big_bg).all()
