#!/usr/bin/env bash
# magseg GPU bundle runner (made by `cargo xtask gpu-bundle`): runs every GPU test and benchmark once,
# then a short GPU training on phantom data (and the same training briefly on the CPU, for comparison).
#   ./run.sh OUTDIR        writes OUTDIR/tests.txt (PASS/FAIL lines; raw logs in tests_*.log),
#                          OUTDIR/bench.json (+ bench_gpu.json, bench_cupy.json, bench_conv_gpu.json,
#                          bench_conv_torch.json), OUTDIR/train_gpu/ and OUTDIR/train_cpu/ (stdout, stderr,
#                          metrics.jsonl, validation.json), OUTDIR/summary.txt; exit status 0 only when
#                          every test passed and every benchmark and the GPU training ran.
# Needs the NVIDIA driver and PyTorch's CUDA 13 wheels (libnvrtc.so.13, cuBLAS, cuRAND); CuPy and PyTorch
# for the peers. PYTHON overrides the python3 used to find the libraries and to run the peers. Binaries
# shipped compressed (NAME.xz, NAME.gz) are unpacked into a temporary folder, as is the phantom data.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: run.sh OUTDIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/magseg-gpu.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
LIBS=$("$PY" -c "import glob,sys;print(':'.join(sorted({d for p in sys.path for d in glob.glob(p+'/nvidia/*/lib')+glob.glob(p+'/nvidia/*/*/lib')})))")
export LD_LIBRARY_PATH="${LIBS:+$LIBS:}/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" > "$OUT/env.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >> "$OUT/env.txt" 2>&1 || true

BINS="cuda_edt edt_gpu_bench cuda_conv conv_gpu_bench cuda_model magseg"
mkdir -p "$WORK/bin"
for b in $BINS; do
  if [ -f "$HERE/$b" ]; then
    cp "$HERE/$b" "$WORK/bin/$b"
  elif [ -f "$HERE/$b.xz" ]; then
    "$PY" -c "import lzma,shutil,sys;shutil.copyfileobj(lzma.open(sys.argv[1]),open(sys.argv[2],'wb'))" \
      "$HERE/$b.xz" "$WORK/bin/$b"
  elif [ -f "$HERE/$b.gz" ]; then
    gunzip -c "$HERE/$b.gz" > "$WORK/bin/$b"
  else
    echo "FATAL: $b is missing from the bundle" | tee -a "$OUT/env.txt" >&2
    exit 2
  fi
  chmod +x "$WORK/bin/$b"
  if ldd "$WORK/bin/$b" | grep 'not found'; then
    echo "FATAL: $b: the libraries above are not found (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)" | tee -a "$OUT/env.txt" >&2
    exit 2
  fi
done
BIN="$WORK/bin"
FAILED=0

echo "== tests (cuda_edt, cuda_conv, cuda_model) -> $OUT/tests.txt"
: > "$OUT/tests.txt"
for t in cuda_edt cuda_conv cuda_model; do
  timeout 240 "$BIN/$t" --test-threads=1 --nocapture > "$OUT/tests_$t.log" 2>&1
  rc=$?
  sed -nE "s/^test (.*) \.\.\. ok$/PASS $t::\1/p; s/^test (.*) \.\.\. FAILED$/FAIL $t::\1/p" "$OUT/tests_$t.log" \
    | tee -a "$OUT/tests.txt"
  if [ $rc -ne 0 ]; then
    echo "FAIL $t (exit $rc), see $OUT/tests_$t.log" | tee -a "$OUT/tests.txt"
    tail -30 "$OUT/tests_$t.log"
    FAILED=1
  fi
done

echo "== bench: magseg GPU EDT, then the CuPy peer"
"$BIN/edt_gpu_bench" > "$OUT/bench_gpu.json" 2> "$OUT/bench_gpu.err" || { echo "edt_gpu_bench FAILED:"; cat "$OUT/bench_gpu.err"; FAILED=1; }
"$PY" "$HERE/cupy_edt.py" > "$OUT/bench_cupy.json" 2> "$OUT/bench_cupy.err" || echo "cupy_edt.py FAILED"

echo "== bench: magseg GPU conv3d 2x32x64^3 k3, then PyTorch/cuDNN"
timeout 120 "$BIN/conv_gpu_bench" 10 > "$OUT/bench_conv_gpu.json" 2> "$OUT/bench_conv_gpu.err" \
  || { echo "conv_gpu_bench FAILED:"; cat "$OUT/bench_conv_gpu.err"; FAILED=1; }
timeout 120 "$PY" "$HERE/torch_conv3d.py" 10 > "$OUT/bench_conv_torch.json" 2> "$OUT/bench_conv_torch.err" \
  || { echo "torch_conv3d.py FAILED:"; tail -5 "$OUT/bench_conv_torch.err"; }

echo "== training on phantom data: GPU (--time-limit 60), then CPU (--time-limit 30)"
timeout 120 "$BIN/magseg" phantom --out "$WORK/ph" --cases 8 --size 48 > "$OUT/phantom.log" 2>&1 \
  || { echo "magseg phantom FAILED:"; tail -20 "$OUT/phantom.log"; FAILED=1; }
