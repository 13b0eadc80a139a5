// Tiled implicit-GEMM 3-D convolution kernels of magseg-kernels (NCDHW contiguous, dilation 1, groups 1),
// in the geometry of src/geom.rs: f32 (FMA, register micro-tiles), bf16 (tensor cores through inline PTX
// mma.sync m16n8k16, f32 accumulation), f32 on tensor cores as tf32 (mma.sync m16n8k8, operands rounded
// to 10 mantissa bits, f32 accumulation: the `_tf32` kernels, opt-in), a deterministic split-K
// backward-weight, and the no-overlap transposed convolution (kernel == stride, padding 0). The direct kernels of conv3d.cu stay the
// reference path (MAGSEG_CONV_CUDA=direct). Launch logic: src/cuda/mod.rs.
//
// bf16 tensors arrive as raw 16-bit storage (unsigned short); conversions are bit operations
// (f32 -> bf16 rounds to nearest even), so no CUDA header is needed (NVRTC compiles this file as is).
//
// GEMM views (k = c * taps + t, t = (kz * kH + ky) * kW + kx, taps = kD * kH * kW):
//   forward        M = Co, N = batch * oD*oH*oW, K = Ci * taps; A[m][k] = w[m][c][t],
//                  B[k][n] = x[b][c][o * s - p + k_tap] (zero outside the input).
//   backward-data  M = Ci, N = batch * D*H*W,    K = Co * taps; A[m][k] = w[c][m][t],
//                  B[k][n] = dy[b][c][(i + p - k_tap) / s] (zero unless divisible and inside).
//   backward-wgt   M = Co, N = Ci * taps,        K = batch * oD*oH*oW (split into fixed chunks);
//                  A[m][k] = dy[b][m][v], B[k][n] = x[b][c][o(v) * s - p + k_tap].
// Every sum runs in a fixed order (no atomics), so results are bit-identical run to run.
//
// Run on an H100 (2026-11-28, tests/cuda_conv.rs): every pass equals the CPU within 4e-7 (f32) and
// 6e-3 (bf16) of the largest value. Also checked without a GPU: nvcc, NVRTC, ptxas sm_90 without
// spills, and a host emulation of the kernels (tests/emu/run.sh, which emulates the mma fragment layout).
// Added after that run, checked only in those ways so far (no GPU run yet): ldmatrix fragment loads in
// mma_tile, the channels-last bf16 forward, backward-data and backward-weight kernels and their staging
// kernels, and every tf32 kernel.
//
// The geometry arrives as 18 ints, in this order (as for conv3d.cu):
//   n, ci, co, D, H, W, kD, kH, kW, sD, sH, sW, pD, pH, pW, oD, oH, oW

#define GEOM_PARAMS                                                                                      \
    int n, int ci, int co, int id_, int ih_, int iw_, int kd_, int kh_, int kw_, int sd, int sh, int sw,  \
        int pd, int ph, int pw, int od_, int oh_, int ow_
// The same, as arguments to pass on.
#define GEOM_ARGS n, ci, co, id_, ih_, iw_, kd_, kh_, kw_, sd, sh, sw, pd, ph, pw, od_, oh_, ow_

// Largest number of kernel taps the GEMM kernels handle (tap table in shared memory); the host
// routes larger kernels to the direct kernels. Each kernel extent must then be < 1024 (10 bits).
#define MAX_TAPS_TABLE 512

typedef unsigned short bf16_t;

__device__ __forceinline__ float bf16_to_f32(bf16_t h) { return __uint_as_float(((unsigned int)h) << 16); }

// Round to nearest, ties to even; NaN stays a (quiet) NaN, infinities stay infinities.
__device__ __forceinline__ bf16_t f32_to_bf16(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16_t)(u >> 16);
}

