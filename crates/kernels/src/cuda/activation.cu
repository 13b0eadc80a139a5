// Elementwise activations forward and backward on f32 and bf16 tensors (magseg_kernels::leaky_relu,
// gelu_erf; launched by src/cuda/activation.rs), every kernel (srcs..., out, long long n, float param):
// - leaky_relu (param = slope): y = x > 0 ? x : x*slope, dx = x > 0 ? dy : dy*slope; one rounding, so
//   the same bit for bit as the CPU (src/activation.rs);
// - gelu_erf (param unused): y = x*Phi(x), dx = dy*(Phi(x) + x*phi(x)), Phi = normcdff.
// bf16 values are widened to f32 (exact), computed in f32 and rounded to nearest even once.

typedef unsigned short bf16_t;

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(bf16_t h) { return __uint_as_float(((unsigned int)h) << 16); }

// Round to nearest, ties to even; NaN stays a (quiet) NaN, infinities stay infinities.
__device__ __forceinline__ void put(float* p, float v) { *p = v; }
__device__ __forceinline__ void put(bf16_t* p, float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) { *p = (bf16_t)((u >> 16) | 0x0040u); return; }
    u += 0x7fffu + ((u >> 16) & 1u);
    *p = (bf16_t)(u >> 16);
}

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
