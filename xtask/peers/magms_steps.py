"""The PyTorch accuracy peer (../shared/peers/magms_unet_ref.py) for a fixed number of steps instead of a
time budget, for an equal-steps comparison on a CPU: its source is run unchanged except that the loop
and the cosine schedule count steps, the thread count is set, and (optionally) the seed and the initial
weights are chosen. Everything else (network, loss, sampler, evaluation, JSON line) is the peer's own.
Usage: magms_steps.py TRAIN.npz TEST.npz STEPS [PATCH] [LAMBDA] [GAMMA]
Environment: PEER (default ../shared/peers/magms_unet_ref.py next to this repository), SEED (0; seeds
torch and the sampler's numpy generator), THREADS (2), INIT (a magseg model.safetensors to start from
instead of PyTorch's initialisation; its tensors are used as they are, without transposing axes), SAVE (a
path: after the peer's evaluation, its trained weights are written there as a magseg model.safetensors,
for `magseg evaluate --model` with the config.json and preprocess.json of a magseg run of the same
network)."""
import json
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.environ.get("PEER", os.path.join(HERE, "..", "..", "..", "shared", "peers", "magms_unet_ref.py"))
SEED, THREADS, INIT = int(os.environ.get("SEED", "0")), int(os.environ.get("THREADS", "2")), os.environ.get("INIT")
SAVE = os.environ.get("SAVE")
# magseg's tensor names -> the peer's (the layout of crates/model's U-Net): these name parts, and in a
# block (`blocks.I.X`) its layer X.
TOKENS = {"encoders": "encs", "fusion": "fuse", "decoder": "dec"}
SEQ = {"conv1": "0", "norm1": "1", "conv2": "3", "norm2": "4"}


def rename(name, tokens, seq):
    """`name` with its parts mapped by `tokens` and the layer after `blocks.I` by `seq`."""
    p = name.split(".")
    out = [tokens.get(x, x) for x in p]
    if "blocks" in p:
        i = p.index("blocks") + 2
        out[i] = seq[p[i]]
    return ".".join(out)


def patch(src, old, new):
    if old not in src:
        sys.exit(f"magms_steps.py: {PEER} changed; cannot find {old!r}")
    return src.replace(old, new, 1)


def magseg_state_dict(path):
    """magseg's tensor names mapped to the peer's (the layout of crates/model's U-Net)."""
    import torch

    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr, base = json.loads(raw[8:8 + n]), 8 + n
    sd = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a = np.frombuffer(raw[base + v["data_offsets"][0]:base + v["data_offsets"][1]], dtype=np.float32)
        t = rename(k, TOKENS, SEQ)
        sd[t] = torch.from_numpy(a.reshape(v["shape"]).copy())
    return sd


src = open(PEER).read()
src = patch(src, "BUDGET = sys.argv[1], sys.argv[2], float(sys.argv[3])",
            "STEPS = sys.argv[1], sys.argv[2], int(sys.argv[3]); torch.set_num_threads(THREADS)")
src = patch(src, "torch.manual_seed(0); rng = np.random.default_rng(0)",
            "torch.manual_seed(SEED); rng = np.random.default_rng(SEED)")
src = patch(src, "net = MagMS().to(dev)\n",
            "net = MagMS()\nif INIT: net.load_state_dict(magseg_state_dict(INIT), strict=True)\nnet = net.to(dev)\n")
src = patch(src, "while time.time() - t0 < BUDGET:", "while step < STEPS:")
src = patch(src, "min(1.0, (time.time() - t0) / BUDGET)", "min(1.0, step / STEPS)")


def save_magseg(net, path):
    """The peer's weights under magseg's tensor names and axis order (the inverse of
    magseg_state_dict, plus the transposition), as f32 safetensors (the safetensors package)."""
    inv = lambda d: {v: k for k, v in d.items()}  # noqa: E731
    tensors = {}
    for k, v in net.state_dict().items():
        t = rename(k, inv(TOKENS), inv(SEQ))
        a = v.detach().float().cpu().numpy()
        # The peer's arrays are (i, j, k), magseg's network sees (D, H, W) = (k, j, i): reversing the
        # kernels' spatial axes makes magseg's convolutions those of the peer on its transposed input.
        tensors[t] = np.ascontiguousarray(a.transpose(0, 1, 4, 3, 2) if a.ndim == 5 else a)
    from safetensors.numpy import save_file

    save_file(tensors, path)


exec(compile(src, PEER, "exec"))
if SAVE:
    save_magseg(net, SAVE)
    print("saved", SAVE, flush=True)
