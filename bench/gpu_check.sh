#!/usr/bin/env bash
# The GPU check (issue 19, item 5): ONNX Runtime's CUDA provider with CUDA graphs, a TensorRT fp16
# engine built and run through edgeship's TensorRT backend, and torch fp16 + CUDA graphs, for
# MobileNetV3-Small, EfficientNet-B0 and ResNet-50 at batch 1 and 32, in one run (bench/gpu_check.py).
#
#   bench/gpu_check.sh pack [DIR]   # here (PyPI reachable): download the wheels, split each into parts
#                                   # under 64 MiB, write SHA256SUMS of the whole wheels
#   bench/gpu_check.sh run  [DIR]   # on the GPU machine (no network): join the parts, check every
#                                   # sha256, pip install --no-deps --target DIR/site, run the check
#
# The GPU machine needs Python 3 with numpy, onnx, pillow and torch + torchvision (CUDA build) for the
# export and the torch rows; the script says what is missing. Nothing is installed outside DIR/site.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-run}
DIR=${2:-gpu-wheels}
PY=${PY:-python3}
PART=60M
# onnxruntime-gpu is built for CUDA 13 / cuDNN 9 (MEASURED.md); TensorRT 11 for CUDA 13; cuda-bindings
# (cuda-python's runtime API) gives device memory without pycuda. Pinned so a pack and a run agree.
# If the GPU machine's torch already brings the CUDA 13 libraries, WHEELS can drop the nvidia-* ones.
WHEELS=${WHEELS:-"onnxruntime-gpu==1.31.1 tensorrt-cu13==11.4.0.106 tensorrt-cu13-bindings==11.4.0.106 tensorrt-cu13-libs==11.4.0.106 cuda-bindings==13.5.0 cuda-pathfinder==1.9.0 nvidia-cudnn-cu13==9.27.0.42 nvidia-cuda-runtime==13.5.37 nvidia-cublas==13.10.0.20 nvidia-cufft==12.4.0.43 nvidia-curand==10.4.4.72 nvidia-nvjitlink==13.5.37 nvidia-cuda-nvrtc==13.5.37"}

case "$MODE" in
pack)
  mkdir -p "$DIR/whl"
  # shellcheck disable=SC2086
  $PY -m pip download --no-deps --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$DIR/whl" $WHEELS
  (cd "$DIR/whl" && sha256sum ./*.whl > ../SHA256SUMS)
  mkdir -p "$DIR/parts"
  for w in "$DIR"/whl/*.whl; do
    split -b "$PART" -d -a 3 "$w" "$DIR/parts/$(basename "$w").part-"
  done
  rm -rf "$DIR/whl"
  du -sh "$DIR/parts"; ls "$DIR/parts" | wc -l
  echo "carry $DIR (SHA256SUMS and parts/, each part under 64 MiB) to the GPU machine, then: bench/gpu_check.sh run $DIR"
  ;;
run)
  [ -f "$DIR/SHA256SUMS" ] || { echo "no $DIR/SHA256SUMS: run 'bench/gpu_check.sh pack $DIR' where PyPI is reachable"; exit 2; }
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi not found"
  mkdir -p "$DIR/whl"
  for first in "$DIR"/parts/*.part-000; do
    name=$(basename "$first" .part-000)
    cat "$DIR/parts/$name".part-* > "$DIR/whl/$name"
  done
  (cd "$DIR/whl" && sha256sum -c ../SHA256SUMS) || { echo "a wheel does not match its sha256: carry the parts again"; exit 1; }
  $PY -m pip install --quiet --no-deps --no-index --target "$DIR/site" "$DIR"/whl/*.whl
  rm -rf "$DIR/whl"
  export PYTHONPATH="$PWD/$DIR/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
  # the CUDA/cuDNN/TensorRT shared libraries come from the wheels' nvidia/*/lib and tensorrt_libs folders
  LIBS=$(find "$PWD/$DIR/site" -type d \( -path '*/nvidia/*/lib' -o -name tensorrt_libs \) | paste -sd: -)
  export LD_LIBRARY_PATH="$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  mkdir -p bench/results
  $PY bench/gpu_check.py --json bench/results/gpu_check.json "${@:3}"
  ;;
*)
  echo "usage: bench/gpu_check.sh pack|run [DIR]"; exit 2 ;;
esac
