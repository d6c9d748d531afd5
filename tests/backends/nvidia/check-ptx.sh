#!/usr/bin/env bash
# The checked-in device-access PTX (backends/nvidia/kernels/access_ptx.h) is
# what gen-ptx.sh makes from access.cu today, and assembles for sm_75 and
# sm_90 (gen-ptx.sh runs ptxas).  Needs nvcc: skipped (77) without one.
#   tests/backends/nvidia/check-ptx.sh SOURCE_DIR
set -euo pipefail
src=${1:?usage: check-ptx.sh SOURCE_DIR}
cuda=${CUDA_HOME:-/usr/local/cuda}
if [[ ! -x $cuda/bin/nvcc || ! -x $cuda/bin/ptxas ]]; then
  echo "check-ptx: no nvcc/ptxas under $cuda (set CUDA_HOME): skipped"
  exit 77
fi
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
"$src/backends/nvidia/kernels/gen-ptx.sh" "$tmp"
if ! diff -u "$src/backends/nvidia/kernels/access_ptx.h" "$tmp"; then
  echo "check-ptx: access_ptx.h is stale: run backends/nvidia/kernels/gen-ptx.sh"
  exit 1
fi
echo "check-ptx: access_ptx.h matches access.cu ($("$cuda/bin/nvcc" --version | tail -1))"
