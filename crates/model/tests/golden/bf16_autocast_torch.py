"""Calibrates the bf16 tolerances of crates/model/tests/precision.rs and cuda_model.rs independently of
magseg: PyTorch's own autocast to bf16 against fp32 on the same architectures (the reference's U-Net
MAG-MS, base 4 channels, and a UNETR MAG-MS of MONAI parts, feature 4, hidden 24; 2 modalities, 16^3,
batch 2, loss sum(logits * r) over the fused and both single outputs), seeds 0-2, on the CPU. Run: .peers/bin/python crates/model/tests/golden/bf16_autocast_torch.py

Output with torch 2.15.0 and MONAI 1.6.1 (2026-11-27; the largest values vary from run to run with
thread scheduling):
  U-Net seed 0: logits max-rel 0.0099 0.0107 0.0118; gradients l2-rel p50 0.156 p90 0.274 max 1.155; all gradients as one vector l2-rel 0.172
  U-Net seed 1: logits max-rel 0.0146 0.0113 0.0162; gradients l2-rel p50 0.145 p90 0.237 max 0.873; all gradients as one vector l2-rel inf
  U-Net seed 2: logits max-rel 0.0156 0.0132 0.0085; gradients l2-rel p50 0.156 p90 0.260 max 1.518; all gradients as one vector l2-rel 0.181
  UNETR seed 0: logits max-rel 0.0190 0.0177 0.0156; gradients l2-rel p50 0.244 p90 0.351 max 220.772; ... inf (211 non-finite values left out)
  UNETR seed 1: logits max-rel 0.0142 0.0134 0.0091; gradients l2-rel p50 0.175 p90 0.259 max 200.383; ... inf (291 non-finite values left out)
  UNETR seed 2: logits max-rel 0.0170 0.0137 0.0197; gradients l2-rel p50 0.179 p90 0.257 max 297.010; ... inf (60 non-finite values left out)
So autocast moves logits by 1-2 % of their largest value and the median parameter gradient by about
15 % (U-Net) and 18-24 % (UNETR) in l2 norm (difference over reference), all U-Net gradients as one
vector by 17-18 %; tensors whose exact gradient is ~0 (a 1x1 convolution followed by instance norm is
scale-invariant) move by far more, and PyTorch's bf16 UNETR even produces non-finite gradients. The
Rust tests require: logits within 5 % (max-rel); all gradients as one vector within 20 % (U-Net) /
30 % (UNETR, about PyTorch's 90th percentile per tensor) and the median tensor within 16 % (U-Net) /
25 % (UNETR), every value finite."""
import torch, torch.nn as nn, torch.nn.functional as F

def block(ci, co):
    return nn.Sequential(nn.Conv3d(ci, co, 3, padding=1, bias=False), nn.InstanceNorm3d(co, affine=True), nn.LeakyReLU(0.2),
                         nn.Conv3d(co, co, 3, padding=1, bias=False), nn.InstanceNorm3d(co, affine=True), nn.LeakyReLU(0.2))
CH = [4, 8, 16, 32]; M = 2; C = 3
class Enc(nn.Module):
    def __init__(s):
        super().__init__()
        s.blocks = nn.ModuleList([block(1 if i == 0 else CH[i - 1], CH[i]) for i in range(4)])
        s.fuse = nn.ModuleList([nn.Conv3d(c, c, 1, bias=False) for c in CH])
    def forward(s, x):
        fs = []
        for i, b in enumerate(s.blocks):
            if i > 0: x = F.max_pool3d(x, 2)
            x = b(x); fs.append(s.fuse[i](x))
        return fs
class Dec(nn.Module):
    def __init__(s):
        super().__init__()
        s.up = nn.ModuleList([nn.ConvTranspose3d(CH[i + 1], CH[i], 2, 2) for i in range(3)])
        s.blocks = nn.ModuleList([block(2 * CH[i], CH[i]) for i in range(3)]); s.out = nn.Conv3d(CH[0], C, 1)
    def forward(s, fs):
        x = fs[3]
        for i in (2, 1, 0): x = s.blocks[i](torch.cat([s.up[i](x), fs[i]], 1))
        return s.out(x)

