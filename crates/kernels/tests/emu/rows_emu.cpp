// Host-emulated check of every kernel of src/cuda/rows.cu (layer norm, softmax), src/cuda/activation.cu
// (leaky ReLU, GELU, 2x2x2 max pooling; f32 and bf16) and src/cuda/optim.cu (the fused Adam passes), in
// one program (the three files share no helper names), each launched as its launcher in src/cuda/
// (rows.rs, activation.rs, optim.rs) does: same grid / block, same arguments in the same order and
// types, same buffer sizes. Against scalar C++ transcriptions of the CPU code, bit for bit, where the
// repository claims bit equality (leaky ReLU, max pooling, the Adam moment / parameter updates), and
// against double-precision references of the definitions within the bounds of tests/cuda_conv.rs
// (layer norm, softmax, GELU f32: 1e-5 max|ref|; GELU bf16: 1e-2 max|ref|; sums of squares: 1e-5 |cpu|
// per partial). Every kernel runs twice and must give the same bits. Prints one line per check.
#define MAGSEG_HOST_EMULATION 1
#include "cuda_emu.hpp"
// The block reductions compare `threadIdx.x < w` (unsigned against a positive int: correct, but g++'s
// -Wall warns in C++; nvcc does not), so -Wsign-compare is off for the kernel sources only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#include "../../src/cuda/rows.cu"
#include "../../src/cuda/activation.cu"
#include "../../src/cuda/optim.cu"
#pragma GCC diagnostic pop

#include "check_common.hpp"

#include <climits>
#include <cstdlib>
#include <initializer_list>
#include <string>

// ---------------------------------------------------------------------------------------------------
// The launchers' constants (Rust side), checked against the kernels' macros.
constexpr unsigned RS_BLOCK = 256;                // src/cuda/mod.rs BLOCK
constexpr unsigned RS_ROW_THREADS = 256;          // src/cuda/rows.rs ROW_THREADS
constexpr unsigned RS_SQ_THREADS = 256;           // src/cuda/optim.rs SQ_THREADS
constexpr size_t RS_SQUARE_SUM_CHUNK = 8192;      // src/optim.rs SQUARE_SUM_CHUNK
static_assert(RS_ROW_THREADS == ROW_THREADS, "rows.rs ROW_THREADS != rows.cu ROW_THREADS");
static_assert(RS_SQ_THREADS == SQ_THREADS, "optim.rs SQ_THREADS != optim.cu SQ_THREADS");
static_assert(RS_SQUARE_SUM_CHUNK == SQ_CHUNK, "optim.rs SQUARE_SUM_CHUNK != optim.cu SQ_CHUNK");
static_assert(RS_SQUARE_SUM_CHUNK % RS_SQ_THREADS == 0, "optim.rs debug_assert");

// cudarc's LaunchConfig (shared_mem_bytes is 0 in every launcher here: the kernels use static shared
// memory only).
struct LaunchConfig {
    dim3 grid, block;
};
template <class F>
static void launch(const LaunchConfig& c, F&& f) {
    emu_launch(c.grid, c.block, f);
}

// src/cuda/mod.rs elementwise_config: one thread per element, BLOCK threads per block.
static LaunchConfig elementwise_config(size_t total) {
    const size_t blocks = (total + RS_BLOCK - 1) / RS_BLOCK;
    if (blocks > UINT_MAX) {
        std::fprintf(stderr, "elementwise_config: %zu elements are too many for one launch\n", total);
        std::exit(2);
    }
    return {dim3{(unsigned)std::max<size_t>(blocks, 1), 1, 1}, dim3{RS_BLOCK, 1, 1}};
}

// `dev.alloc` (uninitialised): filled with a NaN pattern so that any element a kernel fails to write
// shows up (non-finite / wrong bits).
static std::vector<float> alloc_f32(size_t n) { return std::vector<float>(n, __uint_as_float(0x7fbadbadu)); }
static std::vector<uint16_t> alloc_bf16(size_t n) { return std::vector<uint16_t>(n, (uint16_t)0x7fbau); }
template <class T>
static std::vector<T> alloc(size_t n) {
    if constexpr (sizeof(T) == 2) return alloc_bf16(n); else return alloc_f32(n);
}

// ---------------------------------------------------------------------------------------------------
// Launchers of src/cuda/rows.rs.
struct RowShape {
    size_t r, h;
    int h32;
};
// rows.rs rows(): h = last dim (at least 1), r = elements / h, h as i32, r must fit u32.
static RowShape rows_of(const std::vector<size_t>& dims) {
    size_t h = dims.empty() ? 1 : dims.back();
    h = std::max<size_t>(h, 1);
    size_t count = 1;
    for (size_t d : dims) count *= d;
    const size_t r = count / h;
    if (h > (size_t)INT_MAX || r > UINT_MAX) std::exit(2);
    return {r, h, (int)h};
}
// rows.rs per_row: one block of ROW_THREADS per row.
static LaunchConfig per_row(size_t r) { return {dim3{(unsigned)std::max<size_t>(r, 1), 1, 1}, dim3{RS_ROW_THREADS, 1, 1}}; }

