"""core.imageio: specific errors per bad file, pixel modes, bounded decoding; core.arkit; inputs."""
import numpy as np
import pytest
from PIL import Image

from face_expr_ros.core.arkit import ARKIT_NAMES, LIVE_LINK_NAMES, arkit_matrix, ict_sources, to_arkit
from face_expr_ros.core.imageio import ImageLoadError, load_image
from face_expr_ros.offline.inputs import expand_inputs, output_stems

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8)


@pytest.mark.parametrize("content,reason", [
    (b"", r"empty file \(0 bytes\)"),
    (b"GIF89a but not really", "not an image"),
    (b"\xff\xd8\xff\xe0" + b"\0" * 200, "truncated JPEG"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 200, "truncated PNG"),
])
def test_bad_files_have_specific_reasons(tmp_path, content, reason):
    path = tmp_path / "x.img"
    path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=reason) as info:
        load_image(path)
    assert info.value.path == path


def test_missing_and_folder(tmp_path):
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="is a folder"):
        load_image(tmp_path)


def test_corrupt_data_after_a_valid_header(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "ok.png")
    data = bytearray((tmp_path / "ok.png").read_bytes())
    data[60:200] = b"\x00" * 140  # inside the IDAT chunk; the IEND chunk stays
    (tmp_path / "bad.png").write_bytes(bytes(data))
    with pytest.raises(ImageLoadError, match="corrupt PNG"):
        load_image(tmp_path / "bad.png")


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "I;16", "I", "1"])
def test_modes_become_rgb8(tmp_path, mode):
    gray = RGB[..., 0]
    if mode == "I;16":
        image = Image.fromarray(gray.astype(np.uint16) * 257)
    elif mode == "I":
        image = Image.fromarray(gray.astype(np.int32))
    else:
        image = Image.fromarray(RGB).convert(mode)
    path = tmp_path / ("x.tif" if mode == "I" else "x.png")  # PNG has no 32-bit gray
    image.save(path)
    loaded = load_image(path)
    assert loaded.rgb.shape == (30, 40, 3) and loaded.rgb.dtype == np.uint8
    if mode in ("I;16", "I"):
        np.testing.assert_array_equal(loaded.rgb[..., 1], gray)  # 16-bit: the top byte
    if mode == "RGBA":
        np.testing.assert_array_equal(loaded.rgb, RGB)


def test_jpeg_above_the_limit_is_decoded_reduced(tmp_path):
    Image.fromarray(np.repeat(np.repeat(RGB, 20, 0), 20, 1)).save(tmp_path / "big.jpg", quality=90)
    full = load_image(tmp_path / "big.jpg")
    assert full.reduction == 1 and full.rgb.shape == (600, 800, 3)
    small = load_image(tmp_path / "big.jpg", max_pixels=40_000)  # 480000 px: 1/4 gives 30000
    assert (small.width, small.height, small.reduction) == (800, 600, 4)
    assert small.rgb.shape == (150, 200, 3)
    np.testing.assert_allclose(small.rgb.astype(float), full.rgb[1::4, 1::4].astype(float), atol=40)
    with pytest.raises(ImageLoadError, match="even at 1/8 scale"):
        load_image(tmp_path / "big.jpg", max_pixels=5_000)


def test_arkit_view_of_the_ict_names(face_model):
    names = face_model.expression_names
    matrix = arkit_matrix(names)
    assert len(ARKIT_NAMES) == 52 == len(set(ARKIT_NAMES)) and LIVE_LINK_NAMES[0] == "EyeBlinkLeft"
    assert (matrix.sum(axis=0) > 0).all()  # every ICT template reaches some ARKit shape
    np.testing.assert_allclose(matrix.sum(axis=1), [0.0 if n == "tongueOut" else 1.0 for n in ARKIT_NAMES])
    assert ict_sources("cheekPuff") == ("cheekPuff_L", "cheekPuff_R")
    assert ict_sources("eyeBlinkRight") == ("eyeBlink_R",) and ict_sources("mouthLeft") == ("mouthLeft",)
    values = RNG.random((4, len(names)))
    arkit = to_arkit(names, values)
    assert arkit.shape == (4, 52)
    i = ARKIT_NAMES.index("browInnerUp")
    np.testing.assert_allclose(arkit[:, i], values[:, [names.index("browInnerUp_L"),
                                                       names.index("browInnerUp_R")]].mean(1))
    with pytest.raises(ValueError, match="needs"):
        arkit_matrix(names[1:])


def test_inputs_expand_files_folders_globs(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/x.jpg", "a/y.PNG", "a/.hidden.png", "a/notes.txt", "z.png"):
        (tmp_path / name).write_bytes(b"x")
    files, bad = expand_inputs([str(tmp_path / "a"), str(tmp_path / "*.png"), str(tmp_path / "z.png"),
                                str(tmp_path / "missing.jpg"), str(tmp_path / "q*.jpg")])
    assert [p.name for p in files] == ["x.jpg", "y.PNG", "z.png"]  # z.png once
    assert [b.reason for b in bad] == ["no such file or folder", "no image file matches this pattern"]
    assert output_stems([tmp_path / "a/x.jpg", tmp_path / "x.png", tmp_path / "b/x.png"]) == ["x", "x-2", "x-3"]


def test_files_and_compressed_messages_judge_truncation_alike(tmp_path):
    """core.imageio (files) and core.image_msgs (the node, bags) accept and refuse the same bytes."""
    from types import SimpleNamespace

    import cv2

    from face_expr_ros.core.image_msgs import ImageConversionError, compressed_to_rgb

    jpeg = cv2.imencode(".jpg", RGB)[1].tobytes()
    png = cv2.imencode(".png", RGB)[1].tobytes()
    cases = {"trailer.jpg": (jpeg + b"camera trailer", None),  # bytes after the end marker: fine
             "cut.jpg": (jpeg[: len(jpeg) // 2], "truncated JPEG"),
             "cut.png": (png[:-20], "truncated PNG")}
    for name, (data, reason) in cases.items():
        (tmp_path / name).write_bytes(data)
        msg = SimpleNamespace(format=name.split(".")[1], data=np.frombuffer(data, np.uint8))
        if reason is None:
            assert load_image(tmp_path / name).rgb.shape == (30, 40, 3)
            assert compressed_to_rgb(msg).shape == (30, 40, 3)
        else:
            with pytest.raises(ImageLoadError, match=reason):
                load_image(tmp_path / name)
            with pytest.raises(ImageConversionError, match=reason):
                compressed_to_rgb(msg)