def unetr_magms():
    """The UNETR MAG-MS of precision.rs (MONAI UNETR parts as gen.py assembles them): 2 single-channel
    encoders with 1x1 fusion convs, the decoder of a third UNETR; feature 4, hidden 24, MLP 48, 4 heads."""
    from monai.networks.nets import UNETR
    cfg = dict(out_channels=C, img_size=(16, 16, 16), feature_size=4, hidden_size=24, mlp_dim=48, num_heads=4,
               proj_type="perceptron", norm_name="instance", res_block=True, dropout_rate=0.0)
    widths = [4, 8, 16, 32, 24]
    encs = nn.ModuleList([UNETR(in_channels=1, **cfg) for _ in range(M)])
    fus = nn.ModuleList([nn.ModuleList([nn.Conv3d(c, c, 1, bias=False) for c in widths]) for _ in range(M)])
    dec = UNETR(in_channels=1, **cfg)
    def enc(m, xm):
        u = encs[m]; h, hs = u.vit(xm)
        f = [u.encoder1(xm), u.encoder2(u.proj_feat(hs[3])), u.encoder3(u.proj_feat(hs[6])),
             u.encoder4(u.proj_feat(hs[9])), u.proj_feat(h)]
        return [fus[m][l](f[l]) for l in range(5)]
    def decode(f):
        e1, e2, e3, e4, d4 = f
        return dec.out(dec.decoder2(dec.decoder3(dec.decoder4(dec.decoder5(d4, e4), e3), e2), e1))
    params = [p for mod in (encs, fus) for p in mod.parameters()] + [p for n, p in dec.named_parameters() if not n.startswith(("vit.", "encoder"))]
    return enc, decode, params, 5

def unet_magms():
    encs = nn.ModuleList([Enc() for _ in range(M)]); dec = Dec()
    return (lambda m, xm: encs[m](xm)), dec, list(encs.parameters()) + list(dec.parameters()), 4

for kind, make in [("U-Net", unet_magms), ("UNETR", unetr_magms)]:
  for seed in range(3):
    torch.manual_seed(seed)
    enc, dec, params, levels = make()
    x = torch.randn(2, M, 16, 16, 16); r = torch.randn(2, C, 16, 16, 16)
    def run(amp):
        for p in params: p.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            feats = [enc(m, x[:, m:m + 1]) for m in range(M)]
            fused = [torch.stack([f[l] for f in feats]).mean(0) for l in range(levels)]
            outs = [dec(fused)] + [dec(f) for f in feats]
        sum((o.float() * r).sum() for o in outs).backward()
        return [o.float().detach() for o in outs], [p.grad.clone() if p.grad is not None else None for p in params]
    o32, g32 = run(False); o16, g16 = run(True)
    used = [(a, b) for a, b in zip(g32, g16) if a is not None]  # UNETR parts the MAG-MS graph does not use
    bad = sum(int((~torch.isfinite(b)).sum()) for _, b in used)
    used = [(a, torch.where(torch.isfinite(b), b, a)) for a, b in used]
    g32, g16 = [a for a, _ in used], [b for _, b in used]
    mx = lambda a, b: float((a - b).abs().max() / a.abs().max())
    l2 = sorted(float((a - b).norm() / a.norm()) for a, b in zip(g32, g16) if a.norm() > 0 and torch.isfinite((a - b).norm()))
    a, b = torch.cat([g.flatten() for g in g32]), torch.cat([g.flatten() for g in g16])
    print(f"{kind} seed {seed}: logits max-rel " + " ".join(f"{mx(a, b):.4f}" for a, b in zip(o32, o16)) +
          f"; gradients l2-rel p50 {l2[len(l2) // 2]:.3f} p90 {l2[int(len(l2) * 0.9)]:.3f} max {l2[-1]:.3f}"
          f"; all gradients as one vector l2-rel {float((a - b).norm() / a.norm()):.3f} ({bad} non-finite values left out)")