// rows.rs stats
static std::vector<float> rs_ln_stats(float eps, const std::vector<float>& x, const std::vector<size_t>& dims) {
    const auto [r, h, h32] = rows_of(dims);
    auto out = alloc_f32(2 * r);
    if (r > 0) launch(per_row(r), [&] { ln_stats_f32(x.data(), out.data(), h32, eps); });
    return out;
}
// rows.rs forward
static std::vector<float> rs_ln_forward(const std::vector<float>& x, const std::vector<size_t>& dims,
                                        const std::vector<float>& stats, const std::vector<float>& gamma,
                                        const std::vector<float>& beta) {
    const auto [r, h, h32] = rows_of(dims);
    const size_t n = r * h;
    if (x.size() != n || stats.size() != 2 * r || gamma.size() != h || beta.size() != h) std::exit(2);
    auto out = alloc_f32(n);
    if (n > 0) {
        const long long n_arg = (long long)n;
        launch(elementwise_config(n),
               [&] { ln_fwd_f32(x.data(), stats.data(), gamma.data(), beta.data(), out.data(), n_arg, h32); });
    }
    return out;
}
// rows.rs input_grad
static std::vector<float> rs_ln_input_grad(const std::vector<float>& x, const std::vector<size_t>& dims,
                                           const std::vector<float>& stats, const std::vector<float>& gamma,
                                           const std::vector<float>& dy) {
    const auto [r, h, h32] = rows_of(dims);
    const size_t n = r * h;
    if (x.size() != n || stats.size() != 2 * r || gamma.size() != h || dy.size() != n) std::exit(2);
    auto out = alloc_f32(n);
    if (n > 0) launch(per_row(r), [&] { ln_grad_input_f32(x.data(), stats.data(), gamma.data(), dy.data(), out.data(), h32); });
    return out;
}
// rows.rs param_grads (output zero-initialised: alloc_zeros)
static std::vector<float> rs_ln_param_grads(const std::vector<float>& x, const std::vector<size_t>& dims,
                                            const std::vector<float>& stats, const std::vector<float>& dy) {
    const auto [r, h, h32] = rows_of(dims);
    const size_t n = r * h;
    if (x.size() != n || stats.size() != 2 * r || dy.size() != n) std::exit(2);
    std::vector<float> out(2 * h, 0.f);
    if (n > 0) {
        const long long r_arg = (long long)r;
        launch(elementwise_config(h), [&] { ln_grad_params_f32(x.data(), stats.data(), dy.data(), out.data(), r_arg, h32); });
    }
    return out;
}
// rows.rs softmax
static std::vector<float> rs_softmax(const std::vector<float>& x, const std::vector<size_t>& dims) {
    const auto [r, h, h32] = rows_of(dims);
    if (x.size() != r * h) std::exit(2);
    auto out = alloc_f32(r * h);
    if (r * h > 0) launch(per_row(r), [&] { softmax_fwd_f32(x.data(), out.data(), h32); });
    return out;
}
// rows.rs softmax_grad
static std::vector<float> rs_softmax_grad(const std::vector<float>& y, const std::vector<float>& dy,
                                          const std::vector<size_t>& dims) {
    const auto [r, h, h32] = rows_of(dims);
    if (y.size() != r * h || dy.size() != r * h) std::exit(2);
    auto out = alloc_f32(r * h);
    if (r * h > 0) launch(per_row(r), [&] { softmax_bwd_f32(y.data(), dy.data(), out.data(), h32); });
    return out;
}

// ---------------------------------------------------------------------------------------------------
// Launchers of src/cuda/activation.rs.

// activation.rs Act / Act::kernel(): the name stem and the kernels' `float param`.
struct Act {
    bool leaky;
    float slope;
    std::pair<std::string, float> kernel() const { return leaky ? std::pair<std::string, float>{"leaky_relu", slope} : std::pair<std::string, float>{"gelu_erf", 0.0f}; }
};

// get_or_load_custom_func by name: the extern "C" kernels of activation.cu.
template <class T>
using ActFwd = void (*)(const T*, T*, long long, float);
template <class T>
using ActBwd = void (*)(const T*, const T*, T*, long long, float);
// The kernel a name resolves to: `F` is ActFwd<T> or ActBwd<T>, `table` the (name, kernel) pairs of
// that direction and dtype.
template <class F>
static F act_func(const std::string& name, std::initializer_list<std::pair<const char*, F>> table) {
    for (const auto& [n, f] : table)
        if (name == n) return f;
    std::fprintf(stderr, "no kernel named %s\n", name.c_str());
    std::exit(2);
}
template <class T>
static ActFwd<T> act_fwd_func(const std::string& name) {
    if constexpr (sizeof(T) == 4)
        return act_func<ActFwd<T>>(name, {{"leaky_relu_fwd_f32", leaky_relu_fwd_f32}, {"gelu_erf_fwd_f32", gelu_erf_fwd_f32}});
    else
        return act_func<ActFwd<T>>(name, {{"leaky_relu_fwd_bf16", leaky_relu_fwd_bf16}, {"gelu_erf_fwd_bf16", gelu_erf_fwd_bf16}});
}
template <class T>
static ActBwd<T> act_bwd_func(const std::string& name) {
    if constexpr (sizeof(T) == 4)
        return act_func<ActBwd<T>>(name, {{"leaky_relu_bwd_f32", leaky_relu_bwd_f32}, {"gelu_erf_bwd_f32", gelu_erf_bwd_f32}});
    else
        return act_func<ActBwd<T>>(name, {{"leaky_relu_bwd_bf16", leaky_relu_bwd_bf16}, {"gelu_erf_bwd_bf16", gelu_erf_bwd_bf16}});
}
template <class T>
static const char* dt_name() {
    return sizeof(T) == 2 ? "bf16" : "f32";
}

// activation.rs forward + launch(): n = elements of the source; args (x, out, n as i64, param).
template <class T>
static std::vector<T> rs_act_forward(Act act, const std::vector<T>& x) {
    const auto [stem, param] = act.kernel();
    const auto f = act_fwd_func<T>(stem + "_fwd_" + dt_name<T>());
    const size_t n = x.size();
    auto out = alloc<T>(n);
    if (n == 0) return out;
    const long long n_arg = (long long)n;
    launch(elementwise_config(n), [&] { f(x.data(), out.data(), n_arg, param); });
    return out;
}
// activation.rs backward + launch(): args (x, dy, out, n as i64, param).
template <class T>
static std::vector<T> rs_act_backward(Act act, const std::vector<T>& x, const std::vector<T>& dy) {
    const auto [stem, param] = act.kernel();
    const auto f = act_bwd_func<T>(stem + "_bwd_" + dt_name<T>());
    const size_t n = x.size();
    if (dy.size() != n) std::exit(2);
    auto out = alloc<T>(n);
    if (n == 0) return out;
    const long long n_arg = (long long)n;
    launch(elementwise_config(n), [&] { f(x.data(), dy.data(), out.data(), n_arg, param); });
    return out;
}