__device__ __forceinline__ float load_f(const float* p) { return __ldg(p); }
__device__ __forceinline__ float load_f(const bf16_t* p) { return bf16_to_f32(__ldg(p)); }
__device__ __forceinline__ void store_f(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_f(bf16_t* p, float v) { *p = f32_to_bf16(v); }

// Fills `table[t]` = kz | ky << 10 | kx << 20 for every tap t < taps (block-wide; caller syncs).
__device__ __forceinline__ void fill_tap_table(int* table, int taps, int kh_, int kw_) {
    for (int t = threadIdx.x; t < taps; t += blockDim.x) {
        const int kx = t % kw_;
        const int r = t / kw_;
        table[t] = (r / kh_) | ((r % kh_) << 10) | (kx << 20);
    }
}

// Source coordinate of one gather along one axis, or -1 when the element is a zero (padding, outside,
// or, for backward-data, not on the stride grid). Forward: base = o * s - p, coordinate base + k.
// Backward-data: base = i + p, coordinate (base - k) / s when divisible.
template <bool TRANSPOSED>
__device__ __forceinline__ int gather_coord(int base, int k, int s, int lim) {
    if (!TRANSPOSED) {
        const int z = base + k;
        return (unsigned)z < (unsigned)lim ? z : -1;
    } else {
        int z = base - k;
        if (z < 0) return -1;
        if (s != 1) {
            if (z % s != 0) return -1;
            z /= s;
        }
        return z < lim ? z : -1;
    }
}

// Sizes of the forward / backward-data GEMM view, derived from the geometry.
struct DataView {
    int M, C, taps, K;
    long long nvol, N;            // output voxels per (batch, channel) of this pass; N = n * nvol
    int sd_, sh_, sw_;            // source (gathered tensor) spatial size
    long long svol;               // source voxels per channel
    int dd_, dh_, dw_;            // destination spatial size (nvol = dd*dh*dw)
    long long sAm, sAc;           // weight strides of m and c
};

template <bool TRANSPOSED>
__device__ __forceinline__ DataView data_view(GEOM_PARAMS) {
    DataView v;
    v.taps = kd_ * kh_ * kw_;
    if (!TRANSPOSED) {
        v.M = co; v.C = ci;
        v.sd_ = id_; v.sh_ = ih_; v.sw_ = iw_;
        v.dd_ = od_; v.dh_ = oh_; v.dw_ = ow_;
        v.sAm = (long long)ci * v.taps; v.sAc = v.taps;
    } else {
        v.M = ci; v.C = co;
        v.sd_ = od_; v.sh_ = oh_; v.sw_ = ow_;
        v.dd_ = id_; v.dh_ = ih_; v.dw_ = iw_;
        v.sAm = v.taps; v.sAc = (long long)ci * v.taps;
    }
    v.K = v.C * v.taps;
    v.svol = (long long)v.sd_ * v.sh_ * v.sw_;
    v.nvol = (long long)v.dd_ * v.dh_ * v.dw_;
    v.N = (long long)n * v.nvol;
    return v;
}

// One gathered column n of B: the source batch offset and the per-axis base coordinates.
struct Column {
    bool ok;
    long long boff;   // b * C * svol
    int bz, by, bx;   // forward: o * s - p; backward-data: i + p
};

template <bool TRANSPOSED>
__device__ __forceinline__ Column make_column(const DataView& v, long long nidx, int sd, int sh, int sw, int pd,
                                              int ph, int pw) {
    Column c;
    c.ok = nidx < v.N;
    const long long nn = c.ok ? nidx : 0;
    const long long b = nn / v.nvol;
    long long r = nn - b * v.nvol;
    const int x = (int)(r % v.dw_);
    r /= v.dw_;
    const int y = (int)(r % v.dh_);
    const int z = (int)(r / v.dh_);
    c.boff = b * v.C * v.svol;
    if (!TRANSPOSED) {
        c.bz = z * sd - pd; c.by = y * sh - ph; c.bx = x * sw - pw;
    } else {
        c.bz = z + pd; c.by = y + ph; c.bx = x + pw;
    }
    return c;
}

// B[k][column] for k = c * taps + t (tap info from the table), as f32 bits or raw bf16.
template <bool TRANSPOSED, typename T>
__device__ __forceinline__ bool gather_ptr(const DataView& v, const Column& col, const T* src, int c, int tinfo,
                                           int sd, int sh, int sw, const T** out) {
    const int kz = tinfo & 1023, ky = (tinfo >> 10) & 1023, kx = tinfo >> 20;
    const int z = gather_coord<TRANSPOSED>(col.bz, kz, sd, v.sd_);
    const int y = gather_coord<TRANSPOSED>(col.by, ky, sh, v.sh_);
    const int x = gather_coord<TRANSPOSED>(col.bx, kx, sw, v.sw_);
    if (z < 0 || y < 0 || x < 0) return false;
    *out = src + col.boff + (long long)c * v.svol + ((long long)z * v.sh_ + y) * v.sw_ + x;
    return true;
}

// Fast gathers (at most 32 taps, and stride 1 for backward-data): per tap a linear source offset
// `tapoff[t]` (shared), per column a validity bit mask over the taps and one base offset, so an element
// costs a bit test, an add and a load instead of three bounds checks. The caller syncs after filling.
#define FAST_TAPS 32

template <bool TRANSPOSED>
__device__ __forceinline__ bool fast_gathers(const DataView& v, int sd, int sh, int sw) {
    return v.taps <= FAST_TAPS && (!TRANSPOSED || (sd == 1 && sh == 1 && sw == 1));
}

template <bool TRANSPOSED>
__device__ __forceinline__ void fill_tap_offsets(int* tapoff, const DataView& v, int kh_, int kw_) {
    for (int t = threadIdx.x; t < v.taps && t < FAST_TAPS; t += blockDim.x) {
        const int kx = t % kw_;
        const int r = t / kw_;
        const int off = ((r / kh_) * v.sh_ + (r % kh_)) * v.sw_ + kx;
        tapoff[t] = TRANSPOSED ? -off : off;
    }
}

// The validity mask (bit t: tap t reads inside the source) and base offset of one column.
template <bool TRANSPOSED>
__device__ __forceinline__ unsigned column_mask(const DataView& v, const Column& col, int kd_, int kh_, int kw_,
                                                long long* base) {
    *base = col.boff + ((long long)col.bz * v.sh_ + col.by) * v.sw_ + col.bx;
    if (!col.ok) return 0u;
    unsigned mask = 0u;
    int t = 0;
    for (int kz = 0; kz < kd_; ++kz) {
        const bool zok = gather_coord<TRANSPOSED>(col.bz, kz, 1, v.sd_) >= 0;
        for (int ky = 0; ky < kh_; ++ky) {
            const bool yok = zok && gather_coord<TRANSPOSED>(col.by, ky, 1, v.sh_) >= 0;
            for (int kx = 0; kx < kw_; ++kx, ++t) {
                if (yok && gather_coord<TRANSPOSED>(col.bx, kx, 1, v.sw_) >= 0) mask |= 1u << t;
            }
        }
    }
    return mask;
}

// ---------------------------------------------------------------------------------------------------
// Pieces shared by the GEMM kernels below.
//
// f32 FMA kernels: 256 threads, BM x BN x 16 block tiles with BM x BN = 4096, 4 x 4 micro-tiles.
// Tensor-core kernels (bf16, and f32 as tf32): 128 threads = 4 warps of 32 x 32 warp tiles of
// mma.sync (m16n8k16 bf16 / m16n8k8 tf32, f32 accumulators), BM x BN x BK block tiles of 64-byte rows
// (BK = 32 bf16 / 16 f32; Bf16Elem / Tf32Elem), stored k-contiguous (As[m][k], Bs[n][k]) with rows padded
// to 80 bytes (20 words) so the fragment loads hit 32 distinct banks.
#define F_BK 16
#define F_THREADS 256
#define H_THREADS 128

__device__ __forceinline__ void mma_bf16_16816(float* c, const unsigned int* a, const unsigned int* b) {
#ifdef MAGSEG_HOST_EMULATION
    // tests/emu/: a host emulation of the PTX fragment semantics (never defined for the GPU build).
    magseg_emu_mma_bf16_16816(c, a, b);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// D = A * B + C with mma.sync m16n8k8, A and B as tf32 (the top 19 bits of an f32 word; see
// f32_to_tf32), f32 accumulation. Fragments: A reg r of a lane = (row lane / 4 + 8 (r & 1), k lane % 4
// + 4 (r >> 1)), B reg r = (k lane % 4 + 4 r, column lane / 4), C as for m16n8k16.
__device__ __forceinline__ void mma_tf32_1688(float* c, const unsigned int* a, const unsigned int* b) {
#ifdef MAGSEG_HOST_EMULATION
    magseg_emu_mma_tf32_1688(c, a, b);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// An f32 (as bits) rounded to tf32 (10 mantissa bits, the low 13 bits zero): cvt.rna, to nearest with
// ties away from zero; NaN and infinities pass through.
__device__ __forceinline__ unsigned int f32_to_tf32(unsigned int u) {
#ifdef MAGSEG_HOST_EMULATION
    return (u & 0x7f800000u) == 0x7f800000u ? u : (u + 0x1000u) & 0xffffe000u;
#else
    unsigned int r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(__uint_as_float(u)));
    return r;
#endif
}

// The element types of the tensor-core kernels. A K tile is 64 bytes of a row either way (BK = 32 bf16
// or 16 f32), rows padded to 80 bytes (LD), and one mma covers 32 bytes of K (m16n8k16 on bf16,
// m16n8k8 on tf32): for the same lane and register the fragments of the two instructions sit at the
// same bytes of a k-contiguous tile (a 32-bit word holds two bf16 or one tf32), so the same ldmatrix
// reads (mma_tile) feed both. `operand` turns a loaded 32-bit word into the mma operand (tf32:
// rounded); `VEC` elements fill 16 bytes.
template <typename TT>
struct MmaElem {
    typedef TT T;
    static constexpr int VEC = 16 / sizeof(TT), BK = 64 / sizeof(TT), LD = 80 / sizeof(TT);
};

struct Bf16Elem : MmaElem<bf16_t> {
    static __device__ __forceinline__ unsigned int operand(unsigned int w) { return w; }
    static __device__ __forceinline__ T operand(T v) { return v; }
    static __device__ __forceinline__ void mma(float* c, const unsigned int* a, const unsigned int* b) {
        mma_bf16_16816(c, a, b);
    }
};

struct Tf32Elem : MmaElem<float> {
    static __device__ __forceinline__ unsigned int operand(unsigned int w) { return f32_to_tf32(w); }
    static __device__ __forceinline__ T operand(T v) { return __uint_as_float(f32_to_tf32(__float_as_uint(v))); }
    static __device__ __forceinline__ void mma(float* c, const unsigned int* a, const unsigned int* b) {
        mma_tf32_1688(c, a, b);
    }
};

// The double-buffered K loop of every GEMM kernel: `load(kt)` fetches K tile kt into registers,
// `store(buf)` writes them to shared buffer buf, `compute(buf)` multiplies buffer buf; the next tile's
// global loads are in flight during the current tile's math, one barrier per tile. The caller syncs
// once before (its tables ready).
template <class Load, class Store, class Compute>
__device__ __forceinline__ void k_loop(int ntiles, Load&& load, Store&& store, Compute&& compute) {
    if (ntiles > 0) {
        load(0);
        store(0);
    }
    __syncthreads();
    for (int kt = 0; kt < ntiles; ++kt) {
        const int cur = kt & 1;
        if (kt + 1 < ntiles) load(kt + 1);
        compute(cur);
        if (kt + 1 < ntiles) store(cur ^ 1);
        __syncthreads();
    }
}

// acc[i][j] += sum_k A[k][ty * 4 + i] * B[k][tx * 4 + j] over one shared K tile (FMA micro-tile).
template <int LDA, int LDB>
__device__ __forceinline__ void fma_tile(float (&acc)[4][4], const float (&A)[F_BK][LDA], const float (&B)[F_BK][LDB],
                                         int ty, int tx) {
#pragma unroll
    for (int kk = 0; kk < F_BK; ++kk) {
        const float4 a = *reinterpret_cast<const float4*>(&A[kk][ty * 4]);
        const float4 b = *reinterpret_cast<const float4*>(&B[kk][tx * 4]);
        const float av[4] = {a.x, a.y, a.z, a.w};
        const float bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
}

// Four 8 x 8 b16 matrices from shared memory (ldmatrix .x4): lane l gives the address of row l % 8 of
// matrix l / 8 (16 bytes, 16-byte aligned); r[i] receives row lane / 4, elements 2 (lane % 4) + {0, 1} of
// matrix i, the lower one in the low half; with TRANS (.trans) the transposed elements instead: rows
// 2 (lane % 4) and + 1, column lane / 4 of matrix i.
template <bool TRANS>
__device__ __forceinline__ void ldmatrix_x4(unsigned int (&r)[4], const void* p) {
#ifdef MAGSEG_HOST_EMULATION
    magseg_emu_ldmatrix_x4(r, p, TRANS);
#else
    const unsigned int addr = (unsigned int)__cvta_generic_to_shared(p);
    if constexpr (TRANS) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(addr));
    } else {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(addr));
    }
#endif
}

