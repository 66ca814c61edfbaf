// Local (tiled, culled) evaluation: exact when cull_tol = 0, within the stated bound
// otherwise (also while kernels move and widen across tiles), the grid recurrence against
// direct exp, masked grid cells, and bitwise determinism across thread counts.
#include "covfit/rbf/local.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace covfit::rbf {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double smooth(double x, double y) { return std::sin(3.1 * x) * std::cos(2.3 * y) + 0.3 * x * y; }

// ny x nx grid over [0, 1] x [0, 0.8]; sizes not multiples of the tile so edges are hit.
Grid make_grid(std::size_t nx, std::size_t ny) {
  Grid g;
  g.nx = nx;
  g.ny = ny;
  g.x0 = 0;
  g.y0 = 0;
  g.dx = 1.0 / static_cast<double>(nx - 1);
  g.dy = 0.8 / static_cast<double>(ny - 1);
  for (std::size_t i = 0; i < ny; ++i)
    for (std::size_t j = 0; j < nx; ++j)
      g.values.push_back(smooth(g.x0 + static_cast<double>(j) * g.dx, g.y0 + static_cast<double>(i) * g.dy));
  return g;
}

// The unmasked cells of a grid as scattered points (row-major).
void grid_points(const Grid& g, std::vector<double>& x, std::vector<double>& y, std::vector<double>& t) {
  for (std::size_t i = 0; i < g.ny; ++i)
    for (std::size_t j = 0; j < g.nx; ++j) {
      const double v = g.values[i * g.nx + j];
      if (!std::isfinite(v)) continue;
      x.push_back(g.x0 + static_cast<double>(j) * g.dx);
      y.push_back(g.y0 + static_cast<double>(i) * g.dy);
      t.push_back(v);
    }
}

// K rotated kernels over the unit square with sigmas in [smin, smax] and mixed-sign weights.
std::vector<Canonical> make_kernels(std::size_t K, double smin, double smax, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<Canonical> ks;
  for (std::size_t k = 0; k < K; ++k) {
    const double s1 = smin + (smax - smin) * u(rng), s2 = smin + (smax - smin) * u(rng);
    const double th = 3.14159 * u(rng), c = std::cos(th), s = std::sin(th);
    const double a = 1 / (s1 * s1), b = 1 / (s2 * s2);
    ks.push_back({u(rng), 0.8 * u(rng), c * c * a + s * s * b, c * s * (a - b), s * s * a + c * c * b,
                  (u(rng) < 0.5 ? -1 : 1) * (0.2 + 2 * u(rng))});
  }
  return ks;
}

double max_abs_diff(const std::vector<Canonical>& a, const std::vector<Canonical>& b, int field) {
  double m = 0;
  for (std::size_t k = 0; k < a.size(); ++k)
    m = std::max(m, std::abs((&a[k].mx)[field] - (&b[k].mx)[field]));
  return m;
}
double max_abs(const std::vector<Canonical>& a, int field) {
  double m = 0;
  for (const auto& c : a) m = std::max(m, std::abs((&c.mx)[field]));
  return m;
}

// Relative agreement per gradient field (relative to that field's largest magnitude).
void expect_close(double la, const std::vector<Canonical>& ga, double lb,
                  const std::vector<Canonical>& gb, double rel, const char* what) {
  EXPECT_NEAR(la, lb, rel * std::abs(lb)) << what;
  for (int f = 0; f < 6; ++f)
    EXPECT_LE(max_abs_diff(ga, gb, f), rel * max_abs(gb, f)) << what << " field " << f;
}

TEST(RbfLocal, NoCullingMatchesScalarReferenceScatteredAndGrid) {
  const Grid g = make_grid(77, 45);
  std::vector<double> x, y, t;
  grid_points(g, x, y, t);
  const auto ks = make_kernels(13, 0.03, 0.3, 1);
  const PointSet<double> ref = PointSet<double>::from(x, y, t);
  std::vector<Canonical> gref(ks.size()), g1(ks.size()), g2(ks.size());
  const double lref = loss_grad_scalar(ref, ks, gref);
  LocalOptions opt;  // cull_tol = 0
  const auto scattered = TiledPoints<double>::from_points(x, y, t);
  const auto gridded = TiledPoints<double>::from_grid(g);
  LocalStats st;
  const double l1 = loss_grad_local(scattered, ks, g1, opt, &st);
  EXPECT_EQ(st.point_pairs, scattered.x.size() * ks.size());  // nothing culled
  expect_close(l1, g1, lref, gref, 1e-12, "scattered");
  const double l2 = loss_grad_local(gridded, ks, g2, opt, &st);
  EXPECT_GT(st.recurrent, 0u);
  expect_close(l2, g2, lref, gref, 1e-12, "grid + recurrence");
  EXPECT_NEAR(loss_grad_local(gridded, ks, {}, opt), lref, 1e-12 * lref);  // loss only
}

