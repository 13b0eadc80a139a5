// Host-emulated check of every instance-norm kernel of src/cuda/norm.cu (statistics partials and their
// f64 combine, the forward with the affine part and the fused leaky ReLU, the backward sums and their
// combine, the input gradient; f32 and bf16), launched exactly as src/cuda/norm.rs does (grids, chunk
// counts, argument order and types, buffer sizes; outputs and scratch poisoned with NaN), against an
// independent double-precision instance norm (checked itself by central differences): f32 (and the f32
// statistics / sums of the bf16 path) |err| <= 1e-5 max|ref|, bf16 outputs |err| <= 1e-2 max|ref| on the
// widened input, the bf16 kernels equal to the f32 kernels on the widened input (statistics and sums bit
// for bit, y and dx their round-to-nearest-even; ties, overflow and NaNs checked on chosen values), and
// two runs bit-identical. Prints one line per check; ~25 s on 2 cores.
#define MAGSEG_HOST_EMULATION 1
#include "cuda_emu.hpp"
// block_sum compares threadIdx.x (unsigned) with an int loop bound, always positive there: harmless (a
// g++ -Wall warning on the host), so it is silenced for the included kernel source only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#include "../../src/cuda/norm.cu"
#pragma GCC diagnostic pop

#include "check_common.hpp"

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

// ---------------------------------------------------------------------------------------------------
// The launchers' argument lists (src/cuda/norm.rs) as C function types: cudarc pushes each `.arg(&v)`
// by value, a CudaSlice / CudaView<T> as a device pointer to T, i64 as 8 bytes (long long), i32 as int,
// f32 as float. A kernel whose C signature differs in order or type from what its launcher pushes fails
// to compile here.
using bf = bf16_t;
// stats_typed, norm.rs:129: .arg(&x).arg(&partial).arg(&s_arg /* s as i64 */)
static_assert(std::is_same_v<decltype(&in_stats_partial_f32), void (*)(const float*, float*, long long)>);
static_assert(std::is_same_v<decltype(&in_stats_partial_bf16), void (*)(const bf*, float*, long long)>);
// stats_typed, norm.rs:137: .arg(&partial).arg(&out).arg(&slices as i32).arg(&chunks as i32).arg(&eps: f32)
static_assert(std::is_same_v<decltype(&in_stats_final_f32), void (*)(const float*, float*, int, int, float)>);
// forward, norm.rs:164: x, stats, gamma, beta, out, total as i64, s as i64, c as i32, slope: f32
static_assert(std::is_same_v<decltype(&in_fwd_f32), void (*)(const float*, const float*, const float*, const float*,
                                                             float*, long long, long long, int, float)>);
static_assert(std::is_same_v<decltype(&in_fwd_bf16), void (*)(const bf*, const float*, const float*, const float*, bf*,
                                                              long long, long long, int, float)>);
// grad_sums_typed, norm.rs:211: x, dy, stats, gb, partial, s as i64, c as i32, slope: f32
static_assert(std::is_same_v<decltype(&in_grad_partial_f32), void (*)(const float*, const float*, const float*,
                                                                      const float*, float*, long long, int, float)>);
static_assert(std::is_same_v<decltype(&in_grad_partial_bf16),
                             void (*)(const bf*, const bf*, const float*, const float*, float*, long long, int, float)>);
// grad_sums_typed, norm.rs:220: partial, out, slices as i32, chunks as i32
static_assert(std::is_same_v<decltype(&in_grad_final_f32), void (*)(const float*, float*, int, int)>);
// grad_input, norm.rs:248-249: x, dy, gb, stats, sums, out, total as i64, s as i64, c as i32, slope: f32
static_assert(std::is_same_v<decltype(&in_grad_input_f32), void (*)(const float*, const float*, const float*, const float*,
                                                                    const float*, float*, long long, long long, int, float)>);
static_assert(std::is_same_v<decltype(&in_grad_input_bf16), void (*)(const bf*, const bf*, const float*, const float*,
                                                                     const float*, bf*, long long, long long, int, float)>);

