# Summary of a GPU bundle run (run.sh calls it last): reads whatever result files OUTDIR holds (from
# this and earlier run.sh calls), prints the tables side by side with the peers and writes
# OUTDIR/bench.json. Ratios are magseg time / peer time (below 1 = magseg faster) or, for Dice,
# magseg - peer. Usage: python3 summary.py OUTDIR
import glob
import json
import os
import re
import sys

OUT = sys.argv[1]
REGIONS = ["WT", "TC", "ET"]


def path(*p):
    return os.path.join(OUT, *p)


def last_json(name):
    """The last JSON object line of a file (None when missing or unreadable)."""
    try:
        lines = [l for l in open(path(name)).read().splitlines() if l.strip().startswith("{")]
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None


def peer_lines(name):
    """`name value` lines of gpu_peer.py / magms_unet_ref.py output, plus its final `JSON {...}`."""
    res = {}
    try:
        text = open(path(name)).read().splitlines()
    except OSError:
        return None
    for line in text:
        if line.startswith("JSON "):
            try:
                res.update(json.loads(line[5:]))
            except ValueError:
                pass
            continue
        parts = line.split(" ", 1)
        if len(parts) == 2:
            try:
                res.setdefault(parts[0], float(parts[1]))
            except ValueError:
                res.setdefault(parts[0], parts[1])
    return res


def ratio(a, b):
    return round(a / b, 3) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def cell(v, width=12):
    return f"{'-' if v is None else v!s:>{width}}"


summary = {}
gpu = None
env = path("env.txt")
if os.path.exists(env):
    names = [l.strip() for l in open(env) if "," in l and "LD_LIBRARY_PATH" not in l]
    gpu = names[-1] if names else None
print(f"GPU: {gpu or '?'}")
summary["gpu"] = gpu

# Tests.
if os.path.exists(path("tests.txt")):
    lines = open(path("tests.txt")).read().splitlines()
    passed = sum(l.startswith("PASS ") for l in lines)
    failed = [l for l in lines if l.startswith("FAIL")]
    summary["tests"] = {"passed": passed, "failed": failed}
    print(f"\nequality tests: {passed} PASS, {len(failed)} FAIL")
    for l in failed:
        print("  " + l)

# EDT and HD95.
g, c = last_json("bench_edt_gpu.json"), last_json("bench_edt_cupy.json")
if g or c:
    g, c = g or {}, c or {}
    print(f"\n{'EDT / HD95, 240x240x155, 1 mm (ms)':48} {'magseg':>12} {'CuPy':>12} {'ratio':>8}")
    rows = [
        ("EDT, device buffers (median of 20)", "gpu_edt_ms_median20", "cupy_edt_ms_median20"),
        ("EDT, with host transfers", "gpu_edt_with_transfers_ms_median5", None),
        ("HD95 of two spheres, device-resident", "gpu_hd95_ms_median20", "cupy_hd95_ms_median20"),
        ("HD95, with host transfers", "gpu_hd95_with_transfers_ms_median5", "cupy_hd95_with_transfers_ms_median5"),
        ("CPU (magseg, all cores): EDT", "cpu_edt_ms", None),
        ("CPU (magseg, all cores): HD95", "cpu_hd95_ms", None),
    ]
    summary["edt"] = {"magseg": g, "cupy": c, "ratios": {}}
    for label, kg, kc in rows:
        a, b = g.get(kg), c.get(kc) if kc else None
        summary["edt"]["ratios"][kg] = ratio(a, b)
        print(f"{label:48} {cell(a)} {cell(b)} {cell(ratio(a, b), 8)}")
    print(f"identical to CPU: {g.get('identical_to_cpu')}; HD95 magseg {g.get('hd95_mm')} mm, CuPy {c.get('hd95_mm')} mm")

# conv3d.
convs = sorted(glob.glob(path("bench_conv_gpu_*.json")))
if convs:
    summary["conv3d"] = {}
    print(f"\n{'conv3d k3 p1, C -> C (ms, median)':48} {'magseg':>12} {'cuDNN':>12} {'ratio':>8}")
    for f in convs:
        tag = os.path.basename(f)[len("bench_conv_gpu_"):-len(".json")]
        a = last_json(os.path.basename(f)) or {}
        b = last_json(f"bench_conv_torch_{tag}.json") or {}
        summary["conv3d"][tag] = {"magseg": a, "torch": b}
        pairs = [(k, k) for k in ["fwd_ms", "bwd_data_ms", "bwd_weight_ms", "fwd_bwd_ms", "bf16_fwd_ms", "bf16_fwd_bwd_ms"]]
        pairs.append(("direct_fwd_bwd_ms", "fwd_bwd_ms"))  # the direct reference kernels against cuDNN f32
        # bf16 without the channels-last staging (the NCDHW gathers) against cuDNN bf16
        pairs += [("bf16_ncdhw_fwd_ms", "bf16_fwd_ms"), ("bf16_ncdhw_fwd_bwd_ms", "bf16_fwd_bwd_ms")]
        # f32 as tf32 on tensor cores (MAGSEG_CONV_CUDA=tf32) against cuDNN with allow_tf32
        pairs += [("tf32_fwd_ms", "fwd_tf32_ms"), ("tf32_fwd_bwd_ms", "fwd_bwd_tf32_ms")]
        for k, kt in pairs:
            print(f"{tag + ' ' + k:48} {cell(a.get(k, a.get('error')))} {cell(b.get(kt, b.get('error')))} "
                  f"{cell(ratio(a.get(k), b.get(kt)), 8)}")
        checks = {k: v for k, v in a.items() if k.startswith("check_")}
        if checks:
            print(f"{tag + ' GEMM vs direct (max rel. difference)':48} {checks}")

