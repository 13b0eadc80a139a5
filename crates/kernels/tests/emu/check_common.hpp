// Shared by direct_emu.cpp and igemm_emu.cpp: the geometry, bf16 conversions, the direct double-precision
// reference (forward, backward-data, backward-weight) and the comparison that counts failures.
#pragma once

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
