// Host-emulated check of src/cuda/conv3d_igemm.cu (tests/emu/run.sh): every kernel of the file, launched
// with the grid / block / split-K partition of src/cuda/mod.rs, against a direct double-precision
// reference, on geometries with odd sizes, strides, padding, 1x1 and kernel == stride, channel counts
// across the 64-wide tiles. f32: |err| <= 1e-4 max|ref|; bf16 (inputs rounded to bf16 first, output
// bf16): |err| <= 1e-2 max|ref|; tf32 (f32 inputs, rounded to tf32 by the kernels): |err| <= 2e-3
// max|ref|. Also checks that two runs are bit-identical. Prints one line per check.
#define MAGSEG_HOST_EMULATION 1
#include "cuda_emu.hpp"
#include "../../src/cuda/conv3d_igemm.cu"

#include "check_common.hpp"

#include <limits>

// GEMM backward-weight partition of src/cuda/mod.rs (gemm_wgrad_partition).
static void partition(const G& g, long& chunks, long& run) {
    const long k = (long)g.n * g.out_vol();
    const long tiles = ((g.co + 63) / 64) * (((long)g.ci * g.taps() + 63) / 64);
    const long by_blocks = (528 + tiles - 1) / tiles;
    const long by_work = std::max(1L, k / (128 * 16));
    chunks = std::min(std::max(std::min(by_blocks, by_work), 1L), 65535L);
    run = ((k + chunks - 1) / chunks + 15) / 16 * 16;
    chunks = (k + run - 1) / run;
}

// Calls f(chunks, run) for the partition of mod.rs and then, when forced_run > 0, for that run length.
template <class F>
static void each_partition(const G& g, long forced_run, F&& f) {
    for (long force : {0L, forced_run}) {
        if (force < 0) continue;
        long chunks, run;
        partition(g, chunks, run);
        if (force > 0) {
            run = force;
            chunks = ((long)g.n * g.out_vol() + run - 1) / run;
        }
        f(chunks, run);
    }
}

// The kernel families one run_case call checks.
enum Mode { F32_FMA, BF16, TF32 };