// Row length (bf16) of the k-major tiles At[k][m], Bt[k][n] of igemm_wgrad_bf16_cl (64 values + 8
// padding: 144-byte rows put the 8 rows of an ldmatrix read on distinct banks).
#define H_LDT 72

// One warp's 32 x 32 tile over one shared K tile of element type E (Bf16Elem or Tf32Elem): acc[i][j]
// (m16 tile i, n8 tile j) += rows wm + 16 i.. of A times rows wn + 8 j.. of B, the fragments read by
// ldmatrix, one mma per 32 bytes of K (V = E::VEC elements are 16 bytes). Tiles are stored k-contiguous
// (A[m][k], B[n][k], rows of E::LD) or, with KMAJOR (bf16 only: .trans moves 16-bit elements),
// m- / n-contiguous (A[k][m], B[k][n], rows of H_LDT) and read with .trans. Either way, for A tile i the
// four matrices are (m 0-7, k 0..V-1), (m 8-15, k 0..V-1), (m 0-7, k V..2V-1), (m 8-15, k V..2V-1) = the
// mma registers a0..a3, and for B tiles 2 jj and 2 jj + 1 the matrices (tile, k 0..V-1),
// (tile, k V..2V-1) of each are b0, b1. Padded rows keep the 8 row reads of each matrix on distinct
// banks.
template <class E, bool KMAJOR, class TA, class TB>
__device__ __forceinline__ void mma_tile(float (&acc)[2][4][4], const TA& A, const TB& B, int wm, int wn, int lane) {
    constexpr int V = E::VEC;
    static_assert(!KMAJOR || V == 8, "k-major tiles need 16-bit elements");
    const int lrow = lane & 7, lhi = (lane >> 3) & 1, lk = lane >> 4;
#pragma unroll
    for (int ks = 0; ks < E::BK; ks += 2 * V) {
        unsigned int af[2][4], bq[2][4];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            if constexpr (KMAJOR) {
                ldmatrix_x4<true>(af[i], &A[ks + 8 * lk + lrow][wm + i * 16 + 8 * lhi]);
            } else {
                ldmatrix_x4<false>(af[i], &A[wm + i * 16 + lrow + 8 * lhi][ks + V * lk]);
            }
        }
#pragma unroll
        for (int jj = 0; jj < 2; ++jj) {
            if constexpr (KMAJOR) {
                ldmatrix_x4<true>(bq[jj], &B[ks + 8 * lhi + lrow][wn + 16 * jj + 8 * lk]);
            } else {
                ldmatrix_x4<false>(bq[jj], &B[wn + 16 * jj + 8 * lk + lrow][ks + V * lhi]);
            }
        }
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) E::mma(acc[i][j], af[i], &bq[j >> 1][2 * (j & 1)]);
    }
}

// The epilogues: for every column c of a thread's accumulators, ctx = column(c) once, then
// f(row, ctx, value) for each of its rows. A 4 x 4 micro-tile at (r0, c0):
template <class Col, class F>
__device__ __forceinline__ void each_fma_acc(const float (&acc)[4][4], int r0, int c0, Col&& column, F&& f) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const auto ctx = column(c0 + j);
#pragma unroll
        for (int i = 0; i < 4; ++i) f(r0 + i, ctx, acc[i][j]);
    }
}

// A warp tile at (wm, wn), C fragment of m16n8: acc[i][j][0..1] at (row g, columns 2 tg, 2 tg + 1),
// acc[i][j][2..3] at row g + 8.
template <class Col, class F>
__device__ __forceinline__ void each_mma_acc(const float (&acc)[2][4][4], int wm, int wn, int lane, Col&& column,
                                             F&& f) {
    const int g = lane >> 2, tg = lane & 3;
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const auto ctx = column(wn + j * 8 + tg * 2 + e);
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int h = 0; h < 2; ++h) f(wm + i * 16 + g + h * 8, ctx, acc[i][j][h * 2 + e]);
        }
}

// Element i of a register prefetch: one per register for f32; in the 32-bit words of the tensor-core
// kernels one f32 (as bits) or two bf16 (element 2j in the low half of word j), so a tile row is stored
// with 128-bit stores and no repacking.
__device__ __forceinline__ void put(float* r, int i, float v) { r[i] = v; }
__device__ __forceinline__ void put(unsigned int* r, int i, float v) { r[i] = __float_as_uint(v); }
__device__ __forceinline__ void put(unsigned int* r, int i, bf16_t v) {
    if (i % 2 == 0) r[i / 2] = v; else r[i / 2] |= (unsigned int)v << 16;
}

// Stores NW words of a register prefetch (see `put`), as E's mma operands, at 16-byte aligned `dst`,
// 128 bits at a time.
template <class E, int NW>
__device__ __forceinline__ void store_packed(void* dst, const unsigned int* r) {
    uint4* p = reinterpret_cast<uint4*>(dst);
#pragma unroll
    for (int q = 0; q < NW / 4; ++q) {
        p[q] = make_uint4(E::operand(r[4 * q]), E::operand(r[4 * q + 1]), E::operand(r[4 * q + 2]),
                          E::operand(r[4 * q + 3]));
    }
}

// ----- forward / backward-data -----

// An extern "C" entry point of a forward (TRANSPOSED false: src = x, out = y) or backward-data
// (TRANSPOSED true: src = dy, out = dx) GEMM body with BM rows per block tile.
#define DATA_KERNEL(name, T, bounds, body, TRANSPOSED, BM)                                                \
    extern "C" __global__ void bounds name(const T* __restrict__ src, const T* __restrict__ w,            \
                                           T* __restrict__ out, GEOM_PARAMS) {                           \
        body<TRANSPOSED, BM>(w, src, out, GEOM_ARGS);                                                     \
    }

// Where one thread's B column gathers from: the column and, with fast gathers, its tap mask and base.
struct ColumnGather {
    Column col;
    bool fast;
    unsigned mask;
    long long base;
};

template <bool TRANSPOSED>
__device__ __forceinline__ ColumnGather column_gather(const DataView& v, long long nidx, GEOM_PARAMS) {
    ColumnGather g;
    g.col = make_column<TRANSPOSED>(v, nidx, sd, sh, sw, pd, ph, pw);
    g.fast = fast_gathers<TRANSPOSED>(v, sd, sh, sw);
    g.base = 0;
    g.mask = g.fast ? column_mask<TRANSPOSED>(v, g.col, kd_, kh_, kw_, &g.base) : 0u;
    return g;
}

// One K tile's register prefetch (see `put`): element i of ra = A[row][ka + i] from the weight row
// `a_row` (zero when !a_ok or past K), element i of rb = B[kb + i][column] gathered through `g` (zero in
// padding or past K), as raw T. `tapoff` / `taptab` are the block's fast-gather offsets and tap table.
template <bool TRANSPOSED, int A_PER, int B_PER, typename T, typename R>
__device__ __forceinline__ void load_data_tile(R* ra, R* rb, const DataView& v, const T* a_row, bool a_ok, int ka,
                                               const T* src, const ColumnGather& g, const int* tapoff,
                                               const int* taptab, int kb, int sd, int sh, int sw) {
    int c = ka / v.taps, t = ka - c * v.taps;
#pragma unroll
    for (int i = 0; i < A_PER; ++i) {
        put(ra, i, (a_ok && ka + i < v.K) ? __ldg(a_row + c * v.sAc + t) : (T)0);
        if (++t == v.taps) { t = 0; ++c; }
    }
    c = kb / v.taps;
    t = kb - c * v.taps;
#pragma unroll
    for (int i = 0; i < B_PER; ++i) {
        T val = (T)0;
        if (g.fast) {
            if (kb + i < v.K && ((g.mask >> t) & 1u)) val = __ldg(src + (g.base + c * v.svol + tapoff[t]));
        } else {
            const T* p;
            if (g.col.ok && kb + i < v.K && gather_ptr<TRANSPOSED>(v, g.col, src, c, taptab[t], sd, sh, sw, &p)) {
                val = __ldg(p);
            }
        }
        put(rb, i, val);
        if (++t == v.taps) { t = 0; ++c; }
    }
}

