"""PyTorch/MONAI peer for `cargo xtask bench model`: UNETR forward (4 channels, 96^3, default size)
and the MAG-MS reference forward (4 single-channel UNETR encoders with 1x1x1 fusion convs, mean
fusion, shared decoder; all 4 modalities present), CPU, 2 threads, no_grad.
usage: model_peer.py REPS [ROI]; prints one JSON line of median seconds and parameter counts."""
import json, sys, time
import torch
from monai.networks.nets import UNETR

torch.set_num_threads(2)
reps = int(sys.argv[1])
roi = int(sys.argv[2]) if len(sys.argv) > 2 else 96


def median_time(fn):
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


def unetr(cin):
    return UNETR(in_channels=cin, out_channels=4, img_size=(roi,) * 3, feature_size=16, hidden_size=768,
                 mlp_dim=3072, num_heads=12, proj_type="perceptron", norm_name="instance", res_block=True,
                 dropout_rate=0.0).eval()


res = {"torch": torch.__version__, "threads": torch.get_num_threads(), "roi": roi}
m = unetr(4)
res["unetr_params"] = sum(p.numel() for p in m.parameters())
x = torch.randn(1, 4, roi, roi, roi)
with torch.no_grad():
    res["unetr_fwd_s"] = median_time(lambda: m(x))
del m
M = 4
encs = [unetr(1) for _ in range(M)]
dec = encs[0]
chans = [16, 32, 64, 128, 768]
fusion = [[torch.nn.Conv3d(c, c, 1, bias=False).eval() for c in chans] for _ in range(M)]


def encode(u, fu, xm):
    h, hs = u.vit(xm)
    f = [u.encoder1(xm), u.encoder2(u.proj_feat(hs[3])), u.encoder3(u.proj_feat(hs[6])),
         u.encoder4(u.proj_feat(hs[9])), u.proj_feat(h)]
    return [c(t) for c, t in zip(fu, f)]


def magms():
    feats = [encode(encs[i], fusion[i], x[:, i:i + 1]) for i in range(M)]
    e1, e2, e3, e4, d4 = [torch.stack([f[l] for f in feats]).mean(0) for l in range(5)]
    return dec.out(dec.decoder2(dec.decoder3(dec.decoder4(dec.decoder5(d4, e4), e3), e2), e1))


with torch.no_grad():
    res["magms_fwd_s"] = median_time(magms)
print(json.dumps(res))
