#!/usr/bin/env python3
"""Generate PyTorch reference values (golden files) for the magseg-kernels crate.

Run from anywhere:

    /work/main/.peers/bin/python crates/kernels/tests/golden/gen.py

Writes, next to this script:
  kernels.safetensors   every tensor of every case (float32, plus small int64/float64 parameter tensors)
  cases.json            human-readable list of the cases (name, op, stride, padding, eps, shapes, ...)

Reference: torch.nn.functional.conv3d / conv_transpose3d / instance_norm and torch autograd, on CPU.

Precision: the random inputs (x, w, bias, gamma, beta, upstream gradient g) are drawn in float32 and
stored as float32.  The forward pass and the gradients are then computed in float64 from exactly
those float32 values and rounded to float32 only for storage, so every expected value is the
correctly rounded float32 of the exact result (relative error <= 2^-24 per element, far below the
1e-4 test tolerance).  The script also runs the same cases in float32 and prints how far torch's own
float32 path is from the float64 reference, which shows the error level a correct float32 kernel has.

For every case, with loss L = sum(y * g):
  <case>.x, <case>.w, <case>.b (if bias), <case>.gamma / <case>.beta (if affine)   inputs
  <case>.g                                                                          upstream gradient (shape of y)
  <case>.y                                                                          output
  <case>.dx, <case>.dw, <case>.db, <case>.dgamma, <case>.dbeta                       dL/d(input)
  <case>.params  int64  conv3d:            [sd, sh, sw, pd, ph, pw, has_bias]
                        conv_transpose3d:  [sd, sh, sw, 0, 0, 0, has_bias]   (padding is always 0)
                        instance_norm:     [has_affine]
  <case>.eps     float64 [1]   (instance_norm only)

The op of a case is given by its name prefix: conv3d_NN, conv_transpose3d_NN, instance_norm_NN.
Deterministic: fixed seed, one CPU thread, deterministic algorithms; running it twice gives
byte-identical files.
"""

import json
import os
import platform
import sys

import numpy as np
import safetensors
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20261201
EPS = 1e-5

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

# --------------------------------------------------------------------------------------------
# Case definitions
# --------------------------------------------------------------------------------------------

# conv3d: (batch, c_in, c_out, (D, H, W), kernel (kD, kH, kW), stride, padding, bias)
CONV3D = [
    (1, 1, 1, (5, 6, 7), (3, 3, 3), (1, 1, 1), (0, 0, 0), True),  # single channel, valid conv
    (2, 3, 4, (7, 5, 9), (3, 3, 3), (1, 1, 1), (1, 1, 1), True),  # "same" conv, odd sizes, batch 2
    (2, 4, 8, (9, 7, 6), (3, 3, 3), (2, 2, 2), (1, 1, 1), True),  # k3 s2 p1 (encoder downsampling), odd sizes
    (1, 8, 5, (6, 8, 7), (2, 2, 2), (2, 2, 2), (0, 0, 0), False),  # k2 s2, odd W drops last plane
    (2, 5, 6, (5, 7, 6), (2, 2, 2), (1, 1, 1), (0, 0, 0), True),  # k2 s1
    (1, 16, 16, (6, 6, 6), (1, 1, 1), (1, 1, 1), (0, 0, 0), True),  # pointwise
    (2, 7, 3, (7, 7, 5), (1, 1, 1), (2, 2, 2), (0, 0, 0), False),  # pointwise with stride 2
    (1, 32, 16, (5, 6, 7), (3, 3, 3), (1, 1, 1), (1, 1, 1), True),  # wider
    (1, 64, 32, (4, 5, 6), (3, 3, 3), (1, 1, 1), (1, 1, 1), True),  # 64 input channels
    (2, 16, 64, (5, 5, 5), (3, 3, 3), (2, 2, 2), (1, 1, 1), True),  # 64 output channels, stride 2
    (1, 64, 64, (5, 4, 6), (1, 1, 1), (1, 1, 1), (0, 0, 0), True),  # 64 -> 64 pointwise (output head style)
    (2, 3, 5, (6, 9, 8), (3, 3, 3), (1, 2, 2), (1, 0, 1), True),  # per-axis stride and padding
    (1, 2, 3, (8, 9, 10), (3, 3, 3), (2, 2, 2), (0, 0, 0), False),  # k3 s2 p0, even and odd sizes
    (2, 4, 4, (5, 6, 7), (2, 2, 2), (1, 1, 1), (1, 1, 1), True),  # k2 p1 (output grows by one)
    (1, 3, 2, (5, 7, 6), (1, 3, 2), (1, 1, 2), (0, 1, 0), True),  # non-cubic kernel
]