// Epilogue of the data GEMM: column nidx = b * nvol + vox is at out + b * M * nvol + vox (-1 past N) ...
__device__ __forceinline__ long long data_out_column(const DataView& v, long long nidx) {
    if (nidx >= v.N) return -1;
    const long long b = nidx / v.nvol;
    return b * v.M * v.nvol + (nidx - b * v.nvol);
}

// ... and row m of it at + m * nvol.
template <typename T>
__device__ __forceinline__ void store_data_out(T* out, const DataView& v, int m, long long column, float value) {
    if (column >= 0 && m < v.M) store_f(out + column + (long long)m * v.nvol, value);
}

// ----- backward-weight -----

// Per-block column table of the backward-weight GEMM (N = Ci * taps): for column n0 + j the input
// channel's offset and the tap minus padding per axis; a column past N gets a z offset that puts every
// gather outside the input (z < 0).
template <int BN>
struct WgradColumns {
    long long off[BN];
    int dz[BN], dy[BN], dx[BN];

    // Block-wide; the caller syncs before use.
    __device__ __forceinline__ void fill(int n0, int N, int taps, long long in_vol, int kh_, int kw_, int pd, int ph,
                                         int pw) {
        for (int j = threadIdx.x; j < BN; j += blockDim.x) {
            const int nn = n0 + j;
            if (nn < N) {
                const int c = nn / taps;
                int t = nn - c * taps;
                dx[j] = t % kw_ - pw;
                t /= kw_;
                dy[j] = t % kh_ - ph;
                dz[j] = t / kh_ - pd;
                off[j] = (long long)c * in_vol;
            } else {
                off[j] = 0;
                dz[j] = -(1 << 30);
                dy[j] = 0;
                dx[j] = 0;
            }
        }
    }
};

// A backward-weight block's place in the split-K GEMM (M = Co, N = Ci * taps, K = batch * output
// voxels): tile origin (m0, n0) of BM x BN tiles and the voxel chunk [kbeg, kend) of chunk blockIdx.z
// (`run` voxels per chunk).
struct WgradBlock {
    int taps, N, m0, n0;
    long long out_vol, K, kbeg, kend;
};

__device__ __forceinline__ WgradBlock wgrad_block(long long run, int bm, int bn, GEOM_PARAMS) {
    WgradBlock b;
    b.taps = kd_ * kh_ * kw_;
    b.N = ci * b.taps;
    b.out_vol = (long long)od_ * oh_ * ow_;
    b.K = (long long)n * b.out_vol;
    b.kbeg = (long long)blockIdx.z * run;
    b.kend = min(b.K, b.kbeg + run);
    b.m0 = blockIdx.y * bm;
    b.n0 = blockIdx.x * bn;
    return b;
}

// The output voxel (b, oz, oy, ox) of one thread's K row k = b * out_vol + voxel of the backward-weight
// GEMM, advanced one K tile at a time.
struct VoxelCursor {
    long long k;
    int b, oz, oy, ox;

    __device__ __forceinline__ void start(long long k0, long long K, long long out_vol, int oh_, int ow_) {
        k = k0;
        const long long kc = k < K ? k : 0;
        b = (int)(kc / out_vol);
        long long r = kc - (long long)b * out_vol;
        ox = (int)(r % ow_);
        r /= ow_;
        oy = (int)(r % oh_);
        oz = (int)(r / oh_);
    }

    __device__ __forceinline__ void advance(int step, int od_, int oh_, int ow_) {
        k += step;
        ox += step;
        while (ox >= ow_) {
            ox -= ow_;
            if (++oy == oh_) {
                oy = 0;
                if (++oz == od_) {
                    oz = 0;
                    ++b;
                }
            }
        }
    }
};

// A loaded element in the register type R of a tile: f32 (converted from T) or raw bf16.
template <typename R, typename T>
__device__ __forceinline__ R fetch(const T* p) {
    if constexpr (sizeof(R) == 4) {
        return load_f(p);
    } else {
        return __ldg(p);
    }
}

// One K tile's register prefetch of the backward-weight GEMM for this thread's K row (voxel `cur`,
// zero past `kend`): ra[i] = dy[b][m0 + r + STEP i][voxel] (zero past Co) and rb[i] = x at column
// r + STEP i of the table (zero in padding).
template <typename R, typename T, int A_N, int B_N, int STEP, int BN>
__device__ __forceinline__ void load_wgrad_tile(R (&ra)[A_N], R (&rb)[B_N], const T* x, const T* dy,
                                                const VoxelCursor& cur, long long kend, const WgradColumns<BN>& cols,
                                                int m0, int r, GEOM_PARAMS) {
    const bool kok = cur.k < kend;
    const long long in_vol = (long long)id_ * ih_ * iw_;
    const long long out_vol = (long long)od_ * oh_ * ow_;
    const long long vox = ((long long)cur.oz * oh_ + cur.oy) * ow_ + cur.ox;
    const long long dy_base = (long long)cur.b * co * out_vol + vox;
    const long long x_base = (long long)cur.b * ci * in_vol;
    const int z0 = cur.oz * sd, y0 = cur.oy * sh, x0 = cur.ox * sw;
#pragma unroll
    for (int i = 0; i < A_N; ++i) {
        const int m = m0 + r + STEP * i;
        ra[i] = (kok && m < co) ? fetch<R>(dy + dy_base + (long long)m * out_vol) : (R)0;
    }
#pragma unroll
    for (int i = 0; i < B_N; ++i) {
        const int j = r + STEP * i;
        const int z = z0 + cols.dz[j], y = y0 + cols.dy[j], xx = x0 + cols.dx[j];
        R val = (R)0;
        if (kok && (unsigned)z < (unsigned)id_ && (unsigned)y < (unsigned)ih_ && (unsigned)xx < (unsigned)iw_) {
            val = fetch<R>(x + x_base + cols.off[j] + ((long long)z * ih_ + y) * iw_ + xx);
        }
        rb[i] = val;
    }
}

