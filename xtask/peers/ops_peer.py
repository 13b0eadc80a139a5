"""PyTorch peer for `cargo xtask bench ops`: conv3d forward and backward (both gradients), and
conv_transpose3d k2s2, on CPU with 2 threads. usage: ops_peer.py REPS; prints one JSON line of
median seconds per shape."""
import json, sys, time
import torch

torch.set_num_threads(2)
reps = int(sys.argv[1])


def median_time(fn):
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


res = {"torch": torch.__version__, "threads": torch.get_num_threads(), "mkldnn": torch.backends.mkldnn.is_available()}
for c, s in [(32, 64), (16, 96), (64, 24)]:
    x = torch.randn(1, c, s, s, s, requires_grad=True)
    w = torch.randn(c, c, 3, 3, 3, requires_grad=True)
    with torch.no_grad():
        res[f"conv3d_c{c}_s{s}_fwd_s"] = median_time(lambda: torch.nn.functional.conv3d(x, w, padding=1))
    y = torch.nn.functional.conv3d(x, w, padding=1)
    g = torch.ones_like(y)
    res[f"conv3d_c{c}_s{s}_bwd_s"] = median_time(lambda: torch.autograd.grad(y, (x, w), g, retain_graph=True))
x = torch.randn(1, 64, 24, 24, 24, requires_grad=True)
w = torch.randn(64, 32, 2, 2, 2, requires_grad=True)
with torch.no_grad():
    res["convt_c64_s24_fwd_s"] = median_time(lambda: torch.nn.functional.conv_transpose3d(x, w, stride=2))
y = torch.nn.functional.conv_transpose3d(x, w, stride=2)
g = torch.ones_like(y)
res["convt_c64_s24_bwd_s"] = median_time(lambda: torch.autograd.grad(y, (x, w), g, retain_graph=True))
print(json.dumps(res))
