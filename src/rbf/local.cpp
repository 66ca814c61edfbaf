// Local (tiled, culled) loss + gradient; see local.hpp for the culling rule and the bound.
//
// One evaluation:
//   1. per kernel: its cull threshold Q_k and the bounding box of {q < Q_k};
//   2. (tile, kernel) pairs: the bins under the kernel's box, then an exact test (the
//      minimum of q over the tile's box is below Q_k); pairs are kept in tile order, kernels
//      ascending inside a tile;
//   3. per tile (in parallel): for each of its kernels the same exact test per 32-point
//      block, then exp(-q/2) on the active blocks (by the grid recurrence where possible)
//      into a per-tile buffer and the model f; the residual; then the six gradient sums
//      per kernel, reduced to double per (tile, kernel) pair;
//   4. the pair sums are added into per-kernel sums in pair order (fixed, so the result
//      does not depend on the thread count), and turned into the canonical gradient.
#include "covfit/rbf/local.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

#include "rbf/fast_exp.hpp"
#include "rbf/moments.hpp"

namespace covfit::rbf {
namespace {

using namespace detail;  // fast_exp; the moment sums Acc, add_moments, gradient_from_moments
constexpr double kInf = std::numeric_limits<double>::infinity();

// Minimum over the rectangle [ax, bx] x [ay, by] (offsets from the kernel centre) of
// q(d) = p11 dx^2 + 2 p12 dx dy + p22 dy^2 for positive definite P. q is convex, so if the
// centre is outside the rectangle the minimum lies on an edge, where q is a 1-D quadratic
// minimised by clamping its vertex to the edge.
double min_q_rect(double p11, double p12, double p22, double ax, double bx, double ay,
                  double by) {
  auto q = [&](double dx, double dy) { return p11 * dx * dx + 2 * p12 * dx * dy + p22 * dy * dy; };
  auto clampd = [](double v, double lo, double hi) { return v < lo ? lo : (v > hi ? hi : v); };
  if (ay == by) return q(clampd(-p12 * ay / p11, ax, bx), ay);  // a grid row: one segment
  if (ax <= 0 && 0 <= bx && ay <= 0 && 0 <= by) return 0;
  double m = kInf;
  for (double dx : {ax, bx}) m = std::min(m, q(dx, clampd(-p12 * dx / p22, ay, by)));
  for (double dy : {ay, by}) m = std::min(m, q(clampd(-p12 * dy / p11, ax, bx), dy));
  return m;
}

// Per-kernel culling data for one evaluation.
struct KernelCull {
  double Q = kInf;     // drop where q >= Q
  bool all = true;     // never culled (tol = 0, or P not positive definite)
  bool pd = false;     // P positive definite (the recurrence relies on q >= 0)
  double hx = kInf, hy = kInf;  // half-widths of the box around {q < Q}
};

KernelCull kernel_cull(const Canonical& c, double tol, double scale) {
  KernelCull kc;
  const double det = c.p11 * c.p22 - c.p12 * c.p12;
  kc.pd = c.p11 > 0 && det > 0 && std::isfinite(det) && std::isfinite(c.mx) && std::isfinite(c.my);
  kc.Q = cull_q(c.w, tol, scale);
  if (!kc.pd || !std::isfinite(kc.Q)) return kc;
  kc.all = false;
  // {q < Q} is the ellipse with half-widths sqrt(Q Sigma_xx), sqrt(Q Sigma_yy), Sigma = P^-1.
  kc.hx = std::sqrt(kc.Q * c.p22 / det);
  kc.hy = std::sqrt(kc.Q * c.p11 / det);
  return kc;
}

// Broadcast constants per kernel: h = -q/2 = dx (c11 dx + c12 dy) + c22 dy^2.
enum Const { kMx = 0, kMy, kC11, kC12, kC22, kW, kGy, kNumConst };

// Thresholds on h = -q/2 above which a recurrence chain stays in the normal range
// (fast_exp flushes below ln(min normal): -708 in double, -87 in float).
template <class T>
constexpr T kRecurrenceMinH = sizeof(T) == 8 ? T(-600) : T(-80);

template <class T>
struct Workspace {
  aligned_vector<T> f, e;
  std::vector<unsigned char> active;
};

struct TileOut {
  double loss = 0;
  std::size_t point_pairs = 0, recurrent = 0;
};

template <class T, bool Grad>
void eval_tile(const TiledPoints<T>& P, std::size_t tile, const std::uint32_t* ks,
               std::size_t m, std::span<const Canonical> kernels,
               const std::vector<KernelCull>& cull, const T* kconst, bool recurrence,
               Workspace<T>& ws, TileOut& out, double* pair_out) {
  using B = xsimd::batch<T>;
  constexpr std::size_t W = B::size;
  constexpr std::size_t U = kBlockPoints / W;  // batches per block
  static_assert(kBlockPoints % W == 0, "a block must hold whole batches");
  const std::size_t base = P.offset[tile];
  const std::size_t nb = (P.offset[tile + 1] - base) / kBlockPoints;
  const std::size_t b0 = base / kBlockPoints;  // global index of the tile's first block
  const std::size_t npts = nb * kBlockPoints;
  if (ws.f.size() < npts) ws.f.resize(kTilePoints > npts ? kTilePoints : npts);
  if (Grad && ws.e.size() < m * npts) ws.e.resize(m * npts);
  if (ws.active.size() < m * nb) ws.active.resize(m * nb);
  T* f = ws.f.data();
  T* ebuf = ws.e.data();
  const T* px = P.x.data() + base;
  const T* py = P.y.data() + base;
  for (std::size_t i = 0; i < npts; i += W) B(T(0)).store_aligned(f + i);

  for (std::size_t j = 0; j < m; ++j) {
    const std::size_t k = ks[j];
    const Canonical& kk = kernels[k];
    const KernelCull& kc = cull[k];
    unsigned char* act = ws.active.data() + j * nb;
    std::size_t first = nb, last = 0;
    // q is convex, so its maximum over the tile's box is at a corner: if every corner is
    // inside the culling ellipse, so is every block (no per-block test needed).
    bool inside = kc.all;
    if (!inside) {
      const double ax = P.tx0[tile] - kk.mx, bx = P.tx1[tile] - kk.mx;
      const double ay = P.ty0[tile] - kk.my, by = P.ty1[tile] - kk.my;
      auto q = [&](double dx, double dy) { return kk.p11 * dx * dx + 2 * kk.p12 * dx * dy + kk.p22 * dy * dy; };
      inside = std::max(std::max(q(ax, ay), q(ax, by)), std::max(q(bx, ay), q(bx, by))) < kc.Q;
    }
    for (std::size_t b = 0; b < nb; ++b) {
      const std::size_t gb = b0 + b;
      bool on = P.bx0[gb] <= P.bx1[gb];  // a block without real points contributes nothing
      if (on && !inside)
        on = min_q_rect(kk.p11, kk.p12, kk.p22, P.bx0[gb] - kk.mx, P.bx1[gb] - kk.mx,
                        P.by0[gb] - kk.my, P.by1[gb] - kk.my) < kc.Q;
      act[b] = on;
      if (on) {
        first = std::min(first, b);
        last = b;
      }
    }
    if (first == nb) continue;
    const T* c = kconst + k * kNumConst * W;
    const B mx = B::load_aligned(c + kMx * W), my = B::load_aligned(c + kMy * W);
    const B c11 = B::load_aligned(c + kC11 * W), c12 = B::load_aligned(c + kC12 * W);
    const B c22 = B::load_aligned(c + kC22 * W), w = B::load_aligned(c + kW * W);
    T* ej = ebuf + j * npts;

    // Grid recurrence down the columns of rows [first, last]: every lane is a column, so
    // e(r+1) = e(r) R, R <- R G with G = exp(2 c22 dy^2). Valid while h stays in the
    // normal range at both ends of the chain (h is concave along a column, so then it is
    // everywhere in between).
    bool rec = recurrence && P.gridded && kc.pd && last > first;
    B e[U], R[U];
    if (rec) {
      const T g = T(P.row_step);
      const B dy0 = B::load_aligned(py + first * kBlockPoints) - my;
      const B dy1 = B::load_aligned(py + last * kBlockPoints) - my;
      const B minh(kRecurrenceMinH<T>);
      for (std::size_t u = 0; u < U && rec; ++u) {
        const B dx = B::load_aligned(px + first * kBlockPoints + u * W) - mx;
        const B h0 = xsimd::fma(dx, xsimd::fma(c12, dy0, c11 * dx), (c22 * dy0) * dy0);
        const B h1 = xsimd::fma(dx, xsimd::fma(c12, dy1, c11 * dx), (c22 * dy1) * dy1);
        if (xsimd::any(h0 < minh) || xsimd::any(h1 < minh)) rec = false;
        e[u] = h0;
        // h(r+1) - h(r) = g (c22 (2 dy + g) + c12 dx)
        R[u] = B(g) * xsimd::fma(c22, xsimd::fma(B(T(2)), dy0, B(g)), c12 * dx);
      }
      if (rec) {
        for (std::size_t u = 0; u < U; ++u) {
          e[u] = fast_exp(e[u]);
          R[u] = fast_exp(R[u]);
        }
        const B G = B::load_aligned(c + kGy * W);
        for (std::size_t b = first; b <= last; ++b) {
          act[b] = 1;  // the chain passes every row in between (empty rows add nothing)
          for (std::size_t u = 0; u < U; ++u) {
            const std::size_t o = b * kBlockPoints + u * W;
            if constexpr (Grad) e[u].store_aligned(ej + o);
            xsimd::fma(w, e[u], B::load_aligned(f + o)).store_aligned(f + o);
            e[u] *= R[u];
            R[u] *= G;
          }
        }
        out.point_pairs += (last - first + 1) * kBlockPoints;
        out.recurrent += (last - first + 1) * kBlockPoints;
        continue;
      }
    }
    for (std::size_t b = first; b <= last; ++b) {
      if (!act[b]) continue;
      out.point_pairs += kBlockPoints;
      for (std::size_t u = 0; u < U; ++u) {
        const std::size_t o = b * kBlockPoints + u * W;
        const B dx = B::load_aligned(px + o) - mx, dy = B::load_aligned(py + o) - my;
        const B h = xsimd::fma(dx, xsimd::fma(c12, dy, c11 * dx), (c22 * dy) * dy);
        const B ev = fast_exp(h);
        if constexpr (Grad) ev.store_aligned(ej + o);
        xsimd::fma(w, ev, B::load_aligned(f + o)).store_aligned(f + o);
      }
    }
  }

  // Residual (masked), kept in f.
  const T* pt = P.t.data() + base;
  const T* pm = P.mask.data() + base;
  B loss_acc(T(0));
  for (std::size_t i = 0; i < npts; i += W) {
    const B r = (B::load_aligned(f + i) - B::load_aligned(pt + i)) * B::load_aligned(pm + i);
    loss_acc = xsimd::fma(r, r, loss_acc);
    r.store_aligned(f + i);
  }
  out.loss = xsimd::hadd(loss_acc);
  if constexpr (!Grad) return;

  for (std::size_t j = 0; j < m; ++j) {
    const std::size_t k = ks[j];
    const T* c = kconst + k * kNumConst * W;
    const B mx = B::load_aligned(c + kMx * W), my = B::load_aligned(c + kMy * W);
    const unsigned char* act = ws.active.data() + j * nb;
    const T* ej = ebuf + j * npts;
    B sw(T(0)), sx(T(0)), sy(T(0)), sxx(T(0)), sxy(T(0)), syy(T(0));
    if (P.gridded) {
      // A grid row has one dy and the same dx per lane in every row: sum s, s dx, s dx^2
      // over the row, then fold dy in once per row.
      B dx[U];
      for (std::size_t u = 0; u < U; ++u) dx[u] = B::load_aligned(px + u * W) - mx;
      for (std::size_t b = 0; b < nb; ++b) {
        if (!act[b]) continue;
        const B dy = B(py[b * kBlockPoints]) - my;
        B a0(T(0)), a1(T(0)), a2(T(0));
        for (std::size_t u = 0; u < U; ++u) {
          const std::size_t o = b * kBlockPoints + u * W;
          const B sv = B::load_aligned(f + o) * B::load_aligned(ej + o);
          const B sdx = sv * dx[u];
          a0 += sv;
          a1 += sdx;
          a2 = xsimd::fma(sdx, dx[u], a2);
        }
        const B a0dy = a0 * dy;
        sw += a0;
        sx += a1;
        sy += a0dy;
        sxx += a2;
        sxy = xsimd::fma(a1, dy, sxy);
        syy = xsimd::fma(a0dy, dy, syy);
      }
    } else {
    for (std::size_t b = 0; b < nb; ++b) {
      if (!act[b]) continue;
      for (std::size_t u = 0; u < U; ++u) {
        const std::size_t o = b * kBlockPoints + u * W;
        const B dx = B::load_aligned(px + o) - mx, dy = B::load_aligned(py + o) - my;
        const B s = B::load_aligned(f + o) * B::load_aligned(ej + o);
        add_moments(s, dx, dy, sw, sx, sy, sxx, sxy, syy);
      }
    }
    }
    double* o = pair_out + j * kNumAcc;
    o[kSw] = xsimd::hadd(sw);
    o[kSx] = xsimd::hadd(sx);
    o[kSy] = xsimd::hadd(sy);
    o[kSxx] = xsimd::hadd(sxx);
    o[kSxy] = xsimd::hadd(sxy);
    o[kSyy] = xsimd::hadd(syy);
  }
}

// Index range of bins covering [lo, hi] along one axis (origin g0, bin width gw which may
// be negative for a grid stored in decreasing coordinate order), clamped to [0, n).
bool bin_range(double lo, double hi, double g0, double gw, std::size_t n, std::size_t& a,
               std::size_t& b) {
  double ua = (lo - g0) / gw, ub = (hi - g0) / gw;
  if (ua > ub) std::swap(ua, ub);
  if (!(ub >= 0) || !(ua < static_cast<double>(n))) return false;
  a = ua <= 0 ? 0 : static_cast<std::size_t>(ua);
  b = ub >= static_cast<double>(n - 1) ? n - 1 : static_cast<std::size_t>(ub);
  return true;
}

template <class T, bool Grad>
double local_impl(const TiledPoints<T>& P, std::span<const Canonical> kernels,
                  std::span<Canonical> grad, const LocalOptions& opt, LocalStats* stats) {
  using B = xsimd::batch<T>;
  constexpr std::size_t W = B::size;
  const std::size_t K = kernels.size(), nt = P.tiles();

  // Buffers reused across calls (an optimiser evaluates thousands of times; fresh
  // allocations cost page faults at large K). Contents never carry over.
  // (Worker threads must not name these thread_locals: they would get their own, empty,
  // instances. They see them through the references below.)
  struct Scratch {
    std::vector<KernelCull> cull;
    aligned_vector<T> kconst;
    std::vector<std::uint32_t> cand_tile, cand_k, pair_k;
    std::vector<std::size_t> pair_begin;
    std::vector<TileOut> tout;
    std::vector<double> pair_sums, sums;
  };
  thread_local Scratch scratch;
  auto& cull = scratch.cull;
  auto& kconst = scratch.kconst;
  auto& cand_tile = scratch.cand_tile;
  auto& cand_k = scratch.cand_k;
  auto& pair_k = scratch.pair_k;
  auto& pair_begin = scratch.pair_begin;
  auto& tout = scratch.tout;
  auto& pair_sums = scratch.pair_sums;
  auto& sums = scratch.sums;
  cull.resize(K);
  kconst.resize(K * kNumConst * W);
  for (std::size_t k = 0; k < K; ++k) {
    const Canonical& c = kernels[k];
    cull[k] = kernel_cull(c, opt.cull_tol, P.rms);
    const double g = P.row_step;
    const T v[kNumConst] = {T(c.mx),         T(c.my),         T(-0.5 * c.p11), T(-c.p12),
                            T(-0.5 * c.p22), T(c.w),          T(std::exp(-c.p22 * g * g))};
    for (int j = 0; j < kNumConst; ++j) B(v[j]).store_aligned(kconst.data() + (k * kNumConst + j) * W);
  }

  // (tile, kernel) pairs, counting-sorted by tile (kernels stay ascending within a tile).
  cand_tile.clear();
  cand_k.clear();
  for (std::size_t k = 0; k < K; ++k) {
    const KernelCull& kc = cull[k];
    const Canonical& c = kernels[k];
    auto consider = [&](std::size_t t) {
      if (!(P.tx0[t] <= P.tx1[t])) return;  // tile without real points
      if (!kc.all && !(min_q_rect(c.p11, c.p12, c.p22, P.tx0[t] - c.mx, P.tx1[t] - c.mx,
                                  P.ty0[t] - c.my, P.ty1[t] - c.my) < kc.Q))
        return;
      cand_tile.push_back(static_cast<std::uint32_t>(t));
      cand_k.push_back(static_cast<std::uint32_t>(k));
    };
    if (kc.all) {
      for (std::size_t t = 0; t < nt; ++t) consider(t);
      continue;
    }
    std::size_t ia, ib, ja, jb;
    if (!bin_range(c.mx - kc.hx, c.mx + kc.hx, P.gx0, P.gw, P.nbx, ia, ib)) continue;
    if (!bin_range(c.my - kc.hy, c.my + kc.hy, P.gy0, P.gh, P.nby, ja, jb)) continue;
    for (std::size_t bj = ja; bj <= jb; ++bj)
      for (std::size_t bi = ia; bi <= ib; ++bi) {
        const std::size_t bin = bj * P.nbx + bi;
        for (std::size_t t = P.bin_tiles[bin]; t < P.bin_tiles[bin + 1]; ++t) consider(t);
      }
  }
  const std::size_t npairs = cand_k.size();
  pair_begin.assign(nt + 1, 0);
  for (auto t : cand_tile) ++pair_begin[t + 1];
  for (std::size_t t = 0; t < nt; ++t) pair_begin[t + 1] += pair_begin[t];
  pair_k.resize(npairs);
  {
    std::vector<std::size_t> fill(pair_begin.begin(), pair_begin.end() - 1);
    for (std::size_t p = 0; p < npairs; ++p) pair_k[fill[cand_tile[p]]++] = cand_k[p];
  }

  tout.assign(nt, TileOut{});
  pair_sums.resize(Grad ? npairs * kNumAcc : 0);
  auto run_tile = [&](std::size_t t, Workspace<T>& ws) {
    eval_tile<T, Grad>(P, t, pair_k.data() + pair_begin[t], pair_begin[t + 1] - pair_begin[t],
                       kernels, cull, kconst.data(), opt.recurrence, ws, tout[t],
                       Grad ? pair_sums.data() + pair_begin[t] * kNumAcc : nullptr);
  };
  if (opt.threads > 1 && nt > 1) {
#pragma omp parallel num_threads(opt.threads)
    {
      Workspace<T> ws;
#pragma omp for schedule(dynamic, 4)
      for (std::size_t t = 0; t < nt; ++t) run_tile(t, ws);
    }
  } else {
    Workspace<T> ws;
    for (std::size_t t = 0; t < nt; ++t) run_tile(t, ws);
  }

  double loss = 0;
  LocalStats st;
  st.tile_pairs = npairs;
  for (const TileOut& o : tout) {
    loss += o.loss;
    st.point_pairs += o.point_pairs;
    st.recurrent += o.recurrent;
  }
  if (stats) *stats = st;
  const double n = static_cast<double>(P.n);
  if constexpr (Grad) {
    sums.assign(K * kNumAcc, 0.0);
    for (std::size_t p = 0; p < npairs; ++p)  // pair order: tile-major, fixed
      for (int a = 0; a < kNumAcc; ++a) sums[pair_k[p] * kNumAcc + a] += pair_sums[p * kNumAcc + a];
    for (std::size_t k = 0; k < K; ++k)
      gradient_from_moments(kernels[k], sums.data() + k * kNumAcc, n, grad[k]);
  }
  return loss / n;
}

// Morton (Z-order) interleave of two 8-bit coordinates.
std::uint32_t morton8(std::uint32_t a, std::uint32_t b) {
  std::uint32_t r = 0;
  for (int i = 0; i < 8; ++i) r |= ((a >> i) & 1u) << (2 * i) | ((b >> i) & 1u) << (2 * i + 1);
  return r;
}

// Bounding boxes of every block and tile (over real points only) and the rms scale.
template <class T>
void finish_boxes(TiledPoints<T>& P) {
  const std::size_t nblocks = P.x.size() / kBlockPoints, nt = P.tiles();
  P.bx0.assign(nblocks, kInf);
  P.by0.assign(nblocks, kInf);
  P.bx1.assign(nblocks, -kInf);
  P.by1.assign(nblocks, -kInf);
  double ss = 0;
  for (std::size_t i = 0; i < P.x.size(); ++i) {
    if (P.mask[i] == T(0)) continue;
    const std::size_t b = i / kBlockPoints;
    const double x = P.x[i], y = P.y[i];
    P.bx0[b] = std::min(P.bx0[b], x);
    P.bx1[b] = std::max(P.bx1[b], x);
    P.by0[b] = std::min(P.by0[b], y);
    P.by1[b] = std::max(P.by1[b], y);
    ss += static_cast<double>(P.t[i]) * static_cast<double>(P.t[i]);
  }
  P.rms = P.n ? std::sqrt(ss / static_cast<double>(P.n)) : 0.0;
  P.tx0.assign(nt, kInf);
  P.ty0.assign(nt, kInf);
  P.tx1.assign(nt, -kInf);
  P.ty1.assign(nt, -kInf);
  for (std::size_t t = 0; t < nt; ++t)
    for (std::size_t b = P.offset[t] / kBlockPoints; b < P.offset[t + 1] / kBlockPoints; ++b) {
      P.tx0[t] = std::min(P.tx0[t], P.bx0[b]);
      P.tx1[t] = std::max(P.tx1[t], P.bx1[b]);
      P.ty0[t] = std::min(P.ty0[t], P.by0[b]);
      P.ty1[t] = std::max(P.ty1[t], P.by1[b]);
    }
}

}  // namespace

double cull_q(double w, double tol, double scale) {
  if (!(tol > 0) || !(scale > 0) || !std::isfinite(w)) return kInf;
  // Q = 2 ln(max(|w|, s) / (tol s))
  return 2.0 * (std::log(std::max(std::abs(w), scale) / scale) - std::log(tol));
}

template <class T>
TiledPoints<T> TiledPoints<T>::from_points(std::span<const double> x, std::span<const double> y,
                                           std::span<const double> t) {
  if (x.size() != y.size() || x.size() != t.size())
    throw std::invalid_argument("TiledPoints::from_points: x, y, t sizes differ");
  TiledPoints<T> P;
  const std::size_t N = x.size();
  P.n = N;
  double x0 = kInf, x1 = -kInf, y0 = kInf, y1 = -kInf;
  for (std::size_t i = 0; i < N; ++i) {
    x0 = std::min(x0, x[i]);
    x1 = std::max(x1, x[i]);
    y0 = std::min(y0, y[i]);
    y1 = std::max(y1, y[i]);
  }
  if (N == 0) x0 = x1 = y0 = y1 = 0;
  const double wx = x1 - x0, wy = y1 - y0;
  // About kTilePoints points per bin, bins about square.
  const double nbins = std::max(1.0, std::ceil(static_cast<double>(N) / kTilePoints));
  const double ratio = wy > 0 ? (wx > 0 ? wx / wy : 1.0 / nbins) : nbins;
  P.nbx = static_cast<std::size_t>(std::clamp(std::round(std::sqrt(nbins * ratio)), 1.0, nbins));
  P.nby = static_cast<std::size_t>(std::max(1.0, std::ceil(nbins / static_cast<double>(P.nbx))));
  P.gx0 = x0;
  P.gy0 = y0;
  P.gw = wx > 0 ? wx / static_cast<double>(P.nbx) : 1.0;
  P.gh = wy > 0 ? wy / static_cast<double>(P.nby) : 1.0;
  auto cell = [](double v, double g0, double gw, std::size_t n) {
    double u = (v - g0) / gw;
    return u <= 0 ? std::size_t{0} : std::min(n - 1, static_cast<std::size_t>(u));
  };
  // Sort key: bin, then Morton order of a 256 x 256 sub-grid inside the bin (so that the
  // 32-point blocks are compact), then the source index.
  std::vector<std::uint64_t> key(N);
  for (std::size_t i = 0; i < N; ++i) {
    const std::size_t bi = cell(x[i], P.gx0, P.gw, P.nbx), bj = cell(y[i], P.gy0, P.gh, P.nby);
    const double fx = (x[i] - P.gx0) / P.gw - static_cast<double>(bi);
    const double fy = (y[i] - P.gy0) / P.gh - static_cast<double>(bj);
    const auto sx = static_cast<std::uint32_t>(std::clamp(fx * 256, 0.0, 255.0));
    const auto sy = static_cast<std::uint32_t>(std::clamp(fy * 256, 0.0, 255.0));
    key[i] = (static_cast<std::uint64_t>(bj * P.nbx + bi) << 16) | morton8(sx, sy);
  }
  std::vector<std::size_t> order(N);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return key[a] < key[b]; });
  // Tiles: each bin's run cut into pieces of <= kTilePoints, each padded to whole blocks.
  const std::size_t nbin = P.nbx * P.nby;
  P.bin_tiles.assign(nbin + 1, 0);
  P.offset.assign(1, 0);
  std::vector<std::int64_t> slots;
  std::size_t i = 0;
  for (std::size_t bin = 0; bin < nbin; ++bin) {
    P.bin_tiles[bin] = P.tiles();
    while (i < N && (key[order[i]] >> 16) == bin) {
      std::size_t end = i;
      while (end < N && end - i < kTilePoints && (key[order[end]] >> 16) == bin) ++end;
      for (std::size_t s = i; s < end; ++s) slots.push_back(static_cast<std::int64_t>(order[s]));
      while (slots.size() % kBlockPoints) slots.push_back(-1);
      P.offset.push_back(slots.size());
      i = end;
    }
  }
  P.bin_tiles[nbin] = P.tiles();
  const std::size_t S = slots.size();
  P.x.resize(S);
  P.y.resize(S);
  P.t.resize(S);
  P.mask.resize(S);
  P.index = slots;
  std::int64_t last = 0;
  for (std::size_t s = 0; s < S; ++s) {
    const bool real = slots[s] >= 0;
    if (real) last = slots[s];
    // Padding repeats the previous real point with mask 0 (finite, inside the block box).
    const auto j = static_cast<std::size_t>(last);
    P.x[s] = T(x[j]);
    P.y[s] = T(y[j]);
    P.t[s] = real ? T(t[j]) : T(0);
    P.mask[s] = real ? T(1) : T(0);
  }
  finish_boxes(P);
  return P;
}

