// Host-emulated check of the direct reference kernels of src/cuda/conv3d.cu (tests/emu/run.sh), launched
// as src/cuda/mod.rs does (one thread per output / input voxel and group of CH_BLOCK channels; one block
// per channel pair and voxel chunk for backward-weight, then the in-order chunk sum), against a direct
// double-precision reference: |err| <= 1e-4 max|ref|, and two runs bit-identical.
#define MAGSEG_HOST_EMULATION 1
#include "cuda_emu.hpp"
#include "../../src/cuda/conv3d.cu"

#include <cstdint>
#include <cstdio>
#include <random>

struct G {
    int n, ci, co, d, h, w, kd, kh, kw, sd, sh, sw, pd, ph, pw;
    int od() const { return (d + 2 * pd - kd) / sd + 1; }
    int oh() const { return (h + 2 * ph - kh) / sh + 1; }
    int ow() const { return (w + 2 * pw - kw) / sw + 1; }
    long in_vol() const { return (long)d * h * w; }
    long out_vol() const { return (long)od() * oh() * ow(); }
    int taps() const { return kd * kh * kw; }
};
#define GARGS(g) g.n, g.ci, g.co, g.d, g.h, g.w, g.kd, g.kh, g.kw, g.sd, g.sh, g.sw, g.pd, g.ph, g.pw, g.od(), g.oh(), g.ow()

