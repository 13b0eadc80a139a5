// Fused Adam / AdamW passes over f32 tensors (magseg_kernels::optim; launched by src/cuda/optim.rs).
// Every multiply, add, divide and square root is an explicit round-to-nearest intrinsic, so nvcc
// fuses nothing and the moment and parameter updates equal the CPU's (src/optim.rs) bit for bit.

// Values one partial sum covers (SQUARE_SUM_CHUNK in optim.rs) and threads per block summing them.
#define SQ_CHUNK 8192
#define SQ_THREADS 256

// clamp(v, -clip, clip) for clip > 0 (NaN stays NaN); v for clip == 0.
__device__ __forceinline__ float clamp_grad(float v, float clip) {
    return (clip > 0.f && v == v) ? fminf(fmaxf(v, -clip), clip) : v;
}

// partials[b] = sum of clamp(g[i])^2 over i in [b*SQ_CHUNK, min((b+1)*SQ_CHUNK, n)); one block of
// SQ_THREADS threads per partial, a fixed-order tree in shared memory (deterministic).
extern "C" __global__ void square_sums_f32(const float* __restrict__ g, float* __restrict__ partials,
                                           long long n, float clip) {
    __shared__ float s[SQ_THREADS];
    const long long start = (long long)blockIdx.x * SQ_CHUNK;
    const long long end = min(start + (long long)SQ_CHUNK, n);
    float acc = 0.f;
    for (long long i = start + threadIdx.x; i < end; i += SQ_THREADS) {
        const float v = clamp_grad(g[i], clip);
        acc = __fadd_rn(acc, __fmul_rn(v, v));
    }
    s[threadIdx.x] = acc;
    __syncthreads();
    for (int w = SQ_THREADS / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) s[threadIdx.x] = __fadd_rn(s[threadIdx.x], s[threadIdx.x + w]);
        __syncthreads();
    }
    if (threadIdx.x == 0) partials[blockIdx.x] = s[0];
}

// state = (m, v[, vmax]) rows of n values; rows == 3 keeps AMSGrad's maximum.
// g' = clamp(g)*scale + l2*p; m = b1*m + (1-b1)*g'; v = b2*v + (1-b2)*g'^2; vmax = max(vmax, v).
extern "C" __global__ void adam_moments_f32(const float* __restrict__ g, const float* __restrict__ p,
                                            float* __restrict__ state, long long n, int rows, float clip,
                                            float scale, float l2, float b1, float one_minus_b1, float b2,
                                            float one_minus_b2) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = __fmul_rn(clamp_grad(g[i], clip), scale);
    if (l2 != 0.f) gi = __fadd_rn(gi, __fmul_rn(p[i], l2));
    const float m = __fadd_rn(__fmul_rn(state[i], b1), __fmul_rn(gi, one_minus_b1));
    const float v = __fadd_rn(__fmul_rn(state[n + i], b2), __fmul_rn(__fmul_rn(gi, gi), one_minus_b2));
    state[i] = m;
    state[n + i] = v;
    if (rows == 3) {
        const float vm = state[2 * n + i];
        state[2 * n + i] = vm < v ? v : vm;
    }
}

// p = p*decay - (m*step_size) / (sqrt(second)*inv_sqrt_bc2 + eps), second = the last state row.
extern "C" __global__ void adam_apply_f32(float* __restrict__ p, const float* __restrict__ state, long long n,
                                          int rows, float decay, float inv_sqrt_bc2, float eps,
                                          float step_size) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float denom = __fadd_rn(__fmul_rn(__fsqrt_rn(state[(long long)(rows - 1) * n + i]), inv_sqrt_bc2), eps);
    p[i] = __fsub_rn(__fmul_rn(p[i], decay), __fdiv_rn(__fmul_rn(state[i], step_size), denom));
}
