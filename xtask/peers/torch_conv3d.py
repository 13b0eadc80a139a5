# PyTorch/cuDNN peer of crates/kernels/examples/conv_gpu_bench.rs: conv3d N x C -> C channels at S^3
# (default 2 x 32 at 64^3; run.sh also uses gpu_peer.py's shapes), kernel 3, padding 1, on CUDA device 0;
# forward, backward-data, backward-weight and forward + backward (median ms over REPS runs after
# warm-up), strict f32 (TF32 off); then the forward and forward + backward with TF32 (magseg's
# MAGSEG_CONV_CUDA=tf32 keys) and in bf16. Prints one JSON line. Usage: python3 torch_conv3d.py [REPS [N C S]]
import json
import sys
import time

import torch


def time_ms(fn, reps):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    t = []
    for _ in range(reps):
        s = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        t.append((time.perf_counter() - s) * 1e3)
    t.sort()
    return t[len(t) // 2]


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    n, c, s = (int(v) for v in sys.argv[2:5]) if len(sys.argv) > 4 else (2, 32, 64)
    dev = torch.device("cuda", 0)
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    x = torch.randn(n, c, s, s, s, device=dev)
    w = torch.randn(c, c, 3, 3, 3, device=dev) * 0.05
    dy = torch.randn(n, c, s, s, s, device=dev)
    conv = torch.nn.functional.conv3d
    gr = torch.nn.grad
    with torch.no_grad():
        fwd = time_ms(lambda: conv(x, w, padding=1), reps)
        bwd_data = time_ms(lambda: gr.conv3d_input(x.shape, w, dy, padding=1), reps)
        bwd_weight = time_ms(lambda: gr.conv3d_weight(x, w.shape, dy, padding=1), reps)
    xv, wv = x.clone().requires_grad_(), w.clone().requires_grad_()

    def fb():
        (conv(xv, wv, padding=1) * dy).sum().backward()

    fwd_bwd = time_ms(fb, reps)
    torch.backends.cudnn.allow_tf32 = True
    with torch.no_grad():
        fwd_tf32 = time_ms(lambda: conv(x, w, padding=1), reps)
    fwd_bwd_tf32 = time_ms(fb, reps)
    xb, wb, dyb = (t.to(torch.bfloat16) for t in (x, w, dy))
    with torch.no_grad():
        fwd_bf16 = time_ms(lambda: conv(xb, wb, padding=1), reps)
    xbv, wbv = xb.clone().requires_grad_(), wb.clone().requires_grad_()

    def fb16():
        (conv(xbv, wbv, padding=1) * dyb).sum().backward()

    fwd_bwd_bf16 = time_ms(fb16, reps)
    flops = 2.0 * n * c * c * 27 * s**3
    r = lambda v: round(v, 3)
    print(json.dumps({
        "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
        "shape": f"{n}x{c}x{s}^3 k3 p1 f32", "reps": reps, "fwd_ms": r(fwd), "bwd_data_ms": r(bwd_data),
        "bwd_weight_ms": r(bwd_weight), "fwd_bwd_ms": r(fwd_bwd), "fwd_gflops": round(flops / fwd / 1e6, 1),
        "fwd_tf32_ms": r(fwd_tf32), "fwd_bwd_tf32_ms": r(fwd_bwd_tf32), "bf16_fwd_ms": r(fwd_bf16), "bf16_fwd_bwd_ms": r(fwd_bwd_bf16),
    }))


if __name__ == "__main__":
    main()
