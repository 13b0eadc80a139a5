"""Generates golden.safetensors for crates/distill/tests/golden.rs (see README.md)."""
import os

import monai
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from safetensors.torch import save_file

torch.manual_seed(1234)
HERE = os.path.dirname(os.path.abspath(__file__))

# (shape N,C,D,H,W ; modalities M ; levels (channels, side) ; lambda ; gamma ; T ; soften ; absent class)
CASES = [
    ((2, 4, 6, 5, 7), 2, [(3, 4), (5, 2)], 1.0, 1.0, 1.0, False, None),
    ((1, 3, 8, 8, 8), 3, [(2, 4)], 1.0, 1.0, 2.5, False, None),
    ((2, 4, 6, 5, 7), 2, [(3, 4), (5, 2)], 1.0, 1.0, 2.5, True, None),
    ((2, 4, 4, 5, 3), 2, [(4, 3)], 0.7, 0.3, 1.0, False, 2),
    ((1, 3, 8, 8, 8), 2, [(2, 4), (3, 2)], 0.0, 0.0, 1.0, False, None),
    ((2, 3, 5, 4, 6), 3, [(2, 3)], 0.5, 2.0, 2.5, True, 0),
    # large enough (2048 voxels, a 1×16³ feature level) for the two-stage sums of src/sums.rs
    ((1, 3, 16, 16, 8), 2, [(1, 16)], 1.0, 1.0, 1.0, False, None),
]


def kl_ref(zs, zt, t, soften, detach):
    if detach:
        zt = zt.detach()
    p0 = F.softmax(zt / t if soften else zt, dim=1)
    kl = F.kl_div(F.log_softmax(zs / t, dim=1), p0, reduction="none").sum(1).mean() * t * t
    # cross-check against the explicit formula
    formula = (p0 * (torch.log(p0) - F.log_softmax(zs / t, dim=1))).sum(1).mean() * t * t
    assert torch.allclose(kl, formula, rtol=1e-10, atol=1e-12), (kl, formula)
    return kl


def full(z0, zs, feats, fbar, y, lam, gam, t, soften, detach):
    dce = DiceCELoss(to_onehot_y=True, softmax=True)
    dices = [dce(z, y[:, None]) for z in [z0] + zs]
    total = sum(dices)
    kls = [kl_ref(z, z0, t, soften, detach) for z in zs]
    mses = [sum(F.mse_loss(f, b) for f, b in zip(fm, fbar)) for fm in feats]
    if lam != 0.0:
        total = total + lam * sum(kls)
    if gam != 0.0:
        total = total + gam * sum(mses)
    return total, dices, kls, mses


out = {}
for i, (shape, m, levels, lam, gam, t, soften, absent) in enumerate(CASES):
    n, c, d, h, w = shape
    p = f"c{i}."
    z0 = torch.randn(shape) * 2.0
    zs = [torch.randn(shape) * 2.0 for _ in range(m)]
    y = torch.randint(0, c, (n, d, h, w))
    if absent is not None:
        y[y == absent] = (absent + 1) % c
        assert not (y == absent).any()
    feats = [[torch.randn(n, ch, s, s, s) for ch, s in levels] for _ in range(m)]
    fbar = [torch.stack([feats[k][l] for k in range(m)]).mean(0) for l in range(len(levels))]
    out[p + "cfg"] = torch.tensor([lam, gam, t, float(soften), m, len(levels)], dtype=torch.float64)
    out[p + "z0"] = z0
    out[p + "target"] = y.to(torch.int64)
    for k in range(m):
        out[p + f"z{k + 1}"] = zs[k]
        for l in range(len(levels)):
            out[p + f"f{k + 1}.{l}"] = feats[k][l]
    for l in range(len(levels)):
        out[p + f"fbar.{l}"] = fbar[l]
    # references in float64 from the stored float32 inputs
    for detach in (False, True):
        z0d = z0.double().requires_grad_(True)
        zsd = [z.double().requires_grad_(True) for z in zs]
        featsd = [[f.double() for f in fm] for fm in feats]
        fbard = [b.double() for b in fbar]
        total, dices, kls, mses = full(z0d, zsd, featsd, fbard, y, lam, gam, t, soften, detach)
        total.backward()
        tag = "detach" if detach else "ref"
        out[p + f"{tag}.total"] = total.detach().reshape(1)
        out[p + f"{tag}.grad_z0"] = z0d.grad.float()
        out[p + f"{tag}.grad_z1"] = zsd[0].grad.float()
        if not detach:
            out[p + "dice_ce"] = torch.stack([x.detach() for x in dices])
            out[p + "kl"] = torch.stack([x.detach() for x in kls])
            out[p + "mse"] = torch.stack([x.detach() for x in mses])

path = os.path.join(HERE, "golden.safetensors")
save_file({k: v.contiguous() for k, v in out.items()}, path, metadata={
    "torch": torch.__version__, "monai": monai.__version__})
print(path, os.path.getsize(path), "bytes; torch", torch.__version__, "monai", monai.__version__)
