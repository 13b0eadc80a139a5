// CPU emulation shim of the CUDA built-ins used by src/cuda/*.cu (tests/kernel_emu.rs): kernels run as
// plain C++ on the host; warps are 32 OS threads in lock step (barriers in the shuffle and ballot built-ins),
// atomics are std::atomic_ref. Only what edt.cu and surface.cu use is provided.
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <thread>
#include <vector>
using std::sqrt;
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
struct D3 { unsigned x = 0, y = 0, z = 0; };
thread_local D3 threadIdx, blockIdx;
D3 blockDim;
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline double __longlong_as_double(long long i) { double f; memcpy(&f, &i, 8); return f; }
struct Warp { std::barrier<> bar{32}; unsigned long long vals[32]; };
thread_local Warp* W = nullptr;
thread_local int LANE = 0;
inline unsigned long long __shfl_down_sync(unsigned, unsigned long long x, int o) {
    W->vals[LANE] = x; W->bar.arrive_and_wait();
    unsigned long long r = LANE + o < 32 ? W->vals[LANE + o] : x;
    W->bar.arrive_and_wait();
    return r;
}
inline unsigned __ballot_sync(unsigned, int p) {
    W->vals[LANE] = p ? 1 : 0; W->bar.arrive_and_wait();
    unsigned b = 0; for (int l = 0; l < 32; ++l) if (W->vals[l]) b |= 1u << l;
    W->bar.arrive_and_wait();
    return b;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) { return std::atomic_ref<unsigned long long>(*p).fetch_add(v); }
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
    std::atomic_ref<unsigned long long> a(*p); unsigned long long o = a.load();
    while (v < o && !a.compare_exchange_weak(o, v)) {} return o;
}
inline unsigned long long atomicMax(unsigned long long* p, unsigned long long v) {
    std::atomic_ref<unsigned long long> a(*p); unsigned long long o = a.load();
    while (v > o && !a.compare_exchange_weak(o, v)) {} return o;
}
// Launch with lock-step warps (32 OS threads looping over the warps).
inline void launch_warps(long long items, unsigned block, std::function<void()> k) {
    blockDim.x = block;
    long long blocks = (items + block - 1) / block; if (blocks < 1) blocks = 1;
    long long warps = blocks * block / 32;
    Warp w;
    std::vector<std::thread> ts;
    for (int l = 0; l < 32; ++l) ts.emplace_back([&, l] {
        W = &w; LANE = l;
        for (long long i = 0; i < warps; ++i) {
            long long t = i * 32 + l;
            blockIdx.x = t / block; threadIdx.x = t % block;
            k();
        }
    });
    for (auto& t : ts) t.join();
}
// Launch without warp operations: sequential, in a scrambled block order (atomics order varies).
inline void launch_seq(long long items, unsigned block, std::function<void()> k) {
    blockDim.x = block;
    long long blocks = (items + block - 1) / block; if (blocks < 1) blocks = 1;
    for (long long bb = 0; bb < blocks; ++bb) {
        long long b = (bb * 7919) % blocks; if (std::gcd(7919LL, blocks) != 1) b = blocks - 1 - bb;
        blockIdx.x = b;
        for (unsigned t = 0; t < block; ++t) { threadIdx.x = t; k(); }
    }
}
