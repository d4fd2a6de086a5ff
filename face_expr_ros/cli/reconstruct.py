"""``face_expr reconstruct INPUT... --out DIR``: faces of photos as JSON (+ overlays and meshes).

Per readable image ``DIR/<stem>.json`` in the contract of core/face_json.py; ``--overlay`` adds
``<stem>_overlay.png``, ``--mesh FMT`` adds ``<stem>_face<i>.<fmt>`` per face. Every file is written
to a temporary name and renamed. Exit code 0 when every input was read (images without a face get
``"faces": []`` and a warning), 1 when some input was bad (one line each; the others are still
processed) or the output folder cannot be written (before any work).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .options import add_model_options, positive_float, positive_int, unit_float

EXIT_OK, EXIT_FAILURE = 0, 1
PROG = "face_expr reconstruct"


def add_reconstruct_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "reconstruct", help="faces of photos -> JSON (expression, pose, landmarks), overlays, meshes",
        description="Reconstruct every face of the given images: detect, crop, network, template "
                    "selection, pose. Writes DIR/<stem>.json per image (README, 'Offline results').")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders (searched recursively) or glob patterns "
                             "(quote them to let face_expr expand '**')")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="output folder (created if missing)")
    parser.add_argument("--overlay", action="store_true",
                        help="also write <stem>_overlay.png: posed mesh, landmarks, box, pose")
    parser.add_argument("--mesh", choices=("obj", "ply", "glb"), default=None,
                        help="also write each face's mesh: obj/ply = the synthesised expression mesh "
                             "in model space (cm); glb = glTF with the 53 templates as morph targets, "
                             "weights set, head rotation applied (metres)")
    parser.add_argument("--arkit", action="store_true",
                        help="expression as the 52 ARKit names (L/R halves merged, tongueOut = 0) "
                             "instead of the model's 53")
    add_model_options(parser)
    parser.add_argument("--detection-threshold", type=unit_float, default=0.5, metavar="P",
                        help="minimum detector score in (0, 1] (default 0.5)")
    parser.add_argument("--max-faces", type=positive_int, default=10, metavar="N",
                        help="most faces per image, the largest kept (default 10)")
    parser.add_argument("--max-megapixels", type=positive_float, default=64.0, metavar="MP",
                        help="decode limit: larger JPEGs are decoded at 1/2, 1/4 or 1/8 scale, larger "
                             "images of other formats are refused (default 64)")
    parser.set_defaults(run=run_reconstruct)


@dataclass
class Summary:
    """What a run did, for the last line and the exit code."""

    images: int = 0
    faces: int = 0
    no_face: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    written: int = 0


def run_reconstruct(args: argparse.Namespace) -> int:
    from ..offline.inputs import expand_inputs, output_stems
    from ..offline.outputs import prepare_output_folder

    out = prepare_output_folder(args.out)
    files, bad_inputs = expand_inputs(args.inputs)
    summary = Summary(bad=[str(b) for b in bad_inputs])
    for line in summary.bad:
        _say("error", line)
    if files:
        reconstructor = _reconstructor(args)
        for path, stem in zip(files, output_stems(files)):
            _process(reconstructor, path, stem, out, args, summary)
    print(f"{summary.images} image(s), {summary.faces} face(s), {len(summary.no_face)} without a "
          f"face, {len(summary.bad)} bad input(s); {summary.written} file(s) in {out}")
    return EXIT_FAILURE if summary.bad else EXIT_OK


def _reconstructor(args: argparse.Namespace):
    from ..core.reconstruct import Reconstructor

    return Reconstructor(weights=args.weights, face_model=args.face_model, device=args.device,
                         detection_threshold=args.detection_threshold, max_faces=args.max_faces,
                         backend=args.backend)


def _process(reconstructor, path: Path, stem: str, out: Path, args: argparse.Namespace,
             summary: Summary) -> None:
    from ..core.imageio import ImageLoadError, load_image
    from ..offline.results import to_full_image, write_json, write_mesh, write_overlay

    try:
        loaded = load_image(path, max_pixels=int(args.max_megapixels * 1e6))
    except ImageLoadError as err:
        summary.bad.append(str(err))
        _say("error", str(err))
        return
    decoded = reconstructor.reconstruct(loaded.rgb)  # pixels of the (possibly reduced) decode
    faces = [to_full_image(f, loaded.reduction) for f in decoded]
    summary.images += 1
    summary.faces += len(faces)
    if not faces:
        summary.no_face.append(str(path))
        _say("warning", f"{path}: no face found")
    write_json(out / f"{stem}.json", str(path), loaded, faces, args.arkit)
    summary.written += 1
    if args.overlay:
        write_overlay(out / f"{stem}_overlay.png", loaded, decoded)
        summary.written += 1
    for i, face in enumerate(faces if args.mesh else []):
        write_mesh(out / f"{stem}_face{i}.{args.mesh}", face, args.mesh)
        summary.written += 1
    note = f" (decoded at 1/{loaded.reduction} scale)" if loaded.reduction > 1 else ""
    print(f"{path}: {len(faces)} face(s), {loaded.width}x{loaded.height}{note} -> {out / stem}.json")


def _say(kind: str, message: str) -> None:
    print(f"{PROG}: {kind}: {message}", file=sys.stderr)