// The constants of src/cuda/norm.rs (IN_THREADS, IN_CHUNK, FINAL_THREADS) and src/cuda/mod.rs (BLOCK).
constexpr unsigned RS_IN_THREADS = 256, RS_FINAL_THREADS = 128, RS_BLOCK = 256;
constexpr size_t RS_IN_CHUNK = 16384;
static_assert(RS_IN_THREADS == IN_THREADS && RS_IN_CHUNK == IN_CHUNK, "norm.rs and norm.cu disagree on the partition");

struct Cfg {
    dim3 grid, block;
};

// norm.rs partial_grid: one block of IN_THREADS per (slice, chunk); chunks = max(ceil(s / IN_CHUNK), 1).
static Cfg partial_grid(size_t slices, size_t s, size_t& chunks) {
    chunks = std::max<size_t>((s + RS_IN_CHUNK - 1) / RS_IN_CHUNK, 1);
    if (slices < 1 || slices > 0xffffffffu || chunks > 65535) {
        std::printf("FAIL launch: %zu slices of %zu values rejected by partial_grid\n", slices, s);
        std::exit(1);
    }
    return {dim3{(unsigned)slices, (unsigned)chunks, 1}, dim3{RS_IN_THREADS, 1, 1}};
}

// norm.rs per_slice: one thread per slice, FINAL_THREADS per block, at least one block.
static Cfg per_slice(size_t slices) {
    const unsigned blocks = (unsigned)std::max<size_t>((slices + RS_FINAL_THREADS - 1) / RS_FINAL_THREADS, 1);
    return {dim3{blocks, 1, 1}, dim3{RS_FINAL_THREADS, 1, 1}};
}

// mod.rs elementwise_config: one thread per element, BLOCK per block, at least one block.
static Cfg elementwise_config(size_t total) {
    const size_t blocks = (total + RS_BLOCK - 1) / RS_BLOCK;
    return {dim3{(unsigned)std::max<size_t>(blocks, 1), 1, 1}, dim3{RS_BLOCK, 1, 1}};
}

// ---------------------------------------------------------------------------------------------------
// One forward + backward pass of the custom ops as src/norm.rs runs them on a CUDA device:
// InstanceStats (norm.rs stats) → InstanceNorm (forward) → GradSums (grad_sums) → GradInput (grad_input),
// the backward ones given the forward's statistics, gb = stack([gamma, beta]) as (2, c) and slope
// (1 when no activation: norm.rs `slope.map_or(1.0, ..)`). Without gamma/beta the op passes ones/zeros.
template <class T>
struct Pass {
    std::vector<float> stats, sums;
    std::vector<T> y, dx;
};

template <class T>
static T poison() {
    if constexpr (std::is_same_v<T, float>) return std::numeric_limits<float>::quiet_NaN(); else return (T)0x7fc1;
}