template <class T>
TiledPoints<T> TiledPoints<T>::from_grid(const Grid& g) {
  if (g.values.size() != g.nx * g.ny)
    throw std::invalid_argument("TiledPoints::from_grid: values size " + std::to_string(g.values.size()) +
                                " != nx * ny");
  TiledPoints<T> P;
  P.gridded = true;
  P.row_step = g.dy;
  const std::size_t tnx = (g.nx + kBlockPoints - 1) / kBlockPoints;
  const std::size_t tny = (g.ny + kTileRows - 1) / kTileRows;
  P.nbx = tnx;
  P.nby = tny;
  P.gx0 = g.x0 - 0.5 * g.dx;
  P.gy0 = g.y0 - 0.5 * g.dy;
  P.gw = g.dx != 0 ? kBlockPoints * g.dx : 1.0;
  P.gh = g.dy != 0 ? kTileRows * g.dy : 1.0;
  // Unmasked index of every cell (row-major), for `index`.
  std::vector<std::int64_t> real_index(g.values.size(), -1);
  std::int64_t count = 0;
  for (std::size_t c = 0; c < g.values.size(); ++c)
    if (std::isfinite(g.values[c])) real_index[c] = count++;
  P.n = static_cast<std::size_t>(count);
  P.offset.assign(1, 0);
  P.bin_tiles.resize(tnx * tny + 1);
  for (std::size_t ty = 0; ty < tny; ++ty)
    for (std::size_t tx = 0; tx < tnx; ++tx) {
      P.bin_tiles[ty * tnx + tx] = P.tiles();
      const std::size_t r1 = std::min(g.ny, (ty + 1) * kTileRows);
      for (std::size_t r = ty * kTileRows; r < r1; ++r)
        for (std::size_t cc = 0; cc < kBlockPoints; ++cc) {
          const std::size_t col = tx * kBlockPoints + cc;
          const bool inside = col < g.nx;
          const double v = inside ? g.values[r * g.nx + col] : 0.0;
          const bool real = inside && std::isfinite(v);
          // Columns past the edge continue the grid's spacing (they are masked).
          P.x.push_back(T(g.x0 + static_cast<double>(col) * g.dx));
          P.y.push_back(T(g.y0 + static_cast<double>(r) * g.dy));
          P.t.push_back(real ? T(v) : T(0));
          P.mask.push_back(real ? T(1) : T(0));
          P.index.push_back(real ? real_index[r * g.nx + col] : -1);
        }
      P.offset.push_back(P.x.size());
    }
  P.bin_tiles[tnx * tny] = P.tiles();
  finish_boxes(P);
  return P;
}

