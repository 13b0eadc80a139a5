// Instance norm over (n, c) slices of s values (magseg_kernels::instance_norm; launched by
// src/cuda/norm.rs). Long slices are split into chunks of IN_CHUNK values: one block per (slice,
// chunk) computes partial results in a fixed-order shared-memory tree, a second kernel combines each
// slice's chunks in order in f64 (deterministic). The activations x, dy, y, dx are f32 or bf16 (the
// _f32 / _bf16 kernels); statistics, sums, gamma and beta are f32, and all arithmetic is f32: a bf16
// value is widened exactly and a bf16 result rounded to nearest even once, so the bf16 kernels give
// the f32 kernels' results on the widened input, rounded.

#include "bf16.cuh"

#define IN_THREADS 256
#define IN_CHUNK 16384

// The sum of v over the block (every thread gets it); s holds IN_THREADS floats.
__device__ __forceinline__ float block_sum(float v, float* s) {
    s[threadIdx.x] = v;
    __syncthreads();
    for (int w = IN_THREADS / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
    const float total = s[0];
    __syncthreads();
    return total;
}

// partial[(slice*chunks + k)*3 ..] = (count, mean, M2) of chunk k (blockIdx.y) of slice blockIdx.x,
// two passes over the chunk (its mean, then the squared deviations from it).
template <typename T>
__device__ __forceinline__ void in_stats_partial(const T* __restrict__ x, float* __restrict__ partial, long long s) {
    __shared__ float sh[IN_THREADS];
    const T* v = x + (long long)blockIdx.x * s;
    const long long start = (long long)blockIdx.y * IN_CHUNK;
    const long long end = min(start + (long long)IN_CHUNK, s);
    float acc = 0.f;
    for (long long i = start + threadIdx.x; i < end; i += IN_THREADS) acc += to_f(v[i]);
    const float count = (float)(end - start);
    const float mean = block_sum(acc, sh) / count;
    acc = 0.f;
    for (long long i = start + threadIdx.x; i < end; i += IN_THREADS) {
        const float d = to_f(v[i]) - mean;
        acc += d * d;
    }
    const float m2 = block_sum(acc, sh);
    if (threadIdx.x == 0) {
        float* o = partial + ((long long)blockIdx.x * gridDim.y + blockIdx.y) * 3;
        o[0] = count;
        o[1] = mean;
        o[2] = m2;
    }
}

extern "C" __global__ void in_stats_partial_f32(const float* __restrict__ x, float* __restrict__ partial,
                                                long long s) {
    in_stats_partial(x, partial, s);
}

extern "C" __global__ void in_stats_partial_bf16(const bf16_t* __restrict__ x, float* __restrict__ partial,
                                                 long long s) {
    in_stats_partial(x, partial, s);
}

// stats[2i] = mean, stats[2i+1] = 1/sqrt(var + eps) of slice i: its chunks combined in order in f64
// (Chan et al.); one thread per slice.
extern "C" __global__ void in_stats_final_f32(const float* __restrict__ partial, float* __restrict__ stats,
                                              int slices, int chunks, float eps) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= slices) return;
    double n = 0.0, mean = 0.0, m2 = 0.0;
    for (int k = 0; k < chunks; ++k) {
        const float* p = partial + ((long long)i * chunks + k) * 3;
        const double nb = p[0], mb = p[1], m2b = p[2];
        const double nab = n + nb, delta = mb - mean;
        mean += delta * nb / nab;
        m2 += m2b + delta * delta * n * nb / nab;
        n = nab;
    }
    stats[2 * i] = (float)mean;
    stats[2 * i + 1] = (float)(1.0 / sqrt(m2 / n + (double)eps));
}

// z = (x - mean)*rstd*gamma + beta of slice sl, computed in one fixed way (no contraction into an fma),
// so that the backward kernels recompute the forward pass's z bit for bit.
__device__ __forceinline__ float normalized(float x, const float* __restrict__ stats, long long sl, float g,
                                            float b) {
    return __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(x, stats[2 * sl]), stats[2 * sl + 1]), g), b);
}

// The leaky ReLU of activation.cu (slope 1: the identity, z*1 = z).
__device__ __forceinline__ float act(float z, float slope) { return z > 0.f ? z : __fmul_rn(z, slope); }

// y = act((x - mean)*rstd*gamma[c] + beta[c]); one thread per element of (slices, s), c = slice % channels.
template <typename T>
__device__ __forceinline__ void in_fwd(const T* __restrict__ x, const float* __restrict__ stats,
                                       const float* __restrict__ gamma, const float* __restrict__ beta,
                                       T* __restrict__ y, long long total, long long s, int channels, float slope) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const long long sl = i / s;
    const int c = (int)(sl % channels);
    put(&y[i], act(normalized(to_f(x[i]), stats, sl, gamma[c], beta[c]), slope));
}

extern "C" __global__ void in_fwd_f32(const float* __restrict__ x, const float* __restrict__ stats,
                                      const float* __restrict__ gamma, const float* __restrict__ beta,
                                      float* __restrict__ y, long long total, long long s, int channels,
                                      float slope) {
    in_fwd(x, stats, gamma, beta, y, total, s, channels, slope);
}

