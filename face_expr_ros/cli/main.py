"""The offline command ``face_expr``: synthesise, reconstruct, build the face model, train, evaluate.

One small ``_add_<command>`` function per subcommand registers its arguments and its ``_run_<command>``
handler; :func:`main` parses, dispatches and turns expected failures into one-line messages:
exit code 2 for a wrong command line (argparse's convention), 1 for a failure while running.
Nothing here imports ROS, and heavy modules (numpy, torch, OpenCV) are imported inside handlers so
``face_expr --help`` is instant.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from .annotate import add_annotate_command
from .data import add_data_command
from .demo import add_demo_command
from .evaluate import add_eval_command
from .export_onnx import add_export_onnx_command
from .options import UsageError
from .reconstruct import add_reconstruct_command
from .train import add_train_command
from .video import add_video_command

if TYPE_CHECKING:  # numpy is imported lazily at run time (fast --help)
    import numpy as np

    from ..core.facemodel import FaceModel

PROG = "face_expr"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
DEFAULT_SIZE = 512
MAX_SIZE = 8192


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``face_expr`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse exits on --help and on usage errors; callers want a code
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE
    if getattr(args, "run", None) is None:
        (getattr(args, "help_parser", None) or parser).print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.run(args)
    except UsageError as err:
        _error(args, err)
        return EXIT_USAGE
    except Exception as err:
        if not isinstance(err, _expected_errors()):
            raise
        _error(args, err)
        return EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    """The ``face_expr`` parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Offline tools of face_expr_ros (no ROS needed).")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(commands)
    return parser


def _error(args: argparse.Namespace, err: Exception) -> None:
    command = " ".join(p for p in (args.command, getattr(args, "action", None)) if p)
    print(f"{PROG} {command}: error: {err}", file=sys.stderr)


def _expected_errors() -> tuple[type[Exception], ...]:
    """Failures reported as one message (the rest are bugs and keep their traceback): every
    command raises these and none prints its own."""
    from ..core.detect import DetectorError
    from ..core.export import ExportError
    from ..core.facemodel import FaceModelError
    from ..core.onnx_backend import OnnxBackendError
    from ..core.reconstruct import DeviceError
    from ..core.weights import WeightsError
    from ..offline.examples import ExampleImageError
    from ..ros.demo import DemoError
    from ..training.teacher import TeacherUnavailable

    return (FaceModelError, ExportError, OSError, WeightsError, OnnxBackendError, DetectorError,
            DeviceError, DemoError, ExampleImageError, TeacherUnavailable)


# ---------------------------------------------------------------------------------------------
# face_expr synth
# ---------------------------------------------------------------------------------------------
def _add_synth(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "synth", help="render a face with given expression coefficients and head pose",
        description="Synthesise the face model with expression coefficients (the selected "
                    "templates only) and render it, optionally over a background image.")
    parser.add_argument("--expression", nargs="+", action="extend", default=[], metavar="NAME=VALUE",
                        type=_expression_pair,
                        help="expression coefficients in [0, 1], e.g. jawOpen=0.8 mouthSmile_L=0.5 "
                             "(ICT/ARKit names with _L/_R); unnamed templates are 0")
    parser.add_argument("--yaw", type=float, default=0.0,
                        help="degrees; + = the subject turns to their left (nose to image right)")
    parser.add_argument("--pitch", type=float, default=0.0, help="degrees; + = the subject looks down")
    parser.add_argument("--roll", type=float, default=0.0,
                        help="degrees; + = the face turns counter-clockwise as seen in the image")
    parser.add_argument("--size", type=_image_size, default=None,
                        help=f"square image side in pixels (default {DEFAULT_SIZE}, or the "
                             "background's size)")
    parser.add_argument("--identity-seed", type=int, default=None, metavar="N",
                        help="random identity drawn from the model's prior N(0, 1) with this seed "
                             "(default: the generic neutral identity)")
    parser.add_argument("--region", choices=("head", "face"), default="head",
                        help="render and export the whole head with neck, or the face area only")
    parser.add_argument("--landmarks", action="store_true", help="draw the 68 landmarks")
    parser.add_argument("--background", type=Path, default=None, metavar="IMAGE",
                        help="image to render over (else black)")
    parser.add_argument("--supersample", type=int, choices=(1, 2, 3, 4), default=2,
                        help="antialiasing factor (1 = off, fastest)")
    parser.add_argument("--face-model", type=Path, default=None, metavar="PATH",
                        help="ict_face_model.npz (default: $FACE_EXPR_FACE_MODEL, then the "
                             "standard places)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="IMAGE",
                        help="image to write (.png, .jpg, ...)")
    parser.add_argument("--mesh", type=Path, default=None, metavar="OBJ",
                        help="also write the mesh in model space (cm) as Wavefront OBJ")
    parser.set_defaults(run=_run_synth)