template struct TiledPoints<float>;
template struct TiledPoints<double>;

template <class T>
double loss_grad_local(const TiledPoints<T>& pts, std::span<const Canonical> kernels,
                       std::span<Canonical> grad, const LocalOptions& opt, LocalStats* stats) {
  if (!grad.empty() && grad.size() != kernels.size())
    throw std::invalid_argument("loss_grad_local: grad size " + std::to_string(grad.size()) +
                                " != K " + std::to_string(kernels.size()));
  if (!(opt.cull_tol >= 0)) throw std::invalid_argument("loss_grad_local: cull_tol must be >= 0");
  if (pts.n == 0) {
    for (auto& g : grad) g = Canonical{0, 0, 0, 0, 0, 0};
    if (stats) *stats = LocalStats{};
    return 0.0;
  }
  if (grad.empty()) return local_impl<T, false>(pts, kernels, grad, opt, stats);
  return local_impl<T, true>(pts, kernels, grad, opt, stats);
}

template <class T>
void tile_kernel_pairs(const TiledPoints<T>& P, std::span<const Canonical> kernels, double tol,
                       std::vector<std::size_t>& begin, std::vector<std::uint32_t>& ks) {
  const std::size_t K = kernels.size(), nt = P.tiles();
  std::vector<KernelCull> cull(K);
  for (std::size_t k = 0; k < K; ++k) cull[k] = kernel_cull(kernels[k], tol, P.rms);
  begin.assign(nt + 1, 0);
  ks.clear();
  for (std::size_t t = 0; t < nt; ++t) {
    if (P.tx0[t] <= P.tx1[t])  // a tile with real points
      for (std::size_t k = 0; k < K; ++k) {
        const Canonical& c = kernels[k];
        if (cull[k].all || min_q_rect(c.p11, c.p12, c.p22, P.tx0[t] - c.mx, P.tx1[t] - c.mx,
                                      P.ty0[t] - c.my, P.ty1[t] - c.my) < cull[k].Q)
          ks.push_back(static_cast<std::uint32_t>(k));
      }
    begin[t + 1] = ks.size();
  }
}
template void tile_kernel_pairs<double>(const TiledPoints<double>&, std::span<const Canonical>, double,
                                        std::vector<std::size_t>&, std::vector<std::uint32_t>&);