// activation.rs max_pool2 (with pool.rs out_dims: [planes, d2, h2, w2] of an (N, C, 2d2, 2h2, 2w2) input):
// dy null: forward (n outputs), else backward (8n outputs); args (x, [dy,] out, n as i64, d2, h2, w2 as i32).
template <class T>
static std::vector<T> rs_max_pool2(const std::vector<T>* dy, const std::vector<T>& x, const size_t od[4]) {
    const size_t n = od[0] * od[1] * od[2] * od[3];
    const int d2 = (int)od[1], h2 = (int)od[2], w2 = (int)od[3];
    if (x.size() != 8 * n) std::exit(2);
    const size_t out_len = dy ? x.size() : n;
    auto out = alloc<T>(out_len);
    if (n == 0) return out;
    const long long n_arg = (long long)n;
    if (dy) {
        if (dy->size() != n) std::exit(2);
        if constexpr (sizeof(T) == 4)
            launch(elementwise_config(n), [&] { max_pool2_bwd_f32(x.data(), dy->data(), out.data(), n_arg, d2, h2, w2); });
        else
            launch(elementwise_config(n), [&] { max_pool2_bwd_bf16(x.data(), dy->data(), out.data(), n_arg, d2, h2, w2); });
    } else {
        if constexpr (sizeof(T) == 4)
            launch(elementwise_config(n), [&] { max_pool2_fwd_f32(x.data(), out.data(), n_arg, d2, h2, w2); });
        else
            launch(elementwise_config(n), [&] { max_pool2_fwd_bf16(x.data(), out.data(), n_arg, d2, h2, w2); });
    }
    return out;
}

// ---------------------------------------------------------------------------------------------------
// Launchers of src/cuda/optim.rs.

// optim.rs AdamStep (src/optim.rs), clip as the kernels take it (clip_arg: 0 for none).
struct AdamStep {
    float clip;  // 0: none
    float grad_scale, l2;
    float b1[2], b2[2];
    float decay, inv_sqrt_bc2, eps, step_size;
};

// optim.rs square_sums: parts = ceil(n / SQUARE_SUM_CHUNK) blocks of SQ_THREADS, writing
// partials[offset .. offset + parts); args (g, partials view, n as i64, clip).
static void rs_square_sums(float clip, size_t offset, std::vector<float>& partials, const std::vector<float>& g) {
    const size_t n = g.size();
    const size_t parts = (n + RS_SQUARE_SUM_CHUNK - 1) / RS_SQUARE_SUM_CHUNK;  // square_sum_count
    if (offset + parts > partials.size()) std::exit(2);
    if (n == 0) return;
    if (parts > UINT_MAX) std::exit(2);
    const long long n_arg = (long long)n;
    float* out = partials.data() + offset;
    const LaunchConfig cfg{dim3{(unsigned)parts, 1, 1}, dim3{RS_SQ_THREADS, 1, 1}};
    launch(cfg, [&] { square_sums_f32(g.data(), out, n_arg, clip); });
}
// optim.rs adam_moments: rows = len(state) / n (2 or 3); args (g, p, state, n as i64, rows as i32, clip,
// grad_scale, l2, b1[0], b1[1], b2[0], b2[1]).
static void rs_adam_moments(const AdamStep& s, float clip, std::vector<float>& state, const std::vector<float>& g,
                            const std::vector<float>& p) {
    const size_t n = g.size(), pn = p.size(), slen = state.size();
    const size_t rows = slen / std::max<size_t>(n, 1);
    if (pn != n || !(rows == 2 || rows == 3) || rows * n != slen) std::exit(2);
    if (n == 0) return;
    const long long n_arg = (long long)n;
    const int rows_arg = (int)rows;
    launch(elementwise_config(n), [&] {
        adam_moments_f32(g.data(), p.data(), state.data(), n_arg, rows_arg, clip, s.grad_scale, s.l2, s.b1[0], s.b1[1],
                         s.b2[0], s.b2[1]);
    });
}
// optim.rs adam_apply: args (p, state, n as i64, rows as i32, decay, inv_sqrt_bc2, eps, step_size).
static void rs_adam_apply(const AdamStep& s, std::vector<float>& p, const std::vector<float>& state) {
    const size_t n = p.size(), slen = state.size();
    const size_t rows = slen / std::max<size_t>(n, 1);
    if (!(rows == 2 || rows == 3) || rows * n != slen) std::exit(2);
    if (n == 0) return;
    const long long n_arg = (long long)n;
    const int rows_arg = (int)rows;
    launch(elementwise_config(n), [&] {
        adam_apply_f32(p.data(), state.data(), n_arg, rows_arg, s.decay, s.inv_sqrt_bc2, s.eps, s.step_size);
    });
}

// ---------------------------------------------------------------------------------------------------
// Transcriptions of the CPU code (same f32 operations in the same order; -ffp-contract=off, as Rust
// never fuses).

// half 2.7.1 src/bfloat/convert.rs bf16_to_f32 (candle's CPU to_dtype BF16 -> F32): NaN gets its
// quiet bit set.
static float half_bf16_to_f32(uint16_t i) {
    if ((i & 0x7fffu) > 0x7f80u) return __uint_as_float(((unsigned)i | 0x0040u) << 16);
    return __uint_as_float((unsigned)i << 16);
}
// half 2.7.1 f32_to_bf16 (candle's CPU to_dtype F32 -> BF16): round to nearest even, NaN quieted.
static uint16_t half_f32_to_bf16(float v) {
    const unsigned x = __float_as_uint(v);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x0040u);
    const unsigned round_bit = 0x8000u;
    if ((x & round_bit) != 0 && (x & (3 * round_bit - 1)) != 0) return (uint16_t)((x >> 16) + 1);
    return (uint16_t)(x >> 16);
}

// src/activation.rs Act::value / Act::grad, Leaky arm.
static float cpu_leaky_value(float x, float slope) { return x > 0.0f ? x : x * slope; }
static float cpu_leaky_grad(float x, float dy, float slope) { return x > 0.0f ? dy : dy * slope; }