// ---------------------------------------------------------------------------------------------------
// f32 forward / backward-data: block tile BM (M) x BN (N) x 16 (K) with BM x BN = 4096 (64 x 64, or
// 32 x 128 for at most 32 output rows: the `_m32` kernels), 256 threads, 4 x 4 outputs per thread.
// A loader: thread -> row m = tid / (16 / A_PER), k = (tid % (16 / A_PER)) * A_PER + 0..A_PER-1.
// B loader: thread -> column n = tid % BN (consecutive threads read consecutive voxels),
// k = (tid / BN) * B_PER + 0..B_PER-1.
template <bool TRANSPOSED, int BM>
__device__ __forceinline__ void igemm_f32_body(const float* __restrict__ w, const float* __restrict__ src,
                                               float* __restrict__ out, GEOM_PARAMS) {
    constexpr int BN = 4096 / BM;
    constexpr int A_PER = BM * F_BK / F_THREADS;  // A elements per thread and tile
    constexpr int B_PER = BN * F_BK / F_THREADS;  // B elements per thread and tile
    constexpr int TX = BN / 4;                     // threads along N in the compute grid
    static_assert(BM * BN == 4096 && A_PER >= 1 && B_PER >= 1 && F_BK % A_PER == 0, "tile shape");
    __shared__ __align__(16) float As[2][F_BK][BM + 4];
    __shared__ __align__(16) float Bs[2][F_BK][BN + 4];
    __shared__ int taptab[MAX_TAPS_TABLE];
    __shared__ int tapoff[FAST_TAPS];
    const DataView v = data_view<TRANSPOSED>(GEOM_ARGS);
    const int tid = threadIdx.x;
    const int m0 = blockIdx.y * BM;
    const long long n0 = (long long)blockIdx.x * BN;
    fill_tap_table(taptab, v.taps, kh_, kw_);
    fill_tap_offsets<TRANSPOSED>(tapoff, v, kh_, kw_);

    const int a_m = tid / (F_BK / A_PER), a_k = (tid % (F_BK / A_PER)) * A_PER;
    const int b_n = tid % BN, b_k = (tid / BN) * B_PER;
    const ColumnGather gth = column_gather<TRANSPOSED>(v, n0 + b_n, GEOM_ARGS);
    const bool a_row_ok = m0 + a_m < v.M;
    const float* a_row = w + (long long)(a_row_ok ? m0 + a_m : 0) * v.sAm;

    float ra[A_PER], rb[B_PER];
    const int tx = tid % TX, ty = tid / TX;
    float acc[4][4] = {};
    __syncthreads();  // tap tables ready
    k_loop(
        (v.K + F_BK - 1) / F_BK,
        [&](int kt) {
            load_data_tile<TRANSPOSED, A_PER, B_PER>(ra, rb, v, a_row, a_row_ok, kt * F_BK + a_k, src, gth, tapoff,
                                                     taptab, kt * F_BK + b_k, sd, sh, sw);
        },
        [&](int buf) {
#pragma unroll
            for (int i = 0; i < A_PER; ++i) As[buf][a_k + i][a_m] = ra[i];
#pragma unroll
            for (int i = 0; i < B_PER; ++i) Bs[buf][b_k + i][b_n] = rb[i];
        },
        [&](int buf) { fma_tile(acc, As[buf], Bs[buf], ty, tx); });
    each_fma_acc(
        acc, m0 + ty * 4, tx * 4, [&](int j) { return data_out_column(v, n0 + j); },
        [&](int m, long long column, float val) { store_data_out(out, v, m, column, val); });
}

// y = conv3d(x, w): grid (ceil(N / 64), ceil(Co / 64)), 256 threads; `_m32`: grid (ceil(N / 128),
// ceil(Co / 32)).
DATA_KERNEL(igemm_fwd_f32, float, __launch_bounds__(F_THREADS, 2), igemm_f32_body, false, 64)
DATA_KERNEL(igemm_fwd_f32_m32, float, __launch_bounds__(F_THREADS, 2), igemm_f32_body, false, 32)

// dx = backward-data(dy, w): grid (ceil(N / 64), ceil(Ci / 64)), 256 threads; `_m32`: grid
// (ceil(N / 128), ceil(Ci / 32)).
DATA_KERNEL(igemm_bwd_data_f32, float, __launch_bounds__(F_THREADS, 2), igemm_f32_body, true, 64)
DATA_KERNEL(igemm_bwd_data_f32_m32, float, __launch_bounds__(F_THREADS, 2), igemm_f32_body, true, 32)

// ---------------------------------------------------------------------------------------------------
// Backward-weight (f32 accumulation; x and dy as f32 or bf16): BM x BN x 16 tiles (64 x 64, or
// 32 x 128 for at most 32 output channels: `_m32`) and 4 x 4 micro-tiles. K = batch * output voxels is
// split into `chunks` fixed runs of `run` voxels (blockIdx.z = chunk); block (nx, my, z) writes its
// tile of chunk z into partial[z][Co][Ci * taps], and wgrad_sum_* adds the chunks in order. Loaders:
// thread -> k row tid % 16 (consecutive threads read consecutive voxels of x and dy), rows m /
// columns n = tid / 16 + 16 * i; the (channel, tap) of each column comes from a per-block table.
template <typename T, int BM>
__device__ __forceinline__ void igemm_wgrad_body(const T* __restrict__ x, const T* __restrict__ dy,
                                                 float* __restrict__ partial, long long run, GEOM_PARAMS) {
    constexpr int BN = 4096 / BM;
    constexpr int A_PER = BM / 16;  // rows per thread
    constexpr int B_PER = BN / 16;  // columns per thread
    constexpr int TX = BN / 4;      // threads along N in the compute grid
    static_assert(BM * BN == 4096 && A_PER >= 1 && B_PER >= 1, "tile shape");
    __shared__ __align__(16) float As[2][F_BK][BM + 4];
    __shared__ __align__(16) float Bs[2][F_BK][BN + 4];
    __shared__ WgradColumns<BN> cols;
    const int tid = threadIdx.x;
    const WgradBlock wb = wgrad_block(run, BM, BN, GEOM_ARGS);
    const int taps = wb.taps, N = wb.N, m0 = wb.m0, n0 = wb.n0;
    const long long out_vol = wb.out_vol, K = wb.K, kbeg = wb.kbeg, kend = wb.kend;
    cols.fill(n0, N, taps, (long long)id_ * ih_ * iw_, kh_, kw_, pd, ph, pw);

    const int kk_row = tid % 16;
    const int r16 = tid / 16;
    VoxelCursor cur;
    cur.start(kbeg + kk_row, K, out_vol, oh_, ow_);
    float ra[A_PER], rb[B_PER];
    const int tx = tid % TX, ty = tid / TX;
    float acc[4][4] = {};
    __syncthreads();  // column table ready
    k_loop(
        (int)((max(kend - kbeg, 0LL) + F_BK - 1) / F_BK),
        [&](int) {
            load_wgrad_tile<float, T, A_PER, B_PER, 16>(ra, rb, x, dy, cur, kend, cols, m0, r16, GEOM_ARGS);
            cur.advance(F_BK, od_, oh_, ow_);
        },
        [&](int buf) {
#pragma unroll
            for (int i = 0; i < A_PER; ++i) As[buf][kk_row][r16 + 16 * i] = ra[i];
#pragma unroll
            for (int i = 0; i < B_PER; ++i) Bs[buf][kk_row][r16 + 16 * i] = rb[i];
        },
        [&](int buf) { fma_tile(acc, As[buf], Bs[buf], ty, tx); });
    float* dst = partial + (long long)blockIdx.z * co * N;
    each_fma_acc(acc, m0 + ty * 4, n0 + tx * 4, [](int nn) { return nn; },
                 [&](int m, int nn, float val) { if (m < co && nn < N) dst[(long long)m * N + nn] = val; });
}

// Entry points: grid (ceil(Ci * taps / BN), ceil(Co / BM), chunks), 256 threads.
#define WGRAD_KERNEL(name, T, BM)                                                                          \
    extern "C" __global__ void __launch_bounds__(F_THREADS, 2)                                             \
        name(const T* __restrict__ x, const T* __restrict__ dy, float* __restrict__ partial, long long run, \
             GEOM_PARAMS) {                                                                                \
        igemm_wgrad_body<T, BM>(x, dy, partial, run, GEOM_ARGS);                                           \
    }

WGRAD_KERNEL(igemm_wgrad_f32, float, 64)
WGRAD_KERNEL(igemm_wgrad_f32_m32, float, 32)

// bf16 inputs, FMA: not launched (src/cuda/mod.rs uses igemm_wgrad_bf16_mma); kept as a tested
// alternative without tensor cores (tests/emu).
WGRAD_KERNEL(igemm_wgrad_bf16, bf16_t, 64)

// dw[i] = sum_{z < chunks} partial[z * len + i], in order of z (deterministic), as f32 or bf16.
template <typename T>
__device__ __forceinline__ void wgrad_sum(const float* __restrict__ partial, T* __restrict__ dw, long long len,
                                          int chunks) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= len) return;
    float acc = 0.0f;
    for (int z = 0; z < chunks; ++z) acc += partial[(long long)z * len + i];
    store_f(dw + i, acc);
}

extern "C" __global__ void wgrad_sum_f32(const float* __restrict__ partial, float* __restrict__ dw, long long len,
                                         int chunks) {
    wgrad_sum(partial, dw, len, chunks);
}

extern "C" __global__ void wgrad_sum_bf16(const float* __restrict__ partial, bf16_t* __restrict__ dw, long long len,
                                          int chunks) {
    wgrad_sum(partial, dw, len, chunks);
}