template <class T, Mode MODE>
static void run_case(const char* name, const G& g, long forced_run) {
    constexpr bool bf16 = MODE == BF16;
    std::mt19937 rng(1234 + g.ci * 7 + g.co);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    auto rnd = [&](size_t len) {
        std::vector<float> v(len);
        for (auto& e : v) e = u(rng);
        if (bf16) for (auto& e : v) e = from_bf16(to_bf16(e));
        return v;
    };
    const size_t xl = (size_t)g.n * g.ci * g.in_vol(), wl = (size_t)g.co * g.ci * g.taps(), yl = (size_t)g.n * g.co * g.out_vol();
    auto x = rnd(xl), wt = rnd(wl), dy = rnd(yl);
    std::vector<double> y_ref, dx_ref, dw_ref;
    reference(g, x, wt, dy, y_ref, dx_ref, dw_ref);
    auto conv = [&](const std::vector<float>& v) {
        std::vector<T> o(v.size());
        for (size_t i = 0; i < v.size(); ++i) {
            if constexpr (sizeof(T) == 2) o[i] = to_bf16(v[i]); else o[i] = v[i];
        }
        return o;
    };
    const auto xt = conv(x), wtt = conv(wt), dyt = conv(dy);
    // tf32: inputs not pre-rounded, so the kernels' own rounding to 10 mantissa bits is in the error
    const double tol = MODE == BF16 ? 1e-2 : MODE == TF32 ? 2e-3 : 1e-4;
    const char* tag = MODE == TF32 ? "tf32 " : "";
    const unsigned threads = MODE == F32_FMA ? 256 : 128;
    auto label = [&](const char* what, const char* rest, long chunks) {
        static char buf[96];
        if (chunks >= 0) std::snprintf(buf, sizeof buf, "%s%s%s/%ld", tag, what, rest, chunks);
        else std::snprintf(buf, sizeof buf, "%s%s%s", tag, what, rest);
        return buf;
    };
    // forward and backward-data, both block-tile variants (64 x 64 and the narrow 32 x 128 `_m32`), from
    // NCDHW and (tensor-core kernels) from channels-last staging
    using Kern = void (*)(const T*, const T*, T*, int, int, int, int, int, int, int, int, int, int, int, int, int,
                          int, int, int, int, int);
    struct Variant {
        Kern fwd, bwd;
        int bm, bn;
    };
    Variant variants[2], cl_variants[2];
    if constexpr (MODE == BF16) {
        variants[0] = {igemm_fwd_bf16, igemm_bwd_data_bf16, 64, 64};
        variants[1] = {igemm_fwd_bf16_m32, igemm_bwd_data_bf16_m32, 32, 128};
        cl_variants[0] = {igemm_fwd_bf16_cl, igemm_bwd_data_bf16_cl, 64, 64};
        cl_variants[1] = {igemm_fwd_bf16_cl_m32, igemm_bwd_data_bf16_cl_m32, 32, 128};
    } else if constexpr (MODE == TF32) {
        variants[0] = {igemm_fwd_tf32, igemm_bwd_data_tf32, 64, 64};
        variants[1] = {igemm_fwd_tf32_m32, igemm_bwd_data_tf32_m32, 32, 128};
        cl_variants[0] = {igemm_fwd_tf32_cl, igemm_bwd_data_tf32_cl, 64, 64};
        cl_variants[1] = {igemm_fwd_tf32_cl_m32, igemm_bwd_data_tf32_cl_m32, 32, 128};
    } else {
        variants[0] = {igemm_fwd_f32, igemm_bwd_data_f32, 64, 64};
        variants[1] = {igemm_fwd_f32_m32, igemm_bwd_data_f32_m32, 32, 128};
    }
    // One data pass: kernel `kern` on (src, a), `rows` output channels of `vol` voxels.
    auto data_pass = [&](const char* what, const Variant& var, Kern kern, const std::vector<T>& src,
                         const std::vector<T>& a, int rows, long vol, const std::vector<double>& ref) {
        std::vector<T> r1((size_t)g.n * rows * vol), r2(r1.size());
        for (auto* out : {&r1, &r2}) {
            dim3 grid{(unsigned)((g.n * vol + var.bn - 1) / var.bn), (unsigned)((rows + var.bm - 1) / var.bm), 1};
            emu_launch(grid, dim3{threads, 1, 1}, [&] { kern(src.data(), a.data(), out->data(), GARGS(g)); });
        }
        compare(label(what, var.bm == 64 ? "" : " m32", -1), name, r1, r2, ref, tol);
    };
    for (const Variant& var : variants) {
        data_pass("forward", var, var.fwd, xt, wtt, g.co, g.out_vol(), y_ref);
        data_pass("bwd-data", var, var.bwd, dyt, wtt, g.ci, g.in_vol(), dx_ref);
    }
    // Channels-last staging (src/cuda/mod.rs: gathered channels % VEC == 0, VEC = 8 bf16 / 4 f32, at most
    // 32 taps, stride 1 for backward-data), then both block-tile variants.
    if constexpr (MODE != F32_FMA) {
        constexpr int vec = MODE == BF16 ? 8 : 4;
        T poison;  // NaN bits: a value the staging missed shows
        if constexpr (MODE == BF16) poison = 0xFFFF; else poison = std::numeric_limits<float>::quiet_NaN();
        auto stage = [&](const std::vector<T>& src, int C, long vol) {
            std::vector<T> cl(src.size(), poison);
            emu_launch(dim3{(unsigned)((vol + 31) / 32), (unsigned)((C + 31) / 32), (unsigned)g.n}, dim3{256, 1, 1}, [&] {
                if constexpr (MODE == BF16) to_channels_last_bf16(src.data(), cl.data(), C, vol);
                else to_channels_last_f32(src.data(), cl.data(), C, vol);
            });
            return cl;
        };
        auto weights = [&](int transposed) {
            std::vector<T> a(wl, poison);
            emu_launch(dim3{(unsigned)((wl + 255) / 256), 1, 1}, dim3{256, 1, 1}, [&] {
                if constexpr (MODE == BF16) reorder_weight_bf16(wtt.data(), a.data(), g.co, g.ci, g.taps(), transposed);
                else reorder_weight_f32(wtt.data(), a.data(), g.co, g.ci, g.taps(), transposed);
            });
            return a;
        };
        const bool fwd_ok = g.ci % vec == 0 && g.taps() <= 32;
        const bool bwd_ok = g.co % vec == 0 && g.taps() <= 32 && g.sd == 1 && g.sh == 1 && g.sw == 1;
        // bf16 backward-weight from channels-last x and dy (both channel counts % 8 == 0): the partition
        // of mod.rs, then the forced run length
        if (MODE == BF16 && g.ci % 8 == 0 && g.co % 8 == 0) {
            const auto x_cl = stage(xt, g.ci, g.in_vol());
            const auto dy_cl = stage(dyt, g.co, g.out_vol());
            each_partition(g, forced_run, [&](long chunks, long run) {
                std::vector<T> w1(wl), w2(wl);
                for (auto* out : {&w1, &w2}) {
                    std::vector<float> partial(wl * chunks, -7.f);
                    dim3 grid{(unsigned)(((long)g.ci * g.taps() + 63) / 64), (unsigned)((g.co + 63) / 64), (unsigned)chunks};
                    emu_launch(grid, dim3{128, 1, 1}, [&] {
                        if constexpr (MODE == BF16) igemm_wgrad_bf16_cl(x_cl.data(), dy_cl.data(), partial.data(), run, GARGS(g));
                    });
                    emu_launch(dim3{(unsigned)((wl + 255) / 256), 1, 1}, dim3{256, 1, 1}, [&] {
                        if constexpr (MODE == BF16) wgrad_sum_bf16(partial.data(), out->data(), (long long)wl, (int)chunks);
                    });
                }
                compare(label("bwd-weight", " cl", chunks), name, w1, w2, dw_ref, tol);
            });
        }
        for (const Variant& var : cl_variants) {
            if (fwd_ok) data_pass("forward cl", var, var.fwd, stage(xt, g.ci, g.in_vol()), weights(0), g.co, g.out_vol(), y_ref);
            if (bwd_ok) data_pass("bwd-data cl", var, var.bwd, stage(dyt, g.co, g.out_vol()), weights(1), g.ci, g.in_vol(), dx_ref);
        }
    }
    if (MODE != TF32 && g.kd == g.sd && g.kh == g.sh && g.kw == g.sw && g.pd == 0 && g.ph == 0 && g.pw == 0) {
        std::vector<T> n1(xl), n2(xl);
        const long long total = (long long)g.n * ((g.ci + 7) / 8) * g.in_vol();
        for (auto* out : {&n1, &n2}) {
            emu_launch(dim3{(unsigned)((total + 255) / 256), 1, 1}, dim3{256, 1, 1}, [&] {
                if constexpr (sizeof(T) == 2) nooverlap_bwd_data_bf16(dyt.data(), wtt.data(), out->data(), total, GARGS(g));
                else nooverlap_bwd_data_f32(dyt.data(), wtt.data(), out->data(), total, GARGS(g));
            });
        }
        compare("bwd-data 1tap", name, n1, n2, dx_ref, tol);
    }
    // backward-weight: the partition of mod.rs, then a forced (possibly odd) run length. Variant v:
    // f32 -> 0 = 64 x 64, 1 = the narrow 32 x 128 `_m32`; bf16 -> 0 = FMA, 1 = tensor cores; tf32 -> 0 only.
    for (int var = 0; var < (MODE == TF32 ? 1 : 2); ++var) {
        each_partition(g, forced_run, [&](long chunks, long run) {
            std::vector<T> w1(wl), w2(wl);
            for (auto* out : {&w1, &w2}) {
                std::vector<float> partial(wl * chunks, -7.f);
                const bool narrow = MODE == F32_FMA && var;
                const long bm = narrow ? 32 : 64, bn = narrow ? 128 : 64;
                const bool mma = MODE == TF32 || (MODE == BF16 && var);
                dim3 grid{(unsigned)(((long)g.ci * g.taps() + bn - 1) / bn), (unsigned)((g.co + bm - 1) / bm), (unsigned)chunks};
                emu_launch(grid, dim3{mma ? 128u : 256u, 1, 1}, [&] {
                    if constexpr (MODE == BF16) {
                        if (var) igemm_wgrad_bf16_mma(xt.data(), dyt.data(), partial.data(), run, GARGS(g));
                        else igemm_wgrad_bf16(xt.data(), dyt.data(), partial.data(), run, GARGS(g));
                    } else if constexpr (MODE == TF32) {
                        igemm_wgrad_tf32(xt.data(), dyt.data(), partial.data(), run, GARGS(g));
                    } else {
                        if (var) igemm_wgrad_f32_m32(xt.data(), dyt.data(), partial.data(), run, GARGS(g));
                        else igemm_wgrad_f32(xt.data(), dyt.data(), partial.data(), run, GARGS(g));
                    }
                });
                emu_launch(dim3{(unsigned)((wl + 255) / 256), 1, 1}, dim3{256, 1, 1}, [&] {
                    if constexpr (sizeof(T) == 2) wgrad_sum_bf16(partial.data(), out->data(), (long long)wl, (int)chunks);
                    else wgrad_sum_f32(partial.data(), out->data(), (long long)wl, (int)chunks);
                });
            }
            const char* kind = MODE == BF16 && var ? " mma" : MODE == F32_FMA && var ? " m32" : "";
            compare(label("bwd-weight", kind, chunks), name, w1, w2, dw_ref, tol);
        });
    }
}

