// Initial parameters (lattice / greedy) in O(N K) time and O(N + K) memory, and the
// least-squares helpers of weights.hpp.
//
// Greedy is matching pursuit with local updates: each new kernel goes to a point of large
// |residual| away from the centres already placed (an O(N) scan), takes the 1-D
// least-squares weight against the current residual, and updates the residual only on its
// support {exp(-q/2) >= 1e-4} (found through spatial bins). The weights are then refitted:
// exactly (dense least squares) when N K is small, else by a fixed number of CGLS
// iterations with the basis restricted to the supports, O(sum of supports) each instead
// of O(N K^2) (and no N x K matrix).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>

#include <cblas.h>
#include <lapacke.h>

#include "covfit/core/random.hpp"
#include "covfit/rbf/fit.hpp"
#include "covfit/rbf/kernels.hpp"
#include "rbf/weights.hpp"

namespace covfit::rbf {
namespace detail {

bool solve_spd(std::vector<double> A, std::vector<double>& b, int n, double ridge_rel) {
  double trace = 0;
  for (int i = 0; i < n; ++i) trace += A[static_cast<std::size_t>(i) * n + i];
  double ridge = ridge_rel * std::max(trace / std::max(n, 1), 1e-300);
  for (int i = 0; i < n; ++i) A[static_cast<std::size_t>(i) * n + i] += ridge;
  return LAPACKE_dposv(LAPACK_COL_MAJOR, 'L', n, 1, A.data(), n, b.data(), n) == 0;
}

bool solve_weights(const std::vector<Canonical>& kernels, const Points& pts,
                   std::vector<double>& w) {
  const std::size_t N = pts.x.size();
  const int K = static_cast<int>(kernels.size());
  std::vector<double> phi, A(static_cast<std::size_t>(K) * K, 0.0);
  w.assign(static_cast<std::size_t>(K), 0.0);
  // Phi^T Phi and Phi^T y accumulated over row chunks: memory O(chunk K), not O(N K).
  for (std::size_t i0 = 0; i0 < N; i0 += kRowChunk) {
    const std::size_t n = std::min(kRowChunk, N - i0);
    const int ni = static_cast<int>(n);
    phi.resize(n * static_cast<std::size_t>(K));
    basis_matrix(kernels, pts.x.subspan(i0, n), pts.y.subspan(i0, n), phi);
    cblas_dsyrk(CblasColMajor, CblasLower, CblasTrans, K, ni, 1.0, phi.data(), ni, 1.0, A.data(), K);
    cblas_dgemv(CblasColMajor, CblasTrans, ni, K, 1.0, phi.data(), ni, pts.values.data() + i0, 1,
                1.0, w.data(), 1);
  }
  return solve_spd(std::move(A), w, K, 1e-10);
}

int weight_slot(Param p) {
  for (int j = 0; j < raw_width(p); ++j)
    if (raw_group(p, j) == Group::weight) return j;
  return raw_width(p) - 1;
}

}  // namespace detail

namespace {

using detail::solve_weights;
using detail::weight_slot;

// Support of an initial kernel: exp(-q/2) >= 1e-4 (a start needs no more; the support
// area, 2 pi ln(1e4) sigma^2 = 58 sigma^2, sets the cost of every pass over the kernels).
constexpr double kSupportQ = 2 * 9.210340371976184;  // 2 ln(1e4)
// Refit weights exactly while the dense basis (N x K doubles) stays this small.
constexpr std::size_t kDenseWeightsMax = std::size_t{1} << 22;
constexpr int kCglsIters = 10;  // CGLS iterations otherwise

// Points in a uniform grid of bins (CSR), for box queries in O(points in the box).
class PointBins {
 public:
  PointBins(const Points& pts, double x0, double y0, double cell, std::size_t nx, std::size_t ny)
      : x0_(x0), y0_(y0), cell_(cell), nx_(nx), ny_(ny), start_(nx * ny + 1, 0), idx_(pts.x.size()) {
    std::vector<std::size_t> bin(pts.x.size());
    for (std::size_t i = 0; i < pts.x.size(); ++i) {
      bin[i] = index(pts.y[i], y0_, ny_) * nx_ + index(pts.x[i], x0_, nx_);
      ++start_[bin[i] + 1];
    }
    for (std::size_t b = 0; b < nx * ny; ++b) start_[b + 1] += start_[b];
    std::vector<std::size_t> fill(start_.begin(), start_.end() - 1);
    for (std::size_t i = 0; i < pts.x.size(); ++i) idx_[fill[bin[i]]++] = i;  // ascending i per bin
  }
  std::size_t bins() const { return nx_ * ny_; }
  std::span<const std::size_t> points(std::size_t b) const {
    return {idx_.data() + start_[b], start_[b + 1] - start_[b]};
  }
  // f(b) for every bin meeting [xa, xb] x [ya, yb].
  template <class F>
  void visit_bins(double xa, double xb, double ya, double yb, F&& f) const {
    const std::size_t i0 = index(xa, x0_, nx_), i1 = index(xb, x0_, nx_);
    const std::size_t j0 = index(ya, y0_, ny_), j1 = index(yb, y0_, ny_);
    for (std::size_t j = j0; j <= j1; ++j)
      for (std::size_t b = j * nx_ + i0; b <= j * nx_ + i1; ++b) f(b);
  }
  // f(i) for every point in bins meeting [xa, xb] x [ya, yb].
  template <class F>
  void visit(double xa, double xb, double ya, double yb, F&& f) const {
    visit_bins(xa, xb, ya, yb, [&](std::size_t b) {
      for (std::size_t p = start_[b]; p < start_[b + 1]; ++p) f(idx_[p]);
    });
  }