template <class T>
static Pass<T> run_pass(const std::vector<T>& x, const std::vector<T>& dy, const std::vector<float>& gamma,
                        const std::vector<float>& beta, size_t n, size_t c, size_t s, float eps, float slope) {
    constexpr bool F32 = std::is_same_v<T, float>;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const size_t slices = n * c, total = n * c * s;
    Pass<T> o;

    {  // norm.rs stats → stats_typed
        size_t chunks;
        const Cfg cfg = partial_grid(slices, s, chunks);
        std::vector<float> partial(slices * chunks * 3, nan);  // dev.alloc::<f32>(slices * chunks * 3)
        o.stats.assign(2 * slices, nan);                        // dev.alloc::<f32>(2 * slices)
        const long long s_arg = (long long)s;                   // s as i64
        emu_launch(cfg.grid, cfg.block, [&] {
            if constexpr (F32) in_stats_partial_f32(x.data(), partial.data(), s_arg);
            else in_stats_partial_bf16(x.data(), partial.data(), s_arg);
        });
        const int slices_arg = (int)slices, chunks_arg = (int)chunks;  // slices as i32, chunks as i32
        const Cfg fin = per_slice(slices);
        emu_launch(fin.grid, fin.block,
                   [&] { in_stats_final_f32(partial.data(), o.stats.data(), slices_arg, chunks_arg, eps); });
    }
    {  // norm.rs forward
        const long long t_arg = (long long)total, s_arg = (long long)s;  // total as i64, s as i64
        const int c_arg = (int)c;                                        // c as i32
        o.y.assign(total, poison<T>());                                  // alloc_like(dev, xslice, total)
        const Cfg cfg = elementwise_config(total);
        emu_launch(cfg.grid, cfg.block, [&] {
            if constexpr (F32)
                in_fwd_f32(x.data(), o.stats.data(), gamma.data(), beta.data(), o.y.data(), t_arg, s_arg, c_arg, slope);
            else in_fwd_bf16(x.data(), o.stats.data(), gamma.data(), beta.data(), o.y.data(), t_arg, s_arg, c_arg, slope);
        });
    }
    // InstanceNorm::bwd: affine = Tensor::stack(&[gamma, beta], 0), (2, c).
    std::vector<float> gb(gamma);
    gb.insert(gb.end(), beta.begin(), beta.end());
    {  // norm.rs grad_sums → grad_sums_typed
        const int c_arg = (int)c;
        size_t chunks;
        const Cfg cfg = partial_grid(slices, s, chunks);
        std::vector<float> partial(slices * chunks * 2, nan);  // dev.alloc::<f32>(slices * chunks * 2)
        o.sums.assign(2 * slices, nan);                         // dev.alloc::<f32>(2 * slices)
        const long long s_arg = (long long)s;
        emu_launch(cfg.grid, cfg.block, [&] {
            if constexpr (F32)
                in_grad_partial_f32(x.data(), dy.data(), o.stats.data(), gb.data(), partial.data(), s_arg, c_arg, slope);
            else in_grad_partial_bf16(x.data(), dy.data(), o.stats.data(), gb.data(), partial.data(), s_arg, c_arg, slope);
        });
        const int slices_arg = (int)slices, chunks_arg = (int)chunks;
        const Cfg fin = per_slice(slices);
        emu_launch(fin.grid, fin.block, [&] { in_grad_final_f32(partial.data(), o.sums.data(), slices_arg, chunks_arg); });
    }
    {  // norm.rs grad_input
        const long long t_arg = (long long)total, s_arg = (long long)s;
        const int c_arg = (int)c;
        o.dx.assign(total, poison<T>());
        const Cfg cfg = elementwise_config(total);
        emu_launch(cfg.grid, cfg.block, [&] {
            if constexpr (F32)
                in_grad_input_f32(x.data(), dy.data(), gb.data(), o.stats.data(), o.sums.data(), o.dx.data(), t_arg, s_arg,
                                  c_arg, slope);
            else in_grad_input_bf16(x.data(), dy.data(), gb.data(), o.stats.data(), o.sums.data(), o.dx.data(), t_arg, s_arg,
                                    c_arg, slope);
        });
    }
    return o;
}

// ---------------------------------------------------------------------------------------------------
// The reference, in double from the (widened) inputs. Per (n, c) slice i (channel ch = i % c) of s
// values: mean, biased var, sd = sqrt(var + eps), xhat = (x - mean)/sd, z = xhat*gamma + beta,
// y = act(z) = z > 0 ? z : slope*z. Backward of L with dL/dy = dy: dz = dy*act'(z) with act'(z) = 1 for
// z > 0 and slope otherwise (PyTorch's convention at 0); dbeta = Σ dz, dgamma = Σ dz*xhat, and with
// dxhat = gamma*dz, ∂xhat_i/∂x_j = (δij - 1/s)/sd - xhat_i*xhat_j/(s*sd) (as ∂sd/∂x_j = (x_j - mean)/(s*sd)):
// dx_j = gamma/sd * (dz_j - Σdz/s - xhat_j*Σ(dz*xhat)/s).
struct Ref {
    std::vector<double> mean, rstd, y, sa, sb, dgamma, dbeta, dx;
    long zero_hits = 0, near_zero = 0;  // z exactly 0; 0 < |z| < 1e-5 (where f32 and f64 z may disagree in sign)
};

