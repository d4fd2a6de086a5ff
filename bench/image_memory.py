"""Peak memory of reading a huge photo: core.imageio (JPEG DCT scaling) against a full decode.

    .venv/bin/python bench/image_memory.py            # writes a 20000 x 20000 JPEG to a temp folder

Each reader runs in a fresh Python; the table shows its peak resident memory (VmHWM of
/proc/self/status: the high-water mark of this process image, which unlike ru_maxrss does not carry
over from the parent across exec) and the difference to a Python that only imports the same modules.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIDE = 20000
PRELUDE = "import cv2, numpy, PIL.Image\nimport face_expr_ros.core.imageio\n"
REPORT = ("\nfor line in open('/proc/self/status'):\n"
          "    if line.startswith('VmHWM:'): print(int(line.split()[1]) / 1024)\n")
READERS = {
    "baseline (imports only)": "pass",
    "core.imageio.load_image (64 MP limit)": "from face_expr_ros.core.imageio import load_image\n"
                                              "im = load_image(PATH)\nprint(im.rgb.shape, im.reduction)",
    "PIL full decode + RGB": "PIL.Image.MAX_IMAGE_PIXELS = None\nim = PIL.Image.open(PATH)\n"
                             "rgb = numpy.asarray(im.convert('RGB'))\nprint(rgb.shape)",
    "cv2.imread (full decode)": "im = cv2.imread(PATH)\nprint(im.shape)",
}


def run_python(code: str) -> tuple[str, float]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True,
                         text=True).stdout
    return out, time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "huge.jpg"
        run_python(f"import PIL.Image\nPIL.Image.new('L', ({SIDE}, {SIDE}), 128).save({str(path)!r}, quality=80)")
        print(f"{SIDE} x {SIDE} gray JPEG, {path.stat().st_size / 1e6:.1f} MB on disk; as RGB in "
              f"memory {SIDE * SIDE * 3 / 1e6:.0f} MB")
        print("| reader | decoded | peak RSS MB | above baseline MB | s |")
        print("|---|---|---|---|---|")
        baseline = None
        for name, code in READERS.items():
            out, seconds = run_python(PRELUDE + f"PATH = {str(path)!r}\n" + code + REPORT)
            lines = out.strip().splitlines()
            peak = float(lines[-1])
            baseline = peak if baseline is None else baseline
            decoded = lines[0] if len(lines) > 1 else "-"
            print(f"| {name} | {decoded} | {peak:.0f} | {peak - baseline:.0f} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