static uint16_t to_bf16(float f) {
    unsigned u = __float_as_uint(f);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float from_bf16(uint16_t h) { return __uint_as_float((unsigned)h << 16); }

// Direct double reference: y (forward), dx (backward-data), dw (backward-weight).
static void reference(const G& g, const std::vector<float>& x, const std::vector<float>& wt, const std::vector<float>& dy,
                      std::vector<double>& y, std::vector<double>& dx, std::vector<double>& dw) {
    y.assign((size_t)g.n * g.co * g.out_vol(), 0.0);
    dx.assign(x.size(), 0.0);
    dw.assign(wt.size(), 0.0);
    for (int b = 0; b < g.n; ++b)
        for (int o = 0; o < g.co; ++o)
            for (int oz = 0; oz < g.od(); ++oz)
                for (int oy = 0; oy < g.oh(); ++oy)
                    for (int ox = 0; ox < g.ow(); ++ox) {
                        const size_t yi = (((size_t)b * g.co + o) * g.od() + oz) * g.oh() * g.ow() + (size_t)oy * g.ow() + ox;
                        for (int c = 0; c < g.ci; ++c)
                            for (int kz = 0; kz < g.kd; ++kz)
                                for (int ky = 0; ky < g.kh; ++ky)
                                    for (int kx = 0; kx < g.kw; ++kx) {
                                        const int iz = oz * g.sd - g.pd + kz, iy = oy * g.sh - g.ph + ky, ix = ox * g.sw - g.pw + kx;
                                        if (iz < 0 || iz >= g.d || iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
                                        const size_t xi = (((size_t)b * g.ci + c) * g.d + iz) * g.h * g.w + (size_t)iy * g.w + ix;
                                        const size_t wi = (((size_t)o * g.ci + c) * g.kd + kz) * g.kh * g.kw + (size_t)ky * g.kw + kx;
                                        y[yi] += (double)x[xi] * wt[wi];
                                        dx[xi] += (double)dy[yi] * wt[wi];
                                        dw[wi] += (double)dy[yi] * x[xi];
                                    }
                    }
}

static int failures = 0;

template <class T>
static float as_f(T v) {
    if constexpr (sizeof(T) == 2) return from_bf16(v); else return v;
}

template <class T>
static void compare(const char* what, const char* name, const std::vector<T>& got, const std::vector<T>& again,
                    const std::vector<double>& ref, double tol) {
    double scale = 1e-30, worst = 0;
    for (double v : ref) scale = std::max(scale, std::fabs(v));
    bool same = std::memcmp(got.data(), again.data(), got.size() * sizeof(T)) == 0;
    bool finite = true;
    for (size_t i = 0; i < ref.size(); ++i) {
        const double gv = as_f(got[i]);
        finite = finite && std::isfinite(gv);
        worst = std::max(worst, std::fabs(gv - ref[i]));
    }
    worst /= scale;
    const bool ok = finite && same && worst <= tol && got.size() == ref.size();
    if (!ok) ++failures;
    std::printf("%s %-14s %-40s rel err %.3e (tol %.0e)%s\n", ok ? "ok  " : "FAIL", what, name, worst, tol,
                same ? "" : " NOT DETERMINISTIC");
}


// wgrad_chunks of src/cuda/mod.rs (direct path).
static int direct_chunks(const G& g) {
    const long pairs = (long)g.ci * g.co, work = (long)g.n * g.out_vol();
    const long by_blocks = (1024 + pairs - 1) / pairs, by_work = std::max(1L, work / (16 * 256));
    return (int)std::min(std::max(std::min(by_blocks, by_work), 1L), 65535L);
}

static void run_case(const char* name, const G& g) {
    std::mt19937 rng(99 + g.ci * 7 + g.co);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    auto rnd = [&](size_t len) {
        std::vector<float> v(len);
        for (auto& e : v) e = u(rng);
        return v;
    };
    const size_t xl = (size_t)g.n * g.ci * g.in_vol(), wl = (size_t)g.co * g.ci * g.taps(), yl = (size_t)g.n * g.co * g.out_vol();
    auto x = rnd(xl), wt = rnd(wl), dy = rnd(yl);
    std::vector<double> y_ref, dx_ref, dw_ref;
    reference(g, x, wt, dy, y_ref, dx_ref, dw_ref);
    std::vector<float> y1(yl), y2(yl);
    for (auto* out : {&y1, &y2}) {
        const long long total = (long long)g.n * ((g.co + 7) / 8) * g.out_vol();
        emu_launch(dim3{(unsigned)((total + 255) / 256), 1, 1}, dim3{256, 1, 1},
                   [&] { conv3d_fwd_f32(x.data(), wt.data(), out->data(), total, GARGS(g)); });
    }
    compare("forward", name, y1, y2, y_ref, 1e-4);
    std::vector<float> d1(xl), d2(xl);
    for (auto* out : {&d1, &d2}) {
        const long long total = (long long)g.n * ((g.ci + 7) / 8) * g.in_vol();
        emu_launch(dim3{(unsigned)((total + 255) / 256), 1, 1}, dim3{256, 1, 1},
                   [&] { conv3d_bwd_data_f32(dy.data(), wt.data(), out->data(), total, GARGS(g)); });
    }
    compare("bwd-data", name, d1, d2, dx_ref, 1e-4);
    const int chunks = direct_chunks(g);
    std::vector<float> w1(wl), w2(wl);
    for (auto* out : {&w1, &w2}) {
        std::vector<float> partial(wl * chunks, -7.f);
        emu_launch(dim3{(unsigned)g.ci, (unsigned)g.co, (unsigned)chunks}, dim3{256, 1, 1},
                   [&] { conv3d_bwd_weight_f32(x.data(), dy.data(), partial.data(), chunks, GARGS(g)); });
        if (chunks == 1) {
            *out = partial;
        } else {
            emu_launch(dim3{(unsigned)((wl + 255) / 256), 1, 1}, dim3{256, 1, 1},
                       [&] { conv3d_sum_chunks_f32(partial.data(), out->data(), (long long)wl, chunks); });
        }
    }
    char label[64];
    std::snprintf(label, sizeof label, "bwd-weight/%d", chunks);
    compare(label, name, w1, w2, dw_ref, 1e-4);
}

int main() {
    struct C {
        const char* name;
        G g;
    };
    const C cases[] = {
        {"k3 s1 p1 1->4 9x10x11", {1, 1, 4, 9, 10, 11, 3, 3, 3, 1, 1, 1, 1, 1, 1}},
        {"k3 s1 p1 3->9 b2 7x6x5", {2, 3, 9, 7, 6, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1}},
        {"k3 s2 p1 3->5 b2 9x8x7", {2, 3, 5, 9, 8, 7, 3, 3, 3, 2, 2, 2, 1, 1, 1}},
        {"k5x3x2 s1x2x3 p2x1x0 2->3", {1, 2, 3, 8, 9, 10, 5, 3, 2, 1, 2, 3, 2, 1, 0}},
        {"k5 s1 p2 2->3 9^3 (125 taps)", {1, 2, 3, 9, 9, 9, 5, 5, 5, 1, 1, 1, 2, 2, 2}},
        {"k1 17->10 b2 5x4x3", {2, 17, 10, 5, 4, 3, 1, 1, 1, 1, 1, 1, 0, 0, 0}},
        {"k2 s2 p0 3->4 b2 9x7x5", {2, 3, 4, 9, 7, 5, 2, 2, 2, 2, 2, 2, 0, 0, 0}},
        {"k3 s1 p1 1->1 b2 20^3", {2, 1, 1, 20, 20, 20, 3, 3, 3, 1, 1, 1, 1, 1, 1}},
    };
    for (const auto& c : cases) run_case(c.name, c.g);
    std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "ALL OK", failures);
    return failures ? 1 : 0;
}
