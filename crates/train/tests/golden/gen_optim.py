"""Golden values for magseg-train's optimiser: torch.optim.Adam / AdamW (torch 2.15) on two small
parameters with fixed gradients, after value clamping and global-norm clipping as the trainer does them.
Run from the repository root: .peers/bin/python crates/train/tests/golden/gen_optim.py"""
import json, torch

torch.manual_seed(0)
shapes = [(3, 4), (5,)]
init = [torch.randn(s, dtype=torch.float64) for s in shapes]
grads = [[torch.randn(s, dtype=torch.float64) * 3 for s in shapes] for _ in range(6)]
lrs = [0.01, 0.02, 0.015, 0.01, 0.005, 0.001]
cases = {
    "adam_amsgrad_wd_clamp": dict(kind="adam", amsgrad=True, weight_decay=0.01, clip_value=0.5, clip_norm=None),
    "adamw_norm": dict(kind="adamw", amsgrad=False, weight_decay=0.1, clip_value=None, clip_norm=2.0),
    "adam_plain": dict(kind="adam", amsgrad=False, weight_decay=0.0, clip_value=None, clip_norm=None),
}
out = {"shapes": shapes, "init": [p.flatten().tolist() for p in init],
       "grads": [[g.flatten().tolist() for g in step] for step in grads], "lrs": lrs, "cases": {}}
for name, c in cases.items():
    ps = [torch.nn.Parameter(p.clone().float()) for p in init]
    opt_cls = torch.optim.Adam if c["kind"] == "adam" else torch.optim.AdamW
    opt = opt_cls(ps, lr=lrs[0], betas=(0.9, 0.999), eps=1e-8, weight_decay=c["weight_decay"], amsgrad=c["amsgrad"])
    after = []
    for step, gs in enumerate(grads):
        for p, g in zip(ps, gs):
            p.grad = g.clone().float()
        if c["clip_value"] is not None:
            torch.nn.utils.clip_grad_value_(ps, c["clip_value"])
        if c["clip_norm"] is not None:
            torch.nn.utils.clip_grad_norm_(ps, c["clip_norm"])
        for group in opt.param_groups:
            group["lr"] = lrs[step]
        opt.step()
        after.append([p.detach().flatten().tolist() for p in ps])
    out["cases"][name] = {"config": c, "params_after_each_step": after}
with open("crates/train/tests/golden/optim.json", "w") as f:
    json.dump(out, f, indent=1)
print("wrote crates/train/tests/golden/optim.json")
