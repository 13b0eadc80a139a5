// Host-emulated check of src/cuda/conv3d_igemm.cu (tests/emu/run.sh): every kernel of the file, launched
// with the grid / block / split-K partition of src/cuda/mod.rs, against a direct double-precision
// reference, on geometries with odd sizes, strides, padding, 1x1 and kernel == stride, channel counts
// across the 64-wide tiles. f32: |err| <= 1e-4 max|ref|; bf16 (inputs rounded to bf16 first, output
// bf16): |err| <= 1e-2 max|ref|. Also checks that two runs are bit-identical. Prints one line per check.
#define MAGSEG_HOST_EMULATION 1
#include "cuda_emu.hpp"
#include "../../src/cuda/conv3d_igemm.cu"

#include "check_common.hpp"

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

template <class T>
static void run_case(const char* name, const G& g, bool bf16, long forced_run) {
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
    const double tol = bf16 ? 1e-2 : 1e-4;
    const unsigned threads = bf16 ? 128 : 256;
    for (int rep = 0; rep < 1; ++rep) {
        // forward and backward-data, both block-tile variants (64 x 64 and the narrow 32 x 128 `_m32`)
        using Kern = void (*)(const T*, const T*, T*, int, int, int, int, int, int, int, int, int, int, int, int, int,
                              int, int, int, int, int);
        struct Variant {
            const char* fwd_name;
            Kern fwd, bwd;
            int bm, bn;
        };
        Variant variants[2];
        if constexpr (sizeof(T) == 2) {
            variants[0] = {"forward", igemm_fwd_bf16, igemm_bwd_data_bf16, 64, 64};
            variants[1] = {"forward m32", igemm_fwd_bf16_m32, igemm_bwd_data_bf16_m32, 32, 128};
        } else {
            variants[0] = {"forward", igemm_fwd_f32, igemm_bwd_data_f32, 64, 64};
            variants[1] = {"forward m32", igemm_fwd_f32_m32, igemm_bwd_data_f32_m32, 32, 128};
        }
        for (const Variant& var : variants) {
            std::vector<T> y1(yl), y2(yl);
            for (auto* out : {&y1, &y2}) {
                dim3 grid{(unsigned)((g.n * g.out_vol() + var.bn - 1) / var.bn), (unsigned)((g.co + var.bm - 1) / var.bm), 1};
                emu_launch(grid, dim3{threads, 1, 1}, [&] { var.fwd(xt.data(), wtt.data(), out->data(), GARGS(g)); });
            }
            compare(var.fwd_name, name, y1, y2, y_ref, tol);
            std::vector<T> d1(xl), d2(xl);
            for (auto* out : {&d1, &d2}) {
                dim3 grid{(unsigned)((g.n * g.in_vol() + var.bn - 1) / var.bn), (unsigned)((g.ci + var.bm - 1) / var.bm), 1};
                emu_launch(grid, dim3{threads, 1, 1}, [&] { var.bwd(dyt.data(), wtt.data(), out->data(), GARGS(g)); });
            }
            compare(var.bm == 64 ? "bwd-data" : "bwd-data m32", name, d1, d2, dx_ref, tol);
        }
        // bf16 from channels-last staging (src/cuda/mod.rs: gathered channels % 8 == 0, at most 32 taps,
        // stride 1 for backward-data): staging kernels, then both block-tile variants
        if constexpr (sizeof(T) == 2) {
            auto stage = [&](const std::vector<T>& src, int C, long vol) {
                std::vector<T> cl(src.size(), 0xFFFF);  // NaN bits: a value the transpose missed shows
                emu_launch(dim3{(unsigned)((vol + 31) / 32), (unsigned)((C + 31) / 32), (unsigned)g.n}, dim3{256, 1, 1},
                           [&] { to_channels_last_bf16(src.data(), cl.data(), C, vol); });
                return cl;
            };
            auto weights = [&](int transposed) {
                std::vector<T> a(wl, 0xFFFF);
                emu_launch(dim3{(unsigned)((wl + 255) / 256), 1, 1}, dim3{256, 1, 1},
                           [&] { reorder_weight_bf16(wtt.data(), a.data(), g.co, g.ci, g.taps(), transposed); });
                return a;
            };
            using Kern = void (*)(const T*, const T*, T*, int, int, int, int, int, int, int, int, int, int, int, int,
                                  int, int, int, int, int, int);
            const struct {
                Kern fwd, bwd;
                int bm, bn;
            } cl_variants[] = {{igemm_fwd_bf16_cl, igemm_bwd_data_bf16_cl, 64, 64},
                               {igemm_fwd_bf16_cl_m32, igemm_bwd_data_bf16_cl_m32, 32, 128}};
            const bool fwd_ok = g.ci % 8 == 0 && g.taps() <= 32;
            const bool bwd_ok = g.co % 8 == 0 && g.taps() <= 32 && g.sd == 1 && g.sh == 1 && g.sw == 1;
            // backward-weight from channels-last x and dy (both channel counts % 8 == 0): the partition of
            // mod.rs, then the forced run length
            if (g.ci % 8 == 0 && g.co % 8 == 0) {
                const auto x_cl = stage(xt, g.ci, g.in_vol());
                const auto dy_cl = stage(dyt, g.co, g.out_vol());
                each_partition(g, forced_run, [&](long chunks, long run) {
                    std::vector<T> w1(wl), w2(wl);
                    for (auto* out : {&w1, &w2}) {
                        std::vector<float> partial(wl * chunks, -7.f);
                        dim3 grid{(unsigned)(((long)g.ci * g.taps() + 63) / 64), (unsigned)((g.co + 63) / 64), (unsigned)chunks};
                        emu_launch(grid, dim3{128, 1, 1},
                                   [&] { igemm_wgrad_bf16_cl(x_cl.data(), dy_cl.data(), partial.data(), run, GARGS(g)); });
                        emu_launch(dim3{(unsigned)((wl + 255) / 256), 1, 1}, dim3{256, 1, 1},
                                   [&] { wgrad_sum_bf16(partial.data(), out->data(), (long long)wl, (int)chunks); });
                    }
                    char label[64];
                    std::snprintf(label, sizeof label, "bwd-weight cl/%ld", chunks);
                    compare(label, name, w1, w2, dw_ref, tol);
                });
            }
            // One data pass from staging: kernel `kern` on (src_cl, a), `rows` output channels of `vol` voxels.
            auto data_pass = [&](const char* what, const auto& var, Kern kern, const std::vector<T>& src_cl,
                                 const std::vector<T>& a, int rows, long vol, const std::vector<double>& ref) {
                std::vector<T> r1((size_t)g.n * rows * vol), r2(r1.size());
                for (auto* out : {&r1, &r2}) {
                    dim3 grid{(unsigned)((g.n * vol + var.bn - 1) / var.bn), (unsigned)((rows + var.bm - 1) / var.bm), 1};
                    emu_launch(grid, dim3{threads, 1, 1}, [&] { kern(src_cl.data(), a.data(), out->data(), GARGS(g)); });
                }
                char label[64];
                std::snprintf(label, sizeof label, "%s cl%s", what, var.bm == 64 ? "" : " m32");
                compare(label, name, r1, r2, ref, tol);
            };
            for (const auto& var : cl_variants) {
                if (fwd_ok) data_pass("forward", var, var.fwd, stage(xt, g.ci, g.in_vol()), weights(0), g.co, g.out_vol(), y_ref);
                if (bwd_ok) data_pass("bwd-data", var, var.bwd, stage(dyt, g.co, g.out_vol()), weights(1), g.ci, g.in_vol(), dx_ref);
            }
        }
        if (g.kd == g.sd && g.kh == g.sh && g.kw == g.sw && g.pd == 0 && g.ph == 0 && g.pw == 0) {
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
        // backward-weight: the partition of mod.rs, then a forced (possibly odd) run length; for bf16 both
        // the FMA kernel and the tensor-core one
        // variant: f32 -> 0 = 64 x 64, 1 = the narrow 32 x 128 `_m32`; bf16 -> 0 = FMA, 1 = tensor cores
        for (int mma = 0; mma < 2; ++mma) {
            each_partition(g, forced_run, [&](long chunks, long run) {
                std::vector<T> w1(wl), w2(wl);
                for (auto* out : {&w1, &w2}) {
                    std::vector<float> partial(wl * chunks, -7.f);
                    const bool narrow = sizeof(T) == 4 && mma;
                    const long bm = narrow ? 32 : 64, bn = narrow ? 128 : 64;
                    dim3 grid{(unsigned)(((long)g.ci * g.taps() + bn - 1) / bn), (unsigned)((g.co + bm - 1) / bm), (unsigned)chunks};
                    emu_launch(grid, dim3{(sizeof(T) == 2 && mma) ? 128u : 256u, 1, 1}, [&] {
                        if constexpr (sizeof(T) == 2) {
                            if (mma) igemm_wgrad_bf16_mma(xt.data(), dyt.data(), partial.data(), run, GARGS(g));
                            else igemm_wgrad_bf16(xt.data(), dyt.data(), partial.data(), run, GARGS(g));
                        } else {
                            if (mma) igemm_wgrad_f32_m32(xt.data(), dyt.data(), partial.data(), run, GARGS(g));
                            else igemm_wgrad_f32(xt.data(), dyt.data(), partial.data(), run, GARGS(g));
                        }
                    });
                    emu_launch(dim3{(unsigned)((wl + 255) / 256), 1, 1}, dim3{256, 1, 1}, [&] {
                        if constexpr (sizeof(T) == 2) wgrad_sum_bf16(partial.data(), out->data(), (long long)wl, (int)chunks);
                        else wgrad_sum_f32(partial.data(), out->data(), (long long)wl, (int)chunks);
                    });
                }
                char label[64];
                std::snprintf(label, sizeof label, "bwd-weight%s/%ld", mma ? (sizeof(T) == 2 ? " mma" : " m32") : "", chunks);
                compare(label, name, w1, w2, dw_ref, tol);
            });
        }
    }
}

int main() {
    struct C {
        const char* name;
        G g;
        long run;
    };
    const C cases[] = {
        {"k3 s1 p1 1->4 9x10x11", {1, 1, 4, 9, 10, 11, 3, 3, 3, 1, 1, 1, 1, 1, 1}, 37},
        {"k3 s1 p1 3->5 b2 7x6x5", {2, 3, 5, 7, 6, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1}, 16},
        {"k3 s1 p1 33->70 5x6x7", {1, 33, 70, 5, 6, 7, 3, 3, 3, 1, 1, 1, 1, 1, 1}, 50},
        {"k3 s1 p1 70->66 b2 4x5x3", {2, 70, 66, 4, 5, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1}, -1},
        {"k3 s2 p0 16->16 b2 9x10x7", {2, 16, 16, 9, 10, 7, 3, 3, 3, 2, 2, 2, 0, 0, 0}, 7},
        {"k3 s2 p1 3->5 b2 9x8x7", {2, 3, 5, 9, 8, 7, 3, 3, 3, 2, 2, 2, 1, 1, 1}, -1},
        {"k5x3x2 s1x2x3 p2x1x0 2->3", {1, 2, 3, 8, 9, 10, 5, 3, 2, 1, 2, 3, 2, 1, 0}, 33},
        {"k1 33->16 b2 7x6x5", {2, 33, 16, 7, 6, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0}, 100},
        {"k1 3->1 5x6x7", {1, 3, 1, 5, 6, 7, 1, 1, 1, 1, 1, 1, 0, 0, 0}, -1},
        {"k2 s2 p0 3->16 b2 9x7x5", {2, 3, 16, 9, 7, 5, 2, 2, 2, 2, 2, 2, 0, 0, 0}, 16},
        {"k2 s2 p0 16->33 6x8x10", {1, 16, 33, 6, 8, 10, 2, 2, 2, 2, 2, 2, 0, 0, 0}, -1},
        {"k2x1x3 s2x1x3 p0 2->3 b2", {2, 2, 3, 6, 4, 6, 2, 1, 3, 2, 1, 3, 0, 0, 0}, -1},
        {"k3 s1 p1 2->3 b2 12^3", {2, 2, 3, 12, 12, 12, 3, 3, 3, 1, 1, 1, 1, 1, 1}, 160},
        {"k5 s1 p2 2->3 9^3", {1, 2, 3, 9, 9, 9, 5, 5, 5, 1, 1, 1, 2, 2, 2}, -1},
        // channel counts that take the bf16 channels-last kernels (multiples of 8), with one side that does not
        {"k3 s1 p1 16->24 b2 7x6x5", {2, 16, 24, 7, 6, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1}, 45},
        {"k3 s1 p1 8->72 5x6x7", {1, 8, 72, 5, 6, 7, 3, 3, 3, 1, 1, 1, 1, 1, 1}, 64},
        {"k3 s1 p1 40->8 b2 4x5x6", {2, 40, 8, 4, 5, 6, 3, 3, 3, 1, 1, 1, 1, 1, 1}, -1},
        {"k3 s2 p1 32->16 b2 9x8x7", {2, 32, 16, 9, 8, 7, 3, 3, 3, 2, 2, 2, 1, 1, 1}, 33},
        {"k1 64->40 b2 5x4x3", {2, 64, 40, 5, 4, 3, 1, 1, 1, 1, 1, 1, 0, 0, 0}, -1},
        {"k3x1x2 s1 p1x0x1 24->13 6x7x8", {1, 24, 13, 6, 7, 8, 3, 1, 2, 1, 1, 1, 1, 0, 1}, -1},
    };
    for (const auto& c : cases) {
        run_case<float>(c.name, c.g, false, c.run);
        run_case<uint16_t>(c.name, c.g, true, c.run);
    }
    std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "ALL OK", failures);
    return failures ? 1 : 0;
}
