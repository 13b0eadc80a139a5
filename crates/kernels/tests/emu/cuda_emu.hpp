// Host emulation of the CUDA subset used by src/cuda/*.cu, so the kernels' index logic can be tested on a
// machine without a GPU (tests/emu/run.sh). One block at a time; the threads of a block are std::threads
// meeting at a std::barrier for __syncthreads; `__shared__` becomes a function-local `static` (one block
// runs at a time, so that is exactly one copy per block). mma.sync m16n8k16 (bf16) and m16n8k8 (tf32),
// both with f32 accumulation, and ldmatrix are emulated from the PTX ISA's fragment layouts through
// per-warp staging areas. Not a performance model.
#pragma once
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline std::barrier<>* g_bar = nullptr;
// One barrier per warp (32 threads) for the warp-collective instructions (mma, ldmatrix).
inline std::vector<std::unique_ptr<std::barrier<>>>* g_warp_bars = nullptr;
inline void emu_warp_sync() { (*g_warp_bars)[threadIdx.x / 32]->arrive_and_wait(); }

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __restrict__

inline void __syncthreads() { g_bar->arrive_and_wait(); }
template <class T>
inline T __ldg(const T* p) {
    return *p;
}
inline float __uint_as_float(unsigned u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline unsigned __float_as_uint(float f) {
    unsigned u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}
// The round-to-nearest intrinsics are plain IEEE f32 operations on the host (the emulation programs
// are built with -ffp-contract=off, so nothing is fused into an fma behind their back).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
// CUDA's normcdff, Φ(v) = erfc(−v/√2)/2 (CUDA's is within a few ulp of that; so is this).
inline float normcdff(float v) { return 0.5f * std::erfc(-v * 0.70710678118654752f); }
// expf, sqrtf, fmaxf, fminf: the C library's (math.h, through <cmath>).
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return uint4{a, b, c, d}; }
using std::fmaf;
using std::max;
using std::min;

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, D = A * B + C, per the PTX ISA fragment layout
// (groupID = lane / 4, tig = lane % 4; each .b32 register holds two bf16, the lower index in the low
// half): A reg r of lane: rows groupID + 8 * (r & 1), cols 2 tig + 8 * (r >> 1) + {0, 1};
// B reg r: rows (k) 2 tig + 8 r + {0, 1}, col groupID; C e: row groupID + 8 * (e >> 1), col 2 tig + (e & 1).
struct EmuWarpStage {
    unsigned a[32][4];
    unsigned b[32][2];
};
inline EmuWarpStage g_emu_stage[32];

// One m16n8kK mma of the calling warp: stages every lane's fragment registers, then lane computes its
// C elements (e: row groupID + 8 * (e >> 1), col 2 tig + (e & 1)) with A(stage, row, k) and
// B(stage, k, col) reading the staged registers.
template <int K, class FA, class FB>
inline void emu_mma(float* c, const unsigned* a, const unsigned* b, FA A, FB B) {
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    for (int r = 0; r < 4; ++r) g_emu_stage[warp].a[lane][r] = a[r];
    for (int r = 0; r < 2; ++r) g_emu_stage[warp].b[lane][r] = b[r];
    emu_warp_sync();
    const EmuWarpStage& s = g_emu_stage[warp];
    const int g = lane / 4, tg = lane % 4;
    float out[4];
    for (int e = 0; e < 4; ++e) {
        const int row = g + 8 * (e >> 1), col = 2 * tg + (e & 1);
        float acc = c[e];
        for (int k = 0; k < K; ++k) acc += A(s, row, k) * B(s, k, col);
        out[e] = acc;
    }
    emu_warp_sync();  // everyone has read the stage before it is reused
    for (int e = 0; e < 4; ++e) c[e] = out[e];
}

inline float emu_bf16(unsigned reg, int hi) { return __uint_as_float((hi ? (reg >> 16) : (reg & 0xffffu)) << 16); }