// src/activation.rs Activation::cpu_fwd / ActivationGrad::cpu_fwd (via check.rs cpu_f32_or_bf16) for
// leaky ReLU: f32 directly; bf16 widened with half, computed in f32, rounded with half.
template <class T>
static std::vector<T> cpu_leaky_fwd(const std::vector<T>& x, float slope) {
    std::vector<T> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        if constexpr (sizeof(T) == 4) y[i] = cpu_leaky_value(x[i], slope);
        else y[i] = half_f32_to_bf16(cpu_leaky_value(half_bf16_to_f32(x[i]), slope));
    }
    return y;
}
template <class T>
static std::vector<T> cpu_leaky_bwd(const std::vector<T>& x, const std::vector<T>& dy, float slope) {
    std::vector<T> dx(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        if constexpr (sizeof(T) == 4) dx[i] = cpu_leaky_grad(x[i], dy[i], slope);
        else dx[i] = half_f32_to_bf16(cpu_leaky_grad(half_bf16_to_f32(x[i]), half_bf16_to_f32(dy[i]), slope));
    }
    return dx;
}

// src/pool.rs argmax (usize arithmetic; `x[j] > x[best] || x[j].is_nan()`).
static size_t cpu_pool_argmax(const std::vector<float>& x, const size_t od[4], size_t i) {
    const size_t d2 = od[1], h2 = od[2], w2 = od[3];
    size_t ow = i % w2, t = i / w2;
    size_t oh = t % h2;
    t = t / h2;
    size_t odd = t % d2, p = t / d2;
    const size_t hh = 2 * h2, ww = 2 * w2;
    const size_t base = ((p * 2 * d2 + 2 * odd) * hh + 2 * oh) * ww + 2 * ow;
    size_t best = base;
    for (size_t k = 1; k < 8; ++k) {
        const size_t j = base + (k >> 2) * hh * ww + ((k >> 1) & 1) * ww + (k & 1);
        if (x[j] > x[best] || std::isnan(x[j])) best = j;
    }
    return best;
}
template <class T>
static std::vector<float> widen_cpu(const std::vector<T>& v) {
    std::vector<float> f(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
        if constexpr (sizeof(T) == 4) f[i] = v[i]; else f[i] = half_bf16_to_f32(v[i]);
    }
    return f;
}
template <class T>
static std::vector<T> narrow_cpu(const std::vector<float>& f) {
    std::vector<T> v(f.size());
    for (size_t i = 0; i < f.size(); ++i) {
        if constexpr (sizeof(T) == 4) v[i] = f[i]; else v[i] = half_f32_to_bf16(f[i]);
    }
    return v;
}
// src/pool.rs MaxPool2::cpu_fwd (bf16: widened with half, output narrowed with half).
template <class T>
static std::vector<T> cpu_pool_fwd(const std::vector<T>& xt, const size_t od[4]) {
    const auto x = widen_cpu(xt);
    const size_t n = od[0] * od[1] * od[2] * od[3];
    std::vector<float> y(n);
    for (size_t i = 0; i < n; ++i) y[i] = x[cpu_pool_argmax(x, od, i)];
    return narrow_cpu<T>(y);
}
// src/pool.rs MaxPool2Grad::cpu_fwd (through check.rs cpu_f32_or_bf16).
template <class T>
static std::vector<T> cpu_pool_bwd(const std::vector<T>& xt, const std::vector<T>& dyt, const size_t od[4]) {
    const auto x = widen_cpu(xt), dy = widen_cpu(dyt);
    std::vector<float> dx(x.size(), 0.0f);
    for (size_t i = 0; i < dy.size(); ++i) dx[cpu_pool_argmax(x, od, i)] = dy[i];
    return narrow_cpu<T>(dx);
}

// src/optim.rs clamp_grad (Rust's f32::clamp: `if x < min { x = min } if x > max { x = max }`).
static float cpu_clamp_grad(float v, float clip) {
    if (clip > 0.0f && !std::isnan(v)) {
        float x = v;
        if (x < -clip) x = -clip;
        if (x > clip) x = clip;
        return x;
    }
    return v;
}
// src/optim.rs SquareSums::cpu_fwd: per chunk, f64 sum in order of f64(clamp(v))^2, rounded to f32.
static std::vector<float> cpu_square_sums(const std::vector<float>& g, float clip) {
    const size_t parts = (g.size() + RS_SQUARE_SUM_CHUNK - 1) / RS_SQUARE_SUM_CHUNK;
    std::vector<float> out(parts);
    for (size_t b = 0; b < parts; ++b) {
        double s = 0.0;
        for (size_t i = b * RS_SQUARE_SUM_CHUNK; i < std::min(g.size(), (b + 1) * RS_SQUARE_SUM_CHUNK); ++i) {
            const double v = (double)cpu_clamp_grad(g[i], clip);
            s += v * v;
        }
        out[b] = (float)s;
    }
    return out;
}
// src/optim.rs moments_run (AdamMoments::cpu_fwd): state rows m, v[, vmax].
static void cpu_adam_moments(const AdamStep& s, float clip, std::vector<float>& st, const std::vector<float>& g,
                             const std::vector<float>& p) {
    const size_t n = g.size();
    float *m = st.data(), *v = st.data() + n;
    float* vmax = st.size() == 3 * n ? st.data() + 2 * n : nullptr;
    for (size_t i = 0; i < n; ++i) {
        float gi = cpu_clamp_grad(g[i], clip) * s.grad_scale;
        if (s.l2 != 0.0f) gi += p[i] * s.l2;
        m[i] = m[i] * s.b1[0] + gi * s.b1[1];
        v[i] = v[i] * s.b2[0] + (gi * gi) * s.b2[1];
        if (vmax) vmax[i] = vmax[i] < v[i] ? v[i] : vmax[i];
    }
}
// src/optim.rs AdamApply::cpu_fwd: second = the last state row.
static void cpu_adam_apply(const AdamStep& s, std::vector<float>& p, const std::vector<float>& st) {
    const size_t n = p.size();
    const float* m = st.data();
    const float* second = st.data() + (st.size() - n);
    for (size_t i = 0; i < n; ++i) {
        const float denom = std::sqrt(second[i]) * s.inv_sqrt_bc2 + s.eps;
        p[i] = p[i] * s.decay - (m[i] * s.step_size) / denom;
    }
}