extern "C" __global__ void in_fwd_bf16(const bf16_t* __restrict__ x, const float* __restrict__ stats,
                                       const float* __restrict__ gamma, const float* __restrict__ beta,
                                       bf16_t* __restrict__ y, long long total, long long s, int channels,
                                       float slope) {
    in_fwd(x, stats, gamma, beta, y, total, s, channels, slope);
}

// partial[(slice*chunks + k)*2 ..] = (sum dz, sum dz*xhat) over chunk k (blockIdx.y) of slice blockIdx.x,
// dz = z > 0 ? dy : dy*slope the gradient before the activation (dz = dy for slope 1); gb = (gamma, beta)
// as 2 x channels.
template <typename T>
__device__ __forceinline__ void in_grad_partial(const T* __restrict__ x, const T* __restrict__ dy,
                                                const float* __restrict__ stats, const float* __restrict__ gb,
                                                float* __restrict__ partial, long long s, int channels,
                                                float slope) {
    __shared__ float sh[IN_THREADS];
    const long long sl = blockIdx.x;
    const long long base = sl * s;
    const float mean = stats[2 * sl], rstd = stats[2 * sl + 1];
    const float g = gb[sl % channels], b = gb[channels + sl % channels];
    const long long start = (long long)blockIdx.y * IN_CHUNK;
    const long long end = min(start + (long long)IN_CHUNK, s);
    float a = 0.f, c = 0.f;
    for (long long i = start + threadIdx.x; i < end; i += IN_THREADS) {
        const float xv = to_f(x[base + i]);
        float d = to_f(dy[base + i]);
        if (slope != 1.f && !(normalized(xv, stats, sl, g, b) > 0.f)) d = __fmul_rn(d, slope);
        a += d;
        c += d * ((xv - mean) * rstd);
    }
    a = block_sum(a, sh);
    c = block_sum(c, sh);
    if (threadIdx.x == 0) {
        float* o = partial + ((long long)blockIdx.x * gridDim.y + blockIdx.y) * 2;
        o[0] = a;
        o[1] = c;
    }
}

extern "C" __global__ void in_grad_partial_f32(const float* __restrict__ x, const float* __restrict__ dy,
                                               const float* __restrict__ stats, const float* __restrict__ gb,
                                               float* __restrict__ partial, long long s, int channels, float slope) {
    in_grad_partial(x, dy, stats, gb, partial, s, channels, slope);
}

extern "C" __global__ void in_grad_partial_bf16(const bf16_t* __restrict__ x, const bf16_t* __restrict__ dy,
                                                const float* __restrict__ stats, const float* __restrict__ gb,
                                                float* __restrict__ partial, long long s, int channels,
                                                float slope) {
    in_grad_partial(x, dy, stats, gb, partial, s, channels, slope);
}

// sums[2i], sums[2i+1] = the chunk partials of slice i added in order in f64; one thread per slice.
extern "C" __global__ void in_grad_final_f32(const float* __restrict__ partial, float* __restrict__ sums, int slices,
                                             int chunks) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= slices) return;
    double a = 0.0, b = 0.0;
    for (int k = 0; k < chunks; ++k) {
        a += partial[((long long)i * chunks + k) * 2];
        b += partial[((long long)i * chunks + k) * 2 + 1];
    }
    sums[2 * i] = (float)a;
    sums[2 * i + 1] = (float)b;
}

// dx = gamma[c]*rstd*(dz - sum(dz)/s - xhat*sum(dz*xhat)/s), dz as in in_grad_partial; one thread per
// element.
template <typename T>
__device__ __forceinline__ void in_grad_input(const T* __restrict__ x, const T* __restrict__ dy,
                                              const float* __restrict__ gb,
                                              const float* __restrict__ stats, const float* __restrict__ sums,
                                              T* __restrict__ dx, long long total, long long s, int channels,
                                              float slope) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const long long sl = i / s;
    const int c = (int)(sl % channels);
    const float mean = stats[2 * sl], rstd = stats[2 * sl + 1];
    const float ma = sums[2 * sl] / (float)s, mb = sums[2 * sl + 1] / (float)s;
    const float k = gb[c] * rstd;
    const float xv = to_f(x[i]);
    float d = to_f(dy[i]);
    if (slope != 1.f && !(normalized(xv, stats, sl, gb[c], gb[channels + c]) > 0.f)) d = __fmul_rn(d, slope);
    put(&dx[i], k * (d - ma - (xv - mean) * rstd * mb));
}

extern "C" __global__ void in_grad_input_f32(const float* __restrict__ x, const float* __restrict__ dy,
                                             const float* __restrict__ gb,
                                             const float* __restrict__ stats, const float* __restrict__ sums,
                                             float* __restrict__ dx, long long total, long long s, int channels,
                                             float slope) {
    in_grad_input(x, dy, gb, stats, sums, dx, total, s, channels, slope);
}

extern "C" __global__ void in_grad_input_bf16(const bf16_t* __restrict__ x, const bf16_t* __restrict__ dy,
                                              const float* __restrict__ gb,
                                              const float* __restrict__ stats, const float* __restrict__ sums,
                                              bf16_t* __restrict__ dx, long long total, long long s, int channels,
                                              float slope) {
    in_grad_input(x, dy, gb, stats, sums, dx, total, s, channels, slope);
}
