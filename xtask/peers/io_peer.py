"""nibabel peer for `cargo xtask bench io`: load every file of one case as cpu_peer.py does
(np.asarray(nib.load(p).dataobj), one file after another) REPS times; print one JSON line of seconds."""
import json, sys, time
import numpy as np
import nibabel as nib

reps = int(sys.argv[1])
paths = sys.argv[2:]
times = []
for _ in range(reps):
    t = time.perf_counter()
    for p in paths:
        a = np.asarray(nib.load(p).dataobj)
        assert a.size > 0
    times.append(time.perf_counter() - t)
print(json.dumps({"nibabel": nib.__version__, "numpy": np.__version__, "times": times}))
