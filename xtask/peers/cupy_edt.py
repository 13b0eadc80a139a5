# CuPy EDT peer of the GPU bundle (section 3 of ../shared/peers/gpu_peer.py): the exact EDT of the
# complement of a radius-40 sphere at (120, 110, 80) in a 240x240x155 volume, 1 mm spacing; warm-up,
# then the median of 20 synchronised runs. Prints one JSON line (an "error" field when CuPy fails).
import json
import statistics
import time

import numpy as np

res = {"peer": "cupyx.scipy.ndimage.distance_transform_edt", "shape": [240, 240, 155]}
try:
    import cupy
    import cupyx.scipy.ndimage as cnd

    res["cupy"] = cupy.__version__
    res["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    m = np.zeros((240, 240, 155), bool)
    zz, yy, xx = np.ogrid[:240, :240, :155]
    m[(zz - 120) ** 2 + (yy - 110) ** 2 + (xx - 80) ** 2 < 40**2] = True
    cm = cupy.asarray(~m)

    def edt():
        r = cnd.distance_transform_edt(cm, sampling=(1.0, 1.0, 1.0))
        cupy.cuda.Device().synchronize()
        return r

    for _ in range(3):
        d = edt()
    res["max_distance_mm"] = round(float(d.max()), 4)
    times = []
    for _ in range(20):
        t = time.perf_counter()
        edt()
        times.append((time.perf_counter() - t) * 1e3)
    res["cupy_edt_ms_median20"] = round(statistics.median(times), 4)
    res["cupy_edt_ms_min"] = round(min(times), 4)
except Exception as e:  # report, do not crash the bundle run
    res["error"] = repr(e)[:300]
print(json.dumps(res))