def _expression_pair(text: str) -> tuple[str, float]:
    """``"jawOpen=0.8"`` -> ``("jawOpen", 0.8)``; the value must be a number in [0, 1]."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE (e.g. jawOpen=0.8)")
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {value!r} is not a number") from None
    if not 0.0 <= number <= 1.0:  # also rejects NaN
        raise argparse.ArgumentTypeError(
            f"{text!r}: expression coefficients are in [0, 1], got {value}")
    return name, number


def _image_size(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 1 <= size <= MAX_SIZE:
        raise argparse.ArgumentTypeError(f"size must be in 1..{MAX_SIZE}, got {size}")
    return size


def _run_synth(args: argparse.Namespace) -> int:
    from ..core.export import check_image_suffix, check_writable_folder, write_image, write_obj
    from ..core.facemodel import load_face_model

    try:
        check_image_suffix(args.output)
    except OSError as err:
        raise UsageError(err) from None
    if args.mesh is not None and args.mesh.suffix.lower() != ".obj":
        raise UsageError(f"--mesh {args.mesh}: the mesh is written as Wavefront OBJ, use a .obj name")
    for path in (args.output, args.mesh):
        if path is not None:
            check_writable_folder(path)  # fail before the work, not after it
    model = load_face_model(args.face_model)
    coefficients = _coefficients(model, args.expression)
    background = _read_background(args.background, args.size)
    size = background.shape[:2] if background is not None else (args.size or DEFAULT_SIZE,) * 2
    identity = _identity(model, args.identity_seed)
    face = _synthesize_and_render(model, coefficients, identity, args, size, background)
    write_image(args.output, face.image)
    print(f"wrote {args.output} ({size[1]}x{size[0]}, yaw {args.yaw:g}, pitch {args.pitch:g}, "
          f"roll {args.roll:g}, {args.region}{', landmarks' if args.landmarks else ''})")
    print(f"selected templates: {_describe_selection(model, coefficients, face.selected)}")
    if args.mesh is not None:
        write_obj(args.mesh, face.mesh_vertices, face.mesh_triangles)
        print(f"wrote {args.mesh} ({len(face.mesh_vertices)} vertices, "
              f"{len(face.mesh_triangles)} triangles, model space, cm)")
    return EXIT_OK


def _coefficients(model: FaceModel, pairs: list[tuple[str, float]]) -> np.ndarray:
    """(E,) coefficients from NAME=VALUE pairs; unknown or repeated names are usage errors."""
    import numpy as np

    from ..core.facemodel import unknown_name_message

    coefficients = np.zeros(model.n_expressions, np.float32)
    seen: set[str] = set()
    for name, value in pairs:
        if name not in model.expression_names:
            raise UsageError(unknown_name_message(name, model.expression_names))
        if name in seen:
            raise UsageError(f"expression {name!r} is given more than once")
        seen.add(name)
        coefficients[model.expression_names.index(name)] = value
    return coefficients


def _identity(model: FaceModel, seed: int | None) -> np.ndarray | None:
    """(K,) identity coefficients drawn from the prior N(0, 1), or None for the generic face."""
    import numpy as np

    if seed is None:
        return None
    return np.random.default_rng(seed).standard_normal(model.n_identity).astype(np.float32)


def _read_background(path: Path | None, side: int | None) -> np.ndarray | None:
    """(H, W, 3) uint8 RGB background, resized to ``side`` x ``side`` if given; None without path."""
    if path is None:
        return None
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UsageError(f"--background {path}: not a readable image")
    if side is not None and bgr.shape[:2] != (side, side):
        bgr = cv2.resize(bgr, (side, side), interpolation=cv2.INTER_AREA)
    return bgr[..., ::-1].copy()  # OpenCV reads BGR; the project works in RGB


@dataclass
class _SynthResult:
    """What synth produced: the RGB image, the selected templates and the mesh to export."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    selected: np.ndarray  # (n,) template indices
    mesh_vertices: np.ndarray  # (N, 3) model space, cm
    mesh_triangles: np.ndarray  # (T, 3)


