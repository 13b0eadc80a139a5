// Leaky ReLU forward and backward on f32 and bf16 tensors (magseg_kernels::leaky_relu; launched by
// src/cuda/activation.rs): y = x > 0 ? x : x*slope, dx = x > 0 ? dy : dy*slope. bf16 values are
// widened to f32 (exact), multiplied once and rounded to nearest even, as on the CPU (src/activation.rs).

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

template <typename T>
__device__ __forceinline__ void leaky_fwd(const T* __restrict__ x, T* __restrict__ y, long long n, float slope) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float v = to_f(x[i]);
    put(&y[i], v > 0.f ? v : __fmul_rn(v, slope));
}

template <typename T>
__device__ __forceinline__ void leaky_bwd(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ dx,
                                          long long n, float slope) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float g = to_f(dy[i]);
    put(&dx[i], to_f(x[i]) > 0.f ? g : __fmul_rn(g, slope));
}

extern "C" __global__ void leaky_relu_fwd_f32(const float* x, float* y, long long n, float slope) {
    leaky_fwd(x, y, n, slope);
}
extern "C" __global__ void leaky_relu_fwd_bf16(const bf16_t* x, bf16_t* y, long long n, float slope) {
    leaky_fwd(x, y, n, slope);
}
extern "C" __global__ void leaky_relu_bwd_f32(const float* x, const float* dy, float* dx, long long n, float slope) {
    leaky_bwd(x, dy, dx, n, slope);
}
extern "C" __global__ void leaky_relu_bwd_bf16(const bf16_t* x, const bf16_t* dy, bf16_t* dx, long long n,
                                               float slope) {
    leaky_bwd(x, dy, dx, n, slope);
}