// ---------------------------------------------------------------------------------------------------
// Checks.

template <class T>
static unsigned bits_of(T v) {
    if constexpr (sizeof(T) == 2) return v; else return __float_as_uint(v);
}
// got must equal want bit for bit (NaN payloads included), and again got.
template <class T>
static void check_bits(const char* what, const std::string& name, const std::vector<T>& got, const std::vector<T>& again,
                       const std::vector<T>& want) {
    const bool same = got.size() == again.size() && std::memcmp(got.data(), again.data(), got.size() * sizeof(T)) == 0;
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < std::min(got.size(), want.size()); ++i)
        if (bits_of(got[i]) != bits_of(want[i])) {
            if (bad++ == 0) first = i;
        }
    const bool ok = same && bad == 0 && got.size() == want.size();
    if (!ok) ++failures;
    char detail[160] = "";
    if (bad) std::snprintf(detail, sizeof detail, " first at %zu: got %08x want %08x", first, bits_of(got[first]), bits_of(want[first]));
    std::printf("%s %-14s %-40s bit-equal to the CPU: %zu of %zu differ%s%s\n", ok ? "ok  " : "FAIL", what, name.c_str(), bad,
                want.size(), detail, same ? "" : " NOT DETERMINISTIC");
}
static std::mt19937 rng(20240611);
static std::vector<float> rnd(size_t n, float scale = 1.f, float shift = 0.f) {
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    std::vector<float> v(n);
    for (auto& e : v) e = u(rng) * scale + shift;
    return v;
}
static std::vector<uint16_t> to_bf16v(const std::vector<float>& v) {
    std::vector<uint16_t> o(v.size());
    for (size_t i = 0; i < v.size(); ++i) o[i] = half_f32_to_bf16(v[i]);
    return o;
}
template <class T>
static std::vector<double> as_double(const std::vector<T>& v) {
    std::vector<double> d(v.size());
    for (size_t i = 0; i < v.size(); ++i) d[i] = as_f(v[i]);
    return d;
}
static std::string dims_str(const std::vector<size_t>& dims) {
    std::string s = "[";
    for (size_t i = 0; i < dims.size(); ++i) s += (i ? "," : "") + std::to_string(dims[i]);
    return s + "]";
}

// Layer norm: stats, forward, input gradient, parameter gradients, the chain of src/rows.rs's ops on the
// GPU (stats once, then forward / backward from them), against the double definitions from (x, γ, β, dy).
static void layer_norm_case(const std::vector<size_t>& dims, bool constant_row) {
    const auto [r, h, h32] = rows_of(dims);
    const float eps = 1e-5f;
    auto x = rnd(r * h, 2.f, 0.5f);
    if (constant_row && r > 1)
        for (size_t j = 0; j < h; ++j) x[h + j] = 0.75f;  // row 1 constant: var 0, rstd 1/sqrt(eps)
    const auto gamma = rnd(h, 0.5f, 1.f), beta = rnd(h), dy = rnd(r * h);
    std::vector<double> mean_ref(r), rstd_ref(r), y_ref(r * h), dx_ref(r * h), dg_ref(h, 0.0), db_ref(h, 0.0);
    for (size_t i = 0; i < r; ++i) {
        double m = 0, v = 0, a = 0, b = 0;
        for (size_t j = 0; j < h; ++j) m += x[i * h + j];
        m /= h;
        for (size_t j = 0; j < h; ++j) v += (x[i * h + j] - m) * (x[i * h + j] - m);
        v /= h;
        const double rs = 1.0 / std::sqrt(v + (double)eps);
        mean_ref[i] = m;
        rstd_ref[i] = rs;
        for (size_t j = 0; j < h; ++j) {
            const double xh = (x[i * h + j] - m) * rs, dyg = (double)dy[i * h + j] * gamma[j];
            y_ref[i * h + j] = xh * gamma[j] + beta[j];
            a += dyg;
            b += dyg * xh;
            dg_ref[j] += (double)dy[i * h + j] * xh;
            db_ref[j] += dy[i * h + j];
        }
        a /= h;
        b /= h;
        for (size_t j = 0; j < h; ++j) {
            const double xh = (x[i * h + j] - m) * rs;
            dx_ref[i * h + j] = rs * ((double)dy[i * h + j] * gamma[j] - a - xh * b);
        }
    }
    std::vector<float> st[2], y[2], dx[2], pg[2];
    for (int k = 0; k < 2; ++k) {
        st[k] = rs_ln_stats(eps, x, dims);
        y[k] = rs_ln_forward(x, dims, st[k], gamma, beta);
        dx[k] = rs_ln_input_grad(x, dims, st[k], gamma, dy);
        pg[k] = rs_ln_param_grads(x, dims, st[k], dy);
    }
    const std::string name = dims_str(dims) + (constant_row ? " const row" : "");
    std::vector<float> mean[2], rstd[2], dg[2], db[2];
    for (int k = 0; k < 2; ++k) {
        for (size_t i = 0; i < r; ++i) {
            mean[k].push_back(st[k][2 * i]);
            rstd[k].push_back(st[k][2 * i + 1]);
        }
        dg[k].assign(pg[k].begin(), pg[k].begin() + h);
        db[k].assign(pg[k].begin() + h, pg[k].end());
    }
    compare("ln stats mean", name.c_str(), mean[0], mean[1], mean_ref, 1e-5);
    compare("ln stats rstd", name.c_str(), rstd[0], rstd[1], rstd_ref, 1e-5);
    compare("ln fwd y", name.c_str(), y[0], y[1], y_ref, 1e-5);
    compare("ln grad input", name.c_str(), dx[0], dx[1], dx_ref, 1e-5);
    compare("ln grad gamma", name.c_str(), dg[0], dg[1], dg_ref, 1e-5);
    compare("ln grad beta", name.c_str(), db[0], db[1], db_ref, 1e-5);
}