def _synthesize_and_render(model: FaceModel, coefficients: np.ndarray, identity: np.ndarray | None,
                           args: argparse.Namespace, size: tuple[int, int],
                           background: np.ndarray | None) -> _SynthResult:
    """Synthesise from the selected templates, pose, frame the face area and render."""
    from ..core import render
    from ..core.camera import euler_to_matrix, pose_points
    from ..core.synthesis import select_templates, synthesize

    selected = select_templates(coefficients)
    vertices = synthesize(model, coefficients, selected, identity)
    rotation = euler_to_matrix(args.yaw, args.pitch, args.roll)
    face_area = vertices[: model.face_area_vertex_count]
    scale, translation = render.frame_vertices(face_area, rotation, size)
    posed = pose_points(vertices, rotation, translation, scale)
    pixels = render.camera_to_pixels(posed, render.image_center(size))
    triangles = render.region_triangles(model, args.region)
    image = render.render_mesh(pixels, triangles, background if background is not None else size,
                               supersample=args.supersample)
    if args.landmarks:
        points = _landmarks_px(model, posed, render.image_center(size))
        image = render.draw_landmarks(image, points, radius=max(1.5, size[0] / 256))
    mesh_vertices = face_area if args.region == "face" else vertices
    return _SynthResult(image, selected, mesh_vertices, triangles)


def _landmarks_px(model: FaceModel, posed: np.ndarray, principal_point: np.ndarray) -> np.ndarray:
    """(68, 2) landmark pixels with the dynamic jaw (the outline seen at this pose)."""
    from ..core.contour import model_landmarks_np
    from ..core.render import camera_to_pixels

    return camera_to_pixels(model_landmarks_np(model, posed), principal_point)[:, :2]


def _describe_selection(model: FaceModel, coefficients: np.ndarray, selected: np.ndarray) -> str:
    used = [f"{model.expression_names[i]}={coefficients[i]:.2f}" for i in selected if coefficients[i] > 0]
    return ", ".join(used) if used else "none (neutral expression)"


# ---------------------------------------------------------------------------------------------
# face_expr model build
# ---------------------------------------------------------------------------------------------
def _add_model(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("model", help="build or inspect the face model file",
                                 description="Face model file tools.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    parser.set_defaults(run=None, help_parser=parser)
    build = actions.add_parser(
        "build", help="convert ICT-FaceKit's FaceXModel folder (or a full model) to ict_face_model.npz",
        description="Convert the upstream ICT-FaceKit FaceXModel folder "
                    "(https://github.com/ICT-VGL/ICT-FaceKit, MIT) to the face model file; with "
                    "--compact, only what inference and training load, bases as 16-bit integers "
                    "per mode (the form shipped in the package; docs/face_model.md). The source "
                    "may also be a full ict_face_model.npz (then --compact is required).")
    build.add_argument("src_dir", type=Path, metavar="ICT_FACEKIT_DIR",
                       help="the FaceXModel folder (vertex_indices.json, *.obj), or a full .npz")
    build.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                       help="the .npz to write, e.g. ~/.local/share/face_expr_ros/ict_face_model.npz")
    build.add_argument("--compact", action="store_true",
                       help="write the compact form (about 7.6 MB instead of 21 MB)")
    build.set_defaults(run=_run_model_build)


def _run_model_build(args: argparse.Namespace) -> int:
    from ..core.convert import build_face_model, compact_face_model

    src, out = args.src_dir.expanduser(), args.output.expanduser()
    if src.is_file():
        if not args.compact:
            raise UsageError(f"{src} is a file: a full .npz is converted with --compact only "
                             "(a FaceXModel folder builds the full model)")
        written = compact_face_model(src, out)
    else:
        written = build_face_model(src, out, compact=args.compact)
    print(f"wrote {written} ({written.stat().st_size / 1e6:.1f} MB)")
    return EXIT_OK


SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (_add_synth, _add_model,
                                                                     add_reconstruct_command,
                                                                     add_video_command,
                                                                     add_data_command,
                                                                     add_annotate_command,
                                                                     add_train_command,
                                                                     add_eval_command,
                                                                     add_export_onnx_command,
                                                                     add_demo_command)
"""Registration order is the order ``face_expr --help`` lists them."""


if __name__ == "__main__":
    sys.exit(main())
