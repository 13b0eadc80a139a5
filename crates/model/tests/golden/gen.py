"""Generate the golden reference files for crates/model/tests/golden.rs from MONAI 1.6.1.

Run from the repository root:
    /work/main/.peers/bin/python crates/model/tests/golden/gen.py
(torch 2.15, monai 1.6.1, safetensors 0.8). Writes unetr_small.safetensors and
magms_small.safetensors next to this file (one file each, both under 1.5 MB).
Deterministic: fixed seed, parameters drawn in float32 and rounded to float16 (stored as float16),
forward passes computed in float64 from exactly those float16 values, results rounded to float32.
"""
import itertools
import os

import torch
from monai.networks.nets import UNETR
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20261127
# (32, 16, 16): two ViT tokens (patch 16), so attention is not trivial; MONAI UNETR needs multiples of 16.
IMG = (32, 16, 16)
CFG = dict(out_channels=3, img_size=IMG, feature_size=4, hidden_size=24, mlp_dim=48, num_heads=4,
           proj_type="perceptron", norm_name="instance", res_block=True, dropout_rate=0.0)
# MAG-MS stores 3 encoders + a decoder: at CFG's sizes its float16 weights alone are 1.41 MB, so it uses
# a narrower network (head dim 12 / 4 = 3, feature size 2) to fit one file under 1.5 MB.
MAGMS_CFG = dict(CFG, feature_size=2, hidden_size=12, mlp_dim=24)
M = 3  # modalities in the MAG-MS golden
MAX_BYTES = 1_500_000  # per golden file
DECODER_PREFIXES = ("decoder5.", "decoder4.", "decoder3.", "decoder2.", "out.")
ENCODER_PREFIXES = ("vit.", "encoder1.", "encoder2.", "encoder3.", "encoder4.")


def make_unetr(in_channels, cfg):
    return UNETR(in_channels=in_channels, **cfg)


@torch.no_grad()
def randomise(module):
    """Perturb every parameter so none keeps a trivial default (zero bias, unit LayerNorm weight)."""
    for name, p in module.named_parameters():
        if p.dim() >= 2 and not name.endswith("position_embeddings"):
            fan_in = p.numel() // p.shape[0]
            p.add_(torch.randn_like(p) * (0.5 / fan_in ** 0.5))
        else:
            p.add_(torch.randn_like(p) * 0.1)
    # Round to float16, the stored precision: the float64 reference forward then runs on exactly the
    # values the Rust side loads (float16 -> float32 is exact).
    for p in module.parameters():
        p.copy_(p.to(torch.float16).to(p.dtype))
    assert not list(module.buffers()), "no buffers expected"


def state(module, prefix=""):
    return {prefix + k: v.detach().to(torch.float16).contiguous().clone() for k, v in module.state_dict().items()}


def f32(t):
    return t.detach().to(torch.float32).contiguous().clone()


def save(tensors, stem, config):
    """Saves `tensors` as <stem>.safetensors. The metadata is a single key, `config`: safetensors writes
    several metadata keys in a nondeterministic order."""
    path = os.path.join(HERE, stem + ".safetensors")
    save_file(tensors, path, metadata={"config": repr(config)})
    os.chmod(path, 0o644)
    size = os.path.getsize(path)
    print(f"{path}: {size} bytes, {len(tensors)} tensors")
    assert size <= MAX_BYTES, f"{path} is {size} bytes > {MAX_BYTES}"


def encode(u, xm):
    """The five MAG-MS feature maps of one single-channel UNETR: [enc1, enc2, enc3, enc4, dec4]."""
    h, hs = u.vit(xm)
    return [u.encoder1(xm), u.encoder2(u.proj_feat(hs[3])), u.encoder3(u.proj_feat(hs[6])),
            u.encoder4(u.proj_feat(hs[9])), u.proj_feat(h)]


def decode(dec, f):
    e1, e2, e3, e4, d4 = f
    return dec.out(dec.decoder2(dec.decoder3(dec.decoder4(dec.decoder5(d4, e4), e3), e2), e1))


def main():
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    # ---- a. plain UNETR, 2 input channels ----
    u = make_unetr(2, CFG)
    randomise(u)
    u.eval()
    x = torch.randn(1, 2, *IMG)
    tensors = state(u)
    with torch.no_grad():
        y = u.double()(x.double())
    tensors["input"] = f32(x)
    tensors["output"] = f32(y)
    print(f"unetr: output shape {tuple(y.shape)}, max|out| {y.abs().max():.4g}")
    save(tensors, "unetr_small", dict(in_channels=2, seed=SEED, **CFG))

    # ---- b. MAG-MS: M single-channel UNETR encoders + fusion convs, shared decoder from a 4th UNETR ----
    encs, fusions = [], []
    fs = MAGMS_CFG["feature_size"]
    widths = [fs, 2 * fs, 4 * fs, 8 * fs, MAGMS_CFG["hidden_size"]]
    tensors = {}
    for m in range(M):
        e = make_unetr(1, MAGMS_CFG)
        randomise(e)
        fu = torch.nn.ModuleList([torch.nn.Conv3d(c, c, 1, bias=False) for c in widths])
        randomise(fu)
        e.eval(); fu.eval()
        encs.append(e); fusions.append(fu)
        for k, v in state(e).items():
            if k.startswith(ENCODER_PREFIXES):
                tensors[f"encoders.{m}.{k}"] = v
        for lvl in range(5):
            tensors[f"encoders.{m}.fusion.{lvl}.weight"] = fu[lvl].weight.detach().to(torch.float16).contiguous()
    dec = make_unetr(1, MAGMS_CFG)
    randomise(dec)
    dec.eval()
    for k, v in state(dec).items():
        if k.startswith(DECODER_PREFIXES):
            tensors[f"decoder.{k}"] = v
    xs = [torch.randn(1, 1, *IMG) for _ in range(M)]
    for m in range(M):
        tensors[f"input_{m}"] = f32(xs[m])

    with torch.no_grad():
        for mod in encs + fusions + [dec]:
            mod.double()
        feats = []
        for m in range(M):
            f = encode(encs[m], xs[m].double())
            feats.append([fusions[m][lvl](f[lvl]) for lvl in range(5)])
            # Fusion-conv outputs of levels 1..4 (enc2, enc3, enc4, dec4) for debugging; level 0 (enc1,
            # full resolution) is left out to keep the file under 1.5 MB.
            for lvl in range(1, 5):
                tensors[f"feat_{m}_{lvl}"] = f32(feats[m][lvl])
        for r in range(1, M + 1):
            for sub in itertools.combinations(range(M), r):
                # A one-modality "subset" is that modality's own branch (mean of one = itself), so
                # out_fused_{m} are also the single-modality branch logits.
                fused = [torch.stack([feats[m][lvl] for m in sub]).mean(0) for lvl in range(5)]
                z = decode(dec, fused)
                name = "out_fused_" + "_".join(str(m) for m in sub)
                tensors[name] = f32(z)
                print(f"  {name}: max|out| {z.abs().max():.4g}")
    save(tensors, "magms_small", dict(in_channels=1, modalities=M, seed=SEED, **MAGMS_CFG))


if __name__ == "__main__":
    main()
