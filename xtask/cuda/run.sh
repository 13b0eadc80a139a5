#!/usr/bin/env bash
# magseg GPU bundle runner (made by `cargo xtask gpu-bundle`; docs/GPU.md): runs the GPU equality tests,
# the benchmarks next to their peers, and the accuracy comparison, by stage, writing files into OUTDIR.
#
#   ./run.sh OUTDIR [STAGE...]     default stages: tests kernels model peer phantom (~12 min);
#                                  `all` adds accuracy (~22 min in all)
#
#   tests     every CPU-against-GPU equality test (cuda_edt, cuda_conv, cuda_model[_tf32]): OUTDIR/tests.txt holds
#             one PASS/FAIL line per test, raw logs in tests_*.log                            (~2 min)
#   kernels   magseg GPU EDT + HD95 vs CuPy (cupy_edt.py); magseg conv3d on the peer's shapes vs
#             PyTorch/cuDNN (torch_conv3d.py)                                                  (~1 min)
#   model     magseg MAG-MS train step (96³, batch 1, 4 modalities; UNETR as the peer, f32, bf16, tf32) and
#             sliding-window inference of a 240×240×155 four-modality case (model_bench), then
#             one step and one inference again with --profile (bench_model_profile.jsonl) (~3 min)
#   peer      ../shared/peers/gpu_peer.py (cuDNN conv3d, MONAI UNETR, the MAG-MS reference step, CuPy
#             EDT), with the bundled MONAI/einops wheels                                       (~4 min)
#   phantom   a short phantom training on the GPU (60 s) and on the CPU (30 s)                (~3 min)
#   accuracy  MAG-MS U-Net on 12 BraTS cases at 2 mm for $BUDGET_S (270) s on the GPU
#             (train-brats-2mm-gpu.toml), then the PyTorch peer magms_unet_ref.py on the same cases
#             for the same time; Dice WT/TC/ET of all 15 subsets on the other 3 cases       (~11 min)
#             = accuracy-magseg (~5.5 min) + accuracy-peer (~5 min): the two halves can run in two
#             calls on the same machine (one call of the device tool is at most 10 minutes)
#
# The device time of one session is short: run `tests kernels` first, the rest in later calls.
# OUTDIR/summary.txt (printed at the end) tabulates whatever results OUTDIR holds, from this and
# earlier calls; OUTDIR/bench.json has the same numbers. Exit status 0 only when every test of the run
# stages passed and every magseg benchmark/training ran (a failing peer is reported, not fatal).
# Needs the NVIDIA driver and PyTorch's CUDA 13 wheels (libnvrtc.so.13, cuBLAS, cuRAND), CuPy for the
# EDT peer. PYTHON overrides the python3 used to find the libraries and to run the peers. Binaries
# shipped compressed (NAME.xz, NAME.gz) are unpacked into a temporary folder.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: run.sh OUTDIR [tests kernels model peer phantom accuracy accuracy-magseg accuracy-peer | all]}
shift
STAGES=${*:-tests kernels model peer phantom}
[ "$STAGES" = all ] && STAGES="tests kernels model peer phantom accuracy"
# `accuracy` is its two halves.
STAGES=$(echo " $STAGES " | sed 's/ accuracy / accuracy-magseg accuracy-peer /g' | xargs)
for s in $STAGES; do
  case $s in tests|kernels|model|peer|phantom|accuracy-magseg|accuracy-peer) ;; *) echo "unknown stage $s" >&2; exit 2;; esac
done
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-270}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/magseg-gpu.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
LIBS=$("$PY" -c "import glob,sys;print(':'.join(sorted({d for p in sys.path for d in glob.glob(p+'/nvidia/*/lib')+glob.glob(p+'/nvidia/*/*/lib')})))")
export LD_LIBRARY_PATH="${LIBS:+$LIBS:}/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
{
  echo "stages: $STAGES"
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || true
} >> "$OUT/env.txt"
has() { case " $STAGES " in *" $1 "*) return 0;; *) return 1;; esac; }
# `has`, logging the stage's start time to OUT/times.txt.
stage() { has "$1" && echo "$(date +%T) stage $1" >> "$OUT/times.txt"; }

# Unpack and check the binaries the stages need.
BINS=""
has tests && BINS="$BINS cuda_edt cuda_conv cuda_model cuda_model_tf32"
has kernels && BINS="$BINS edt_gpu_bench conv_gpu_bench"
has model && BINS="$BINS model_bench"
{ has phantom || has accuracy-magseg; } && BINS="$BINS magseg"
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
fail() { echo "FAILED: $*"; FAILED=1; }