inline void magseg_emu_mma_bf16_16816(float* c, const unsigned* a, const unsigned* b) {
    emu_mma<16>(
        c, a, b,
        [](const EmuWarpStage& s, int row, int k) {
            return emu_bf16(s.a[(row % 8) * 4 + (k % 8) / 2][(row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0)], k % 2);
        },
        [](const EmuWarpStage& s, int k, int col) { return emu_bf16(s.b[col * 4 + (k % 8) / 2][k >= 8 ? 1 : 0], k % 2); });
}

// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 per the PTX ISA (one tf32 per .b32 register, only
// its top 19 bits used): A reg r of lane: row groupID + 8 * (r & 1), col tig + 4 * (r >> 1); B reg r:
// row (k) tig + 4 r, col groupID; C as for m16n8k16.
inline float emu_tf32(unsigned reg) { return __uint_as_float(reg & 0xffffe000u); }

inline void magseg_emu_mma_tf32_1688(float* c, const unsigned* a, const unsigned* b) {
    emu_mma<8>(
        c, a, b,
        [](const EmuWarpStage& s, int row, int k) {
            return emu_tf32(s.a[(row % 8) * 4 + k % 4][(row >= 8 ? 1 : 0) + (k >= 4 ? 2 : 0)]);
        },
        [](const EmuWarpStage& s, int k, int col) { return emu_tf32(s.b[col * 4 + k % 4][k >= 4 ? 1 : 0]); });
}

// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16 per the PTX ISA: lane l supplies the address of row
// l % 8 of matrix l / 8; register i of lane receives row lane / 4, b16 elements 2 (lane % 4) and + 1 of
// matrix i (the first in the low half), or with .trans rows 2 (lane % 4) and + 1, column lane / 4.
inline const void* g_emu_ldm[32][32];

inline void magseg_emu_ldmatrix_x4(unsigned* r, const void* p, bool trans) {
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    g_emu_ldm[warp][lane] = p;
    emu_warp_sync();
    auto at = [&](int m, int row, int col) { return (unsigned)static_cast<const unsigned short*>(g_emu_ldm[warp][m * 8 + row])[col]; };
    for (int i = 0; i < 4; ++i) {
        const int g = lane / 4, t2 = 2 * (lane % 4);
        r[i] = trans ? at(i, t2, g) | (at(i, t2 + 1, g) << 16) : at(i, g, t2) | (at(i, g, t2 + 1) << 16);
    }
    emu_warp_sync();  // everyone has read the addresses before they are reused
}

// Runs `kernel()` over `grid` blocks of `block` threads (x only), one block at a time: the threads are
// created once per launch and meet at the barrier after every block (a thread that returns early from
// the kernel goes straight to that barrier; kernels that call __syncthreads never return early).
template <class F>
inline void emu_launch(dim3 grid, dim3 block, F kernel) {
    gridDim = grid;
    blockDim = block;
    const int nthreads = (int)(block.x * block.y * block.z);
    std::barrier<> bar(nthreads);
    g_bar = &bar;
    std::vector<std::unique_ptr<std::barrier<>>> warp_bars;
    for (int w = 0; w < (nthreads + 31) / 32; ++w) {
        warp_bars.push_back(std::make_unique<std::barrier<>>(std::min(32, nthreads - 32 * w)));
    }
    g_warp_bars = &warp_bars;
    std::vector<std::thread> ts;
    ts.reserve(nthreads);
    for (int t = 0; t < nthreads; ++t) {
        ts.emplace_back([&, t] {
            threadIdx = dim3{(unsigned)t, 0, 0};
            for (unsigned bz = 0; bz < grid.z; ++bz)
                for (unsigned by = 0; by < grid.y; ++by)
                    for (unsigned bx = 0; bx < grid.x; ++bx) {
                        blockIdx = dim3{bx, by, bz};
                        kernel();
                        bar.arrive_and_wait();
                    }
        });
    }
    for (auto& th : ts) th.join();
}
