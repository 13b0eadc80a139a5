"""Golden values for crates/train/tests/unet_step.rs: one MAG-MS training step of the 3-D U-Net backbone
as the PyTorch accuracy peer ../shared/peers/magms_unet_ref.py computes it (network and loss transcribed
below; only the channel widths are smaller, CH = [2, 4, 8, 16], so the file stays small): the fused
logits, the loss and its parts, and the gradient of every parameter.

Parameters are PyTorch's default initialisation, then perturbed (norm weights and biases, convolution
biases + N(0, 0.1²)) and rounded to float16, which is how they are stored; the step runs in float64 on
exactly those values and its results are stored as float32 (loss parts as float64).
Names are magseg's (`encoders.{m}.blocks.{i}.conv1.weight`, `decoder.up.{i}.bias`, ...), prefixed
`param.` and `grad.`.

Run from the repository root: .peers/bin/python crates/train/tests/golden/gen_unet_step.py
(torch 2.15.0 CPU, safetensors 0.8.0; deterministic, rerunning reproduces the file byte for byte)."""
import os
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(20261207)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)
M, C = 4, 4                      # modalities (flair, t1, t1ce, t2), classes (bg, NCR/NET, ED, ET)
CH = [2, 4, 8, 16]               # the peer's CH = [16, 32, 64, 128], narrower
SHAPE = (16, 16, 24)             # (D, H, W), multiples of 8, not cubic
B = 2


# --- the peer's network (magms_unet_ref.py), verbatim but for CH ---
def block(ci, co):
    return nn.Sequential(nn.Conv3d(ci, co, 3, padding=1, bias=False), nn.InstanceNorm3d(co, affine=True), nn.LeakyReLU(0.2),
                         nn.Conv3d(co, co, 3, padding=1, bias=False), nn.InstanceNorm3d(co, affine=True), nn.LeakyReLU(0.2))


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
        s.blocks = nn.ModuleList([block(2 * CH[i], CH[i]) for i in range(3)])
        s.out = nn.Conv3d(CH[0], C, 1)

    def forward(s, fs):
        x = fs[3]
        for i in (2, 1, 0):
            x = s.blocks[i](torch.cat([s.up[i](x), fs[i]], 1))
        return s.out(x)


class MagMS(nn.Module):
    def __init__(s):
        super().__init__(); s.encs = nn.ModuleList([Enc() for _ in range(M)]); s.dec = Dec()

    def forward(s, x, present, train=False):
        feats = {m: s.encs[m](x[:, m:m + 1]) for m in present}
        fused = [torch.stack([feats[m][l] for m in present]).mean(0) for l in range(4)]
        if not train: return s.dec(fused)
        return s.dec(fused), [s.dec(feats[m]) for m in present], feats, fused
# --- end of the peer's network ---


def dicece(z, y):
    """The peer's DiceCE in float64 (its .float() casts dropped, so the reference has no float32 rounding)."""
    p = z.softmax(1); oh = F.one_hot(y, C).permute(0, 4, 1, 2, 3).double()
    inter = (p * oh).sum((2, 3, 4)); den = p.sum((2, 3, 4)) + oh.sum((2, 3, 4))
    return F.cross_entropy(z, y) + (1 - (2 * inter + 1e-5) / (den + 1e-5)).mean()


SEQ = {"0": "conv1", "1": "norm1", "3": "conv2", "4": "norm2"}


def magseg_name(k):
    p = k.split(".")
    if p[0] == "encs":
        if p[2] == "fuse":
            return f"encoders.{p[1]}.fusion.{p[3]}.{p[4]}"
        return f"encoders.{p[1]}.blocks.{p[3]}.{SEQ[p[4]]}.{p[5]}"
    if p[1] == "blocks":
        return f"decoder.blocks.{p[2]}.{SEQ[p[3]]}.{p[4]}"
    if p[1] == "up":
        return f"decoder.up.{p[2]}.{p[3]}"
    return f"decoder.out.{p[2]}"


def main():
    net = MagMS()
    with torch.no_grad():
        for k, v in net.named_parameters():
            if v.dim() == 1:  # norm weights/biases, convolution biases
                v.add_(0.1 * torch.randn_like(v))
            v.copy_(v.half().float())
    net = net.double()
    x = torch.randn(B, M, *SHAPE)
    # Every class in both samples, in nested blocks (ED around NCR/NET with ET inside), shifted per sample.
    y = torch.zeros(B, *SHAPE, dtype=torch.long)
    for b in range(B):
        o = 2 * b
        y[b, 3 + o:13, 4:14 - o, 5 + o:19] = 2
        y[b, 5 + o:11, 6:12 - o, 8 + o:16] = 1
        y[b, 7:10, 7:10, 10 + o:14] = 3
    # The peer's loss of one step (λ = γ = 1), as magms_unet_ref.py builds it.
    zf, zs, feats, fused = net(x.double(), list(range(M)), train=True)
    dce = [dicece(zf, y)] + [dicece(z, y) for z in zs]
    lp0 = zf.log_softmax(1)
    kl = sum(F.kl_div(z.log_softmax(1), lp0, log_target=True, reduction="none").sum(1).mean() for z in zs)
    mse = sum(F.mse_loss(feats[m][l], fused[l]) for m in range(M) for l in range(4))
    loss = sum(dce) + kl + mse
    loss.backward()
    out = {}
    for k, v in net.named_parameters():
        out["param." + magseg_name(k)] = v.detach().half().contiguous()
        out["grad." + magseg_name(k)] = v.grad.float().contiguous()
    for m in range(M):
        out[f"input_{m}"] = x[:, m:m + 1].contiguous()
    out["target"] = y.to(torch.uint8).contiguous()
    out["fused_logits"] = zf.detach().float().contiguous()
    out["loss_total"] = loss.detach().reshape(1)
    out["loss_dice_ce"] = torch.stack([d.detach() for d in dce])
    out["loss_kl"] = kl.detach().reshape(1)
    out["loss_mse"] = mse.detach().reshape(1)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "unet_step.safetensors")
    save_file(out, path)
    params = sum(v.numel() for v in net.parameters())
    print(f"{path}: {os.path.getsize(path)} bytes, {params} parameters, loss {float(loss.detach()):.6f} "
          f"(dice_ce {[round(float(d), 5) for d in dce]}, kl {float(kl):.6f}, mse {float(mse):.6f})")


if __name__ == "__main__":
    main()
