// The Felzenszwalb–Huttenlocher lower envelope shared by edt.cu (passes j and k) and surface.cu
// (the k pass at query voxels), so both evaluate exactly the same f64 arithmetic as src/line.rs.
#pragma once

#define F32_INF __int_as_float(0x7f800000)
#define F64_INF __longlong_as_double(0x7ff0000000000000LL)
#define F64_NEG_INF __longlong_as_double((long long)0xfff0000000000000ULL)

// Builds the lower envelope of the parabolas of one line: `n` f32 squared distances `stride` apart in
// `f` (infinite entries have no parabola), the first finite one at `first`, `inv` = 1 / s². Heights
// are in voxel units plus the squared apex position, g/s² + v². Writes apex positions `v`, heights `h`
// and interval boundaries `z` (element e at e * L) and leaves z[(k + 1) L] = +inf after the last
// parabola k. Evaluate at x (advancing k while z[(k + 1) L] < x) as (x − v)² + (h − v²), times s².
__device__ __forceinline__ void lower_envelope(const float* f, long long stride, int n, int first, double inv,
                                               int* v, double* h, double* z, long long L) {
    int k = 0;
    double q0 = (double)first;
    v[0] = first;
    h[0] = (double)f[first * stride] * inv + q0 * q0;
    z[0] = F64_NEG_INF;
    for (int q = first + 1; q < n; ++q) {
        float fq = f[q * stride];
        if (fq == F32_INF) continue;
        double qf = (double)q;
        double hq = (double)fq * inv + qf * qf;
        double sq = (hq - h[k * L]) / (2.0 * (qf - (double)v[k * L]));
        // z[0] = -inf stops the loop at k = 0.
        while (sq <= z[k * L]) {
            --k;
            sq = (hq - h[k * L]) / (2.0 * (qf - (double)v[k * L]));
        }
        ++k;
        v[k * L] = q;
        h[k * L] = hq;
        z[k * L] = sq;
    }
    z[(k + 1) * L] = F64_INF;
}
