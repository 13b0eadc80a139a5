// Elementwise activations forward and backward on f32 and bf16 tensors (magseg_kernels::leaky_relu,
// gelu_erf; launched by src/cuda/activation.rs), every kernel (srcs..., out, long long n, float param):
// - leaky_relu (param = slope): y = x > 0 ? x : x*slope, dx = x > 0 ? dy : dy*slope; one rounding, so
//   the same bit for bit as the CPU (src/activation.rs);
// - gelu_erf (param unused): y = x*Phi(x), dx = dy*(Phi(x) + x*phi(x)), Phi = normcdff.
// - max_pool2 (at the end, with its own arguments): 2x2x2 max pooling, stride 2, copies, no arithmetic.
// bf16 values are widened to f32 (exact), computed in f32 and rounded to nearest even once.

#include "bf16.cuh"

struct Leaky {
    __device__ static float f(float v, float slope) { return v > 0.f ? v : __fmul_rn(v, slope); }
    __device__ static float df(float v, float g, float slope) { return v > 0.f ? g : __fmul_rn(g, slope); }
};

struct Gelu {
    __device__ static float f(float v, float) { return v * normcdff(v); }
    __device__ static float df(float v, float g, float) {
        return g * (normcdff(v) + v * expf(-0.5f * v * v) * 0.3989422804014327f);
    }
};

template <typename A, typename T>
__device__ __forceinline__ void act_fwd(const T* __restrict__ x, T* __restrict__ y, long long n, float param) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    put(&y[i], A::f(to_f(x[i]), param));
}

template <typename A, typename T>
__device__ __forceinline__ void act_bwd(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ dx,
                                        long long n, float param) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    put(&dx[i], A::df(to_f(x[i]), to_f(dy[i]), param));
}

#define ACT_KERNELS(NAME, A)                                                                            \
    extern "C" __global__ void NAME##_fwd_f32(const float* x, float* y, long long n, float p) {            \
        act_fwd<A>(x, y, n, p);                                                                             \
    }                                                                                                       \
    extern "C" __global__ void NAME##_fwd_bf16(const bf16_t* x, bf16_t* y, long long n, float p) {         \
        act_fwd<A>(x, y, n, p);                                                                             \
    }                                                                                                       \
    extern "C" __global__ void NAME##_bwd_f32(const float* x, const float* dy, float* dx, long long n,     \
                                              float p) {                                                    \
        act_bwd<A>(x, dy, dx, n, p);                                                                        \
    }                                                                                                       \
    extern "C" __global__ void NAME##_bwd_bf16(const bf16_t* x, const bf16_t* dy, bf16_t* dx, long long n, \
                                               float p) {                                                   \
        act_bwd<A>(x, dy, dx, n, p);                                                                        \
    }

ACT_KERNELS(leaky_relu, Leaky)
ACT_KERNELS(gelu_erf, Gelu)

// 2x2x2 max pooling, stride 2 (magseg_kernels::max_pool2; launched by src/cuda/activation.rs): the
// output (planes, d2, h2, w2) of an input (planes, 2*d2, 2*h2, 2*w2), one thread per output value.
// The chosen element of a window is the first maximum in (d, h, w) order, or the last NaN (PyTorch's
// max_pool3d scan `val > max || isnan(val)`); forward copies it, backward writes dy there and 0 to
// the window's other 7 elements (every input element lies in exactly one window), as src/pool.rs.
// First element of output i's window, and the offset of its k-th element (k = 4*dd + 2*dh + dw).
__device__ __forceinline__ long long pool_base(long long i, int d2, int h2, int w2) {
    const long long ow = i % w2, t1 = i / w2;
    const long long oh = t1 % h2, t2 = t1 / h2;
    const long long od = t2 % d2, p = t2 / d2;
    return ((p * 2 * d2 + 2 * od) * (2LL * h2) + 2 * oh) * (2LL * w2) + 2 * ow;
}
__device__ __forceinline__ long long pool_tap(int k, int h2, int w2) {
    return (k >> 2) * (4LL * h2 * w2) + ((k >> 1) & 1) * (2LL * w2) + (k & 1);
}

template <typename T>
__device__ __forceinline__ long long pool_argmax(const T* __restrict__ x, long long base, int h2, int w2) {
    long long best = base;
    float vbest = to_f(x[base]);
    for (int k = 1; k < 8; ++k) {
        const long long j = base + pool_tap(k, h2, w2);
        const float v = to_f(x[j]);
        if (v > vbest || v != v) {
            best = j;
            vbest = v;
        }
    }
    return best;
}

template <typename T>
__device__ __forceinline__ void pool_fwd(const T* __restrict__ x, T* __restrict__ y, long long n, int d2, int h2,
                                         int w2) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    y[i] = x[pool_argmax(x, pool_base(i, d2, h2, w2), h2, w2)];
}

template <typename T>
__device__ __forceinline__ void pool_bwd(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ dx,
                                         long long n, int d2, int h2, int w2) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const long long base = pool_base(i, d2, h2, w2);
    const long long best = pool_argmax(x, base, h2, w2);
    const T zero = T(0);
    for (int k = 0; k < 8; ++k) {
        const long long j = base + pool_tap(k, h2, w2);
        dx[j] = j == best ? dy[i] : zero;
    }
}

extern "C" __global__ void max_pool2_fwd_f32(const float* x, float* y, long long n, int d2, int h2, int w2) {
    pool_fwd(x, y, n, d2, h2, w2);
}
extern "C" __global__ void max_pool2_fwd_bf16(const bf16_t* x, bf16_t* y, long long n, int d2, int h2, int w2) {
    pool_fwd(x, y, n, d2, h2, w2);
}
extern "C" __global__ void max_pool2_bwd_f32(const float* x, const float* dy, float* dx, long long n, int d2, int h2,
                                             int w2) {
    pool_bwd(x, dy, dx, n, d2, h2, w2);
}
extern "C" __global__ void max_pool2_bwd_bf16(const bf16_t* x, const bf16_t* dy, bf16_t* dx, long long n, int d2,
                                              int h2, int w2) {
    pool_bwd(x, dy, dx, n, d2, h2, w2);
}
