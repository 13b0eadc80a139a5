# PyTorch/cuDNN peer of crates/kernels/examples/conv_gpu_bench.rs: conv3d 2 x 32 -> 32 channels at 64^3,
# kernel 3, padding 1, on CUDA device 0; forward, backward-data, backward-weight and forward + backward
# (median ms over REPS runs after warm-up), strict f32 (TF32 off) and, for reference, the forward with TF32.
# Prints one JSON line. Usage: python3 torch_conv3d.py [REPS]
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
    dev = torch.device("cuda", 0)
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    x = torch.randn(2, 32, 64, 64, 64, device=dev)
    w = torch.randn(32, 32, 3, 3, 3, device=dev) * 0.05
    dy = torch.randn(2, 32, 64, 64, 64, device=dev)
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
    flops = 2.0 * 2 * 32 * 32 * 27 * 64**3
    r = lambda v: round(v, 3)
    print(json.dumps({
        "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
        "shape": "2x32x64^3 k3 p1 f32", "reps": reps, "fwd_ms": r(fwd), "bwd_data_ms": r(bwd_data),
        "bwd_weight_ms": r(bwd_weight), "fwd_bwd_ms": r(fwd_bwd), "fwd_gflops": round(flops / fwd / 1e6, 1),
        "fwd_tf32_ms": r(fwd_tf32),
    }))


if __name__ == "__main__":
    main()
