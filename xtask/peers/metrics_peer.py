"""Peers for `cargo xtask bench metrics`: scipy EDT, MONAI HD95 and MedPy HD95 on 240x240x155 masks.

usage: metrics_peer.py OUT_DIR REPS [BRATS_SEG]
Writes the masks it times as uint8 NIfTI files into OUT_DIR (so magseg times exactly the same data),
then prints one JSON line: median seconds and the values each tool computed.
Masks: the two spheres of ../shared/peers/cpu_peer.py, and (when BRATS_SEG is given) the real
whole-tumour mask against a perturbed copy (shifted +2 voxels along axis 0, +1 along axis 1, then
eroded once with the 6-neighbourhood).
"""
import json, os, sys, time
import numpy as np
import nibabel as nib
import scipy.ndimage as nd
import torch
from medpy.metric.binary import hd95 as medpy_hd95
from monai.metrics import compute_hausdorff_distance

torch.set_num_threads(2)
out_dir, reps = sys.argv[1], int(sys.argv[2])
seg_path = sys.argv[3] if len(sys.argv) > 3 else None


def median_time(fn):
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


def save(name, mask):
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), np.eye(4)), os.path.join(out_dir, name))


res = {"numpy": np.__version__, "torch": torch.__version__, "threads": torch.get_num_threads()}
import monai, medpy, scipy
res.update({"monai": monai.__version__, "scipy": scipy.__version__})
zz, yy, xx = np.ogrid[:240, :240, :155]
a = (zz - 120) ** 2 + (yy - 110) ** 2 + (xx - 80) ** 2 < 40 ** 2
b = (zz - 124) ** 2 / 1.1 + (yy - 108) ** 2 + (xx - 82) ** 2 < 38 ** 2
save("sphere_a.nii.gz", a); save("sphere_b.nii.gz", b)
pairs = {"spheres": (b, a)}
if seg_path:
    wt = np.asarray(nib.load(seg_path).dataobj) > 0
    pert = np.zeros_like(wt)
    pert[2:, 1:, :] = wt[:-2, :-1, :]
    pert = nd.binary_erosion(pert)
    save("wt_ref.nii.gz", wt); save("wt_pred.nii.gz", pert)
    pairs["brats_wt"] = (pert, wt)

edt_in = ~a
nd.distance_transform_edt(edt_in, sampling=(1.0, 1.0, 1.0))
res["scipy_edt_s"] = median_time(lambda: nd.distance_transform_edt(edt_in, sampling=(1.0, 1.0, 1.0)))
for key, (pred, ref) in pairs.items():
    tp, tr = torch.from_numpy(pred)[None, None], torch.from_numpy(ref)[None, None]
    monai_fn = lambda: compute_hausdorff_distance(tp, tr, include_background=True, percentile=95, spacing=1.0)
    res[f"{key}_monai_hd95"] = float(monai_fn())
    res[f"{key}_monai_s"] = median_time(monai_fn)
    medpy_fn = lambda: medpy_hd95(pred, ref, voxelspacing=(1.0, 1.0, 1.0))
    res[f"{key}_medpy_hd95"] = float(medpy_fn())
    res[f"{key}_medpy_s"] = median_time(medpy_fn)
print(json.dumps(res))
