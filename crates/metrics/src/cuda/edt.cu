// Exact separable squared Euclidean distance transform (mm²) of magseg-metrics on the GPU.
//
// The same arithmetic, in the same order, as the CPU passes in src/line.rs (binary scan along i, then
// Felzenszwalb–Huttenlocher lower envelopes along j and k in f64, stored as f32). Compiled with
// -fmad=false (build.rs), so no multiply-add is fused and the result equals the CPU's bit for bit.
//
// Data is in NIfTI order, d[i + nx*(j + ny*k)]. One thread handles one line of one axis. The envelope
// scratch (apex positions v, apex heights h, interval boundaries z; n + 1 entries per line) is
// interleaved, element e of line t at e * nlines + t, so that neighbouring threads touch neighbouring
// addresses.

#include "envelope.cuh"

// Pass i: squared distance (mm²) along each line of `n` contiguous voxels to the nearest feature of
// that line (infinity when the line has none). `f` holds 0/1 bytes; line t starts at t * n.
extern "C" __global__ void edt_binary_lines(const unsigned char* __restrict__ f, float* __restrict__ out,
                                            long long nlines, int n, double s) {
    long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= nlines) return;
    const unsigned char* fl = f + t * n;
    float* o = out + t * n;
    // Forward: voxels since the last feature on the left (exact small integers in f32).
    float d = F32_INF;
    for (int p = 0; p < n; ++p) {
        d = fl[p] ? 0.0f : d + 1.0f;
        o[p] = d;
    }
    // Backward: the nearer side, converted to squared mm.
    d = F32_INF;
    for (int p = n - 1; p >= 0; --p) {
        d = fl[p] ? 0.0f : d + 1.0f;
        double m = (double)fminf(o[p], d) * s;
        o[p] = (float)(m * m);
    }
}

// Passes j and k, in place: d[p] = min_q d[q] + ((p - q) s)² along each line of `n` voxels `stride`
// apart. Line t starts at (t % inner) + (t / inner) * outer. Lines without a finite entry stay
// infinite. `vs`, `hs`, `zs` hold nlines * (n + 1) entries each.
extern "C" __global__ void edt_envelope_lines(float* d, int* __restrict__ vs, double* __restrict__ hs,
                                              double* __restrict__ zs, long long nlines, int n,
                                              long long inner, long long outer, long long stride, double s) {
    long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= nlines) return;
    float* f = d + (t % inner) + (t / inner) * outer;
    int* v = vs + t;
    double* h = hs + t;
    double* z = zs + t;
    const long long L = nlines;
    int first = -1;
    for (int q = 0; q < n; ++q) {
        if (f[q * stride] != F32_INF) {
            first = q;
            break;
        }
    }
    if (first < 0) return;  // all infinite already
    const double s2 = s * s;
    const double inv = 1.0 / s2;
    // Heights in voxel units plus the squared apex position, g/s² + v².
    lower_envelope(f, stride, n, first, inv, v, h, z, L);
    int k = 0;
    for (int p = 0; p < n; ++p) {
        double x = (double)p;
        while (z[(k + 1) * L] < x) ++k;
        double vk = (double)v[k * L];
        double dx = x - vk;
        // h − v² is the apex height in voxel units.
        f[p * stride] = (float)((dx * dx + (h[k * L] - vk * vk)) * s2);
    }
}
