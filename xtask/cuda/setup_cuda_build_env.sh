#!/usr/bin/env bash
# Build environment for `cargo build --features cuda` (candle-core/cuda 0.11.1 + own .cu kernels)
# on a machine with NO GPU and NO CUDA toolkit, using only PyPI wheels + generated link stubs.
#
#   source <(bash setup_cuda_build_env.sh /path/to/envdir)   # prints `export ...` lines
#   (in magseg run it as `source <(cargo xtask cuda-env [DIR])`; this file is the recipe it runs)
#
# What it sets up (all under $ENVDIR):
#   venv/            pip wheels pinned to CUDA 13.0 (nvcc 13.0.88 -> PTX ISA 9.0, which a
#                    CUDA 13.0 / R580 driver can JIT; nvcc 13.5 emits ISA 9.5 and would fail there),
#                    plus the real libnvrtc.so.13 (nvidia-cuda-nvrtc) for the GPU-less NVRTC compile
#                    check of every .cu file (xtask/tests/nvrtc_check.rs)
#   link/lib/        lib{cuda,cublas,cublasLt,curand,nvrtc}.so = tiny stubs with the real SONAMEs
#                    (libcuda.so.1, libcublas.so.13, ...), libcudart.so -> real pip libcudart.so.13.
#                    Only used at link time; the GPU machine supplies the real libraries.
# Needs: python3 -m venv, gcc, and the cudarc sources in ~/.cargo/registry (run `cargo fetch` first).
set -euo pipefail
ENVDIR=${1:?usage: setup_cuda_build_env.sh ENVDIR}
mkdir -p "$ENVDIR"
ENVDIR=$(cd "$ENVDIR" && pwd)

if [ ! -x "$ENVDIR/venv/bin/nvcc-ok" ]; then
  python3 -m venv "$ENVDIR/venv" >&2
  "$ENVDIR/venv/bin/pip" install -q --disable-pip-version-check \
    "nvidia-cuda-nvcc==13.0.88" "nvidia-cuda-crt==13.0.88" "nvidia-nvvm==13.0.88" \
    "nvidia-cuda-runtime==13.0.96" "nvidia-cuda-cccl==13.0.85" "nvidia-cuda-nvrtc==13.0.88" >&2
  touch "$ENVDIR/venv/bin/nvcc-ok"; chmod +x "$ENVDIR/venv/bin/nvcc-ok"
fi
CU=$(ls -d "$ENVDIR"/venv/lib/python3*/site-packages/nvidia/cu13)
# Environments made before nvrtc was added to the list get it now.
[ -e "$CU/lib/libnvrtc.so.13" ] ||
  "$ENVDIR/venv/bin/pip" install -q --disable-pip-version-check "nvidia-cuda-nvrtc==13.0.88" >&2
"$CU/bin/nvcc" --version | tail -1 >&2

SRC=$(ls -d "$HOME"/.cargo/registry/src/*/cudarc-0.19.* 2>/dev/null | sort -V | tail -1)
[ -n "$SRC" ] || { echo "cudarc sources not found: run 'cargo fetch' in the workspace first" >&2; exit 1; }
mkdir -p "$ENVDIR/link/lib" "$ENVDIR/link/src"
stub() { # soname file regex
  grep -ohP "pub unsafe fn \K($3)\w*" "$SRC"/src/*/sys/mod.rs | sort -u |
    awk '{print "int " $1 "(void) { return 0; }"}' > "$ENVDIR/link/src/$2.c"
  gcc -shared -fPIC -Wl,-soname,"$1" -o "$ENVDIR/link/lib/$2" "$ENVDIR/link/src/$2.c"
  ln -sf "$2" "$ENVDIR/link/lib/$1"
}
stub libcuda.so.1      libcuda.so     'cu[A-Z]'
stub libcublas.so.13   libcublas.so   'cublas[A-Z]'
stub libcublasLt.so.13 libcublasLt.so 'cublasLt'
stub libcurand.so.10   libcurand.so   'curand'
stub libnvrtc.so.13    libnvrtc.so    'nvrtc'
ln -sf "$CU/lib/libcudart.so.13" "$ENVDIR/link/lib/libcudart.so"
ln -sf "$CU/lib/libcudart.so.13" "$ENVDIR/link/lib/libcudart.so.13"

cat <<EOF
export PATH="$CU/bin:\$PATH"            # nvcc for candle-kernels (cudaforge) and own build.rs
export NVCC="$CU/bin/nvcc"
export CUDA_COMPUTE_CAP=90              # no nvidia-smi here; H100/H200 = sm_90 (cudaforge makes it sm_90a)
export CUDARC_CUDA_VERSION=13000        # cudarc bindings for the CUDA 13.0 driver API (R580)
export CUDA_HOME="$ENVDIR/link"         # cudarc's build.rs adds \$CUDA_HOME/lib to the link path
EOF