static Ref reference(const std::vector<double>& x, const std::vector<double>& dy, const std::vector<double>& gamma,
                     const std::vector<double>& beta, size_t n, size_t c, size_t s, double eps, double slope) {
    const size_t slices = n * c;
    Ref r;
    r.mean.resize(slices);
    r.rstd.resize(slices);
    r.sa.resize(slices);
    r.sb.resize(slices);
    r.y.resize(x.size());
    r.dx.resize(x.size());
    r.dgamma.assign(c, 0.0);
    r.dbeta.assign(c, 0.0);
    std::vector<double> dz(s), xh(s);
    for (size_t i = 0; i < slices; ++i) {
        const size_t ch = i % c, b0 = i * s;
        double mean = 0, var = 0;
        for (size_t j = 0; j < s; ++j) mean += x[b0 + j];
        mean /= (double)s;
        for (size_t j = 0; j < s; ++j) var += (x[b0 + j] - mean) * (x[b0 + j] - mean);
        var /= (double)s;
        const double sd = std::sqrt(var + eps), g = gamma[ch], b = beta[ch];
        double sa = 0, sb = 0;
        for (size_t j = 0; j < s; ++j) {
            xh[j] = (x[b0 + j] - mean) / sd;
            const double z = xh[j] * g + b;
            r.zero_hits += z == 0.0;
            r.near_zero += z != 0.0 && std::fabs(z) < 1e-5;
            r.y[b0 + j] = z > 0 ? z : slope * z;
            dz[j] = z > 0 ? dy[b0 + j] : slope * dy[b0 + j];
            sa += dz[j];
            sb += dz[j] * xh[j];
        }
        for (size_t j = 0; j < s; ++j) r.dx[b0 + j] = g / sd * (dz[j] - sa / (double)s - xh[j] * sb / (double)s);
        r.mean[i] = mean;
        r.rstd[i] = 1.0 / sd;
        r.sa[i] = sa;
        r.sb[i] = sb;
        r.dbeta[ch] += sa;
        r.dgamma[ch] += sb;
    }
    return r;
}

// ---------------------------------------------------------------------------------------------------
// Reporting (check_common.hpp's compare for tolerance checks; these for exact ones).
static void exact(const char* what, const std::string& name, size_t mismatches, size_t count, const std::string& first) {
    const bool ok = mismatches == 0;
    if (!ok) ++failures;
    std::printf("%s %-14s %-40s %zu of %zu differ%s%s\n", ok ? "ok  " : "FAIL", what, name.c_str(), mismatches, count,
                first.empty() ? "" : ", first: ", first.c_str());
}

// Round to nearest even, written independently of bf16.cuh's put (from the two bf16 neighbours of a
// finite or infinite f; past the largest bf16 the upper neighbour is infinity, at distance as if it were
// 2^128, so that IEEE's overflow threshold, max + half an ulp, rounds to infinity).
static uint16_t rne_bf16(float f) {
    const unsigned u = __float_as_uint(f), lo = u & 0xffff0000u, hi = lo + 0x10000u;
    if ((u & 0x7fffffffu) == 0x7f800000u) return (uint16_t)(u >> 16);
    const double hv = (hi & 0x7fffffffu) == 0x7f800000u ? std::copysign(std::ldexp(1.0, 128), (double)f)
                                                         : (double)__uint_as_float(hi);
    const double dl = std::fabs((double)f - (double)__uint_as_float(lo)), dh = std::fabs(hv - (double)f);
    if (dl < dh) return (uint16_t)(lo >> 16);
    if (dh < dl) return (uint16_t)(hi >> 16);
    return (uint16_t)(((lo >> 16) & 1u) ? hi >> 16 : lo >> 16);
}

static std::vector<float> column(const std::vector<float>& v, int k) {
    std::vector<float> o(v.size() / 2);
    for (size_t i = 0; i < o.size(); ++i) o[i] = v[2 * i + k];
    return o;
}