if stage tests; then
  echo "== tests (cuda_edt, cuda_conv, cuda_model, cuda_model_tf32) -> $OUT/tests.txt"
  : > "$OUT/tests.txt"
  for t in cuda_edt cuda_conv cuda_model cuda_model_tf32; do
    timeout 300 "$BIN/$t" --test-threads=1 --nocapture > "$OUT/tests_$t.log" 2>&1
    rc=$?
    # With --nocapture a test's own output sits between `test NAME ... ` and its `ok` / `FAILED`.
    awk -v t="$t" '
      /^test .* \.\.\. / { name = $2; sub(/^test .* \.\.\. /, "") }
      name != "" && ($0 == "ok" || $0 == "FAILED") {
        print ($0 == "ok" ? "PASS " : "FAIL ") t "::" name; name = ""
      }' "$OUT/tests_$t.log" | tee -a "$OUT/tests.txt"
    if [ $rc -ne 0 ]; then
      echo "FAIL $t (exit $rc), see $OUT/tests_$t.log" | tee -a "$OUT/tests.txt"
      tail -30 "$OUT/tests_$t.log"
      FAILED=1
    fi
  done
fi

if stage kernels; then
  echo "== kernels: magseg GPU EDT + HD95, then CuPy"
  timeout 120 "$BIN/edt_gpu_bench" > "$OUT/bench_edt_gpu.json" 2> "$OUT/bench_edt_gpu.err" \
    || { fail "edt_gpu_bench"; tail -5 "$OUT/bench_edt_gpu.err"; }
  timeout 120 "$PY" "$HERE/cupy_edt.py" > "$OUT/bench_edt_cupy.json" 2> "$OUT/bench_edt_cupy.err" \
    || echo "peer cupy_edt.py failed: $(tail -1 "$OUT/bench_edt_cupy.err")"
  echo "== kernels: magseg conv3d on the peer's shapes, then PyTorch/cuDNN"
  for shape in "2 32 96" "2 64 48" "1 16 128" "2 32 64"; do
    set -- $shape
    tag="n$1_c$2_s$3"
    timeout 150 "$BIN/conv_gpu_bench" 10 "$1" "$2" "$3" > "$OUT/bench_conv_gpu_$tag.json" 2> "$OUT/bench_conv_gpu_$tag.err" \
      || { fail "conv_gpu_bench $shape"; tail -5 "$OUT/bench_conv_gpu_$tag.err"; }
    timeout 150 "$PY" "$HERE/torch_conv3d.py" 10 "$1" "$2" "$3" > "$OUT/bench_conv_torch_$tag.json" 2> "$OUT/bench_conv_torch_$tag.err" \
      || echo "peer torch_conv3d.py $shape failed: $(tail -1 "$OUT/bench_conv_torch_$tag.err")"
  done
fi

if stage model; then
  echo "== model: magseg MAG-MS train step and sliding-window inference"
  : > "$OUT/bench_model.jsonl"
  : > "$OUT/bench_model.err"
  for args in "step --precision f32" "step --precision bf16" "step --precision tf32" \
    "step --backbone unet --precision f32" "step --backbone unet --precision bf16" \
    "step --backbone unet --precision tf32" "infer --precision f32 --iters 3 --warmup 1" \
    "infer --precision bf16 --iters 3 --warmup 1" "infer --precision bf16 --overlap 0.25 --iters 3 --warmup 1"; do
    # shellcheck disable=SC2086
    timeout 240 "$BIN/model_bench" $args --device cuda >> "$OUT/bench_model.jsonl" 2> "$WORK/model_bench.err"
    rc=$?
    { echo "== model_bench $args (exit $rc)"; cat "$WORK/model_bench.err"; } >> "$OUT/bench_model.err"
    [ $rc -eq 0 ] || { fail "model_bench $args"; head -c 600 "$WORK/model_bench.err"; echo; }
  done
  # Where the time goes: the same runs with --profile (a device synchronisation at every span
  # boundary, so their totals are slower; their own file keeps bench_model.jsonl's tables as they are).
  : > "$OUT/bench_model_profile.jsonl"
  for args in "step --precision f32 --iters 2 --warmup 1 --profile" "infer --precision f32 --iters 1 --warmup 1 --profile"; do
    # shellcheck disable=SC2086
    timeout 120 "$BIN/model_bench" $args --device cuda >> "$OUT/bench_model_profile.jsonl" 2> "$WORK/model_bench.err"
    rc=$?
    { echo "== model_bench $args (exit $rc)"; cat "$WORK/model_bench.err"; } >> "$OUT/bench_model.err"
    [ $rc -eq 0 ] || { fail "model_bench $args"; head -c 600 "$WORK/model_bench.err"; echo; }
  done