// ---------------------------------------------------------------------------------------------------
// Forward / backward-data on tensor cores, bf16 (E = Bf16Elem) or f32 rounded to tf32 (Tf32Elem):
// block tile BM (M) x BN (N) x BK (K: 32 bf16 / 16 f32), 4 warps of 32 x 32 = 2 (m16) x 4 (n8) mma
// tiles (32 f32 accumulators per thread): 64 x 64 with warps in 2 x 2, or 32 x 128 with warps in 1 x 4
// for at most 32 output rows (the `_m32` kernels). A loader: row m = tid / (BK / A_PER),
// k = (tid % (BK / A_PER)) * A_PER + 0..A_PER-1; B loader: column n = tid % BN (consecutive threads
// read consecutive voxels), k = (tid / BN) * B_PER + 0..B_PER-1.
//
// Two source layouts (CL):
// - false: the NCDHW tensors as they are, k = c * taps + t, one gather per element (load_data_tile);
// - true: channels-last staging copies, the gathered tensor as src[b][voxel][c] (to_channels_last_*)
//   and the weight as A[m][t][c] (reorder_weight_*), so k = t * C + c and every V = E::VEC consecutive k
//   (8 bf16 / 4 f32) are V channels of one tap, adjacent in memory: one 16-byte load and one tap-mask
//   test per V elements. Needs C % V == 0 (C = the gathered tensor's channels) and the fast gathers (at
//   most 32 taps, stride 1 for backward-data); src/cuda/mod.rs checks both and uses the NCDHW kernels
//   otherwise.
template <class E, bool TRANSPOSED, int BM, bool CL>
__device__ __forceinline__ void igemm_mma_body(const typename E::T* __restrict__ w, const typename E::T* __restrict__ src,
                                               typename E::T* __restrict__ out, GEOM_PARAMS) {
    typedef typename E::T T;
    constexpr int BK = E::BK, V = E::VEC;
    constexpr int WARPS_M = BM / 32;
    constexpr int WARPS_N = (H_THREADS / 32) / WARPS_M;
    constexpr int BN = WARPS_N * 32;
    constexpr int A_PER = BM * BK / H_THREADS;  // A elements per thread and tile (multiple of V)
    constexpr int B_PER = BN * BK / H_THREADS;  // B elements per thread and tile (multiple of V)
    constexpr int A_W = A_PER * (int)sizeof(T) / 4, B_W = B_PER * (int)sizeof(T) / 4;  // 32-bit words
    static_assert(WARPS_M * WARPS_N == H_THREADS / 32 && A_PER % V == 0 && B_PER % V == 0 && BK % A_PER == 0 &&
                      BK % B_PER == 0,
                  "tile shape");
    __shared__ __align__(16) T As[2][BM][E::LD];
    __shared__ __align__(16) T Bs[2][BN][E::LD];
    __shared__ int taptab[CL ? 1 : MAX_TAPS_TABLE];  // NCDHW: the tap table
    __shared__ int tapoff[FAST_TAPS];                 // NCDHW: voxel offset per tap
    __shared__ long long tapoff_cl[CL ? FAST_TAPS : 1];  // CL: element offset per tap (voxel offset * C)
    const DataView v = data_view<TRANSPOSED>(GEOM_ARGS);
    const int tid = threadIdx.x;
    const int lane = tid & 31, warp = tid >> 5;
    const int m0 = blockIdx.y * BM;
    const long long n0 = (long long)blockIdx.x * BN;
    if constexpr (CL) {
        for (int t = tid; t < v.taps && t < FAST_TAPS; t += blockDim.x) {
            const int kx = t % kw_;
            const int r = t / kw_;
            const long long off = ((long long)(r / kh_) * v.sh_ + (r % kh_)) * v.sw_ + kx;
            tapoff_cl[t] = (TRANSPOSED ? -off : off) * v.C;
        }
    } else {
        fill_tap_table(taptab, v.taps, kh_, kw_);
        fill_tap_offsets<TRANSPOSED>(tapoff, v, kh_, kw_);
    }

    const int a_m = tid / (BK / A_PER), a_k = (tid % (BK / A_PER)) * A_PER;
    const int b_n = tid % BN, b_k = (tid / BN) * B_PER;
    const ColumnGather gth = column_gather<TRANSPOSED>(v, n0 + b_n, GEOM_ARGS);
    const bool a_row_ok = m0 + a_m < v.M;
    const T* a_row = w + (long long)(a_row_ok ? m0 + a_m : 0) * (CL ? (long long)v.K : v.sAm);
    // CL: element (b, voxel, c) of src is at (b * svol + voxel) * C + c, gth.base = boff + voxel of tap 0;
    // (bt, bc) = (tap, channel) of this thread's first B element in the next tile to load.
    const long long col_base = gth.col.boff + (gth.base - gth.col.boff) * v.C;
    int bt = b_k / v.C, bc = b_k - bt * v.C;

    unsigned int ra[A_W], rb[B_W];  // raw 32-bit words (see `put`)
    const int wm = (warp / WARPS_N) * 32, wn = (warp % WARPS_N) * 32;
    float acc[2][4][4] = {};
    __syncthreads();  // tap tables ready
    k_loop(
        (v.K + BK - 1) / BK,
        [&](int kt) {
            if constexpr (CL) {
                const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
                const int ka = kt * BK + a_k, kb = kt * BK + b_k;
#pragma unroll
                for (int q = 0; q < A_PER / V; ++q) {
                    const uint4 a = (a_row_ok && ka + V * q < v.K)
                                        ? __ldg(reinterpret_cast<const uint4*>(a_row + ka + V * q))
                                        : zero;
                    ra[4 * q] = a.x; ra[4 * q + 1] = a.y; ra[4 * q + 2] = a.z; ra[4 * q + 3] = a.w;
                }
                int t = bt, c = bc;
#pragma unroll
                for (int q = 0; q < B_PER / V; ++q) {
                    uint4 b = zero;
                    if (kb + V * q < v.K && ((gth.mask >> t) & 1u)) {
                        b = __ldg(reinterpret_cast<const uint4*>(src + (col_base + tapoff_cl[t] + c)));
                    }
                    rb[4 * q] = b.x; rb[4 * q + 1] = b.y; rb[4 * q + 2] = b.z; rb[4 * q + 3] = b.w;
                    c += V;
                    if (c == v.C) { c = 0; ++t; }
                }
                bc += BK;
                while (bc >= v.C) { bc -= v.C; ++bt; }
            } else {
                load_data_tile<TRANSPOSED, A_PER, B_PER>(ra, rb, v, a_row, a_row_ok, kt * BK + a_k, src, gth,
                                                         tapoff, taptab, kt * BK + b_k, sd, sh, sw);
            }
        },
        [&](int buf) {
            store_packed<E, A_W>(&As[buf][a_m][a_k], ra);
            store_packed<E, B_W>(&Bs[buf][b_n][b_k], rb);
        },
        [&](int buf) { mma_tile<E, false>(acc, As[buf], Bs[buf], wm, wn, lane); });
    each_mma_acc(
        acc, m0 + wm, wn, lane, [&](int j) { return data_out_column(v, n0 + j); },
        [&](int m, long long column, float val) { store_data_out(out, v, m, column, val); });
}

// An extern "C" entry point of igemm_mma_body (128 threads; see DATA_KERNEL).
#define MMA_DATA_KERNEL(name, E, CL, TRANSPOSED, BM)                                                     \
    extern "C" __global__ void __launch_bounds__(H_THREADS, 4)                                            \
        name(const E::T* __restrict__ src, const E::T* __restrict__ w, E::T* __restrict__ out, GEOM_PARAMS) { \
        igemm_mma_body<E, TRANSPOSED, BM, CL>(w, src, out, GEOM_ARGS);                                    \
    }

// y = conv3d(x, w) in bf16: grid (ceil(N / 64), ceil(Co / 64)), 128 threads; `_m32`: grid
// (ceil(N / 128), ceil(Co / 32)). `_cl`: from x as [b][voxel][ci] and w as [co][tap][ci], same grids.
MMA_DATA_KERNEL(igemm_fwd_bf16, Bf16Elem, false, false, 64)
MMA_DATA_KERNEL(igemm_fwd_bf16_m32, Bf16Elem, false, false, 32)
MMA_DATA_KERNEL(igemm_fwd_bf16_cl, Bf16Elem, true, false, 64)
MMA_DATA_KERNEL(igemm_fwd_bf16_cl_m32, Bf16Elem, true, false, 32)

