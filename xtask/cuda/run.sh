#!/usr/bin/env bash
# magseg GPU bundle runner (made by `cargo xtask gpu-bundle`): runs every GPU test and benchmark once.
#   ./run.sh OUTDIR        writes OUTDIR/tests.txt, OUTDIR/bench.json (+ bench_gpu.json, bench_cupy.json),
#                          OUTDIR/summary.txt; exit status 0 only when every test passed.
# Needs the NVIDIA driver and PyTorch's CUDA 13 wheels (libnvrtc.so.13); CuPy for the peer. PYTHON
# overrides the python3 used to find the libraries and to run the peer.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: run.sh OUTDIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
LIBS=$("$PY" -c "import glob,sys;print(':'.join(sorted({d for p in sys.path for d in glob.glob(p+'/nvidia/*/lib')})))")
export LD_LIBRARY_PATH="${LIBS:+$LIBS:}/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" > "$OUT/env.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >> "$OUT/env.txt" 2>&1 || true

for b in cuda_edt edt_gpu_bench; do
  if ldd "$HERE/$b" | grep 'not found'; then
    echo "FATAL: $b: the libraries above are not found (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)" | tee -a "$OUT/env.txt" >&2
    exit 2
  fi
done

echo "== tests (cuda_edt) -> $OUT/tests.txt"
"$HERE/cuda_edt" --test-threads=1 > "$OUT/tests.txt" 2>&1
TRC=$?
sed -nE 's/^test (.*) \.\.\. ok$/PASS \1/p; s/^test (.*) \.\.\. FAILED$/FAIL \1/p' "$OUT/tests.txt"
[ $TRC -eq 0 ] || { echo "tests FAILED (exit $TRC), see $OUT/tests.txt"; tail -30 "$OUT/tests.txt"; }

echo "== bench: magseg GPU EDT, then the CuPy peer"
"$HERE/edt_gpu_bench" > "$OUT/bench_gpu.json" 2> "$OUT/bench_gpu.err"
BRC=$?
[ $BRC -eq 0 ] || { echo "edt_gpu_bench FAILED (exit $BRC):"; cat "$OUT/bench_gpu.err"; }
"$PY" "$HERE/cupy_edt.py" > "$OUT/bench_cupy.json" 2> "$OUT/bench_cupy.err" || echo "cupy_edt.py FAILED"

"$PY" - "$OUT" <<'PYEOF' | tee "$OUT/summary.txt"
import json, sys, os
out = sys.argv[1]
def load(name):
    try:
        return json.loads(open(os.path.join(out, name)).read().strip().splitlines()[-1])
    except Exception as e:
        return {"error": f"{name}: {e!r}"}
g, c = load("bench_gpu.json"), load("bench_cupy.json")
ratio = None
if "gpu_edt_ms_median20" in g and "cupy_edt_ms_median20" in c:
    ratio = round(g["gpu_edt_ms_median20"] / c["cupy_edt_ms_median20"], 4)
json.dump({"magseg": g, "cupy": c, "ratio_gpu_edt_over_cupy": ratio}, open(os.path.join(out, "bench.json"), "w"), indent=1)
print(f"GPU: {g.get('gpu', c.get('gpu', '?'))}")
print(f"{'EDT 240x240x155 (distance to r=40 sphere)  ':46} {'ms (median of 20)':>18}")
print(f"{'magseg GPU (device buffers)':46} {g.get('gpu_edt_ms_median20', g.get('error', '-'))!s:>18}")
print(f"{'magseg GPU (with host transfers)':46} {g.get('gpu_edt_with_transfers_ms_median5', '-')!s:>18}")
print(f"{'magseg CPU edt_squared (once)':46} {g.get('cpu_edt_ms', '-')!s:>18}")
print(f"{'CuPy distance_transform_edt':46} {c.get('cupy_edt_ms_median20', c.get('error', '-'))!s:>18}")
print(f"{'ratio magseg GPU / CuPy':46} {ratio!s:>18}")
print(f"identical to CPU: {g.get('identical_to_cpu')}; max distance magseg {g.get('max_distance_mm')} mm, CuPy {c.get('max_distance_mm')} mm")
PYEOF
[ $TRC -eq 0 ] && [ $BRC -eq 0 ] && echo "ALL PASSED" || { echo "SOME FAILED"; exit 1; }
