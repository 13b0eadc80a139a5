#!/usr/bin/env python3
"""Generate independent reference values (golden files) for the magseg metrics crate.

Run from anywhere:

    /work/main/.peers/bin/python crates/metrics/tests/golden/gen.py

Writes, next to this script:
  case_NN_pred.nii.gz / case_NN_ref.nii.gz   small 3-D uint8 NIfTI-1 masks, affine = diag(spacing)
  expected.json                              expected metric values (see README.md)

Everything is deterministic (fixed seed, no wall-clock input).  Reference implementations:
  * MedPy (medpy.metric.binary.dc / hd / hd95 / assd, connectivity=1): "pooled" HD95 convention.
  * numpy/scipy implementation of the MONAI convention (monai_directed_distances below).
  * MONAI itself (monai.metrics.compute_hausdorff_distance), when torch+monai are importable,
    stored as `monai_hd95_from_monai` so the numpy version can be seen to agree with it.

Empty-mask policy (magseg's, see DESIGN.md section 4; MedPy raises on empty masks, so it is
never called on them):
  both empty  -> dice NaN, hd95/hd/assd NaN           (stored as JSON null)
  one empty   -> dice 0,  hd95 = hd = assd = 373.13  (the BraTS penalty, mm)
"""

import json
import math
import os
import sys

import nibabel as nib
import numpy as np
import scipy
from scipy import ndimage
from scipy.ndimage import binary_erosion, distance_transform_edt, generate_binary_structure

import medpy
from medpy.metric import binary as mb

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20261127
PENALTY_MM = 373.13
BRATS_SEG = "/work/shared/data/brats2018/Brats18_CBICA_ABM_1/Brats18_CBICA_ABM_1_seg.nii.gz"

try:  # optional: MONAI itself, used only to cross-check the numpy MONAI-convention function
    import torch
    import monai
    from monai.metrics import compute_hausdorff_distance

    HAVE_MONAI = True
except Exception as e:  # pragma: no cover
    print(f"[gen] MONAI not importable ({e!r}); monai_hd95_from_monai will be null", file=sys.stderr)
    HAVE_MONAI = False


# --------------------------------------------------------------------------------------------
# Reference implementations
# --------------------------------------------------------------------------------------------

def surface(mask):
    """Surface voxels = mask XOR binary_erosion(mask).

    scipy default structuring element for 3-D = 6-connected cross (generate_binary_structure(3, 1)),
    border_value=0, i.e. voxels outside the volume count as background, so an object voxel on the
    volume border is always a surface voxel.  This is what MedPy (connectivity=1) and MONAI
    (get_mask_edges, scipy path) both do.
    """
    mask = mask.astype(bool)
    return mask ^ binary_erosion(mask, structure=generate_binary_structure(mask.ndim, 1), border_value=0)


def monai_directed_distances(a, b, spacing):
    """Distances from every surface voxel of `a` to the nearest surface voxel of `b` (mm).

    = distance_transform_edt(~surface(b), sampling=spacing)[surface(a)].
    MONAI 1.x (get_mask_edges with crop=True) first crops both masks to the bounding box of
    (a | b); that does not change the result: every surface voxel of both masks lies inside the
    box, the erosion's border_value=0 matches the background just outside the box, and the EDT's
    nearest zero is a surface voxel of b, which is inside the box too.
    """
    sa, sb = surface(a), surface(b)
    dt = distance_transform_edt(~sb, sampling=spacing)
    return dt[sa]


def hd95_monai_numpy(pred, ref, spacing):
    """MONAI convention: max of the two directed 95th percentiles (np.percentile, linear)."""
    d_pr = monai_directed_distances(pred, ref, spacing)
    d_rp = monai_directed_distances(ref, pred, spacing)
    p_pr = float(np.percentile(d_pr, 95))
    p_rp = float(np.percentile(d_rp, 95))
    return max(p_pr, p_rp), p_pr, p_rp, d_pr, d_rp