sed -E "s#^path = .*#path = \"$WORK/ph\"#" "$HERE/train-phantom.toml" > "$WORK/train.toml"
for dev in gpu cpu; do
  case $dev in gpu) d=cuda; limit=60;; cpu) d=cpu; limit=30;; esac
  mkdir -p "$OUT/train_$dev"
  timeout $((limit + 90)) "$BIN/magseg" train --config "$WORK/train.toml" --output "$WORK/run_$dev" \
    --device $d --time-limit $limit > "$OUT/train_$dev/stdout.txt" 2> "$OUT/train_$dev/stderr.txt"
  rc=$?
  for f in metrics.jsonl validation.json; do
    [ -f "$WORK/run_$dev/$f" ] && cp "$WORK/run_$dev/$f" "$OUT/train_$dev/"
  done
  if [ $rc -ne 0 ]; then
    echo "magseg train --device $d FAILED (exit $rc):"; tail -20 "$OUT/train_$dev/stderr.txt"
    [ $dev = gpu ] && FAILED=1
  fi
done

"$PY" - "$OUT" <<'PYEOF' | tee "$OUT/summary.txt"
import json, sys, os
out = sys.argv[1]
def load(name):
    try:
        return json.loads(open(os.path.join(out, name)).read().strip().splitlines()[-1])
    except Exception as e:
        return {"error": f"{name}: {e!r}"}
def ratio(a, b, key_a, key_b=None):
    key_b = key_b or key_a
    return round(a[key_a] / b[key_b], 3) if key_a in a and key_b in b and b[key_b] else None
def step_s(dev):
    try:
        rows = [json.loads(l) for l in open(os.path.join(out, f"train_{dev}", "metrics.jsonl"))]
    except Exception as e:
        return {"error": repr(e)}
    s = sorted(r["seconds"] for r in rows if r.get("kind") == "step")[2:] or [float("nan")]
    scores = [r.get("score") for r in rows if "score" in r]
    return {"steps": len(s) + 2, "median_s_per_step": round(s[len(s) // 2], 4), "last_score": scores[-1] if scores else None}
g, c = load("bench_gpu.json"), load("bench_cupy.json")
cg, ct = load("bench_conv_gpu.json"), load("bench_conv_torch.json")
tg, tc = step_s("gpu"), step_s("cpu")
conv_ratios = {k: ratio(cg, ct, k) for k in ["fwd_ms", "bwd_data_ms", "bwd_weight_ms", "fwd_bwd_ms"]}
json.dump({"magseg_edt": g, "cupy_edt": c, "ratio_gpu_edt_over_cupy": ratio(g, c, "gpu_edt_ms_median20", "cupy_edt_ms_median20"),
           "magseg_conv3d": cg, "torch_conv3d": ct, "ratio_magseg_over_torch": conv_ratios,
           "train_gpu": tg, "train_cpu": tc}, open(os.path.join(out, "bench.json"), "w"), indent=1)
print(f"GPU: {ct.get('gpu', g.get('gpu', c.get('gpu', '?')))}")
print(f"{'EDT 240x240x155 (distance to r=40 sphere)  ':46} {'ms (median of 20)':>18}")
print(f"{'magseg GPU (device buffers)':46} {g.get('gpu_edt_ms_median20', g.get('error', '-'))!s:>18}")
print(f"{'magseg GPU (with host transfers)':46} {g.get('gpu_edt_with_transfers_ms_median5', '-')!s:>18}")
print(f"{'magseg CPU edt_squared (once)':46} {g.get('cpu_edt_ms', '-')!s:>18}")
print(f"{'CuPy distance_transform_edt':46} {c.get('cupy_edt_ms_median20', c.get('error', '-'))!s:>18}")
print(f"{'ratio magseg GPU / CuPy':46} {ratio(g, c, 'gpu_edt_ms_median20', 'cupy_edt_ms_median20')!s:>18}")
print(f"identical to CPU: {g.get('identical_to_cpu')}; max distance magseg {g.get('max_distance_mm')} mm, CuPy {c.get('max_distance_mm')} mm")
print()
print(f"{'conv3d 2x32->32 64^3 k3 p1 f32 (ms, median)':46} {'magseg':>10} {'torch':>10} {'ratio':>8}")
for k in ["fwd_ms", "bwd_data_ms", "bwd_weight_ms", "fwd_bwd_ms"]:
    print(f"{k:46} {cg.get(k, cg.get('error', '-'))!s:>10} {ct.get(k, ct.get('error', '-'))!s:>10} {conv_ratios[k]!s:>8}")
print(f"{'torch fwd with TF32':46} {'':>10} {ct.get('fwd_tf32_ms', '-')!s:>10}")
print()
print(f"training (train-phantom.toml, U-Net base 8, 32^3 patches, batch 2): seconds per step (median)")
print(f"  GPU: {tg.get('median_s_per_step', tg.get('error'))} s over {tg.get('steps')} steps, last validation score {tg.get('last_score')}")
print(f"  CPU: {tc.get('median_s_per_step', tc.get('error'))} s over {tc.get('steps')} steps (same machine, all cores)")
PYEOF
[ $FAILED -eq 0 ] && echo "ALL PASSED" || { echo "SOME FAILED"; exit 1; }