# Model step and inference.
peer = peer_lines("peer_gpu.txt")
model = {}
try:
    for line in open(path("bench_model.jsonl")):
        if line.strip().startswith("{"):
            model.update(json.loads(line))
except OSError:
    pass
if model or peer:
    p = peer or {}
    summary["model"] = {"magseg": model, "peer": p}
    print(f"\n{'MAG-MS train step, 4 modalities, batch 1 (ms)':48} {'magseg':>12} {'PyTorch':>12} {'ratio':>8}")
    # magseg tf32 against the peer's "fp32", whose convolutions run as TF32 (gpu_peer.py sets
    # torch.backends.cudnn.allow_tf32 = True, PyTorch's default)
    for prec, peer_prec in [("fp32", "fp32"), ("tf32", "fp32"), ("bf16", "bf16")]:
        a = model.get(f"magseg_step_unetr_M4_roi96_bs1_{prec}_ms")
        b = p.get(f"magms_train_M4_roi96_bs1_{peer_prec}_ms")
        label = f"UNETR encoders, 96^3, {prec}" + ("" if prec == peer_prec else f" vs {peer_prec}")
        print(f"{label:48} {cell(a)} {cell(b)} {cell(ratio(a, b), 8)}")
    for prec in ["fp32", "tf32", "bf16"]:
        a = model.get(f"magseg_step_unet_M4_roi96_bs1_{prec}_ms")
        print(f"{'U-Net encoders (base 16), 96^3, ' + prec:48} {cell(a)} {'':>12}")
    # Peak device memory of the step runs (magseg: its pool's high-water mark over the process;
    # PyTorch: torch.cuda.max_memory_allocated over the timed steps).
    for prec, peer_prec in [("fp32", "fp32"), ("tf32", "fp32"), ("bf16", "bf16")]:
        a = model.get(f"magseg_step_unetr_M4_roi96_bs1_{prec}_peak_GiB")
        b = p.get(f"magms_train_M4_roi96_bs1_{peer_prec}_peak_GiB")
        if a is not None or b is not None:
            print(f"{'peak device memory (GiB), UNETR, ' + prec:48} {cell(a)} {cell(b)} {cell(ratio(a, b), 8)}")
    print(f"\n{'sliding window, 240x240x155, 96^3 windows (ms)':48} {'magseg':>12} {'MONAI':>12}")
    for prec, ov in [("fp32", "0.5"), ("bf16", "0.5"), ("bf16", "0.25")]:
        key = f"magseg_infer_unetr_M4_roi96_bs1_{prec}_ms"
        a = None
        try:
            for line in open(path("bench_model.jsonl")):
                j = json.loads(line) if line.strip().startswith("{") else {}
                if key in j and str(j.get("overlap")) == ov:
                    a = j[key]
        except OSError:
            pass
        b = p.get(f"unetr_infer_240x240x155_roi96_ov{ov}_{prec}_ms")
        print(f"{'MAG-MS 4 encoders / UNETR 4-channel, ov ' + ov + ', ' + prec:48} {cell(a)} {cell(b)}")

# Where the time goes: model_bench --profile runs (span totals per iteration, inclusive of nested
# spans, measured with a device synchronisation at every span boundary).
profiled = []
try:
    for line in open(path("bench_model_profile.jsonl")):
        if line.strip().startswith("{"):
            try:
                profiled.append(json.loads(line))
            except ValueError:
                pass
except OSError:
    pass
if profiled:
    summary["model_profile"] = profiled
for run in profiled:
    tag = next((k[:-3] for k in run if k.endswith("_ms") and not k.endswith("_all_ms")), "?")
    total = run.get(tag + "_ms")
    print(f"\nprofile of {tag} (--profile; {total} ms per iteration with the synchronisations)")
    phases = run.get("phases") or {}
    if phases:
        order = ["forward", "loss", "backward", "optimizer", "upload", "encode", "decode", "download", "accumulate"]
        keys = [k for k in order if k in phases] + [k for k in phases if k not in order]
        print("  phases (median ms): " + ", ".join(f"{k} {phases[k]}" for k in keys))
    spans = sorted((run.get("profile") or {}).items(), key=lambda kv: -(kv[1].get("ms") or 0))
    print(f"  {'span (inclusive)':46} {'ms/iter':>12} {'calls/iter':>12}")
    for name, v in spans[:15]:
        print(f"  {name:46} {cell(v.get('ms'))} {cell(v.get('calls'))}")