# Findings on the installed MONAI (1.6.1; compute_hausdorff_distance -> get_edge_surface_distance
# -> get_mask_edges + get_surface_distance), which is what the numpy version above reproduces:
#   * get_mask_edges(crop=True) crops both masks to the bounding box of (pred | ref) with margin 1
#     (CropForegroundD, allow_smaller=False -> zero padding where the box meets the volume border),
#     then edges = scipy binary_erosion(mask) ^ mask (default cross, border_value=0).  Cropping with
#     a zero margin does not change which voxels are edges (see monai_directed_distances).
#   * get_surface_distance (euclidean, CPU) uses a scipy KDTree over the edge-voxel coordinates
#     multiplied by spacing: the exact nearest-edge Euclidean distance, same as the EDT approach.
#   * distances are cast to float32 and torch.quantile (linear interpolation, like np.percentile)
#     is taken in float32, and the result tensor is float32: MONAI's number differs from the
#     float64 numpy value by float32 rounding only (max |diff| seen: ~1.1e-6 mm).
#   * an empty mask gives inf/NaN in MONAI (not the BraTS penalty), so MONAI is not called on them.
def hd95_monai_itself(pred, ref, spacing):
    """MONAI's own compute_hausdorff_distance on a (B=1, C=1, H, W, D) binary tensor.

    include_background=True because our single channel *is* the foreground (with the default
    include_background=False MONAI would drop channel 0, so a (1,1,...) input would give nothing).
    spacing is the per-axis voxel size in the tensor's spatial axis order (same as numpy here).
    """
    if not HAVE_MONAI:
        return None
    yp = torch.from_numpy(pred.astype(np.float32))[None, None]
    yr = torch.from_numpy(ref.astype(np.float32))[None, None]
    v = compute_hausdorff_distance(
        yp, yr, include_background=True, distance_metric="euclidean", percentile=95,
        directed=False, spacing=[float(s) for s in spacing],
    )
    return float(v.reshape(-1)[0])


def dice(pred, ref):
    a, b = int(pred.sum()), int(ref.sum())
    if a + b == 0:
        return float("nan")
    return 2.0 * int(np.logical_and(pred, ref).sum()) / (a + b)


def all_metrics(pred, ref, spacing):
    """Every expected value for one (pred, ref) pair.  pred/ref: bool arrays."""
    spacing = tuple(float(s) for s in spacing)
    np_, nr = int(pred.sum()), int(ref.sum())
    out = {"n_pred": np_, "n_ref": nr, "n_intersection": int(np.logical_and(pred, ref).sum())}
    if np_ == 0 and nr == 0:
        out.update(dice=float("nan"), hd95_pooled=float("nan"), hd95_monai=float("nan"),
                   hd=float("nan"), assd=float("nan"), assd_pooled_mean=float("nan"),
                   assd_mean_of_means=float("nan"), monai_hd95_from_monai=None)
        return out
    if np_ == 0 or nr == 0:
        out.update(dice=0.0, hd95_pooled=PENALTY_MM, hd95_monai=PENALTY_MM, hd=PENALTY_MM,
                   assd=PENALTY_MM, assd_pooled_mean=PENALTY_MM, assd_mean_of_means=PENALTY_MM,
                   monai_hd95_from_monai=None)
        return out
    out["dice"] = float(mb.dc(pred, ref))
    assert abs(out["dice"] - dice(pred, ref)) < 1e-12
    out["hd95_pooled"] = float(mb.hd95(pred, ref, voxelspacing=spacing))
    out["hd"] = float(mb.hd(pred, ref, voxelspacing=spacing))
    out["assd"] = float(mb.assd(pred, ref, voxelspacing=spacing))
    h, p_pr, p_rp, d_pr, d_rp = hd95_monai_numpy(pred, ref, spacing)
    out["hd95_monai"] = h
    # directed pieces, handy for debugging a mismatch in the Rust crate
    out["hd95_monai_pred_to_ref"] = p_pr
    out["hd95_monai_ref_to_pred"] = p_rp
    out["asd_pred_to_ref"] = float(d_pr.mean())
    out["asd_ref_to_pred"] = float(d_rp.mean())
    out["n_surface_pred"] = int(d_pr.size)
    out["n_surface_ref"] = int(d_rp.size)
    # internal consistency with MedPy (same surfaces, same EDT)
    pooled = float(np.percentile(np.hstack([d_pr, d_rp]), 95))
    assert abs(pooled - out["hd95_pooled"]) < 1e-9, (pooled, out["hd95_pooled"])
    assert abs(max(d_pr.max(), d_rp.max()) - out["hd"]) < 1e-9
    # ASSD: MedPy 0.5.x computes the mean of the *concatenated* distances (weighted by the two
    # surface sizes); MedPy <= 0.4 computed the mean of the two directed means.  Store both.
    out["assd_pooled_mean"] = float(np.hstack([d_pr, d_rp]).mean())
    out["assd_mean_of_means"] = float((d_pr.mean() + d_rp.mean()) / 2)
    assert abs(out["assd_pooled_mean"] - out["assd"]) < 1e-9, (out["assd"], out["assd_pooled_mean"])
    out["monai_hd95_from_monai"] = hd95_monai_itself(pred, ref, spacing)
    return out