# conv_transpose3d: (batch, c_in, c_out, (D, H, W), kernel, stride, bias); padding 0
CONVT3D = [
    (2, 8, 4, (3, 4, 5), (2, 2, 2), (2, 2, 2), True),  # decoder upsampling k2 s2
    (1, 32, 16, (4, 3, 5), (2, 2, 2), (2, 2, 2), False),  # k2 s2, more channels, no bias
    (2, 4, 3, (3, 5, 4), (3, 3, 3), (2, 2, 2), True),  # general: k3 s2, overlapping taps
]

# instance_norm: (batch, channels, (D, H, W), affine)
INORM = [
    (2, 5, (5, 6, 7), True),
    (2, 3, (4, 7, 6), False),
]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

GEN = torch.Generator().manual_seed(SEED)


def randn(*shape, scale=1.0, shift=0.0):
    """float32 normal values (the stored inputs)."""
    t = torch.randn(*shape, generator=GEN, dtype=torch.float32) * scale + shift
    return t.to(torch.float32).contiguous()


def forward_backward(fn, inputs, g, dtype):
    """Run fn(*inputs) in `dtype`, backprop sum(y * g); return y and the input gradients (float64)."""
    leaves = [None if t is None else t.to(dtype).detach().requires_grad_(True) for t in inputs]
    y = fn(*leaves)
    if g is None:
        return y.detach().double(), None
    (y * g.to(dtype)).sum().backward()
    grads = [None if t is None else t.grad.detach().double() for t in leaves]
    return y.detach().double(), grads


def rel_err(a, b):
    """max|a - b| / max|b|: the metric the Rust test uses."""
    scale = b.abs().max().item()
    return (a - b).abs().max().item() / (scale if scale > 0 else 1.0)


TENSORS = {}
CASES = []
WORST_F32 = {}


def store(name, t):
    TENSORS[name] = t.to(torch.float32).contiguous()


def run_case(name, op, fn, inputs, input_names, params, extra):
    """inputs: list of float32 tensors (or None); the first three are always (x, w/gamma, b/beta)."""
    y64, _ = forward_backward(fn, inputs, None, torch.float64)
    g = randn(*y64.shape)
    y64, grads64 = forward_backward(fn, inputs, g, torch.float64)
    y32, grads32 = forward_backward(fn, inputs, g, torch.float32)

    for iname, t in zip(input_names, inputs):
        if t is not None:
            store(f"{name}.{iname}", t)
    store(f"{name}.g", g)
    store(f"{name}.y", y64)
    errs = {"y": rel_err(y32, y64)}
    for iname, t, d64, d32 in zip(input_names, inputs, grads64, grads32):
        if t is not None:
            store(f"{name}.d{iname}", d64)
            errs[f"d{iname}"] = rel_err(d32, d64)
    TENSORS[f"{name}.params"] = torch.tensor(params, dtype=torch.int64)
    if "eps" in extra:
        TENSORS[f"{name}.eps"] = torch.tensor([extra["eps"]], dtype=torch.float64)

    case = {"name": name, "op": op}
    case.update(extra)
    case["shapes"] = {k.split(".", 1)[1]: list(v.shape) for k, v in TENSORS.items() if k.startswith(name + ".")}
    case["torch_f32_rel_err"] = {k: float(f"{v:.3g}") for k, v in errs.items()}
    CASES.append(case)
    WORST_F32[name] = max(errs.values())
    return y64, grads64