// dgamma / dbeta as InstanceNorm::bwd forms them: column 1 / 0 of the (n·c, 2) sums reshaped to (n, c),
// summed over n (candle's f32 sum).
static std::vector<float> per_channel(const std::vector<float>& sums, size_t n, size_t c, int col) {
    std::vector<float> o(c, 0.f);
    for (size_t b = 0; b < n; ++b)
        for (size_t ch = 0; ch < c; ++ch) o[ch] += sums[2 * (b * c + ch) + col];
    return o;
}

// ---------------------------------------------------------------------------------------------------
enum class Data { Offset, Small, Dyadic };

struct Case {
    const char* name;
    size_t n, c, d, h, w;
    bool affine;
    float slope;  // 1: plain instance_norm
    float eps;
    Data data;
};

template <class T>
static void run_case(const Case& k, unsigned seed) {
    constexpr bool BF16 = !std::is_same_v<T, float>;
    const size_t n = k.n, c = k.c, s = k.d * k.h * k.w, slices = n * c, total = slices * s;
    std::string name = std::string(BF16 ? "bf16 " : "f32 ") + k.name + (k.affine ? " affine" : "");
    if (k.slope != 1.f) {
        char b[32];
        std::snprintf(b, sizeof b, " slope %g", k.slope);
        name += b;
    }
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    std::vector<float> xf(total), dyf(total), gamma(c, 1.f), beta(c, 0.f);
    switch (k.data) {
        case Data::Offset:  // as cuda_conv.rs: an offset larger than the spread
            for (auto& v : xf) v = 2.f * u(rng) + 5.f;
            break;
        case Data::Small:  // small spread, so that eps is a large part of var + eps
            for (auto& v : xf) v = 0.1f * u(rng) + 0.5f;
            break;
        case Data::Dyadic:  // pairs m ± j/64 (m = 0.75): every f32 sum is exact, the mean is m exactly,
                            // and the pairs with j = 0 sit exactly on z = 0 when beta = 0
            for (size_t i = 0; i < total; i += 2) {
                const float d = (float)((int)(rng() % 81) - 40) / 64.f;
                xf[i] = 0.75f + d;
                xf[i + 1] = 0.75f - d;
            }
            break;
    }
    for (auto& v : dyf) v = u(rng);
    if (k.affine) {
        for (auto& v : gamma) v = 0.5f * u(rng) + 1.f;
        for (auto& v : beta) v = k.data == Data::Dyadic ? 0.f : u(rng);
        if (k.data == Data::Dyadic && c > 1) gamma[1] = -gamma[1];  // a negative gamma: z = -0 there
    }
    std::vector<T> x(total), dy(total);
    for (size_t i = 0; i < total; ++i) {
        if constexpr (BF16) {
            x[i] = to_bf16(xf[i]);
            dy[i] = to_bf16(dyf[i]);
        } else {
            x[i] = xf[i];
            dy[i] = dyf[i];
        }
    }
    // The reference on the (widened) inputs the kernels see.
    std::vector<double> xd(total), dyd(total);
    for (size_t i = 0; i < total; ++i) {
        xd[i] = as_f(x[i]);
        dyd[i] = as_f(dy[i]);
    }
    const Ref r = reference(xd, dyd, std::vector<double>(gamma.begin(), gamma.end()),
                            std::vector<double>(beta.begin(), beta.end()), n, c, s, (double)k.eps, (double)k.slope);
    char info[96];
    size_t chunks;
    partial_grid(slices, s, chunks);
    std::snprintf(info, sizeof info, " [%zux%zu, %zu chunk%s]", slices, s, chunks, chunks > 1 ? "s" : "");
    name += info;
    if (r.zero_hits) name += " z=0 x" + std::to_string(r.zero_hits);
    if (r.near_zero)
        std::printf("note: %ld reference z within 1e-5 of 0 in %s: a sign disagreement there is not a kernel bug\n",
                    r.near_zero, name.c_str());

    const Pass<T> p1 = run_pass(x, dy, gamma, beta, n, c, s, k.eps, k.slope);
    const Pass<T> p2 = run_pass(x, dy, gamma, beta, n, c, s, k.eps, k.slope);

    const double tol = BF16 ? 1e-2 : 1e-5;  // bf16-valued outputs; f32-valued ones are held to 1e-5
    compare("stats mean", name.c_str(), column(p1.stats, 0), column(p2.stats, 0), r.mean, 1e-5);
    compare("stats rstd", name.c_str(), column(p1.stats, 1), column(p2.stats, 1), r.rstd, 1e-5);
    compare("forward y", name.c_str(), p1.y, p2.y, r.y, tol);
    compare("sum dz", name.c_str(), column(p1.sums, 0), column(p2.sums, 0), r.sa, 1e-5);
    compare("sum dz*xhat", name.c_str(), column(p1.sums, 1), column(p2.sums, 1), r.sb, 1e-5);
    if (k.affine) {
        compare("dgamma", name.c_str(), per_channel(p1.sums, n, c, 1), per_channel(p2.sums, n, c, 1), r.dgamma, 1e-5);
        compare("dbeta", name.c_str(), per_channel(p1.sums, n, c, 0), per_channel(p2.sums, n, c, 0), r.dbeta, 1e-5);
    }
    compare("grad input dx", name.c_str(), p1.dx, p2.dx, r.dx, tol);

    if constexpr (BF16) {
        // norm.cu's claim: the bf16 kernels give the f32 kernels' results on the widened input, rounded
        // to nearest even once (y, dx); the f32 statistics and sums are the same bits.
        std::vector<float> xw(total), dyw(total);
        for (size_t i = 0; i < total; ++i) {
            xw[i] = from_bf16(x[i]);
            dyw[i] = from_bf16(dy[i]);
        }
        const Pass<float> pf = run_pass(xw, dyw, gamma, beta, n, c, s, k.eps, k.slope);
        auto same_f32 = [&](const char* what, const std::vector<float>& a, const std::vector<float>& b) {
            size_t bad = 0;
            std::string first;
            for (size_t i = 0; i < a.size(); ++i)
                if (__float_as_uint(a[i]) != __float_as_uint(b[i]) && !bad++) {
                    char t[96];
                    std::snprintf(t, sizeof t, "[%zu] bf16 path %.9g, f32 kernel %.9g", i, a[i], b[i]);
                    first = t;
                }
            exact(what, name, bad, a.size(), first);
        };
        auto rounded = [&](const char* what, const std::vector<uint16_t>& a, const std::vector<float>& f) {
            size_t bad = 0;
            std::string first;
            for (size_t i = 0; i < a.size(); ++i)
                if (a[i] != rne_bf16(f[i]) && !bad++) {
                    char t[128];
                    std::snprintf(t, sizeof t, "[%zu] bf16 0x%04x, f32 kernel %.9g rounds to 0x%04x", i, a[i], f[i],
                                  rne_bf16(f[i]));
                    first = t;
                }
            exact(what, name, bad, a.size(), first);
        };
        same_f32("=f32 stats", p1.stats, pf.stats);
        rounded("=rne(f32) y", p1.y, pf.y);
        same_f32("=f32 sums", p1.sums, pf.sums);
        rounded("=rne(f32) dx", p1.dx, pf.dx);
    }
}

