#!/usr/bin/env bash
# Host emulation of the CUDA kernels (no GPU needed): compiles tests/emu/igemm_emu.cpp (implicit-GEMM
# kernels of src/cuda/conv3d_igemm.cu), tests/emu/direct_emu.cpp (direct kernels of src/cuda/conv3d.cu),
# tests/emu/norm_emu.cpp (instance norm, src/cuda/norm.cu) and tests/emu/rows_emu.cpp (layer norm and
# softmax, activations and max pooling, the Adam passes: src/cuda/{rows,activation,optim}.cu), which
# include the .cu files through tests/emu/cuda_emu.hpp, with g++ (C++20), and runs them.
# Usage: crates/kernels/tests/emu/run.sh   (exit status 0 when every check passes; ~5-7 min on 2 cores)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
flags=(-std=c++20 -O2 -pthread -Wall -Wno-unused-variable -Wno-unused-function -Wno-unknown-pragmas -fno-strict-aliasing -ffp-contract=off)
for name in igemm_emu direct_emu norm_emu rows_emu; do
    out="${TMPDIR:-/tmp}/magseg_$name"
    g++ "${flags[@]}" -o "$out" "$here/$name.cpp"
    "$out"
done