# --------------------------------------------------------------------------------------------
# Shape builders (all in physical mm coordinates so anisotropic spacing gives true spheres)
# --------------------------------------------------------------------------------------------

def grid(shape, spacing):
    return np.meshgrid(*[np.arange(n, dtype=np.float64) * s for n, s in zip(shape, spacing)], indexing="ij")


def ellipsoid(shape, spacing, center_vox, radii_mm, rot=None):
    """Voxels whose centre lies in the ellipsoid; center in voxel units, radii in mm."""
    X = grid(shape, spacing)
    c = [cv * s for cv, s in zip(center_vox, spacing)]
    d = np.stack([x - ci for x, ci in zip(X, c)], axis=-1)
    if rot is not None:
        d = d @ rot.T
    q = sum((d[..., i] / radii_mm[i]) ** 2 for i in range(3))
    return q <= 1.0


def sphere(shape, spacing, center_vox, r_mm):
    return ellipsoid(shape, spacing, center_vox, (r_mm, r_mm, r_mm))


def rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def blob(rng, shape, sigma_vox, frac, noise=None):
    """Threshold a Gaussian-smoothed noise field so that about `frac` of voxels are foreground."""
    if noise is None:
        noise = rng.normal(size=shape)
    sm = ndimage.gaussian_filter(noise, sigma=sigma_vox, mode="constant")
    thr = np.quantile(sm, 1.0 - frac)
    return sm > thr, noise


def blob_pair(rng, shape, sigma_vox, frac, perturb):
    ref, noise = blob(rng, shape, sigma_vox, frac)
    pred, _ = blob(rng, shape, sigma_vox, frac, noise=noise + perturb * rng.normal(size=shape))
    return pred, ref


def shift(mask, offset):
    """Integer translation, zero fill, no wrap."""
    out = np.zeros_like(mask)
    src = tuple(slice(max(0, -o), n - max(0, o)) for o, n in zip(offset, mask.shape))
    dst = tuple(slice(max(0, o), n - max(0, -o)) for o, n in zip(offset, mask.shape))
    out[dst] = mask[src]
    return out


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------

ISO = (1.0, 1.0, 1.0)
AN_A = (1.0, 0.8, 2.5)
AN_B = (0.5, 1.5, 1.0)