// Softmax forward and gradient against the double definitions: y from x; dx from the kernel's own y
// (the f32 y the gradient pass is given, as src/rows.rs Softmax::bwd passes the output) and dy.
static void softmax_case(const std::vector<size_t>& dims, bool with_neg_inf) {
    const auto [r, h, h32] = rows_of(dims);
    auto x = rnd(r * h, 8.f);
    if (with_neg_inf && h > 1) x[h / 2] = -INFINITY;
    const auto dy = rnd(r * h);
    std::vector<double> y_ref(r * h), dx_ref(r * h);
    std::vector<float> y[2], dx[2];
    for (int k = 0; k < 2; ++k) {
        y[k] = rs_softmax(x, dims);
        dx[k] = rs_softmax_grad(y[0], dy, dims);
    }
    for (size_t i = 0; i < r; ++i) {
        double m = -INFINITY, s = 0, dot = 0;
        for (size_t j = 0; j < h; ++j) m = std::max(m, (double)x[i * h + j]);
        for (size_t j = 0; j < h; ++j) s += std::exp(x[i * h + j] - m);
        for (size_t j = 0; j < h; ++j) y_ref[i * h + j] = std::exp(x[i * h + j] - m) / s;
        for (size_t j = 0; j < h; ++j) dot += (double)dy[i * h + j] * y[0][i * h + j];
        for (size_t j = 0; j < h; ++j) dx_ref[i * h + j] = (double)y[0][i * h + j] * (dy[i * h + j] - dot);
    }
    const std::string name = dims_str(dims) + (with_neg_inf ? " one -inf" : "");
    compare("softmax fwd", name.c_str(), y[0], y[1], y_ref, 1e-5);
    compare("softmax bwd", name.c_str(), dx[0], dx[1], dx_ref, 1e-5);
}

// Leaky ReLU, f32 and bf16, forward and backward, bit for bit against the CPU transcription.
template <class T>
static void leaky_case(size_t n, float slope) {
    auto xf = rnd(n, 3.f);
    for (size_t i = 0; i < n; i += 7) xf[i] = 0.0f;
    for (size_t i = 3; i < n; i += 11) xf[i] = -0.0f;
    if (n > 20) {
        xf[5] = 1e-40f;    // subnormals
        xf[6] = -1e-40f;
        xf[8] = INFINITY;
        xf[9] = -INFINITY;
        xf[10] = -3e38f;
    }
    const auto dyf = rnd(n);
    std::vector<T> x, dy;
    if constexpr (sizeof(T) == 2) {
        x = to_bf16v(xf);
        dy = to_bf16v(dyf);
    } else {
        x = xf;
        dy = dyf;
    }
    const Act act{true, slope};
    std::vector<T> y[2], dx[2];
    for (int k = 0; k < 2; ++k) {
        y[k] = rs_act_forward(act, x);
        dx[k] = rs_act_backward(act, x, dy);
    }
    char name[80];
    std::snprintf(name, sizeof name, "%s n=%zu slope %g", dt_name<T>(), n, slope);
    check_bits("leaky fwd", name, y[0], y[1], cpu_leaky_fwd(x, slope));
    check_bits("leaky bwd", name, dx[0], dx[1], cpu_leaky_bwd(x, dy, slope));
}

// GELU (erf), f32 and bf16, forward and backward, against the double definitions (on the values the
// kernels read: bf16 inputs widened).
template <class T>
static void gelu_case(size_t n) {
    auto xf = rnd(n, 4.f);
    if (n > 8) {
        xf[0] = 0.0f;
        xf[1] = -0.0f;
        xf[2] = 10.f;
        xf[3] = -10.f;
        xf[4] = 1e-3f;
        xf[5] = -1e-3f;
        xf[6] = 6.f;
        xf[7] = -6.f;
    }
    const auto dyf = rnd(n);
    std::vector<T> x, dy;
    if constexpr (sizeof(T) == 2) {
        x = to_bf16v(xf);
        dy = to_bf16v(dyf);
    } else {
        x = xf;
        dy = dyf;
    }
    const Act act{false, 0.f};
    std::vector<T> y[2], dx[2];
    for (int k = 0; k < 2; ++k) {
        y[k] = rs_act_forward(act, x);
        dx[k] = rs_act_backward(act, x, dy);
    }
    std::vector<double> y_ref(n), dx_ref(n);
    const double pi = 3.14159265358979323846;
    for (size_t i = 0; i < n; ++i) {
        const double v = as_f(x[i]), d = as_f(dy[i]);
        const double cdf = 0.5 * std::erfc(-v / std::sqrt(2.0)), pdf = std::exp(-0.5 * v * v) / std::sqrt(2.0 * pi);
        y_ref[i] = v * cdf;
        dx_ref[i] = d * (cdf + v * pdf);
    }
    char name[80];
    std::snprintf(name, sizeof name, "%s n=%zu", dt_name<T>(), n);
    const double tol = sizeof(T) == 2 ? 1e-2 : 1e-5;
    compare("gelu fwd", name, y[0], y[1], y_ref, tol);
    compare("gelu bwd", name, dx[0], dx[1], dx_ref, tol);
}

