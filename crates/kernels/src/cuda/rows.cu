// Row-wise ops over the last dimension (rows of h values), f32, launched by src/cuda/rows.rs: layer
// norm (magseg_kernels::layer_norm) and softmax (magseg_kernels::softmax_last). Sums and maxima per row
// run in a fixed-order shared-memory tree (deterministic).

#define ROW_THREADS 256

// The sum of v over the block's ROW_THREADS threads (every thread gets it); s holds ROW_THREADS floats.
__device__ __forceinline__ float block_sum(float v, float* s) {
    s[threadIdx.x] = v;
    __syncthreads();
    for (int w = ROW_THREADS / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
    const float total = s[0];
    __syncthreads();
    return total;
}

// The maximum of v over the block (every thread gets it); s holds ROW_THREADS floats.
__device__ __forceinline__ float block_max(float v, float* s) {
    s[threadIdx.x] = v;
    __syncthreads();
    for (int w = ROW_THREADS / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) s[threadIdx.x] = fmaxf(s[threadIdx.x], s[threadIdx.x + w]);
        __syncthreads();
    }
    const float m = s[0];
    __syncthreads();
    return m;
}

// stats[2r] = mean of row r, stats[2r+1] = 1/sqrt(var + eps) (biased variance); one block per row.
extern "C" __global__ void ln_stats_f32(const float* __restrict__ x, float* __restrict__ stats, int h, float eps) {
    __shared__ float s[ROW_THREADS];
    const float* row = x + (long long)blockIdx.x * h;
    float acc = 0.f;
    for (int j = threadIdx.x; j < h; j += ROW_THREADS) acc += row[j];
    const float mean = block_sum(acc, s) / (float)h;
    acc = 0.f;
    for (int j = threadIdx.x; j < h; j += ROW_THREADS) {
        const float d = row[j] - mean;
        acc += d * d;
    }
    const float var = block_sum(acc, s) / (float)h;
    if (threadIdx.x == 0) {
        stats[2 * (long long)blockIdx.x] = mean;
        stats[2 * (long long)blockIdx.x + 1] = 1.f / sqrtf(var + eps);
    }
}

// y = (x - mean)*rstd*gamma + beta; one thread per element of n = rows*h.
extern "C" __global__ void ln_fwd_f32(const float* __restrict__ x, const float* __restrict__ stats,
                                      const float* __restrict__ gamma, const float* __restrict__ beta,
                                      float* __restrict__ y, long long n, int h) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const long long r = i / h;
    const int j = (int)(i - r * h);
    y[i] = (x[i] - stats[2 * r]) * stats[2 * r + 1] * gamma[j] + beta[j];
}

// dx = rstd*(dy*gamma - mean(dy*gamma) - xhat*mean(dy*gamma*xhat)) per row; one block per row.
extern "C" __global__ void ln_grad_input_f32(const float* __restrict__ x, const float* __restrict__ stats,
                                             const float* __restrict__ gamma, const float* __restrict__ dy,
                                             float* __restrict__ dx, int h) {
    __shared__ float s[ROW_THREADS];
    const long long base = (long long)blockIdx.x * h;
    const float mean = stats[2 * (long long)blockIdx.x], rstd = stats[2 * (long long)blockIdx.x + 1];
    float a = 0.f, b = 0.f;
    for (int j = threadIdx.x; j < h; j += ROW_THREADS) {
        const float dyg = dy[base + j] * gamma[j];
        a += dyg;
        b += dyg * ((x[base + j] - mean) * rstd);
    }
    a = block_sum(a, s) / (float)h;
    b = block_sum(b, s) / (float)h;
    for (int j = threadIdx.x; j < h; j += ROW_THREADS) {
        const float xhat = (x[base + j] - mean) * rstd;
        dx[base + j] = rstd * (dy[base + j] * gamma[j] - a - xhat * b);
    }
}

// out[j] = sum over rows of dy*xhat (gamma's gradient), out[h + j] = sum over rows of dy (beta's);
// one thread per column j, rows in order.
extern "C" __global__ void ln_grad_params_f32(const float* __restrict__ x, const float* __restrict__ stats,
                                              const float* __restrict__ dy, float* __restrict__ out, long long rows,
                                              int h) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= h) return;
    float a = 0.f, b = 0.f;
    for (long long r = 0; r < rows; ++r) {
        const float d = dy[r * h + j];
        a += d * ((x[r * h + j] - stats[2 * r]) * stats[2 * r + 1]);
        b += d;
    }
    out[j] = a;
    out[h + j] = b;
}

// y = exp(x - max) / sum(exp(x - max)) over each row; one block per row.
extern "C" __global__ void softmax_fwd_f32(const float* __restrict__ x, float* __restrict__ y, int h) {
    __shared__ float s[ROW_THREADS];
    const long long base = (long long)blockIdx.x * h;
    float m = __int_as_float(0xff800000);  // -inf
    for (int j = threadIdx.x; j < h; j += ROW_THREADS) m = fmaxf(m, x[base + j]);
    m = block_max(m, s);
    float acc = 0.f;
    for (int j = threadIdx.x; j < h; j += ROW_THREADS) acc += expf(x[base + j] - m);
    const float inv = 1.f / block_sum(acc, s);
    for (int j = threadIdx.x; j < h; j += ROW_THREADS) y[base + j] = expf(x[base + j] - m) * inv;
}

// dx = y * (dy - sum(dy*y)) over each row; one block per row.
extern "C" __global__ void softmax_bwd_f32(const float* __restrict__ y, const float* __restrict__ dy,
                                           float* __restrict__ dx, int h) {
    __shared__ float s[ROW_THREADS];
    const long long base = (long long)blockIdx.x * h;
    float acc = 0.f;
    for (int j = threadIdx.x; j < h; j += ROW_THREADS) acc += dy[base + j] * y[base + j];
    const float dot = block_sum(acc, s);
    for (int j = threadIdx.x; j < h; j += ROW_THREADS) dx[base + j] = y[base + j] * (dy[base + j] - dot);
}