// ---------------------------------------------------------------------------------------------------
// The reference's own derivatives against central differences of L = Σ dy*y (double, on data kept away
// from the kink at z = 0), so that the backward reference is not only a formula copied twice.
static void reference_selfcheck() {
    const size_t n = 2, c = 2, s = 7, total = n * c * s;
    const double eps = 1e-2, slope = 0.2, h = 1e-6;
    std::mt19937 rng(7);
    std::uniform_real_distribution<double> u(-1, 1);
    std::vector<double> x(total), dy(total), g(c), b(c);
    for (auto& v : x) v = 2 * u(rng) + 1;
    for (auto& v : dy) v = u(rng);
    for (auto& v : g) v = 0.5 * u(rng) + 1;
    for (auto& v : b) v = 0.3 * u(rng);
    const Ref r = reference(x, dy, g, b, n, c, s, eps, slope);
    auto loss = [&](const std::vector<double>& xx, const std::vector<double>& gg, const std::vector<double>& bb) {
        const Ref q = reference(xx, dy, gg, bb, n, c, s, eps, slope);
        double l = 0;
        for (size_t i = 0; i < total; ++i) l += dy[i] * q.y[i];
        return l;
    };
    double worst = 0, scale = 1e-30, min_z = 1e30;
    for (size_t i = 0; i < total; ++i) {
        const size_t ch = (i / s) % c;
        min_z = std::min(min_z, std::fabs(((x[i] - r.mean[i / s]) * r.rstd[i / s]) * g[ch] + b[ch]));
    }
    auto fd = [&](std::vector<double>& v, size_t i, double analytic, const std::vector<double>& xx,
                  const std::vector<double>& gg, const std::vector<double>& bb) {
        const double keep = v[i];
        v[i] = keep + h;
        const double lp = loss(xx, gg, bb);
        v[i] = keep - h;
        const double lm = loss(xx, gg, bb);
        v[i] = keep;
        worst = std::max(worst, std::fabs((lp - lm) / (2 * h) - analytic));
        scale = std::max(scale, std::fabs(analytic));
    };
    for (size_t i = 0; i < total; ++i) fd(x, i, r.dx[i], x, g, b);
    for (size_t ch = 0; ch < c; ++ch) fd(g, ch, r.dgamma[ch], x, g, b);
    for (size_t ch = 0; ch < c; ++ch) fd(b, ch, r.dbeta[ch], x, g, b);
    worst /= scale;
    const bool ok = worst <= 1e-6 && min_z > 1e-4;
    if (!ok) ++failures;
    std::printf("%s %-14s %-40s rel err %.3e (tol 1e-06), min |z| %.2e\n", ok ? "ok  " : "FAIL", "ref selfcheck",
                "dx dgamma dbeta vs central differences", worst, min_z);
}