fi

if stage peer; then
  echo "== peer: gpu_peer.py (MONAI $(ls "$HERE"/wheels 2>/dev/null | tr '\n' ' '))"
  mkdir -p "$WORK/py"
  "$PY" -m pip install --quiet --no-index --no-deps --target "$WORK/py" "$HERE"/wheels/*.whl > "$OUT/peer_pip.log" 2>&1 \
    || echo "pip install of the bundled wheels failed (see peer_pip.log)"
  PYTHONPATH="$WORK/py${PYTHONPATH:+:$PYTHONPATH}" timeout 420 "$PY" "$HERE/gpu_peer.py" > "$OUT/peer_gpu.txt" 2> "$OUT/peer_gpu.err" \
    || echo "gpu_peer.py ended with an error or the time limit; its lines so far are in peer_gpu.txt"
fi

if stage phantom; then
  echo "== phantom training: GPU (--time-limit 60), then CPU (--time-limit 30)"
  timeout 120 "$BIN/magseg" phantom --out "$WORK/ph" --cases 8 --size 48 > "$OUT/phantom.log" 2>&1 \
    || { fail "magseg phantom"; tail -20 "$OUT/phantom.log"; }
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
      echo "magseg train --device $d failed (exit $rc):"; tail -20 "$OUT/train_$dev/stderr.txt"
      [ $dev = gpu ] && FAILED=1
    fi
  done
fi

# Both halves train on the bundle's prepared cases for the same BUDGET_S seconds.
if { has accuracy-magseg || has accuracy-peer; } && { [ ! -f "$HERE/data/train.npz" ] || [ ! -f "$HERE/data/test.npz" ]; }; then
  fail "the bundle has no data/train.npz, data/test.npz (gpu-bundle found no BraTS data to prepare)"
else
  if stage accuracy-magseg; then
    echo "== accuracy: magseg MAG-MS ${BUDGET_S} s on the GPU"
    "$PY" "$HERE/npz_to_nifti.py" "$WORK/brats2mm" "$HERE/data/train.npz" "$HERE/data/test.npz" > "$OUT/accuracy_prep.log" 2>&1 \
      || fail "npz_to_nifti.py"
    mkdir -p "$OUT/accuracy_magseg"
    sed -E -e "s#^path = .*#path = \"$WORK/brats2mm\"#" -e "s#^output = .*#output = \"$WORK/acc_run\"#" \
      -e "s#^time_limit_s = .*#time_limit_s = $BUDGET_S#" "$HERE/train-brats-2mm-gpu.toml" > "$OUT/accuracy_magseg/train.toml"
    timeout $((BUDGET_S + 300)) "$BIN/magseg" train --config "$OUT/accuracy_magseg/train.toml" \
      > "$OUT/accuracy_magseg/stdout.txt" 2> "$OUT/accuracy_magseg/stderr.txt" \
      || { fail "magseg train (accuracy)"; tail -20 "$OUT/accuracy_magseg/stderr.txt"; }
    for f in metrics.jsonl validation.json; do
      [ -f "$WORK/acc_run/$f" ] && cp "$WORK/acc_run/$f" "$OUT/accuracy_magseg/"
    done
  fi
  if stage accuracy-peer; then
    echo "== accuracy: the PyTorch peer magms_unet_ref.py ${BUDGET_S} s on the same cases"
    timeout $((BUDGET_S + 300)) "$PY" "$HERE/magms_unet_ref.py" "$HERE/data/train.npz" "$HERE/data/test.npz" "$BUDGET_S" \
      > "$OUT/accuracy_peer.txt" 2> "$OUT/accuracy_peer.err" \
      || echo "peer magms_unet_ref.py failed: $(tail -3 "$OUT/accuracy_peer.err")"
  fi
fi

echo "$(date +%T) done" >> "$OUT/times.txt"
"$PY" "$HERE/summary.py" "$OUT" | tee "$OUT/summary.txt"
if [ $FAILED -eq 0 ]; then echo "ALL PASSED ($STAGES)"; else echo "SOME FAILED ($STAGES)"; exit 1; fi
