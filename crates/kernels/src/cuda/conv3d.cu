// 3-D convolution (f32, NCDHW contiguous, dilation 1, groups 1) of magseg-kernels on the GPU: forward,
// backward-data (also conv_transpose3d's forward) and backward-weight, in the geometry of src/geom.rs.
//
// Direct kernels, correctness first: one thread per output voxel and group of CH_BLOCK output channels
// for the forward pass, one thread per input voxel and group of CH_BLOCK input channels for
// backward-data, one block per (output channel, input channel) pair for backward-weight (per-thread
// accumulators for up to MAX_TAPS kernel taps, then a shared-memory tree reduction). Every sum runs in a fixed order, so results are deterministic run to run.
//
// The geometry arrives as 18 ints, in this order (see src/cuda/mod.rs):
//   n, ci, co, D, H, W, kD, kH, kW, sD, sH, sW, pD, pH, pW, oD, oH, oW

#define GEOM_PARAMS                                                                                      \
    int n, int ci, int co, int id_, int ih_, int iw_, int kd_, int kh_, int kw_, int sd, int sh, int sw,  \
        int pd, int ph, int pw, int od_, int oh_, int ow_

// Threads per block of backward-weight (a power of two: tree reduction).
#define WGRAD_THREADS 256
// Output (forward) or input (backward-data) channels one thread computes.
#define CH_BLOCK 8
// Taps accumulated per pass over the voxels in backward-weight (3x3x3 in one pass).
#define MAX_TAPS 27

// y[n, co, od, oh, ow] = sum_{ci, kd, kh, kw} x[n, ci, od*s - p + kd, ...] * w[co, ci, kd, kh, kw].
// One thread per output voxel and group of CH_BLOCK output channels (each x value is loaded once for
// the group); `total` = n * ceil(co / CH_BLOCK) * oD*oH*oW.
extern "C" __global__ void conv3d_fwd_f32(const float* __restrict__ x, const float* __restrict__ w,
                                          float* __restrict__ y, long long total, GEOM_PARAMS) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total) return;
    const long long out_vol = (long long)od_ * oh_ * ow_;
    const int groups = (co + CH_BLOCK - 1) / CH_BLOCK;
    const long long vox = idx % out_vol;
    long long r = vox;
    const int ox = (int)(r % ow_); r /= ow_;
    const int oy = (int)(r % oh_);
    const int oz = (int)(r / oh_);
    r = idx / out_vol;
    const int c0 = (int)(r % groups) * CH_BLOCK;
    const int b = (int)(r / groups);
    const long long in_vol = (long long)id_ * ih_ * iw_;
    const int taps = kd_ * kh_ * kw_;
    const long long wstride = (long long)ci * taps;  // between output channels
    const int nc = min(CH_BLOCK, co - c0);
    const int z0 = oz * sd - pd, y0 = oy * sh - ph, x0 = ox * sw - pw;
    float acc[CH_BLOCK];
#pragma unroll
    for (int j = 0; j < CH_BLOCK; ++j) acc[j] = 0.0f;
    for (int cin = 0; cin < ci; ++cin) {
        const float* xc = x + ((long long)b * ci + cin) * in_vol;
        const float* wc = w + ((long long)c0 * ci + cin) * taps;
        for (int kz = 0; kz < kd_; ++kz) {
            const int iz = z0 + kz;
            if (iz < 0 || iz >= id_) continue;
            for (int ky = 0; ky < kh_; ++ky) {
                const int iy = y0 + ky;
                if (iy < 0 || iy >= ih_) continue;
                const float* xrow = xc + ((long long)iz * ih_ + iy) * iw_;
                const float* wrow = wc + (kz * kh_ + ky) * kw_;
                for (int kx = 0; kx < kw_; ++kx) {
                    const int ix = x0 + kx;
                    if (ix < 0 || ix >= iw_) continue;
                    const float xv = __ldg(xrow + ix);
#pragma unroll
                    for (int j = 0; j < CH_BLOCK; ++j) {
                        if (j < nc) acc[j] += xv * __ldg(wrow + j * wstride + kx);
                    }
                }
            }
        }
    }
    float* yv = y + ((long long)b * co + c0) * out_vol + vox;