// dx = backward-data(dy, w) in bf16: grid (ceil(N / 64), ceil(Ci / 64)), 128 threads; `_m32`: grid
// (ceil(N / 128), ceil(Ci / 32)). `_cl`: from dy as [b][voxel][co] and w as [ci][tap][co], same grids.
MMA_DATA_KERNEL(igemm_bwd_data_bf16, Bf16Elem, false, true, 64)
MMA_DATA_KERNEL(igemm_bwd_data_bf16_m32, Bf16Elem, false, true, 32)
MMA_DATA_KERNEL(igemm_bwd_data_bf16_cl, Bf16Elem, true, true, 64)
MMA_DATA_KERNEL(igemm_bwd_data_bf16_cl_m32, Bf16Elem, true, true, 32)

// The same in f32 on tensor cores (operands rounded to tf32, f32 accumulation and output): `_cl` from
// staging copies with the gathered channels a multiple of 4.
MMA_DATA_KERNEL(igemm_fwd_tf32, Tf32Elem, false, false, 64)
MMA_DATA_KERNEL(igemm_fwd_tf32_m32, Tf32Elem, false, false, 32)
MMA_DATA_KERNEL(igemm_fwd_tf32_cl, Tf32Elem, true, false, 64)
MMA_DATA_KERNEL(igemm_fwd_tf32_cl_m32, Tf32Elem, true, false, 32)
MMA_DATA_KERNEL(igemm_bwd_data_tf32, Tf32Elem, false, true, 64)
MMA_DATA_KERNEL(igemm_bwd_data_tf32_m32, Tf32Elem, false, true, 32)
MMA_DATA_KERNEL(igemm_bwd_data_tf32_cl, Tf32Elem, true, true, 64)
MMA_DATA_KERNEL(igemm_bwd_data_tf32_cl_m32, Tf32Elem, true, true, 32)



// bf16 backward-weight from channels-last staging (x_cl[b][v][ci], dy_cl[b][v][co]; Ci and Co multiples
// of 8): GEMM M = Co, N = taps * Ci ordered n = t * Ci + c, K = the voxels of chunk blockIdx.z (as
// igemm_wgrad_bf16_mma); block tile 64 x 64 x 32, 4 warps in 2 x 2, tiles stored k-major (At[k][m],
// Bt[k][n]) and read by ldmatrix.trans. Loaders: thread -> K rows tid / 8 and tid / 8 + 16 and chunk
// tid % 8 of 8 m (dy) and of 8 n (x: one tap, 8 channels): one 16-byte load each. Writes the f32 partial
// [chunk][co][ci * taps] in the weight's own order (column c * taps + t), summed by wgrad_sum_bf16.
extern "C" __global__ void __launch_bounds__(H_THREADS, 4)
    igemm_wgrad_bf16_cl(const bf16_t* __restrict__ x_cl, const bf16_t* __restrict__ dy_cl, float* __restrict__ partial,
                        long long run, GEOM_PARAMS) {
    constexpr int BM = 64, BN = 64;
    __shared__ __align__(16) bf16_t At[2][Bf16Elem::BK][H_LDT];
    __shared__ __align__(16) bf16_t Bt[2][Bf16Elem::BK][H_LDT];
    const int tid = threadIdx.x;
    const int lane = tid & 31, warp = tid >> 5;
    const WgradBlock wb = wgrad_block(run, BM, BN, GEOM_ARGS);
    const int taps = wb.taps, N = wb.N, m0 = wb.m0, n0 = wb.n0;
    const long long out_vol = wb.out_vol, K = wb.K, kbeg = wb.kbeg, kend = wb.kend;
    const long long in_vol = (long long)id_ * ih_ * iw_;
    const int kr = tid >> 3, q = tid & 7;
    // This thread's 8 columns: one tap t, channels c..c+7.
    const int nn = n0 + 8 * q;
    const bool n_ok = nn < N;
    const int t = n_ok ? nn / ci : 0;
    const int c = n_ok ? nn - t * ci : 0;
    const int tr = t / kw_;
    const int dz = tr / kh_ - pd, dyy = tr % kh_ - ph, dx = t % kw_ - pw;
    const bool m_ok = m0 + 8 * q < co;
    VoxelCursor cur[2];
    cur[0].start(kbeg + kr, K, out_vol, oh_, ow_);
    cur[1].start(kbeg + kr + 16, K, out_vol, oh_, ow_);
    uint4 ra[2], rb[2];
    const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    float acc[2][4][4] = {};
    k_loop(
        (int)((max(kend - kbeg, 0LL) + Bf16Elem::BK - 1) / Bf16Elem::BK),
        [&](int) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const VoxelCursor& v = cur[h];
                const bool kok = v.k < kend;
                ra[h] = make_uint4(0u, 0u, 0u, 0u);
                rb[h] = make_uint4(0u, 0u, 0u, 0u);
                if (kok && m_ok) ra[h] = __ldg(reinterpret_cast<const uint4*>(dy_cl + (v.k * co + m0 + 8 * q)));
                const int z = v.oz * sd + dz, y = v.oy * sh + dyy, xx = v.ox * sw + dx;
                if (kok && n_ok && (unsigned)z < (unsigned)id_ && (unsigned)y < (unsigned)ih_ &&
                    (unsigned)xx < (unsigned)iw_) {
                    const long long vox = (long long)v.b * in_vol + ((long long)z * ih_ + y) * iw_ + xx;
                    rb[h] = __ldg(reinterpret_cast<const uint4*>(x_cl + (vox * ci + c)));
                }
                cur[h].advance(Bf16Elem::BK, od_, oh_, ow_);
            }
        },
        [&](int buf) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                *reinterpret_cast<uint4*>(&At[buf][kr + 16 * h][8 * q]) = ra[h];
                *reinterpret_cast<uint4*>(&Bt[buf][kr + 16 * h][8 * q]) = rb[h];
            }
        },
        [&](int buf) { mma_tile<Bf16Elem, true>(acc, At[buf], Bt[buf], wm, wn, lane); });
    float* dst = partial + (long long)blockIdx.z * co * N;
    each_mma_acc(acc, m0 + wm, n0 + wn, lane, [](int col) { return col; },
                 [&](int m, int col, float val) {
                     if (m < co && col < N) {
                         const int tt = col / ci;
                         dst[(long long)m * N + (long long)(col - tt * ci) * taps + tt] = val;
                     }
                 });
}

// dst[b][v][c] = src[b][c][v] for c < C, v < vol: 32 x 32 tiles through shared memory, 256 threads,
// grid (ceil(vol / 32), ceil(C / 32), batch).
template <typename T>
__device__ __forceinline__ void to_channels_last(const T* __restrict__ src, T* __restrict__ dst, int C, long long vol) {
    __shared__ T tile[32][32 + 4 / sizeof(T)];  // rows of 17 or 33 words: conflict-free columns
    const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
    const long long v0 = (long long)blockIdx.x * 32;
    const int c0 = blockIdx.y * 32;
    const long long off = (long long)blockIdx.z * C * vol;
    for (int i = ty; i < 32; i += 8) {
        const int c = c0 + i;
        const long long vv = v0 + tx;
        if (c < C && vv < vol) tile[i][tx] = src[off + (long long)c * vol + vv];
    }
    __syncthreads();
    for (int i = ty; i < 32; i += 8) {
        const long long vv = v0 + i;
        const int c = c0 + tx;
        if (c < C && vv < vol) dst[off + vv * C + c] = tile[tx][i];
    }
}

extern "C" __global__ void __launch_bounds__(256)
    to_channels_last_bf16(const bf16_t* __restrict__ src, bf16_t* __restrict__ dst, int C, long long vol) {
    to_channels_last(src, dst, C, vol);
}

extern "C" __global__ void __launch_bounds__(256)
    to_channels_last_f32(const float* __restrict__ src, float* __restrict__ dst, int C, long long vol) {
    to_channels_last(src, dst, C, vol);
}

