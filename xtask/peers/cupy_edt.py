# CuPy EDT and HD95 peer of the GPU bundle, printed side by side with examples/edt_gpu_bench.rs.
# 1. EDT (section 3 of ../shared/peers/gpu_peer.py): the exact EDT of the complement of a radius-40
#    sphere at (120, 110, 80) in a 240x240x155 volume, 1 mm spacing; warm-up, then the median of 20
#    synchronised runs.
# 2. HD95 (MONAI convention, as magseg's default): spheres a (centre (120, 110, 80)) and b (centre
#    (126, 118, 80)), radius 40 (strict <), 1 mm. Surface = mask & ~binary_erosion(mask) with the
#    6-neighbourhood (generate_binary_structure(3, 1), border_value=0: magseg's Connectivity::Six),
#    distance_transform_edt of each surface's complement with `sampling`, the distances gathered at the
#    other surface, max of the two directed 95th percentiles (numpy's linear rule). Timed device-resident
#    (masks already on the GPU; median of 20) and with host transfers (numpy masks in, float out;
#    median of 5). The whole volume is transformed (no bounding-box crop, as MONAI does).
# Prints one JSON line (an "error" field when CuPy fails). `--cpu` runs the same code with
# numpy/scipy instead (a logic check without a GPU; timings then mean CPU).
import json
import statistics
import sys
import time

import numpy as np

CPU = "--cpu" in sys.argv
res = {"peer": "cupyx.scipy.ndimage.distance_transform_edt", "shape": [240, 240, 155]}


def sphere(centre, r=40):
    i, j, k = np.ogrid[:240, :240, :155]
    return (i - centre[0]) ** 2 + (j - centre[1]) ** 2 + (k - centre[2]) ** 2 < r**2


try:
    if CPU:
        import scipy
        import scipy.ndimage as cnd

        xp = np
        res["peer"] = "scipy.ndimage.distance_transform_edt (--cpu logic check)"
        res["scipy"] = scipy.__version__

        def sync():
            pass

    else:
        import cupy
        import cupyx.scipy.ndimage as cnd

        xp = cupy
        res["cupy"] = cupy.__version__
        res["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()

        def sync():
            cupy.cuda.Device().synchronize()

    def timed(f, n):
        times = []
        for _ in range(n):
            t = time.perf_counter()
            f()
            sync()
            times.append((time.perf_counter() - t) * 1e3)
        return times

    # 1. EDT
    m = sphere((120, 110, 80))
    cm = xp.asarray(~m)

    def edt():
        r = cnd.distance_transform_edt(cm, sampling=(1.0, 1.0, 1.0))
        sync()
        return r

    for _ in range(3):
        d = edt()
    res["max_distance_mm"] = round(float(d.max()), 4)
    times = timed(edt, 20)
    res["cupy_edt_ms_median20"] = round(statistics.median(times), 4)
    res["cupy_edt_ms_min"] = round(min(times), 4)

    # 2. HD95
    SAMPLING = (1.0, 1.0, 1.0)
    STRUCT = cnd.generate_binary_structure(3, 1)

    def hd95(a, b):
        """MONAI-convention HD95 (mm) of two device masks, as a Python float."""
        sa = a & ~cnd.binary_erosion(a, structure=STRUCT, border_value=0)
        sb = b & ~cnd.binary_erosion(b, structure=STRUCT, border_value=0)
        to_a = cnd.distance_transform_edt(~sa, sampling=SAMPLING)
        to_b = cnd.distance_transform_edt(~sb, sampling=SAMPLING)
        d_ab, d_ba = to_b[sa], to_a[sb]
        return float(xp.maximum(xp.percentile(d_ab, 95), xp.percentile(d_ba, 95)))

    ha, hb = sphere((120, 110, 80)), sphere((126, 118, 80))
    da, db = xp.asarray(ha), xp.asarray(hb)
    for _ in range(3):
        h = hd95(da, db)
    res["hd95_mm"] = round(h, 6)
    times = timed(lambda: hd95(da, db), 20)
    res["cupy_hd95_ms_median20"] = round(statistics.median(times), 4)
    res["cupy_hd95_ms_min"] = round(min(times), 4)
    times = timed(lambda: hd95(xp.asarray(ha), xp.asarray(hb)), 5)
    res["cupy_hd95_with_transfers_ms_median5"] = round(statistics.median(times), 4)
except Exception as e:  # report, do not crash the bundle run
    res["error"] = repr(e)[:300]
print(json.dumps(res))