template double loss_grad_local<float>(const TiledPoints<float>&, std::span<const Canonical>,
                                       std::span<Canonical>, const LocalOptions&, LocalStats*);
template double loss_grad_local<double>(const TiledPoints<double>&, std::span<const Canonical>,
                                        std::span<Canonical>, const LocalOptions&, LocalStats*);

CullBound cull_error_bound(std::span<const Canonical> kernels, double tol, double scale,
                           double local_loss) {
  CullBound out;
  out.grad.assign(kernels.size(), Canonical{0, 0, 0, 0, 0, 0});
  const double tau = tol * scale;
  std::vector<double> eps(kernels.size(), 0.0), lam(kernels.size(), 0.0), Q(kernels.size(), kInf);
  double D = 0;
  for (std::size_t k = 0; k < kernels.size(); ++k) {
    const Canonical& c = kernels[k];
    const KernelCull kc = kernel_cull(c, tol, scale);
    if (kc.pd) lam[k] = eig_sym2(c.p11, c.p12, c.p22)[0];
    if (kc.all) continue;  // never culled: no error of its own
    eps[k] = tau / std::max(std::abs(c.w), scale);
    Q[k] = kc.Q;
    D += std::abs(c.w) * eps[k];
  }
  const double R = std::sqrt(std::max(local_loss, 0.0));
  out.loss = 2 * R * D + D * D;
  const double cj[3] = {1.0, std::exp(-0.5), 2.0 / std::exp(1.0)};
  for (std::size_t k = 0; k < kernels.size(); ++k) {
    const Canonical& c = kernels[k];
    double b[3];
    for (int j = 0; j < 3; ++j) {
      if (lam[k] > 0) {
        const double qj = std::max(Q[k], static_cast<double>(j));
        b[j] = D * cj[j] / std::pow(lam[k], 0.5 * j);
        if (eps[k] > 0) b[j] += (R + D) * eps[k] * std::pow(qj / lam[k], 0.5 * j);
      } else {
        // Never culled itself: only the other kernels' error D reaches its sums, through
        // points where exp(-q/2) |d|^j can be large; no finite bound without lambda > 0.
        b[j] = j == 0 ? D : (D > 0 ? kInf : 0.0);
      }
    }
    const double aw = std::abs(c.w);
    Canonical& g = out.grad[k];
    g.w = 2 * b[0];
    g.mx = 2 * aw * (std::abs(c.p11) + std::abs(c.p12)) * b[1];
    g.my = 2 * aw * (std::abs(c.p12) + std::abs(c.p22)) * b[1];
    g.p11 = aw * b[2];
    g.p12 = 2 * aw * b[2];
    g.p22 = aw * b[2];
  }
  return out;
}

}  // namespace covfit::rbf