// in_fwd_bf16's rounding (bf16.cuh put) on chosen f32 results, exact ties included: launched as norm.rs
// forward does for n = 1, c = K channels of s = 1 value, with x = 1 (bf16), statistics (mean 0, rstd 1)
// written here instead of by the statistics kernels, beta = -0 and gamma the K test values, so that
// z = ((1 - 0)·1)·gamma + (-0) = gamma exactly (signed zeros, subnormals, infinities kept) and y must be
// its round to nearest even; a NaN must stay a quiet NaN of the same sign (its payload is not checked:
// a GPU's arithmetic returns the canonical NaN).
static void rounding_check() {
    std::mt19937 rng(0xB16);
    std::vector<unsigned> pat = {0x00000000u, 0x80000000u, 0x3f808000u, 0x3f818000u, 0xbf808000u, 0xbf818000u,
                                 0x3f807fffu, 0x3f808001u, 0x7f7f0000u, 0x7f7f7fffu, 0x7f7f8000u, 0x7f7fffffu,
                                 0xff7f8000u, 0x7f800000u, 0xff800000u, 0x00008000u, 0x00018000u, 0x00000001u,
                                 0x807fffffu, 0x007f8000u, 0x7fc00000u, 0xffc00000u, 0x7f800001u, 0x7fa00000u,
                                 0x7fffffffu, 0xffffffffu};
    for (int i = 0; i < 2048; ++i) pat.push_back((rng() & 0xffff0000u) | 0x8000u);  // exact ties
    for (int i = 0; i < 2048; ++i) pat.push_back(rng());
    const size_t c = pat.size(), n = 1, s = 1, total = n * c * s;
    std::vector<float> gamma(c), beta(c, -0.f), stats(2 * c);
    for (size_t i = 0; i < c; ++i) {
        gamma[i] = __uint_as_float(pat[i]);
        stats[2 * i] = 0.f;
        stats[2 * i + 1] = 1.f;
    }
    const std::vector<uint16_t> x(total, 0x3f80);  // 1.0
    std::vector<uint16_t> y(total, 0x7fc1);
    const long long t_arg = (long long)total, s_arg = (long long)s;
    const int c_arg = (int)c;
    const float slope = 1.f;
    const Cfg cfg = elementwise_config(total);  // norm.rs forward
    emu_launch(cfg.grid, cfg.block, [&] {
        in_fwd_bf16(x.data(), stats.data(), gamma.data(), beta.data(), y.data(), t_arg, s_arg, c_arg, slope);
    });
    size_t bad = 0;
    std::string first;
    for (size_t i = 0; i < c; ++i) {
        const unsigned u = pat[i];
        bool ok;
        if ((u & 0x7fffffffu) > 0x7f800000u) {
            ok = (y[i] & 0x7f80u) == 0x7f80u && (y[i] & 0x0040u) && (y[i] & 0x8000u) == ((u >> 16) & 0x8000u);
        } else {
            ok = y[i] == rne_bf16(gamma[i]);
        }
        if (!ok && !bad++) {
            char t[96];
            if ((u & 0x7fffffffu) > 0x7f800000u) std::snprintf(t, sizeof t, "NaN 0x%08x -> 0x%04x, not a quiet NaN", u, y[i]);
            else std::snprintf(t, sizeof t, "0x%08x -> 0x%04x, expected 0x%04x", u, y[i], rne_bf16(gamma[i]));
            first = t;
        }
    }
    exact("bf16 rounding", "in_fwd_bf16 y = rne(z), ties/specials", bad, c, first);
}