// Recurrence vs direct exp on the same tiles: 1e-12 (f64) and 1e-5 (f32) relative, with
// narrow kernels (h reaches the recurrence's safety threshold) and wide ones.
TEST(RbfLocal, GridRecurrenceMatchesDirectExp) {
  const Grid g = make_grid(150, 70);
  for (auto [smin, smax] : {std::pair{0.004, 0.02}, std::pair{0.02, 0.2}, std::pair{0.3, 2.0}}) {
    const auto ks = make_kernels(20, smin, smax, 7);
    LocalOptions on, off;
    off.recurrence = false;
    {
      const auto P = TiledPoints<double>::from_grid(g);
      std::vector<Canonical> ga(ks.size()), gb(ks.size());
      LocalStats st;
      const double la = loss_grad_local(P, ks, ga, on, &st);
      const double lb = loss_grad_local(P, ks, gb, off);
      EXPECT_GT(st.recurrent, 0u) << smin;
      expect_close(la, ga, lb, gb, 1e-12, "f64 recurrence");
    }
    {
      // f32: compare quantities without cancellation, so the 1e-5 is about exp(-q/2)
      // itself: zero targets and positive weights make r = f > 0, so the loss, the
      // weight gradient and the p11/p22 gradients are sums of positive terms.
      Grid zero = g;
      std::fill(zero.values.begin(), zero.values.end(), 0.0);
      auto pos = ks;
      for (auto& c : pos) c.w = std::abs(c.w);
      const auto P = TiledPoints<float>::from_grid(zero);
      std::vector<Canonical> ga(ks.size()), gb(ks.size());
      const double la = loss_grad_local(P, pos, ga, on);
      const double lb = loss_grad_local(P, pos, gb, off);
      EXPECT_NEAR(la, lb, 1e-5 * lb) << smin;
      for (std::size_t k = 0; k < ks.size(); ++k) {
        EXPECT_NEAR(ga[k].w, gb[k].w, 1e-5 * std::abs(gb[k].w)) << smin << " kernel " << k;
        EXPECT_NEAR(ga[k].p11, gb[k].p11, 1e-5 * std::abs(gb[k].p11)) << smin << " kernel " << k;
        EXPECT_NEAR(ga[k].p22, gb[k].p22, 1e-5 * std::abs(gb[k].p22)) << smin << " kernel " << k;
      }
    }
  }
}

// The neglected contribution stays under cull_error_bound for the loss and every
// gradient component, for several tolerances, on scattered and gridded points, while
// kernels drift across tile boundaries and widen (a sequence of parameter states such as
// an optimiser would visit).
TEST(RbfLocal, CulledErrorWithinStatedBound) {
  const Grid g = make_grid(131, 97);
  std::vector<double> x, y, t;
  grid_points(g, x, y, t);
  const PointSet<double> ref = PointSet<double>::from(x, y, t);
  const auto scattered = TiledPoints<double>::from_points(x, y, t);
  const auto gridded = TiledPoints<double>::from_grid(g);
  auto ks = make_kernels(40, 0.01, 0.06, 3);
  std::size_t checks = 0, culled_something = 0;
  for (int step = 0; step < 6; ++step) {
    std::vector<Canonical> gref(ks.size());
    const double lref = loss_grad_scalar(ref, ks, gref);
    for (double tol : {1e-1, 1e-3, 1e-6, 1e-10}) {
      for (const auto* P : {&scattered, &gridded}) {
        LocalOptions opt;
        opt.cull_tol = tol;
        std::vector<Canonical> gl(ks.size());
        LocalStats st;
        const double ll = loss_grad_local(*P, ks, gl, opt, &st);
        if (st.point_pairs < P->x.size() * ks.size()) ++culled_something;
        const CullBound b = cull_error_bound(ks, tol, P->rms, ll);
        // Rounding slack: the sums differ in order (~1e-15 relative of their size).
        const double slack = 1e-13;
        EXPECT_LE(std::abs(ll - lref), b.loss + slack * lref) << "tol " << tol << " step " << step;
        for (std::size_t k = 0; k < ks.size(); ++k)
          for (int f = 0; f < 6; ++f) {
            const double err = std::abs((&gl[k].mx)[f] - (&gref[k].mx)[f]);
            EXPECT_LE(err, (&b.grad[k].mx)[f] + slack * max_abs(gref, f))
                << "tol " << tol << " step " << step << " kernel " << k << " field " << f;
            ++checks;
          }
        // The bound is not vacuous: at tol 1e-10 it is tiny relative to the loss.
        if (tol == 1e-10) {
          EXPECT_LT(b.loss, 1e-7 * lref);
        }
      }
    }
    // Drift: every centre moves by ~1.5 tiles of the scattered binning, widths grow 40%.
    for (auto& c : ks) {
      c.mx += 0.07 * std::cos(static_cast<double>(step) + c.my * 10);
      c.my += 0.05 * std::sin(static_cast<double>(step) + c.mx * 10);
      c.p11 /= 1.96;
      c.p12 /= 1.96;
      c.p22 /= 1.96;
    }
  }
  EXPECT_GT(checks, 1000u);
  EXPECT_GT(culled_something, 20u);  // the test exercises culling, not only dense tiles
}