// 2x2x2 max pooling, f32 and bf16, forward and backward, bit for bit against the CPU transcription, on
// values with many ties (few levels, ±0), NaNs of different payloads and signs (several in some windows:
// the last one wins, which the forward's copied payload shows) and -inf.
template <class T>
static void pool_case(const std::vector<size_t>& dims) {
    const size_t len = dims[0] * dims[1] * dims[2] * dims[3] * dims[4];
    const size_t od[4] = {dims[0] * dims[1], dims[2] / 2, dims[3] / 2, dims[4] / 2};  // pool.rs out_dims
    std::vector<float> xf = rnd(len);
    for (auto& v : xf) v = std::round(v * 3.f);
    unsigned k = 0;
    for (size_t i = 1; i < len; i += 9) xf[i] = -0.0f;
    for (size_t i = 2; i < len; i += 31) xf[i] = -INFINITY;
    // NaNs: quiet, distinct payloads, both signs; runs of two adjacent ones (same window when i even).
    for (size_t i = 0; i < len; i += 37, ++k) {
        const unsigned sign = (k & 1) ? 0x80000000u : 0u;
        xf[i] = __uint_as_float(sign | 0x7fc00000u | ((k * 0x10001u) & 0x3f0000u) | (k + 1));
        if (k % 3 == 0 && i + 1 < len) xf[i + 1] = __uint_as_float(0x7fc00000u | ((k + 7) << 16 & 0x3f0000u) | 0x55u);
    }
    // Window 0 all NaN (distinct payloads: the last, tap 7, is chosen), window 1 all equal (+0 and -0
    // first: the first, +0, is chosen), window 2 all -inf.
    auto tap = [&](size_t i, unsigned t) {  // input index of tap t of output i (pool.rs argmax)
        const size_t d2 = od[1], h2 = od[2], w2 = od[3];
        const size_t ow = i % w2, oh = (i / w2) % h2, odd = (i / w2 / h2) % d2, p = i / w2 / h2 / d2;
        const size_t base = ((p * 2 * d2 + 2 * odd) * 2 * h2 + 2 * oh) * 2 * w2 + 2 * ow;
        return base + (t >> 2) * 4 * h2 * w2 + ((t >> 1) & 1) * 2 * w2 + (t & 1);
    };
    for (unsigned t = 0; t < 8; ++t) {
        xf[tap(0, t)] = __uint_as_float((t & 1 ? 0x80000000u : 0u) | 0x7fc00000u | ((t + 1) << 16));
        if (len / 8 > 1) xf[tap(1, t)] = t == 0 ? 0.0f : t == 1 ? -0.0f : 0.0f;
        if (len / 8 > 2) xf[tap(2, t)] = -INFINITY;
    }
    std::vector<T> x, dy;
    const auto dyf = rnd(len / 8);
    if constexpr (sizeof(T) == 2) {
        x = to_bf16v(xf);  // quiet NaNs with payload bits in the top 16: kept by half's conversions
        dy = to_bf16v(dyf);
    } else {
        x = xf;
        dy = dyf;
    }
    std::vector<T> y[2], dx[2];
    for (int i = 0; i < 2; ++i) {
        y[i] = rs_max_pool2<T>(nullptr, x, od);
        dx[i] = rs_max_pool2<T>(&dy, x, od);
    }
    const std::string name = std::string(dt_name<T>()) + " " + dims_str(dims);
    check_bits("maxpool fwd", name, y[0], y[1], cpu_pool_fwd(x, od));
    check_bits("maxpool bwd", name, dx[0], dx[1], cpu_pool_bwd(x, dy, od));
}

// Informational (not counted): a signalling bf16 NaN is copied raw by the GPU but quieted by the CPU's
// half conversions (bf16_to_f32 / f32_to_bf16 set bit 0x0040), so the outputs differ in that bit.
static void pool_snan_note() {
    const size_t od[4] = {1, 1, 1, 1};
    std::vector<uint16_t> x(8, 0x3f80u);  // 1.0
    x[3] = 0x7f81u;                       // signalling NaN
    std::vector<uint16_t> dy{0x7f82u};    // signalling NaN gradient
    const auto y = rs_max_pool2<uint16_t>(nullptr, x, od);
    const auto dx = rs_max_pool2<uint16_t>(&dy, x, od);
    const auto yc = cpu_pool_fwd(x, od);
    const auto dxc = cpu_pool_bwd(x, dy, od);
    std::printf("info maxpool sNaN     bf16 signalling NaN in / as gradient       kernel y %04x dx[3] %04x, CPU y %04x dx[3] %04x "
                "(not counted: NaN payload only)\n",
                y[0], dx[3], yc[0], dxc[3]);
}

// square sums alone: NaN stays NaN under a clamp, ±inf clamps to ±clip, or stays inf without one.
static void check_square_sums(const char* name, float clip, size_t offset, const std::vector<float>& g) {
    const size_t parts = (g.size() + RS_SQUARE_SUM_CHUNK - 1) / RS_SQUARE_SUM_CHUNK;
    std::vector<float> out[2];
    for (int k = 0; k < 2; ++k) {
        out[k].assign(offset + parts + 1, -7.f);  // sentinels around the partials
        rs_square_sums(clip, offset, out[k], g);
    }
    const auto want = cpu_square_sums(g, clip);
    bool ok = std::memcmp(out[0].data(), out[1].data(), out[0].size() * 4) == 0;
    const bool same = ok;
    double worst = 0;
    for (size_t i = 0; i < out[0].size(); ++i) {
        const float got = out[0][i];
        if (i < offset || i >= offset + parts) {
            ok = ok && got == -7.f;
            continue;
        }
        const float a = want[i - offset];
        if (std::isnan(a) || std::isnan(got)) {
            ok = ok && std::isnan(a) && std::isnan(got);
        } else if (std::isinf(a) || std::isinf(got)) {
            ok = ok && a == got;
        } else {
            const double e = std::fabs((double)a - got);
            worst = std::max(worst, a != 0 ? e / std::fabs(a) : e);
            ok = ok && e <= 1e-5 * std::fabs(a);
        }
    }
    if (!ok) ++failures;
    std::printf("%s %-14s %-40s %zu partials, rel err %.3e (tol 1e-05 |cpu| each)%s\n", ok ? "ok  " : "FAIL", "square sums", name,
                parts, worst, same ? "" : " NOT DETERMINISTIC");
}