#pragma unroll
    for (int j = 0; j < CH_BLOCK; ++j) {
        if (j < nc) yv[j * out_vol] = acc[j];
    }
}

// dx[n, ci, z, y, x] = sum_{co, kd, kh, kw : (z + p - kd) = od*s} dy[n, co, od, oh, ow] * w[co, ci, kd, kh, kw].
// One thread per input voxel and group of CH_BLOCK input channels (each dy value is loaded once for
// the group); `total` = n * ceil(ci / CH_BLOCK) * D*H*W.
extern "C" __global__ void conv3d_bwd_data_f32(const float* __restrict__ dy, const float* __restrict__ w,
                                               float* __restrict__ dx, long long total, GEOM_PARAMS) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total) return;
    const long long in_vol = (long long)id_ * ih_ * iw_;
    const int groups = (ci + CH_BLOCK - 1) / CH_BLOCK;
    const long long vox = idx % in_vol;
    long long r = vox;
    const int ix = (int)(r % iw_); r /= iw_;
    const int iy = (int)(r % ih_);
    const int iz = (int)(r / ih_);
    r = idx / in_vol;
    const int c0 = (int)(r % groups) * CH_BLOCK;
    const int b = (int)(r / groups);
    const long long out_vol = (long long)od_ * oh_ * ow_;
    const int taps = kd_ * kh_ * kw_;
    const int nc = min(CH_BLOCK, ci - c0);
    float acc[CH_BLOCK];
#pragma unroll
    for (int j = 0; j < CH_BLOCK; ++j) acc[j] = 0.0f;
    for (int c = 0; c < co; ++c) {
        const float* dyc = dy + ((long long)b * co + c) * out_vol;
        const float* wc = w + ((long long)c * ci + c0) * taps;  // + j * taps: input channel c0 + j
        for (int kz = 0; kz < kd_; ++kz) {
            const int tz = iz + pd - kz;
            if (tz < 0 || tz % sd != 0) continue;
            const int oz = tz / sd;
            if (oz >= od_) continue;
            for (int ky = 0; ky < kh_; ++ky) {
                const int ty = iy + ph - ky;
                if (ty < 0 || ty % sh != 0) continue;
                const int oy = ty / sh;
                if (oy >= oh_) continue;
                const float* dyrow = dyc + ((long long)oz * oh_ + oy) * ow_;
                const float* wrow = wc + (kz * kh_ + ky) * kw_;
                for (int kx = 0; kx < kw_; ++kx) {
                    const int tx = ix + pw - kx;
                    if (tx < 0 || tx % sw != 0) continue;
                    const int ox = tx / sw;
                    if (ox >= ow_) continue;
                    const float g = __ldg(dyrow + ox);
#pragma unroll
                    for (int j = 0; j < CH_BLOCK; ++j) {
                        if (j < nc) acc[j] += g * __ldg(wrow + j * taps + kx);
                    }
                }
            }
        }
    }
    float* dxv = dx + ((long long)b * ci + c0) * in_vol + vox;
#pragma unroll
    for (int j = 0; j < CH_BLOCK; ++j) {
        if (j < nc) dxv[j * in_vol] = acc[j];
    }
}