// A culled evaluation at a loose tolerance really differs from dense (so the bound test
// above can fail), and its error is below the bound but not far below it.
TEST(RbfLocal, LooseToleranceIsVisible) {
  const Grid g = make_grid(120, 90);
  std::vector<double> x, y, t;
  grid_points(g, x, y, t);
  const PointSet<double> ref = PointSet<double>::from(x, y, t);
  const auto P = TiledPoints<double>::from_grid(g);
  const auto ks = make_kernels(30, 0.02, 0.05, 11);
  std::vector<Canonical> gref(ks.size()), gl(ks.size());
  const double lref = loss_grad_scalar(ref, ks, gref);
  LocalOptions opt;
  opt.cull_tol = 0.05;
  const double ll = loss_grad_local(P, ks, gl, opt);
  const CullBound b = cull_error_bound(ks, opt.cull_tol, P.rms, ll);
  EXPECT_GT(std::abs(ll - lref), 1e-9 * lref);
  EXPECT_LE(std::abs(ll - lref), b.loss);
}

TEST(RbfLocal, MaskedGridCellsEqualScatteredUnmaskedPoints) {
  Grid g = make_grid(70, 41);
  for (std::size_t i = 0; i < g.ny; ++i)
    for (std::size_t j = 0; j < g.nx; ++j)
      if ((i * 7 + j * 3) % 11 == 0 || (i > 10 && i < 14)) g.values[i * g.nx + j] = kNaN;  // scattered + whole rows
  std::vector<double> x, y, t;
  grid_points(g, x, y, t);
  const auto P = TiledPoints<double>::from_grid(g);
  EXPECT_EQ(P.n, x.size());
  const auto ks = make_kernels(9, 0.05, 0.2, 5);
  std::vector<Canonical> gref(ks.size()), gl(ks.size());
  const double lref = loss_grad_scalar(PointSet<double>::from(x, y, t), ks, gref);
  const double ll = loss_grad_local(P, ks, gl, LocalOptions{});
  expect_close(ll, gl, lref, gref, 1e-12, "masked grid");
  // index maps slots back to the unmasked points.
  for (std::size_t s = 0; s < P.index.size(); ++s)
    if (P.index[s] >= 0) {
      EXPECT_EQ(P.x[s], x[static_cast<std::size_t>(P.index[s])]);
      EXPECT_EQ(P.t[s], t[static_cast<std::size_t>(P.index[s])]);
    }
}

TEST(RbfLocal, BitwiseEqualForAnyThreadCount) {
  const Grid g = make_grid(200, 150);
  std::vector<double> x, y, t;
  grid_points(g, x, y, t);
  const auto ks = make_kernels(50, 0.01, 0.1, 9);
  for (const auto& P : {TiledPoints<double>::from_grid(g), TiledPoints<double>::from_points(x, y, t)}) {
    LocalOptions opt;
    opt.cull_tol = 1e-10;
    std::vector<Canonical> g1(ks.size()), gn(ks.size());
    const double l1 = loss_grad_local(P, ks, g1, opt);
    for (int threads : {2, 3}) {
      opt.threads = threads;
      const double ln = loss_grad_local(P, ks, gn, opt);
      EXPECT_EQ(l1, ln);
      for (std::size_t k = 0; k < ks.size(); ++k)
        for (int f = 0; f < 6; ++f) EXPECT_EQ((&g1[k].mx)[f], (&gn[k].mx)[f]);
    }
  }
}

TEST(RbfLocal, NonPositiveDefiniteKernelIsNeverCulled) {
  const Grid g = make_grid(40, 30);
  std::vector<double> x, y, t;
  grid_points(g, x, y, t);
  std::vector<Canonical> ks = {{0.5, 0.4, 4.0, 3.0, 1.0, 0.7}};  // det < 0
  std::vector<Canonical> gref(1), gl(1);
  const double lref = loss_grad_scalar(PointSet<double>::from(x, y, t), ks, gref);
  LocalOptions opt;
  opt.cull_tol = 1e-3;
  const double ll = loss_grad_local(TiledPoints<double>::from_grid(g), ks, gl, opt);
  expect_close(ll, gl, lref, gref, 1e-12, "indefinite P");
}

}  // namespace
}  // namespace covfit::rbf
