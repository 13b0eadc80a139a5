// Surface distances of two masks on the GPU (magseg-metrics): mask statistics and bounding boxes,
// surface extraction inside the bounding box, and the last EDT pass (along k) evaluated only at the
// other mask's surface voxels, whose distances are compacted into a list with an atomic counter.
//
// Mirrors the CPU code exactly: src/grid.rs (bounding box, crop), src/surface.rs (surface = mask AND
// NOT erosion, neighbours outside the box are background), src/edt.rs `distances_at` (the f64
// envelope value at each query voxel, square root in f64). Compiled with -fmad=false (build.rs) so
// every floating-point operation rounds as on the CPU. Data is in NIfTI order, d[i + nx*(j + ny*k)].

#include "envelope.cuh"
#define FULL_MASK 0xffffffffu

typedef unsigned long long u64;

__device__ __forceinline__ u64 warp_min(u64 x) {
    for (int o = 16; o > 0; o >>= 1) {
        u64 y = __shfl_down_sync(FULL_MASK, x, o);
        x = y < x ? y : x;
    }
    return x;
}

__device__ __forceinline__ u64 warp_max(u64 x) {
    for (int o = 16; o > 0; o >>= 1) {
        u64 y = __shfl_down_sync(FULL_MASK, x, o);
        x = y > x ? y : x;
    }
    return x;
}

__device__ __forceinline__ u64 warp_sum(u64 x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_down_sync(FULL_MASK, x, o);
    return x;
}

// Statistics of both masks, one thread per row (j, k) of nx voxels. `stats` (15 entries) must hold on
// entry: [0..3) = ~0 and [3..6) = 0 (pred box lo / hi per axis i, j, k; hi exclusive), [6..9) = ~0 and
// [9..12) = 0 (the reference's box), [12] |pred|, [13] |reference|, [14] |pred AND reference| = 0.
// Block size must be a multiple of 32 (every lane of a warp takes part in the reductions).
extern "C" __global__ void mask_stats(const unsigned char* __restrict__ p, const unsigned char* __restrict__ r,
                                      u64* stats, long long nrows, int nx, int ny) {
    long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    u64 lo[6], hi[6], cnt[3];
    for (int a = 0; a < 6; ++a) {
        lo[a] = ~0ULL;
        hi[a] = 0;
    }
    cnt[0] = cnt[1] = cnt[2] = 0;
    if (t < nrows) {
        const unsigned char* pr = p + t * nx;
        const unsigned char* rr = r + t * nx;
        long long first[2] = {-1, -1}, last[2] = {-1, -1};
        for (int i = 0; i < nx; ++i) {
            int a = pr[i] != 0, b = rr[i] != 0;
            if (a) {
                if (first[0] < 0) first[0] = i;
                last[0] = i;
            }
            if (b) {
                if (first[1] < 0) first[1] = i;
                last[1] = i;
            }
            cnt[0] += a;
            cnt[1] += b;
            cnt[2] += a & b;
        }
        u64 j = (u64)(t % ny), k = (u64)(t / ny);
        for (int m = 0; m < 2; ++m) {
            if (first[m] < 0) continue;
            lo[3 * m] = (u64)first[m];
            lo[3 * m + 1] = j;
            lo[3 * m + 2] = k;
            hi[3 * m] = (u64)last[m] + 1;
            hi[3 * m + 1] = j + 1;
            hi[3 * m + 2] = k + 1;
        }
    }
    int lane = threadIdx.x & 31;
    for (int m = 0; m < 2; ++m) {
        for (int a = 0; a < 3; ++a) {
            u64 l = warp_min(lo[3 * m + a]);
            u64 h = warp_max(hi[3 * m + a]);
            if (lane == 0 && h > 0) {
                atomicMin(&stats[6 * m + a], l);
                atomicMax(&stats[6 * m + 3 + a], h);
            }
        }
    }
    for (int c = 0; c < 3; ++c) {
        u64 s = warp_sum(cnt[c]);
        if (lane == 0 && s > 0) atomicAdd(&stats[12 + c], s);
    }
}

// Whether the voxel (i, j, k) of the box [lo, lo + b) of a full grid of nx × ny voxels is a surface
// voxel of mask `m`: set, with a neighbour (6 face neighbours, or all 26 when `conn26`) outside the
// box or unset. Outside the box every voxel is background (the box holds every set voxel).
__device__ __forceinline__ bool is_surface(const unsigned char* m, long long i, long long j, long long k,
                                           long long bx, long long by, long long bz, long long base, long long nx,
                                           long long plane, int conn26) {
    long long c = base + i + nx * j + plane * k;
    if (!m[c]) return false;
    for (int dk = -1; dk <= 1; ++dk) {
        for (int dj = -1; dj <= 1; ++dj) {
            for (int di = -1; di <= 1; ++di) {
                int face = abs(di) + abs(dj) + abs(dk);
                if (face == 0 || (!conn26 && face > 1)) continue;
                long long a = i + di, b = j + dj, e = k + dk;
                if (a < 0 || b < 0 || e < 0 || a >= bx || b >= by || e >= bz) return true;
                if (!m[c + di + nx * dj + plane * dk]) return true;
            }
        }
    }
    return false;
}