def build_cases(rng):
    C = []

    def add(kind, pred, ref, spacing, note=""):
        C.append(dict(kind=kind, pred=pred.astype(bool), ref=ref.astype(bool), spacing=spacing, note=note))

    # 00 identical sphere
    s = sphere((32, 32, 32), ISO, (15.5, 16.0, 15.2), 9.0)
    add("identical_sphere", s, s.copy(), ISO, "identical masks: all distances 0, dice 1")
    # 01-03 spheres with slight (sub-voxel and multi-voxel) offsets
    sh = (32, 32, 32)
    add("sphere_offset", sphere(sh, ISO, (16.7, 15.4, 16.2), 8.5), sphere(sh, ISO, (15.5, 16.0, 16.0), 9.0), ISO)
    sh = (40, 40, 24)
    add("sphere_offset_aniso", sphere(sh, AN_A, (21.0, 19.0, 11.5), 10.0),
        sphere(sh, AN_A, (19.5, 20.5, 12.0), 10.5), AN_A)
    sh = (48, 24, 32)
    add("sphere_offset_aniso", sphere(sh, AN_B, (23.0, 12.0, 15.0), 9.0),
        sphere(sh, AN_B, (25.0, 11.3, 16.4), 8.0), AN_B)
    # 04-06 rotated ellipsoids with offsets
    R = rotation(rng)
    sh = (36, 36, 36)
    add("ellipsoid_offset", ellipsoid(sh, ISO, (18.3, 17.6, 18.0), (12.0, 7.0, 5.0), R),
        ellipsoid(sh, ISO, (17.5, 18.2, 17.4), (11.0, 7.5, 5.5), R), ISO)
    R2 = rotation(rng)
    sh = (40, 44, 20)
    add("ellipsoid_offset_aniso", ellipsoid(sh, AN_A, (20.0, 22.0, 10.0), (14.0, 9.0, 6.0), R2),
        ellipsoid(sh, AN_A, (21.2, 21.0, 9.6), (13.0, 10.0, 7.0), R2), AN_A)
    R3 = rotation(rng)
    sh = (48, 24, 36)
    add("ellipsoid_offset_aniso", ellipsoid(sh, AN_B, (24.0, 12.0, 18.0), (9.0, 12.0, 6.0), R3),
        ellipsoid(sh, AN_B, (22.5, 12.6, 17.0), (9.5, 11.0, 7.0), rotation(rng)), AN_B,
        "different orientations")
    # 07 sphere vs ellipsoid
    sh = (32, 32, 32)
    add("sphere_vs_ellipsoid", sphere(sh, ISO, (16, 16, 16), 8.0),
        ellipsoid(sh, ISO, (16, 16, 16), (11.0, 7.0, 6.0)), ISO)
    # 08-11 random smooth blobs
    add("blob", *blob_pair(rng, (32, 32, 32), 3.0, 0.12, 0.35), ISO)
    add("blob_aniso", *blob_pair(rng, (40, 36, 24), 2.5, 0.15, 0.5), AN_A)
    add("blob_aniso", *blob_pair(rng, (44, 28, 32), (3.5, 2.0, 2.5), 0.10, 0.6), AN_B)
    add("blob_multicomponent", *blob_pair(rng, (36, 36, 36), 1.8, 0.06, 0.7), ISO,
        "small sigma, low fraction: many components")
    # 12-16 one-sided errors (MONAI vs pooled HD95 differ strongly here)
    sh = (40, 40, 40)
    # The FP/FN blob sizes are tuned so that the blob holds 5-10 % of its mask's surface voxels:
    # above the 5 % tail of its own direction (MONAI picks it up) but below 5 % of the pooled set.
    ref = sphere(sh, ISO, (14.0, 14.0, 14.0), 8.0)
    pred = shift(ref, (1, 0, 0)) | sphere(sh, ISO, (33.0, 33.0, 31.0), 2.5)
    add("one_sided_fp", pred, ref, ISO, "pred = ref shifted 1 voxel + distant small false-positive blob")
    pred = shift(ref, (1, 0, 0)) | sphere(sh, ISO, (14.0, 14.0, 25.5), 2.5)
    add("one_sided_fp_near", pred, ref, ISO, "pred = ref shifted 1 voxel + small FP blob ~2 mm off the surface")
    sh = (40, 40, 24)
    ref = sphere(sh, AN_A, (14.0, 16.0, 10.0), 9.0)
    pred = shift(ref, (1, 0, 0)) | sphere(sh, AN_A, (34.0, 34.0, 19.0), 3.0)
    add("one_sided_fp_aniso", pred, ref, AN_A, "pred = ref shifted 1 voxel + distant small FP blob")
    sh = (48, 24, 32)
    pred = sphere(sh, AN_B, (16.0, 12.0, 14.0), 8.0)
    ref = sphere(sh, AN_B, (16.6, 12.0, 14.5), 8.0) | sphere(sh, AN_B, (40.0, 5.0, 26.0), 2.2)
    add("one_sided_fn_aniso", pred, ref, AN_B, "ref = offset pred + distant small blob the prediction missed")
    sh = (32, 32, 32)
    ref = sphere(sh, ISO, (15.0, 16.0, 16.0), 7.0)
    pred = ref | shift(ref, (4, 0, 0))
    add("one_sided_overseg", pred, ref, ISO, "pred = ref union ref shifted +4 voxels along axis 0")
    # 17-19 tiny objects
    sh = (24, 24, 24)
    p = np.zeros(sh, bool); r = np.zeros(sh, bool)
    p[5, 7, 9] = True; r[8, 7, 11] = True
    add("tiny_1vox", p, r, AN_A, "single voxels at different positions")
    p = np.zeros(sh, bool); p[12, 3, 20] = True
    add("tiny_1vox_identical", p, p.copy(), AN_B)
    p = np.zeros(sh, bool); r = np.zeros(sh, bool)
    p[10, 10, 10] = p[10, 11, 10] = True
    r[10, 10, 10] = r[11, 10, 10] = r[11, 10, 11] = True
    add("tiny_2v3vox", p, r, AN_B, "2-voxel pred vs 3-voxel ref")
    # 20-22 objects touching the volume border
    sh = (32, 32, 32)
    add("border_touch", sphere(sh, ISO, (1.0, 16.0, 16.0), 9.0), sphere(sh, ISO, (0.0, 15.0, 17.0), 9.5), ISO,
        "spheres cut by the axis-0 low face")
    sh = (36, 30, 20)
    p, r = blob_pair(rng, sh, 3.0, 0.35, 0.4)
    add("border_touch_blob_aniso", p, r, AN_A, "large-fraction blobs touching several faces")
    sh = (24, 28, 20)
    r = np.ones(sh, bool)
    p = np.ones(sh, bool); p[:6, :7, :5] = False
    add("border_full_volume", p, r, AN_B, "ref = whole volume, pred = whole volume minus a corner box")
    # 23 identical blob, anisotropic
    b, _ = blob(rng, (32, 32, 24), 2.5, 0.2)
    add("identical_blob_aniso", b, b.copy(), AN_A)
    # 24-26 empty masks
    sh = (24, 24, 24)
    e = np.zeros(sh, bool)
    add("empty_pred", e, sphere(sh, ISO, (12, 12, 12), 5.0), ISO, "penalty case")
    add("empty_ref", sphere(sh, AN_A, (12, 12, 12), 5.0), e.copy(), AN_A, "penalty case")
    add("both_empty", e.copy(), e.copy(), AN_B, "undefined: NaN (null)")
    # 27-29 further shapes
    sh = (32, 32, 24)
    r = ellipsoid(sh, AN_B, (16.0, 16.0, 12.0), (7.0, 16.0, 9.0))
    add("nested_underseg_aniso", binary_erosion(r, iterations=2), r, AN_B, "pred = ref eroded twice")
    sh = (32, 32, 32)
    r = sphere(sh, ISO, (16, 16, 16), 10.0) & ~sphere(sh, ISO, (16, 16, 16), 5.0)
    add("hollow_shell", sphere(sh, ISO, (16.3, 15.8, 16.0), 10.0), r, ISO,
        "ref = shell with internal cavity (inner surface), pred = filled sphere")
    sh = (28, 28, 28)
    p = np.zeros(sh, bool); r = np.zeros(sh, bool)
    p[4:24, 4:24, 14] = True
    r[4:24, 5:25, 15] = True
    add("thin_plane", p, r, AN_A, "one-voxel-thick planes: every voxel is a surface voxel")
    return C