# --------------------------------------------------------------------------------------------
# Independent cross-checks of the float64 reference (cheap, catch misuse of the torch API)
# --------------------------------------------------------------------------------------------


def naive_conv3d(x, w, b, stride, pad):
    """Direct-loop conv3d in float64 numpy (used only on the small cases)."""
    x = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1]), (pad[2], pad[2])))
    n, ci, d, h, wd = x.shape
    co, _, kd, kh, kw = w.shape
    od, oh, ow = ((d - kd) // stride[0] + 1, (h - kh) // stride[1] + 1, (wd - kw) // stride[2] + 1)
    y = np.zeros((n, co, od, oh, ow))
    for a in range(kd):
        for bb in range(kh):
            for c in range(kw):
                patch = x[:, :, a : a + stride[0] * od : stride[0], bb : bb + stride[1] * oh : stride[1],
                          c : c + stride[2] * ow : stride[2]]
                y += np.einsum("nidhw,oi->nodhw", patch, w[:, :, a, bb, c])
    if b is not None:
        y += b[None, :, None, None, None]
    return y


def naive_conv_transpose3d(x, w, b, stride):
    n, ci, d, h, wd = x.shape
    _, co, kd, kh, kw = w.shape
    od, oh, ow = (d - 1) * stride[0] + kd, (h - 1) * stride[1] + kh, (wd - 1) * stride[2] + kw
    y = np.zeros((n, co, od, oh, ow))
    for a in range(kd):
        for bb in range(kh):
            for c in range(kw):
                y[:, :, a : a + stride[0] * d : stride[0], bb : bb + stride[1] * h : stride[1],
                  c : c + stride[2] * wd : stride[2]] += np.einsum("nidhw,io->nodhw", x, w[:, :, a, bb, c])
    if b is not None:
        y += b[None, :, None, None, None]
    return y


def naive_instance_norm(x, gamma, beta, eps):
    mean = x.mean(axis=(2, 3, 4), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(2, 3, 4), keepdims=True)  # biased
    y = (x - mean) / np.sqrt(var + eps)
    if gamma is not None:
        y = y * gamma[None, :, None, None, None] + beta[None, :, None, None, None]
    return y


def check(label, ref, y64):
    e = np.abs(ref - y64.numpy()).max() / max(np.abs(ref).max(), 1e-300)
    assert e < 1e-12, f"{label}: torch float64 disagrees with the naive reference ({e:.3g})"


def npd(t):
    return None if t is None else t.double().numpy()


# --------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------


def main():
    for i, (n, ci, co, sp, k, s, p, bias) in enumerate(CONV3D):
        name = f"conv3d_{i:02d}"
        fan_in = ci * k[0] * k[1] * k[2]
        x = randn(n, ci, *sp)
        w = randn(co, ci, *k, scale=fan_in**-0.5)
        b = randn(co, scale=0.5) if bias else None
        fn = lambda x, w, b, s=s, p=p: F.conv3d(x, w, b, stride=s, padding=p)
        y64, _ = run_case(
            name, "conv3d", fn, [x, w, b], ["x", "w", "b"], [*s, *p, int(bias)],
            {"stride": list(s), "padding": list(p), "bias": bias},
        )
        check(name, naive_conv3d(npd(x), npd(w), npd(b), s, p), y64)

    for i, (n, ci, co, sp, k, s, bias) in enumerate(CONVT3D):
        name = f"conv_transpose3d_{i:02d}"
        x = randn(n, ci, *sp)
        w = randn(ci, co, *k, scale=ci**-0.5)
        b = randn(co, scale=0.5) if bias else None
        fn = lambda x, w, b, s=s: F.conv_transpose3d(x, w, b, stride=s)
        y64, _ = run_case(
            name, "conv_transpose3d", fn, [x, w, b], ["x", "w", "b"], [*s, 0, 0, 0, int(bias)],
            {"stride": list(s), "padding": [0, 0, 0], "bias": bias},
        )
        check(name, naive_conv_transpose3d(npd(x), npd(w), npd(b), s), y64)

    for i, (n, c, sp, affine) in enumerate(INORM):
        name = f"instance_norm_{i:02d}"
        # per-channel offsets and scales so mean removal and variance actually matter
        x = (randn(n, c, *sp) * randn(1, c, 1, 1, 1, scale=1.0, shift=2.0) + randn(1, c, 1, 1, 1, scale=3.0))
        x = x.to(torch.float32).contiguous()
        gamma = randn(c, scale=0.5, shift=1.0) if affine else None
        beta = randn(c, scale=0.5) if affine else None
        fn = lambda x, gm, bt: F.instance_norm(x, weight=gm, bias=bt, use_input_stats=True, eps=EPS)
        y64, _ = run_case(
            name, "instance_norm", fn, [x, gamma, beta], ["x", "gamma", "beta"], [int(affine)],
            {"eps": EPS, "affine": affine},
        )
        check(name, naive_instance_norm(npd(x), npd(gamma), npd(beta), EPS), y64)

    # Cross-check the instance-norm backward against the closed form (no autograd):
    # dx = gamma / sigma * (g - mean(g) - xhat * mean(g * xhat)).
    for case in CASES:
        if case["op"] != "instance_norm":
            continue
        nm = case["name"]
        x = TENSORS[f"{nm}.x"].double()
        g = TENSORS[f"{nm}.g"].double()
        mean = x.mean(dim=(2, 3, 4), keepdim=True)
        var = ((x - mean) ** 2).mean(dim=(2, 3, 4), keepdim=True)
        sig = (var + EPS).sqrt()
        xh = (x - mean) / sig
        gm = TENSORS[f"{nm}.gamma"].double().view(1, -1, 1, 1, 1) if case["affine"] else 1.0
        gh = g * gm
        dx = (gh - gh.mean(dim=(2, 3, 4), keepdim=True) - xh * (gh * xh).mean(dim=(2, 3, 4), keepdim=True)) / sig
        e = rel_err(dx.float().double(), TENSORS[f"{nm}.dx"].double())
        assert e < 1e-6, f"{nm}: closed-form instance-norm backward disagrees ({e:.3g})"

    meta = {
        "seed": str(SEED),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }
    out = os.path.join(HERE, "kernels.safetensors")
    # safetensors keeps __metadata__ in a hash map (random order when written), so use a single key
    # holding a JSON string: the file then comes out byte-identical on every run.
    save_file(dict(sorted(TENSORS.items())), out, metadata={"magseg_golden": json.dumps(meta)})
    os.chmod(out, 0o644)
    with open(os.path.join(HERE, "cases.json"), "w") as f:
        f.write('{\n "generator": "gen.py",\n "tools": ' + json.dumps(meta) + ',\n "cases": [\n')
        f.write(",\n".join("  " + json.dumps(c) for c in CASES))
        f.write("\n ]\n}\n")

    print(f"{'case':<22} {'op':<17} {'x shape':<22} {'y shape':<22} torch-f32 max rel err")
    for case in CASES:
        sh = case["shapes"]
        print(f"{case['name']:<22} {case['op']:<17} {str(sh['x']):<22} {str(sh['y']):<22} "
              f"{WORST_F32[case['name']]:.2e}")
    print(f"{len(CASES)} cases, {len(TENSORS)} tensors, {os.path.getsize(out)} bytes -> {out}")
    print(f"versions: {meta}", file=sys.stderr)


if __name__ == "__main__":
    main()