int main() {
    const auto t0 = std::chrono::steady_clock::now();
    reference_selfcheck();
    rounding_check();
    const Case cases[] = {
        // name, n, c, d, h, w, affine, slope, eps, data
        {"b2 c3 5x6x7", 2, 3, 5, 6, 7, false, 1.f, 1e-5f, Data::Offset},
        {"b2 c3 5x6x7", 2, 3, 5, 6, 7, true, 1.f, 1e-5f, Data::Offset},
        {"b2 c3 5x6x7", 2, 3, 5, 6, 7, false, 0.01f, 1e-5f, Data::Offset},
        {"b2 c3 5x6x7", 2, 3, 5, 6, 7, true, 0.2f, 1e-5f, Data::Offset},
        {"b2 c2 3x4x5 eps 0.1", 2, 2, 3, 4, 5, true, 0.01f, 0.1f, Data::Small},
        {"b3 c50 2x3x4", 3, 50, 2, 3, 4, true, 0.01f, 1e-5f, Data::Offset},  // 150 slices: 2 final blocks
        {"b1 c2 30x30x20", 1, 2, 30, 30, 20, true, 1.f, 1e-5f, Data::Offset},
        {"b1 c2 30x30x20", 1, 2, 30, 30, 20, false, 0.01f, 1e-5f, Data::Offset},
        {"b1 c1 32x32x32", 1, 1, 32, 32, 32, true, 0.01f, 1e-5f, Data::Offset},  // exactly 2 full chunks
        {"b1 c2 40x40x25", 1, 2, 40, 40, 25, true, 0.01f, 1e-5f, Data::Offset},
        {"b1 c2 40x40x25", 1, 2, 40, 40, 25, false, 1.f, 1e-5f, Data::Offset},
        {"b2 c3 5x6x7 dyadic", 2, 3, 5, 6, 7, true, 0.01f, 1e-5f, Data::Dyadic},
        {"b1 c2 30x30x20 dyadic", 1, 2, 30, 30, 20, true, 0.01f, 1e-5f, Data::Dyadic},
        {"b1 c2 30x30x20 dyadic", 1, 2, 30, 30, 20, false, 0.01f, 1e-5f, Data::Dyadic},
    };
    unsigned seed = 0x1457;
    for (const auto& k : cases) {
        run_case<float>(k, ++seed);
        run_case<uint16_t>(k, ++seed);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("(%.1f s)\n", secs);
    std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "ALL OK", failures);
    return failures ? 1 : 0;
}
