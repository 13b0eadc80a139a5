// Host driver of the kernel emulation (tests/kernel_emu.rs): for every case of the input file (dims,
// spacing, connectivity, both masks, then the CPU's surface distances and voxel counts), runs the
// kernels of src/cuda/edt.cu and src/cuda/surface.cu through shim.h in the order src/cuda/surface.rs
// launches them (mask_stats, surfaces, edt_binary_lines, edt_envelope_lines along j, gather_k), sorts
// the gathered distances by key and compares them with the CPU's lists bit for bit. Exit status 0 only
// when every case matches. Build: g++ -std=c++20 -O2 -ffp-contract=off -pthread -I src/cuda.
#include "shim.h"
#include "edt.cu"
#include "surface.cu"
#include <algorithm>
#include <cstdio>
#include <fstream>
typedef unsigned long long U;
const unsigned BLOCK = 128;
template <class T> std::vector<T> rd(std::ifstream& f, size_t n) { std::vector<T> v(n); f.read((char*)v.data(), n * sizeof(T)); return v; }
int main(int argc, char** argv) {
    std::ifstream f(argv[1], std::ios::binary);
    int cases = 0, fails = 0;
    while (true) {
        U dims[3]; if (!f.read((char*)dims, 24)) break;
        double sp[3]; f.read((char*)sp, 24);
        unsigned char conn; f.read((char*)&conn, 1);
        size_t nx = dims[0], ny = dims[1], nz = dims[2], n = nx * ny * nz;
        auto p = rd<unsigned char>(f, n), r = rd<unsigned char>(f, n);
        U m0, m1; f.read((char*)&m0, 8); f.read((char*)&m1, 8);
        auto c0 = rd<double>(f, m0), c1 = rd<double>(f, m1);
        U cnt[3]; f.read((char*)cnt, 24);
        ++cases;
        // stats
        U st[15] = {~0ULL, ~0ULL, ~0ULL, 0, 0, 0, ~0ULL, ~0ULL, ~0ULL, 0, 0, 0, 0, 0, 0};
        long long rows = ny * nz;
        launch_warps(rows, BLOCK, [&] { mask_stats(p.data(), r.data(), st, rows, (int)nx, (int)ny); });
        if (st[12] != cnt[0] || st[13] != cnt[1] || st[14] != cnt[2]) { printf("case %d: counts differ\n", cases); ++fails; continue; }
        std::vector<double> g[2];
        if (st[12] + st[13] > 0) {
            size_t lo[3], hi[3];
            for (int a = 0; a < 3; ++a) {
                lo[a] = std::min(st[a], st[6 + a]);
                hi[a] = std::max(st[3 + a], st[9 + a]);
            }
            size_t bx = hi[0] - lo[0], by = hi[1] - lo[1], bz = hi[2] - lo[2], nb = bx * by * bz;
            std::vector<unsigned char> sp_(nb), sr(nb);
            U counts[4] = {0, 0, 0, 0};
            long long base = lo[0] + nx * (lo[1] + ny * lo[2]);
            launch_warps(nb, BLOCK, [&] { surfaces(p.data(), r.data(), sp_.data(), sr.data(), counts, bx, by, bz, base, nx, nx * ny, conn); });
            std::vector<float> d2(nb);
            size_t sl = std::max(bx * bz * (by + 1), bx * by * (bz + 1));
            std::vector<int> v(sl); std::vector<double> h(sl), z(sl);
            for (int dir = 0; dir < 2; ++dir) {
                auto& feat = dir == 0 ? sr : sp_;
                auto& q = dir == 0 ? sp_ : sr;
                long long li = by * bz;
                launch_seq(li, BLOCK, [&] { edt_binary_lines(feat.data(), d2.data(), li, (int)bx, sp[0]); });
                if (by > 1) {
                    long long lj = bx * bz;
                    launch_seq(lj, BLOCK, [&] { edt_envelope_lines(d2.data(), v.data(), h.data(), z.data(), lj, (int)by, bx, bx * by, bx, sp[1]); });
                }
                U cap = std::min<U>(dir == 0 ? st[12] : st[13], nb);
                std::vector<double> out(std::max<U>(cap, 1)); std::vector<long long> key(std::max<U>(cap, 1));
                long long lk = bx * by;
                launch_seq(lk, BLOCK, [&] { gather_k(d2.data(), q.data(), v.data(), h.data(), z.data(), out.data(), key.data(), &counts[2 + dir], lk, (int)bz, (int)bx, sp[2], (long long)cap); });
                U m = counts[2 + dir];
                if (m != counts[dir] || m > cap) { printf("case %d: bad counts\n", cases); ++fails; }
                std::vector<std::pair<long long, double>> pr;
                for (U i = 0; i < std::min(m, cap); ++i) pr.push_back({key[i], out[i]});
                std::sort(pr.begin(), pr.end());
                for (auto& x : pr) g[dir].push_back(x.second);
            }
        }
        bool ok = g[0].size() == m0 && g[1].size() == m1 &&
                  memcmp(g[0].data(), c0.data(), m0 * 8) == 0 && memcmp(g[1].data(), c1.data(), m1 * 8) == 0;
        if (!ok) {
            ++fails;
            printf("case %d dims %zu %zu %zu conn %d: MISMATCH sizes %zu/%llu %zu/%llu\n", cases, nx, ny, nz, conn, g[0].size(), m0, g[1].size(), m1);
            int shown = 0;
            for (size_t i = 0; i < std::min<size_t>(g[0].size(), m0) && shown < 5; ++i) if (g[0][i] != c0[i]) { printf("  p2r[%zu] %.17g vs %.17g\n", i, g[0][i], c0[i]); ++shown; }
        }
    }
    printf("%d cases, %d failures\n", cases, fails);
    return fails != 0;
}