// The GEMM A operand [m][tap][c] of a forward (transposed == 0: w[m][c][t], m < co, c < ci) or
// backward-data (transposed != 0: w[c][m][t], m < ci, c < co) pass, from the weight [co][ci][taps]; one
// thread per element, grid-stride.
template <typename T>
__device__ __forceinline__ void reorder_weight(const T* __restrict__ w, T* __restrict__ out, int co, int ci, int taps,
                                               int transposed) {
    const int M = transposed ? ci : co, C = transposed ? co : ci;
    const long long total = (long long)M * taps * C;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const int c = (int)(i % C);
        const long long r = i / C;
        const int t = (int)(r % taps);
        const int m = (int)(r / taps);
        const long long src = transposed ? ((long long)c * ci + m) * taps + t : ((long long)m * ci + c) * taps + t;
        out[i] = w[src];
    }
}

extern "C" __global__ void reorder_weight_bf16(const bf16_t* __restrict__ w, bf16_t* __restrict__ out, int co, int ci,
                                               int taps, int transposed) {
    reorder_weight(w, out, co, ci, taps, transposed);
}

extern "C" __global__ void reorder_weight_f32(const float* __restrict__ w, float* __restrict__ out, int co, int ci,
                                              int taps, int transposed) {
    reorder_weight(w, out, co, ci, taps, transposed);
}

// ---------------------------------------------------------------------------------------------------
// Backward-weight on tensor cores, bf16 (E = Bf16Elem, `igemm_wgrad_bf16_mma`) or f32 rounded to tf32
// (Tf32Elem, `igemm_wgrad_tf32`), f32 accumulation, f32 partials summed by wgrad_sum_*: the GEMM
// M = Co, N = Ci * taps, K = voxels of the chunk blockIdx.z (as igemm_wgrad_*), block tile 64 x 64 x BK,
// 4 warps in 2 x 2, tiles stored k-contiguous and double-buffered. Loaders: thread -> k row tid % BK
// (consecutive threads read consecutive voxels of dy and x) and rows m / columns n = tid / BK + STEP * i
// (STEP = 128 / BK, i < 64 / STEP); the (channel, tap) of each column comes from a per-block table.
template <class E>
__device__ __forceinline__ void igemm_wgrad_mma_body(const typename E::T* __restrict__ x,
                                                     const typename E::T* __restrict__ dy, float* __restrict__ partial,
                                                     long long run, GEOM_PARAMS) {
    typedef typename E::T T;
    constexpr int BM = 64, BN = 64, BK = E::BK, STEP = H_THREADS / BK, PER = BM / STEP;
    __shared__ __align__(16) T As[2][BM][E::LD];
    __shared__ __align__(16) T Bs[2][BN][E::LD];
    __shared__ WgradColumns<BN> cols;
    const int tid = threadIdx.x;
    const int lane = tid & 31, warp = tid >> 5;
    const WgradBlock wb = wgrad_block(run, BM, BN, GEOM_ARGS);
    const int taps = wb.taps, N = wb.N, m0 = wb.m0, n0 = wb.n0;
    const long long out_vol = wb.out_vol, K = wb.K, kbeg = wb.kbeg, kend = wb.kend;
    cols.fill(n0, N, taps, (long long)id_ * ih_ * iw_, kh_, kw_, pd, ph, pw);

    const int kq = tid % BK, rr = tid / BK;
    VoxelCursor cur;
    cur.start(kbeg + kq, K, out_vol, oh_, ow_);
    T ra[PER], rb[PER];
    const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    float acc[2][4][4] = {};
    __syncthreads();  // column table ready
    k_loop(
        (int)((max(kend - kbeg, 0LL) + BK - 1) / BK),
        [&](int) {
            load_wgrad_tile<T, T, PER, PER, STEP>(ra, rb, x, dy, cur, kend, cols, m0, rr, GEOM_ARGS);
            cur.advance(BK, od_, oh_, ow_);
        },
        [&](int buf) {
#pragma unroll
            for (int i = 0; i < PER; ++i) {
                As[buf][rr + STEP * i][kq] = E::operand(ra[i]);
                Bs[buf][rr + STEP * i][kq] = E::operand(rb[i]);
            }
        },
        [&](int buf) { mma_tile<E, false>(acc, As[buf], Bs[buf], wm, wn, lane); });
    float* dst = partial + (long long)blockIdx.z * co * N;
    each_mma_acc(acc, m0 + wm, n0 + wn, lane, [](int nn) { return nn; },
                 [&](int m, int nn, float val) { if (m < co && nn < N) dst[(long long)m * N + nn] = val; });
}

extern "C" __global__ void __launch_bounds__(H_THREADS)
    igemm_wgrad_bf16_mma(const bf16_t* __restrict__ x, const bf16_t* __restrict__ dy, float* __restrict__ partial,
                         long long run, GEOM_PARAMS) {
    igemm_wgrad_mma_body<Bf16Elem>(x, dy, partial, run, GEOM_ARGS);
}

extern "C" __global__ void __launch_bounds__(H_THREADS)
    igemm_wgrad_tf32(const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ partial,
                     long long run, GEOM_PARAMS) {
    igemm_wgrad_mma_body<Tf32Elem>(x, dy, partial, run, GEOM_ARGS);
}

// ---------------------------------------------------------------------------------------------------
// Backward-data when kernel == stride and padding is 0 on every axis (conv_transpose3d kernel 2
// stride 2): every input voxel i takes exactly one tap, k = i % s, from output voxel i / s (none when
// i / s is past the output). One thread per input voxel and group of NO_CH input channels; sums over
// the output channels in order. `total` = n * ceil(ci / NO_CH) * D*H*W.
#define NO_CH 8

template <typename T>
__device__ __forceinline__ void nooverlap_body(const T* __restrict__ dy, const T* __restrict__ w, T* __restrict__ dx,
                                               long long total, GEOM_PARAMS) {
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total) return;
    const long long in_vol = (long long)id_ * ih_ * iw_;
    const long long out_vol = (long long)od_ * oh_ * ow_;
    const int groups = (ci + NO_CH - 1) / NO_CH;
    const long long vox = idx % in_vol;
    long long r = vox;
    const int ix = (int)(r % iw_);
    r /= iw_;
    const int iy = (int)(r % ih_);
    const int iz = (int)(r / ih_);
    r = idx / in_vol;
    const int c0 = (int)(r % groups) * NO_CH;
    const int b = (int)(r / groups);
    const int nc = min(NO_CH, ci - c0);
    const int taps = kd_ * kh_ * kw_;
    const int oz = iz / sd, oy = iy / sh, ox = ix / sw;
    float acc[NO_CH];
#pragma unroll
    for (int j = 0; j < NO_CH; ++j) acc[j] = 0.0f;
    if (oz < od_ && oy < oh_ && ox < ow_) {
        const int t = ((iz - oz * sd) * kh_ + (iy - oy * sh)) * kw_ + (ix - ox * sw);
        const T* g = dy + (long long)b * co * out_vol + ((long long)oz * oh_ + oy) * ow_ + ox;
        const T* wt = w + (long long)c0 * taps + t;
        for (int c = 0; c < co; ++c) {
            const float gv = load_f(g + (long long)c * out_vol);
            const T* wc = wt + (long long)c * ci * taps;
#pragma unroll
            for (int j = 0; j < NO_CH; ++j) {
                if (j < nc) acc[j] = fmaf(gv, load_f(wc + j * taps), acc[j]);
            }
        }
    }
    T* dxv = dx + ((long long)b * ci + c0) * in_vol + vox;
#pragma unroll
    for (int j = 0; j < NO_CH; ++j) {
        if (j < nc) store_f(dxv + j * in_vol, acc[j]);
    }
}

extern "C" __global__ void nooverlap_bwd_data_f32(const float* __restrict__ dy, const float* __restrict__ w,
                                                  float* __restrict__ dx, long long total, GEOM_PARAMS) {
    nooverlap_body<float>(dy, w, dx, total, GEOM_ARGS);
}

extern "C" __global__ void nooverlap_bwd_data_bf16(const bf16_t* __restrict__ dy, const bf16_t* __restrict__ w,
                                                   bf16_t* __restrict__ dx, long long total, GEOM_PARAMS) {
    nooverlap_body<bf16_t>(dy, w, dx, total, GEOM_ARGS);
}
