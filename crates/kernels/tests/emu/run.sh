#!/usr/bin/env bash
# Host emulation of the implicit-GEMM CUDA kernels (no GPU needed): compiles tests/emu/igemm_emu.cpp, which
# includes src/cuda/conv3d_igemm.cu through tests/emu/cuda_emu.hpp, with g++ (C++20) and runs it.
# Usage: crates/kernels/tests/emu/run.sh   (exit status 0 when every check passes)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${TMPDIR:-/tmp}/magseg_igemm_emu"
g++ -std=c++20 -O2 -pthread -Wall -Wno-unused-variable -Wno-unknown-pragmas -fno-strict-aliasing -o "$out" "$here/igemm_emu.cpp"
"$out"