 private:
  std::size_t index(double v, double v0, std::size_t n) const {
    const double u = (v - v0) / cell_;
    if (!(u > 0)) return 0;
    return u >= static_cast<double>(n - 1) ? n - 1 : static_cast<std::size_t>(u);
  }
  double x0_, y0_, cell_;
  std::size_t nx_, ny_;
  std::vector<std::size_t> start_, idx_;
};

// The support of kernel c (e = exp(-q/2) >= 1e-4): indices (in bin order) and e, with
// the vectorised exp over the candidates.
void support(const PointBins& bins, const Points& pts, const Canonical& c,
             std::vector<std::size_t>& si, std::vector<double>& se) {
  si.clear();
  se.clear();
  const double det = c.p11 * c.p22 - c.p12 * c.p12;
  if (!(det > 0 && c.p11 > 0)) return;
  const double hx = std::sqrt(kSupportQ * c.p22 / det), hy = std::sqrt(kSupportQ * c.p11 / det);
  bins.visit(c.mx - hx, c.mx + hx, c.my - hy, c.my + hy, [&](std::size_t i) {
    const double dx = pts.x[i] - c.mx, dy = pts.y[i] - c.my;
    const double q = c.p11 * dx * dx + 2 * c.p12 * dx * dy + c.p22 * dy * dy;
    if (q < kSupportQ) {
      si.push_back(i);
      se.push_back(-0.5 * q);
    }
  });
  exp_simd<double>(se, se);
}

// Least-squares weights by CGLS (conjugate gradients on the normal equations) with the
// basis restricted to the kernels' supports, kept in CSR form (sum of supports entries).
// `residual` must hold values - model for the starting weights; it is kept up to date.
void cgls_weights(const PointBins& bins, const Points& pts, const std::vector<Canonical>& can,
                  std::vector<double>& w, std::vector<double>& residual, int iters) {
  const std::size_t K = can.size(), N = pts.x.size();
  std::vector<std::size_t> start(K + 1, 0), si;
  std::vector<std::uint32_t> idx;
  std::vector<float> val;  // float: the passes are memory-bound, and a start needs no more
  std::vector<double> se;
  for (std::size_t k = 0; k < K; ++k) {
    support(bins, pts, can[k], si, se);
    for (std::size_t j = 0; j < si.size(); ++j) {
      idx.push_back(static_cast<std::uint32_t>(si[j]));
      val.push_back(static_cast<float>(se[j]));
    }
    start[k + 1] = idx.size();
  }
  auto At = [&](const std::vector<double>& r, std::vector<double>& out) {  // Phi^T r
    for (std::size_t k = 0; k < K; ++k) {
      double sum = 0;
      for (std::size_t p = start[k]; p < start[k + 1]; ++p) sum += val[p] * r[idx[p]];
      out[k] = sum;
    }
  };
  std::vector<double> s(K), p(K), q(N);
  At(residual, s);
  p = s;
  double gamma = std::inner_product(s.begin(), s.end(), s.begin(), 0.0);
  for (int it = 0; it < iters && gamma > 0; ++it) {
    std::fill(q.begin(), q.end(), 0.0);
    for (std::size_t k = 0; k < K; ++k)
      for (std::size_t j = start[k]; j < start[k + 1]; ++j) q[idx[j]] += val[j] * p[k];
    const double qq = std::inner_product(q.begin(), q.end(), q.begin(), 0.0);
    if (!(qq > 0)) break;
    const double alpha = gamma / qq;
    for (std::size_t k = 0; k < K; ++k) w[k] += alpha * p[k];
    for (std::size_t i = 0; i < N; ++i) residual[i] -= alpha * q[i];
    At(residual, s);
    const double g2 = std::inner_product(s.begin(), s.end(), s.begin(), 0.0);
    const double beta = g2 / gamma;
    gamma = g2;
    for (std::size_t k = 0; k < K; ++k) p[k] = s[k] + beta * p[k];
  }
}

}  // namespace

std::vector<double> initial_raw(const FitConfig& cfg, const Points& pts) {
  const int K = cfg.K, width = raw_width(cfg.param);
  const std::size_t N = pts.x.size();
  Rng rng(cfg.seed);
  double x0 = *std::min_element(pts.x.begin(), pts.x.end());
  double x1 = *std::max_element(pts.x.begin(), pts.x.end());
  double y0 = *std::min_element(pts.y.begin(), pts.y.end());
  double y1 = *std::max_element(pts.y.begin(), pts.y.end());
  double wx = std::max(x1 - x0, 1e-9), wy = std::max(y1 - y0, 1e-9);
  const int g = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(K))));
  double sx = wx / g, sy = wy / g, spacing = std::sqrt(sx * sy);
  auto sigma_of = [&] {
    double s = cfg.width_scale * spacing * rng.uniform(0.8, 1.25);
    return std::clamp(s, std::exp(cfg.bounds.log_sigma_min), std::exp(cfg.bounds.log_sigma_max));
  };
  std::vector<double> raw(static_cast<std::size_t>(K * width));
  auto kernel_slots = [&](int k) {
    return std::span<double>(raw).subspan(static_cast<std::size_t>(k * width),
                                          static_cast<std::size_t>(width));
  };
  const int wslot = weight_slot(cfg.param);
  auto canonical_of = [&](int k) {
    Canonical c;
    raw_to_canonical(cfg.param, kernel_slots(k), std::span<Canonical>(&c, 1));
    return c;
  };
  // Bins about one lattice spacing wide (at least ~4 points per bin on average).
  const double cell = std::max(spacing, std::sqrt(wx * wy * 4 / static_cast<double>(std::max<std::size_t>(N, 1))));
  const PointBins bins(pts, x0, y0, cell, static_cast<std::size_t>(wx / cell) + 1,
                       static_cast<std::size_t>(wy / cell) + 1);
  std::vector<double> w(static_cast<std::size_t>(K), 0.0);
  std::vector<double> residual(pts.values.begin(), pts.values.end());

  if (cfg.init == Init::lattice) {
    // Choose K of the g*g lattice cells (seeded shuffle), one centre per cell, jittered.
    std::vector<int> cells(static_cast<std::size_t>(g * g));
    std::iota(cells.begin(), cells.end(), 0);
    for (std::size_t i = cells.size(); i > 1; --i)
      std::swap(cells[i - 1], cells[static_cast<std::size_t>(rng.bits() % i)]);
    for (int k = 0; k < K; ++k) {
      int c = cells[static_cast<std::size_t>(k)];
      double mx = x0 + sx * ((c % g) + 0.5 + rng.uniform(-0.3, 0.3));
      double my = y0 + sy * ((c / g) + 0.5 + rng.uniform(-0.3, 0.3));
      raw_from_isotropic(cfg.param, mx, my, sigma_of(), 0.0, kernel_slots(k));
    }
    project(cfg.param, raw, cfg.bounds);
  } else {
    // Greedy matching pursuit: a point with a large |residual| away from the centres
    // already placed (else a new kernel tends to "sharpen" an old one), at random among
    // the top `pool` candidates so restarts differ.
    const std::size_t pool = std::max<std::size_t>(1, std::min<std::size_t>(N / 200 + 1, 16));
    const double exclusion = 0.5 * spacing;
    std::vector<unsigned char> excluded(N, 0);
    using Cand = std::pair<double, std::size_t>;  // (|r|, index), best first
    auto better = [](const Cand& a, const Cand& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    // Keep the best `pool` candidates seen.
    auto offer = [&](std::vector<Cand>& top, const Cand& c) {
      if (top.size() == pool && !better(c, top.back())) return;
      top.insert(std::upper_bound(top.begin(), top.end(), c, better), c);
      if (top.size() > pool) top.pop_back();
    };
    // Per bin, the largest |residual| of its points away from every centre (-1: none).
    // The `pool` best points lie in the `pool` bins with the largest maxima, so a pick
    // costs O(bins + points of pool bins), not O(N); only bins under the new kernel's
    // support change afterwards.
    std::vector<double> bin_max(bins.bins());
    auto refresh = [&](std::size_t b) {
      double m = -1;
      for (std::size_t i : bins.points(b))
        if (!excluded[i]) m = std::max(m, std::abs(residual[i]));
      bin_max[b] = m;
    };
    for (std::size_t b = 0; b < bins.bins(); ++b) refresh(b);
    std::vector<Cand> top, top_bins;
    std::vector<std::size_t> si;
    std::vector<double> se;
    for (int k = 0; k < K; ++k) {
      top_bins.clear();
      for (std::size_t b = 0; b < bins.bins(); ++b)
        if (bin_max[b] >= 0) offer(top_bins, {bin_max[b], b});
      top.clear();
      for (const Cand& tb : top_bins)
        for (std::size_t i : bins.points(tb.second))
          if (!excluded[i]) offer(top, {std::abs(residual[i]), i});
      if (top.empty())  // everything is near a centre: allow any point
        for (std::size_t i = 0; i < N; ++i) offer(top, {std::abs(residual[i]), i});
      const std::size_t pick = top[static_cast<std::size_t>(rng.bits() % top.size())].second;
      raw_from_isotropic(cfg.param, pts.x[pick], pts.y[pick], sigma_of(), 0.0, kernel_slots(k));
      project(cfg.param, kernel_slots(k), cfg.bounds);
      // 1-D least-squares weight against the residual, which it then explains.
      support(bins, pts, canonical_of(k), si, se);
      double num = 0, den = 0;
      for (std::size_t j = 0; j < si.size(); ++j) {
        num += residual[si[j]] * se[j];
        den += se[j] * se[j];
      }
      const double wk = den > 0 ? num / den : 0.0;
      w[static_cast<std::size_t>(k)] = wk;
      for (std::size_t j = 0; j < si.size(); ++j) residual[si[j]] -= wk * se[j];
      const double cx = pts.x[pick], cy = pts.y[pick];
      bins.visit(cx - exclusion, cx + exclusion, cy - exclusion, cy + exclusion, [&](std::size_t i) {
        if (std::hypot(pts.x[i] - cx, pts.y[i] - cy) < exclusion) excluded[i] = 1;
      });
      // Bins whose residual or exclusion changed: those under the support's box.
      double xa = cx - exclusion, xb = cx + exclusion, ya = cy - exclusion, yb = cy + exclusion;
      for (std::size_t i : si) {
        xa = std::min(xa, pts.x[i]);
        xb = std::max(xb, pts.x[i]);
        ya = std::min(ya, pts.y[i]);
        yb = std::max(yb, pts.y[i]);
      }
      bins.visit_bins(xa, xb, ya, yb, refresh);
    }
  }

  // Weights: exact least squares when affordable, else CGLS over the supports.
  std::vector<Canonical> can(static_cast<std::size_t>(K));
  raw_to_canonical(cfg.param, raw, can);
  std::vector<double> exact;
  if (N * static_cast<std::size_t>(K) <= kDenseWeightsMax && solve_weights(can, pts, exact)) {
    w = exact;
  } else {
    cgls_weights(bins, pts, can, w, residual, kCglsIters);
  }
  for (int k = 0; k < K; ++k) raw[static_cast<std::size_t>(k * width + wslot)] = w[static_cast<std::size_t>(k)];
  return raw;
}

}  // namespace covfit::rbf