# Phantom training.
for dev in ["gpu", "cpu"]:
    try:
        rows = [json.loads(l) for l in open(path(f"train_{dev}", "metrics.jsonl"))]
    except (OSError, ValueError):
        continue
    s = sorted(r["seconds"] for r in rows if r.get("kind") == "step")
    med = s[len(s) // 2] if s else None
    scores = [r.get("score") for r in rows if "score" in r]
    summary[f"phantom_{dev}"] = {"steps": len(s), "median_s_per_step": med, "last_score": scores[-1] if scores else None}
    print(f"\nphantom training on the {dev.upper()}: {len(s)} steps, median {med} s/step, "
          f"last validation score {scores[-1] if scores else None}")

# Accuracy at equal budget.
try:
    val = json.load(open(path("accuracy_magseg", "validation.json")))
    mine = {s["subset"]: dict(s["dice"]) for s in val["subsets"]}
except (OSError, ValueError, KeyError):
    mine = None
ref = peer_lines("accuracy_peer.txt")
if mine or ref:
    theirs = (ref or {}).get("subsets", {})
    steps = None
    try:
        steps = sum(1 for l in open(path("accuracy_magseg", "metrics.jsonl")) if '"step"' in l and '"kind":"step"' in l)
    except OSError:
        pass
    print(f"\naccuracy at equal GPU budget (Dice on 3 held-out BraTS cases, 2 mm): magseg {steps} steps, "
          f"peer {(ref or {}).get('steps')} steps in {(ref or {}).get('train_s')} s")
    print(f"{'subset':26} {'magseg WT/TC/ET':>24} {'peer WT/TC/ET':>24}")
    names = list(theirs) or list(mine or {})
    acc = {"magseg": {}, "peer": theirs}
    for n in names:
        a = [round(mine[n].get(r, float("nan")), 3) for r in REGIONS] if mine and n in mine else None
        acc["magseg"][n] = a
        b = theirs.get(n)
        print(f"{n:26} {cell(a, 24)} {cell(b, 24)}")
    def mean(rows):
        rows = [r for r in rows if r]
        return [round(sum(r[i] for r in rows) / len(rows), 4) for i in range(3)] if rows else None
    ma, mb = mean(list(acc["magseg"].values())), (ref or {}).get("mean_over_subsets_WT_TC_ET")
    acc["mean_magseg"], acc["mean_peer"] = ma, mb
    print(f"{'mean over subsets':26} {cell(ma, 24)} {cell(mb, 24)}")
    if ma and mb:
        acc["goal_met"] = all(a >= b for a, b in zip(ma, mb))
        print(f"goal (magseg >= peer for every region): {acc['goal_met']}")
    summary["accuracy"] = acc

# The goals, where this run measured both sides.
goals = []
e = summary.get("edt", {}).get("ratios", {}).get("gpu_edt_ms_median20")
if e is not None:
    goals.append(("GPU EDT time <= 2x CuPy", e, e <= 2))
for tag, pair in summary.get("conv3d", {}).items():
    for k, kt in [("fwd_bwd_ms", "fwd_bwd_ms"), ("bf16_fwd_bwd_ms", "bf16_fwd_bwd_ms"),
                  ("tf32_fwd_bwd_ms", "fwd_bwd_tf32_ms")]:
        r = ratio(pair["magseg"].get(k), pair["torch"].get(kt))
        if r is not None:
            goals.append((f"conv3d {tag} {k}: time <= 2x cuDNN (>= 0.5x throughput)", r, r <= 2))
m = summary.get("model", {})
# tf32 against the peer's fp32 step: the like-for-like pair (the peer's fp32 convolutions run as TF32)
for prec, peer_prec in [("fp32", "fp32"), ("tf32", "fp32"), ("bf16", "bf16")]:
    r = ratio(m.get("magseg", {}).get(f"magseg_step_unetr_M4_roi96_bs1_{prec}_ms"),
              m.get("peer", {}).get(f"magms_train_M4_roi96_bs1_{peer_prec}_ms"))
    if r is not None:
        vs = "" if prec == peer_prec else f" vs PyTorch {peer_prec} (TF32 convolutions)"
        goals.append((f"MAG-MS train step 96^3 {prec}{vs}: time <= 1x PyTorch", r, r <= 1))
if "goal_met" in summary.get("accuracy", {}):
    goals.append(("accuracy: mean Dice over subsets >= peer (WT, TC, ET)", None, summary["accuracy"]["goal_met"]))
if goals:
    print("\ngoals of the issue (ratio = magseg / peer time)")
    for what, r, ok in goals:
        print(f"  {'MET ' if ok else 'NOT '} {what}" + (f": {r}" if r is not None else ""))
summary["goals"] = [{"goal": w, "ratio": r, "met": ok} for w, r, ok in goals]
json.dump(summary, open(path("bench.json"), "w"), indent=1)