// Surfaces of both masks inside the box: one thread per box voxel v = i + bx*(j + by*k); the box
// starts at voxel `base` = lo_i + nx*(lo_j + ny*lo_k) of the full grid (plane = nx*ny). Writes 0/1
// bytes `sp`, `sr` in the box's NIfTI order and adds the number of surface voxels to counts[0]
// (pred) and counts[1] (reference). Block size must be a multiple of 32.
extern "C" __global__ void surfaces(const unsigned char* __restrict__ p, const unsigned char* __restrict__ r,
                                    unsigned char* __restrict__ sp, unsigned char* __restrict__ sr,
                                    u64* counts, long long bx, long long by, long long bz, long long base,
                                    long long nx, long long plane, int conn26) {
    long long v = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long nbox = bx * by * bz;
    bool a = false, b = false;
    if (v < nbox) {
        long long i = v % bx, rest = v / bx;
        long long j = rest % by, k = rest / by;
        a = is_surface(p, i, j, k, bx, by, bz, base, nx, plane, conn26);
        b = is_surface(r, i, j, k, bx, by, bz, base, nx, plane, conn26);
        sp[v] = a;
        sr[v] = b;
    }
    unsigned ba = __ballot_sync(FULL_MASK, a), bb = __ballot_sync(FULL_MASK, b);
    if ((threadIdx.x & 31) == 0) {
        if (ba) atomicAdd(&counts[0], (u64)__popc(ba));
        if (bb) atomicAdd(&counts[1], (u64)__popc(bb));
    }
}

// The EDT's last pass along k (lines of n = nz voxels, stride nx*ny = nlines), evaluated only where
// `query` is set: out[c] = sqrt of the f64 lower-envelope value, key[c] = (j*nx + i)*nz + k (the
// order of the CPU's `distances_at`), c taken from `counter` (one atomicAdd per line). With n == 1, or
// a line without a finite entry, the value is sqrt of the (f32) 2-D distance, as on the CPU.
// `vs`, `hs`, `zs` hold nlines * (n + 1) entries each (interleaved as in edt.cu); `out` and `key` hold
// `cap` entries; a line whose values would not fit below `cap` writes nothing (the counter still
// counts them, so the host detects it).
extern "C" __global__ void gather_k(const float* __restrict__ d, const unsigned char* __restrict__ query,
                                    int* __restrict__ vs, double* __restrict__ hs, double* __restrict__ zs,
                                    double* __restrict__ out, long long* __restrict__ key, u64* counter,
                                    long long nlines, int n, int nx, double s, long long cap) {
    long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= nlines) return;
    const long long stride = nlines;
    const float* f = d + t;
    const unsigned char* q = query + t;
    int nq = 0;
    int first = -1;
    for (int p = 0; p < n; ++p) {
        nq += q[p * stride] != 0;
        if (first < 0 && f[p * stride] != F32_INF) first = p;
    }
    if (nq == 0) return;
    long long pos = (long long)atomicAdd(counter, (u64)nq);
    if (pos + nq > cap) return;
    long long i = t % nx, j = t / nx;
    long long key0 = (j * nx + i) * (long long)n;
    if (n == 1 || first < 0) {
        for (int p = 0; p < n; ++p) {
            if (!q[p * stride]) continue;
            out[pos] = sqrt((double)f[p * stride]);
            key[pos] = key0 + p;
            ++pos;
        }
        return;
    }
    int* v = vs + t;
    double* h = hs + t;
    double* z = zs + t;
    const long long L = nlines;
    const double s2 = s * s;
    const double inv = 1.0 / s2;
    lower_envelope(f, stride, n, first, inv, v, h, z, L);
    int k = 0;
    for (int p = 0; p < n; ++p) {
        if (!q[p * stride]) continue;
        double x = (double)p;
        while (z[(k + 1) * L] < x) ++k;
        double vk = (double)v[k * L];
        double dx = x - vk;
        out[pos] = sqrt((dx * dx + (h[k * L] - vk * vk)) * s2);
        key[pos] = key0 + p;
        ++pos;
    }
}