// The fused Adam passes as tests/cuda_conv.rs runs them: sums of squares into partials from offset 1,
// then three (moments, apply) steps; after each pass the parameter and state equal the CPU's bit for bit.
static void adam_case(size_t n, size_t rows, float clip, float l2, float decay, float grad_scale, float inv_sqrt_bc2,
                      float step_size, bool special) {
    AdamStep s{clip, grad_scale, l2, {0.9f, (float)(1.0 - 0.9)}, {0.999f, (float)(1.0 - 0.999)}, decay, inv_sqrt_bc2, 1e-8f, step_size};
    auto g = rnd(n, 3.f);
    const auto p0 = rnd(n);
    std::vector<float> st0 = rnd(n, 0.1f);
    for (size_t r = 1; r < rows; ++r) {
        auto v = rnd(n);
        for (auto& e : v) st0.push_back(std::fabs(e) * 0.01f);
    }
    for (size_t i = 0; i < n; i += 13) g[i] = 0.0f;
    for (size_t i = 6; i < n; i += 29) g[i] = -0.0f;
    if (special && clip > 0 && n > 40) {  // clamped to ±clip
        g[1] = INFINITY;
        g[2] = -INFINITY;
        g[3] = 1e30f;
    }
    char name[120];
    std::snprintf(name, sizeof name, "n=%zu rows=%zu clip %g l2 %g decay %g", n, rows, clip, l2, decay);
    check_square_sums(name, clip, 1, g);
    std::vector<float> p[2] = {p0, p0}, st[2] = {st0, st0};
    auto pc = p0, stc = st0;
    bool ok_m = true, ok_a = true, same = true;
    size_t bad_m = 0, bad_a = 0;
    for (int step = 0; step < 3; ++step) {
        for (int k = 0; k < 2; ++k) rs_adam_moments(s, clip, st[k], g, p[k]);
        cpu_adam_moments(s, clip, stc, g, pc);
        for (size_t i = 0; i < stc.size(); ++i) bad_m += __float_as_uint(st[0][i]) != __float_as_uint(stc[i]);
        same = same && std::memcmp(st[0].data(), st[1].data(), st[0].size() * 4) == 0;
        for (int k = 0; k < 2; ++k) rs_adam_apply(s, p[k], st[k]);
        cpu_adam_apply(s, pc, stc);
        for (size_t i = 0; i < n; ++i) bad_a += __float_as_uint(p[0][i]) != __float_as_uint(pc[i]);
        same = same && std::memcmp(p[0].data(), p[1].data(), n * 4) == 0;
    }
    ok_m = bad_m == 0 && same;
    ok_a = bad_a == 0 && same;
    bool finite = true;
    for (float v : p[0]) finite = finite && std::isfinite(v);
    for (float v : st[0]) finite = finite && std::isfinite(v);
    ok_a = ok_a && finite;
    failures += !ok_m + !ok_a;
    std::printf("%s %-14s %-40s bit-equal to the CPU over 3 steps: %zu state values differ%s\n", ok_m ? "ok  " : "FAIL",
                "adam moments", name, bad_m, same ? "" : " NOT DETERMINISTIC");
    std::printf("%s %-14s %-40s bit-equal to the CPU over 3 steps: %zu parameters differ%s%s\n", ok_a ? "ok  " : "FAIL",
                "adam apply", name, bad_a, same ? "" : " NOT DETERMINISTIC", finite ? "" : " NON-FINITE");
}

int main() {
    // rows.cu: rows shorter than, equal to and longer than a block's 256 threads; one and several rows.
    layer_norm_case({5, 3}, false);
    layer_norm_case({1, 1000}, false);
    layer_norm_case({2, 3, 257}, true);
    layer_norm_case({6, 768}, false);
    layer_norm_case({40, 7}, true);
    layer_norm_case({3, 1}, false);
    softmax_case({7, 1}, false);
    softmax_case({3, 1000}, true);
    softmax_case({2, 2, 256}, false);
    softmax_case({5, 511}, true);
    softmax_case({33, 12}, false);
    // activation.cu: leaky ReLU (exact zeros, -0, subnormals, ±inf), one and several blocks.
    for (float slope : {0.01f, 0.2f, 0.0f, -0.5f, 1.5f}) {  // 1.5: bf16 x·1.5 often lies halfway (ties to even)
        for (size_t n : {(size_t)1, (size_t)1000, (size_t)256 * 20 + 5}) {
            leaky_case<float>(n, slope);
            leaky_case<uint16_t>(n, slope);
        }
    }
    for (size_t n : {(size_t)7, (size_t)3000}) {
        gelu_case<float>(n);
        gelu_case<uint16_t>(n);
    }
    // Max pooling: even input sizes only (pool.rs), odd output sizes, one window, several blocks.
    for (const auto& dims : std::vector<std::vector<size_t>>{{1, 3, 2, 4, 6}, {2, 3, 6, 10, 14}, {1, 1, 2, 2, 2}, {2, 4, 8, 16, 18}}) {
        pool_case<float>(dims);
        pool_case<uint16_t>(dims);
    }
    pool_snan_note();
    // optim.cu: the cases of tests/cuda_conv.rs (one value; a partial chunk with AMSGrad, clamp and L2;
    // several chunks with a remainder, clamp and AdamW decay) and an exact chunk with first-step values.
    adam_case(1, 2, 0.f, 0.f, 0.999f, 0.75f, 1.7f, 0.013f, false);
    adam_case(5000, 3, 0.5f, 0.01f, 1.0f, 0.75f, 1.7f, 0.013f, true);
    adam_case(3 * 8192 + 77, 2, 2.0f, 0.f, 0.99f, 0.75f, 1.7f, 0.013f, true);
    adam_case(8192, 3, 0.f, 0.f, (float)(1.0 - 1e-3 * 1e-2), 1.0f, (float)(1.0 / std::sqrt(1.0 - 0.999)), (float)(1e-3 / (1.0 - 0.9)), false);
    adam_case(300, 2, 0.25f, 0.1f, 1.0f, 0.5f, 1.2f, 0.002f, true);
    {  // square sums: a NaN stays NaN under a clamp; ±inf without a clamp stays inf.
        auto g = rnd(2 * 8192 + 5, 3.f);
        g[8192 + 17] = NAN;
        check_square_sums("NaN in chunk 1, clip 1", 1.0f, 0, g);
        g[8192 + 17] = 0.5f;
        g[5] = -INFINITY;
        check_square_sums("-inf in chunk 0, no clip", 0.0f, 2, g);
        check_square_sums("-inf in chunk 0, clip 1", 1.0f, 0, g);
    }
    std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "ALL OK", failures);
    return failures ? 1 : 0;
}