int main() {
    struct C {
        const char* name;
        G g;
        long run;
        bool tf32;  // also check the tf32 kernels (on a subset: they share the index logic with bf16)
    };
    const C cases[] = {
        {"k3 s1 p1 1->4 9x10x11", {1, 1, 4, 9, 10, 11, 3, 3, 3, 1, 1, 1, 1, 1, 1}, 37, true},
        {"k3 s1 p1 3->5 b2 7x6x5", {2, 3, 5, 7, 6, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1}, 16, false},
        {"k3 s1 p1 33->70 5x6x7", {1, 33, 70, 5, 6, 7, 3, 3, 3, 1, 1, 1, 1, 1, 1}, 50, false},
        {"k3 s1 p1 70->66 b2 4x5x3", {2, 70, 66, 4, 5, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1}, -1, true},
        {"k3 s2 p0 16->16 b2 9x10x7", {2, 16, 16, 9, 10, 7, 3, 3, 3, 2, 2, 2, 0, 0, 0}, 7, true},
        {"k3 s2 p1 3->5 b2 9x8x7", {2, 3, 5, 9, 8, 7, 3, 3, 3, 2, 2, 2, 1, 1, 1}, -1, false},
        {"k5x3x2 s1x2x3 p2x1x0 2->3", {1, 2, 3, 8, 9, 10, 5, 3, 2, 1, 2, 3, 2, 1, 0}, 33, true},
        {"k1 33->16 b2 7x6x5", {2, 33, 16, 7, 6, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0}, 100, true},
        {"k1 3->1 5x6x7", {1, 3, 1, 5, 6, 7, 1, 1, 1, 1, 1, 1, 0, 0, 0}, -1, false},
        {"k2 s2 p0 3->16 b2 9x7x5", {2, 3, 16, 9, 7, 5, 2, 2, 2, 2, 2, 2, 0, 0, 0}, 16, false},
        {"k2 s2 p0 16->33 6x8x10", {1, 16, 33, 6, 8, 10, 2, 2, 2, 2, 2, 2, 0, 0, 0}, -1, true},
        {"k2x1x3 s2x1x3 p0 2->3 b2", {2, 2, 3, 6, 4, 6, 2, 1, 3, 2, 1, 3, 0, 0, 0}, -1, false},
        {"k3 s1 p1 2->3 b2 12^3", {2, 2, 3, 12, 12, 12, 3, 3, 3, 1, 1, 1, 1, 1, 1}, 160, false},
        {"k5 s1 p2 2->3 9^3", {1, 2, 3, 9, 9, 9, 5, 5, 5, 1, 1, 1, 2, 2, 2}, -1, true},
        // channel counts that take the channels-last kernels (multiples of 8 for bf16, of 4 for tf32), with
        // one side that does not
        {"k3 s1 p1 16->24 b2 7x6x5", {2, 16, 24, 7, 6, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1}, 45, true},
        {"k3 s1 p1 8->72 5x6x7", {1, 8, 72, 5, 6, 7, 3, 3, 3, 1, 1, 1, 1, 1, 1}, 64, false},
        {"k3 s1 p1 40->8 b2 4x5x6", {2, 40, 8, 4, 5, 6, 3, 3, 3, 1, 1, 1, 1, 1, 1}, -1, true},
        {"k3 s2 p1 32->16 b2 9x8x7", {2, 32, 16, 9, 8, 7, 3, 3, 3, 2, 2, 2, 1, 1, 1}, 33, false},
        {"k1 64->40 b2 5x4x3", {2, 64, 40, 5, 4, 3, 1, 1, 1, 1, 1, 1, 0, 0, 0}, -1, false},
        {"k3x1x2 s1 p1x0x1 24->13 6x7x8", {1, 24, 13, 6, 7, 8, 3, 1, 2, 1, 1, 1, 1, 0, 1}, -1, true},
        {"k3 s1 p1 12->20 b2 5x4x6", {2, 12, 20, 5, 4, 6, 3, 3, 3, 1, 1, 1, 1, 1, 1}, 40, true},
    };
    for (const auto& c : cases) {
        run_case<float, F32_FMA>(c.name, c.g, c.run);
        run_case<uint16_t, BF16>(c.name, c.g, c.run);
        if (c.tf32) run_case<float, TF32>(c.name, c.g, c.run);
    }
    std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "ALL OK", failures);
    return failures ? 1 : 0;
}
