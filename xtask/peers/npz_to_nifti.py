"""Writes the cases of prep_brats_2mm.py's .npz files (../shared/peers) as a BraTS-layout data set of
NIfTI files, so that magseg trains and validates on exactly the voxels the PyTorch accuracy peer
(magms_unet_ref.py) sees: images dequantised as the peer does ((q - 1) / 254 * 10 - 4 inside the
brain, 0 outside), labels back to BraTS values (peer 1 NCR/NET -> 1, 2 ED -> 2, 3 ET -> 4), 2 mm voxels.
Needs numpy only (runs on the GPU machine).
Usage: npz_to_nifti.py OUT_DIR FILE.npz..."""
import gzip
import os
import struct
import sys

import numpy as np


def write_nifti(path, data, spacing=(2.0, 2.0, 2.0)):
    """A NIfTI-1 single file (.nii.gz) with a diagonal sform/qform (RAS, `spacing` mm)."""
    codes = {np.dtype(np.uint8): (2, 8), np.dtype(np.float32): (16, 32)}
    code, bits = codes[data.dtype]
    hdr = bytearray(348)
    struct.pack_into("<i", hdr, 0, 348)
    dims = [3, *data.shape, 1, 1, 1, 1]
    struct.pack_into("<8h", hdr, 40, *dims)
    struct.pack_into("<hh", hdr, 70, code, bits)
    struct.pack_into("<8f", hdr, 76, 1.0, *spacing, 1.0, 1.0, 1.0, 1.0)
    struct.pack_into("<f", hdr, 108, 352.0)  # vox_offset
    struct.pack_into("<ff", hdr, 112, 1.0, 0.0)  # scl_slope, scl_inter
    hdr[123] = 2  # xyzt_units: mm
    struct.pack_into("<hh", hdr, 252, 1, 1)  # qform_code, sform_code (scanner)
    struct.pack_into("<6f", hdr, 256, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # quatern b, c, d, offsets
    struct.pack_into("<4f", hdr, 280, spacing[0], 0.0, 0.0, 0.0)
    struct.pack_into("<4f", hdr, 296, 0.0, spacing[1], 0.0, 0.0)
    struct.pack_into("<4f", hdr, 312, 0.0, 0.0, spacing[2], 0.0)
    hdr[344:348] = b"n+1\0"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(bytes(hdr) + b"\0\0\0\0")
        f.write(np.asfortranarray(data).tobytes(order="F"))


def main():
    out, files = sys.argv[1], sys.argv[2:]
    if not files:
        sys.exit(__doc__)
    mods = ["flair", "t1", "t1ce", "t2"]
    to_brats = np.array([0, 1, 2, 4], np.uint8)
    n = 0
    for p in files:
        z = np.load(p)
        for case in sorted({k.split("__")[0] for k in z.files}):
            q = z[case + "__img"]
            img = np.where(q > 0, (q.astype(np.float32) - 1) / 254 * 10 - 4, 0).astype(np.float32)
            d = os.path.join(out, case)
            os.makedirs(d, exist_ok=True)
            for m, name in enumerate(mods):
                write_nifti(os.path.join(d, f"{case}_{name}.nii.gz"), img[m])
            write_nifti(os.path.join(d, f"{case}_seg.nii.gz"), to_brats[z[case + "__lab"]])
            n += 1
    print(f"wrote {n} cases to {out}")


if __name__ == "__main__":
    main()