# --------------------------------------------------------------------------------------------
# I/O
# --------------------------------------------------------------------------------------------

def save_mask(mask, spacing, path):
    img = nib.Nifti1Image(mask.astype(np.uint8), affine=np.diag(list(spacing) + [1.0]))
    img.set_data_dtype(np.uint8)
    img.header["xyzt_units"] = 2  # mm
    nib.save(img, path)
    back = nib.load(path)
    data = np.asanyarray(back.dataobj)
    assert data.dtype == np.uint8 and np.array_equal(data, mask.astype(np.uint8)), path
    return tuple(float(z) for z in back.header.get_zooms()[:3])


def clean(v):
    """JSON-safe: NaN/inf -> null, numpy scalars -> python."""
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return None if not math.isfinite(v) else v
    if isinstance(v, np.integer):
        return int(v)
    return v


def fmt(v, w=9):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return f"{'null':>{w}}"
    return f"{v:>{w}.4f}"


def brats_shift():
    if not os.path.exists(BRATS_SEG):
        print(f"[gen] {BRATS_SEG} not found; brats_shift omitted", file=sys.stderr)
        return None
    img = nib.load(BRATS_SEG)
    seg = np.asanyarray(img.dataobj).astype(np.int16)
    shifted = np.zeros_like(seg)
    shifted[2:] = seg[:-2]
    shifted[:2] = 0
    sp = (1.0, 1.0, 1.0)
    regions = {}
    for name, labels in (("WT", (1, 2, 4)), ("TC", (1, 4)), ("ET", (4,))):
        pred = np.isin(shifted, labels)
        ref = np.isin(seg, labels)
        m = all_metrics(pred, ref, sp)
        regions[name] = m
        assert m["hd"] <= 2.0 + 1e-12 and m["hd95_pooled"] <= 2.0 + 1e-12 and m["hd95_monai"] <= 2.0 + 1e-12, m
    return {"case": "Brats18_CBICA_ABM_1", "axis": 0, "shift": 2, "spacing": list(sp),
            "shape": list(seg.shape), "header_zooms": [float(z) for z in img.header.get_zooms()[:3]],
            "labels": {"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}, "regions": regions}


def main():
    rng = np.random.default_rng(SEED)
    for f in os.listdir(HERE):
        if f.startswith("case_") and f.endswith(".nii.gz"):
            os.remove(os.path.join(HERE, f))
    cases = build_cases(rng)
    out_cases = []
    for i, c in enumerate(cases):
        name = f"case_{i:02d}"
        pf, rf = f"{name}_pred.nii.gz", f"{name}_ref.nii.gz"
        zp = save_mask(c["pred"], c["spacing"], os.path.join(HERE, pf))
        zr = save_mask(c["ref"], c["spacing"], os.path.join(HERE, rf))
        assert zp == zr
        # The header stores pixdim as float32; use exactly what a reader gets back (e.g. 0.8 ->
        # 0.800000011920929) so that the expected values match a reader that uses pixdim.
        assert np.allclose(zp, c["spacing"], rtol=1e-7, atol=0), (zp, c["spacing"])
        spacing = list(zp)
        m = all_metrics(c["pred"], c["ref"], spacing)
        entry = {"name": name, "pred": pf, "ref": rf, "spacing": spacing, "shape": list(c["pred"].shape),
                 "kind": c["kind"], "note": c["note"]}
        entry.update(m)
        if m["monai_hd95_from_monai"] is not None:
            assert abs(m["monai_hd95_from_monai"] - m["hd95_monai"]) < 1e-4, (name, m)
        out_cases.append(entry)
    if HAVE_MONAI:
        # The other documented input form: (B=1, C=2, ...) one-hot with include_background=False.
        c = cases[2]
        oh = lambda m: torch.from_numpy(np.stack([~m, m]).astype(np.float32))[None]
        v = float(compute_hausdorff_distance(oh(c["pred"]), oh(c["ref"]), include_background=False,
                                             percentile=95, spacing=out_cases[2]["spacing"]).reshape(-1)[0])
        assert abs(v - out_cases[2]["monai_hd95_from_monai"]) < 1e-6, (v, out_cases[2])

    doc = {
        "cases": out_cases,
        "penalty_mm": PENALTY_MM,
        "conventions": {
            "axis_order": "numpy / NIfTI voxel order (i, j, k); spacing[i] = header pixdim[i+1] (float32 -> float64)",
            "surface": "mask XOR binary_erosion(mask, 6-connected cross, border_value=0)",
            "dice": "2|A&B| / (|A|+|B|)",
            "hd95_pooled": "MedPy hd95: 95th percentile (numpy linear) of the concatenation of both directed surface-distance sets",
            "hd95_monai": "max over the two directions of the 95th percentile (numpy linear) of directed surface distances",
            "hd": "MedPy hd: max of all directed surface distances",
            "assd": "MedPy (0.5.x) assd = mean of the concatenation of both directed surface-distance sets (= assd_pooled_mean)",
            "assd_pooled_mean": "mean of the concatenated directed distances (each surface voxel of either mask weighs 1)",
            "assd_mean_of_means": "(mean(pred->ref) + mean(ref->pred)) / 2 (MedPy <= 0.4, and the usual textbook ASSD)",
            "empty": "both empty -> dice/hd95/hd/assd null (NaN); exactly one empty -> dice 0, distances = penalty_mm",
        },
        "seed": SEED,
        "tools": {"medpy": getattr(medpy, "__version__", None) or _dist_version("medpy"),
                  "monai": monai.__version__ if HAVE_MONAI else None,
                  "torch": torch.__version__ if HAVE_MONAI else None,
                  "scipy": scipy.__version__, "numpy": np.__version__, "nibabel": nib.__version__,
                  "python": sys.version.split()[0]},
    }
    bs = brats_shift()
    if bs is not None:
        doc["brats_shift"] = bs
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(clean(doc), f, indent=1, allow_nan=False)
        f.write("\n")

    # ---- report ------------------------------------------------------------------------------
    print(f"{'case':8} {'kind':24} {'spacing':18} {'dice':>9} {'hd95_pool':>9} {'hd95_mon':>9} "
          f"{'monai_lib':>9} {'hd':>9} {'assd':>9}")
    worst = 0.0
    n_checked = 0
    for e in out_cases:
        sp = ",".join(f"{s:g}" for s in e["spacing"])
        print(f"{e['name']:8} {e['kind']:24} {sp:18} {fmt(e['dice'])} {fmt(e['hd95_pooled'])} "
              f"{fmt(e['hd95_monai'])} {fmt(e['monai_hd95_from_monai'])} {fmt(e['hd'])} {fmt(e['assd'])}")
        if e["monai_hd95_from_monai"] is not None:
            n_checked += 1
            worst = max(worst, abs(e["monai_hd95_from_monai"] - e["hd95_monai"]))
    print()
    for e in out_cases:
        if e["kind"].startswith("one_sided"):
            r = e["hd95_monai"] / e["hd95_pooled"] if e["hd95_pooled"] > 0 else float("inf")
            print(f"{e['name']} {e['kind']:22} hd95_monai/hd95_pooled = {e['hd95_monai']:.4f}/"
                  f"{e['hd95_pooled']:.4f} = {r:.2f}")
    if HAVE_MONAI:
        print(f"\nMONAI {monai.__version__}: numpy MONAI-convention vs monai.metrics on {n_checked} cases, "
              f"max |diff| = {worst:.3g}")
    if bs is not None:
        print("\nbrats_shift (Brats18_CBICA_ABM_1, +2 voxels along axis 0):")
        for k, m in bs["regions"].items():
            print(f"  {k}: dice={m['dice']:.6f} hd95_pooled={m['hd95_pooled']:.4f} "
                  f"hd95_monai={m['hd95_monai']:.4f} monai_lib={fmt(m['monai_hd95_from_monai'], 0)} "
                  f"hd={m['hd']:.4f} assd={m['assd']:.6f}")
    total = sum(os.path.getsize(os.path.join(HERE, f)) for f in os.listdir(HERE))
    print(f"\n{len(out_cases)} cases, folder size {total / 1024:.1f} KiB")


def _dist_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return None


if __name__ == "__main__":
    main()
