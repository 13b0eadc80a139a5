// Host-emulated check of the direct reference kernels of src/cuda/conv3d.cu (tests/emu/run.sh), launched
// as src/cuda/mod.rs does (one thread per output / input voxel and group of CH_BLOCK channels; one block
// per channel pair and voxel chunk for backward-weight, then the in-order chunk sum), against a direct
// double-precision reference: |err| <= 1e-4 max|ref|, and two runs bit-identical.
#define MAGSEG_HOST_EMULATION 1
#include "cuda_emu.hpp"
#include "../../src/cuda/conv3d.cu"

#include "check_common.hpp"

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