// dw[co, ci, kd, kh, kw] = sum_{n, od, oh, ow} x[n, ci, od*s - p + kd, ...] * dy[n, co, od, oh, ow].
// Grid: (ci, co, chunks) blocks of WGRAD_THREADS threads. Block z sums the z-th of `chunks` equal runs of
// the batch x output voxels (several chunks keep the GPU busy when there are few channel pairs): each
// thread walks its run with a stride of the block size and accumulates up to MAX_TAPS taps at once;
// the block then reduces each tap with a fixed tree into dw + z * Co*Ci*taps (conv3d_sum_chunks_f32
// adds the chunks up in order). Kernels with more taps take several passes.
extern "C" __global__ void conv3d_bwd_weight_f32(const float* __restrict__ x, const float* __restrict__ dy,
                                                 float* __restrict__ dw, int chunks, GEOM_PARAMS) {
    __shared__ float red[WGRAD_THREADS];
    __shared__ int tap_z[MAX_TAPS], tap_y[MAX_TAPS], tap_x[MAX_TAPS];
    const int cin = blockIdx.x;
    const int c = blockIdx.y;
    const int tid = threadIdx.x;
    const int taps = kd_ * kh_ * kw_;
    const long long in_vol = (long long)id_ * ih_ * iw_;
    const long long out_vol = (long long)od_ * oh_ * ow_;
    const long long work = (long long)n * out_vol;
    const long long run = (work + chunks - 1) / chunks;
    const long long v_begin = blockIdx.z * run;
    const long long v_end = min(work, v_begin + run);
    float* dwc = dw + (long long)blockIdx.z * co * ci * taps + ((long long)c * ci + cin) * taps;
    for (int t0 = 0; t0 < taps; t0 += MAX_TAPS) {
        const int nt = min(MAX_TAPS, taps - t0);
        __syncthreads();  // the previous pass has finished reading tap_* and red
        if (tid < nt) {
            int t = t0 + tid;
            tap_x[tid] = t % kw_;
            t /= kw_;
            tap_y[tid] = t % kh_;
            tap_z[tid] = t / kh_;
        }
        __syncthreads();
        float acc[MAX_TAPS];
#pragma unroll
        for (int t = 0; t < MAX_TAPS; ++t) acc[t] = 0.0f;
        for (long long v = v_begin + tid; v < v_end; v += WGRAD_THREADS) {
            long long r = v;
            const int ox = (int)(r % ow_); r /= ow_;
            const int oy = (int)(r % oh_); r /= oh_;
            const int oz = (int)(r % od_);
            const int b = (int)(r / od_);
            const float g = __ldg(dy + ((long long)b * co + c) * out_vol + (v - (long long)b * out_vol));
            const float* xc = x + ((long long)b * ci + cin) * in_vol;
            const int z0 = oz * sd - pd, y0 = oy * sh - ph, x0 = ox * sw - pw;
#pragma unroll
            for (int t = 0; t < MAX_TAPS; ++t) {
                if (t < nt) {
                    const int iz = z0 + tap_z[t], iy = y0 + tap_y[t], ix = x0 + tap_x[t];
                    if (iz >= 0 && iz < id_ && iy >= 0 && iy < ih_ && ix >= 0 && ix < iw_) {
                        acc[t] += g * __ldg(xc + ((long long)iz * ih_ + iy) * iw_ + ix);
                    }
                }
            }
        }
#pragma unroll
        for (int t = 0; t < MAX_TAPS; ++t) {
            if (t < nt) {
                red[tid] = acc[t];
                __syncthreads();
                for (int s = WGRAD_THREADS / 2; s > 0; s >>= 1) {
                    if (tid < s) red[tid] += red[tid + s];
                    __syncthreads();
                }
                if (tid == 0) dwc[t0 + t] = red[0];
                __syncthreads();
            }
        }
    }
}

// dw[i] = sum_{z < chunks} partial[z * len + i], in order of z (deterministic).
extern "C" __global__ void conv3d_sum_chunks_f32(const float* __restrict__ partial, float* __restrict__ dw,
                                                 long long len, int chunks) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= len) return;
    float acc = 0.0f;
    for (int z = 0; z < chunks; ++z) acc += partial[(long long)z * len + i];
    dw[i] = acc;
}
