# NVRTC compile check of CUDA sources without a GPU (used by xtask/tests/nvrtc_check.rs):
#   python3 nvrtc_check.py /path/to/libnvrtc.so.13 ARCH FILE.cu...
# Compiles each file with libnvrtc through ctypes (--gpu-architecture=compute_ARCH --fmad=false) and
# prints "ok FILE (N bytes of PTX)", or the compile log and exit status 1 on any failure.
import ctypes
import glob
import os
import sys


def main():
    # libnvrtc dlopens libnvrtc-builtins.so.13.* by name: load it first from the same folder.
    for b in sorted(glob.glob(os.path.join(os.path.dirname(sys.argv[1]), "libnvrtc-builtins.so.*"))):
        if ".alt." not in b:
            ctypes.CDLL(b, mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(sys.argv[1])
    arch = sys.argv[2]
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    print(f"nvrtc {major.value}.{minor.value}: {sys.argv[1]}")
    failed = 0
    for path in sys.argv[3:]:
        src = open(path, "rb").read()
        prog = ctypes.c_void_p()
        rc = lib.nvrtcCreateProgram(ctypes.byref(prog), src, path.encode(), 0, None, None)
        if rc != 0:
            print(f"FAILED {path}: nvrtcCreateProgram: {lib.nvrtcGetErrorString(rc).decode()}")
            failed += 1
            continue
        # Quoted includes (e.g. "envelope.cuh") resolve next to the file, as with nvcc.
        inc = f"--include-path={os.path.dirname(os.path.abspath(path))}".encode()
        opts = [f"--gpu-architecture=compute_{arch}".encode(), b"--fmad=false", b"-default-device", inc]
        arr = (ctypes.c_char_p * len(opts))(*opts)
        rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        if rc != 0:
            print(f"FAILED {path}: {lib.nvrtcGetErrorString(rc).decode()}\n{log.value.decode(errors='replace')}")
            failed += 1
        else:
            lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
            print(f"ok {path} ({size.value} bytes of PTX)")
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
