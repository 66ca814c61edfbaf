// Whole-path evaluation (lambda_path.hpp) against the per-λ formulas at every λ: R^2 on the
// validation and train blocks, the exact and the linearised loss of W_lin, on several
// shapes (n < m, n > m, rank-deficient, s_min/s_max ~ 1e-9), λ from 1e-10 to 1e4 s_max^2 in
// random order, single λ, duplicates, λ = 0; and the reported error bound holds.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "covfit/cov/lambda_path.hpp"
#include "covfit/cov/linearized.hpp"
#include "covfit/cov/problem.hpp"
#include "covfit/cov/random.hpp"
#include "covfit/cov/validation.hpp"

namespace cc = covfit::cov;

namespace {

cc::Matrix gaussian(cc::Rng& rng, int r, int c) {
  cc::Matrix A(r, c);
  for (double& v : A.data) v = rng.normal();
  return A;
}

// kind 0: planted (n, m); 1: rank 5; 2: singular values over 4.5 decades (s_min/s_max ~1e-9);
// 3: planted with S on 1/50 of X'X's scale, so that R^2 falls to ~-2500 at large λ (as on
// photograph patches, where S is another quantity than the pixels' Gram matrix).
cc::Problem make_problem(int n, int m, int kind, std::uint64_t seed) {
  if (kind == 0 || kind == 3) {
    cc::Problem p = cc::planted_problem(n, m, std::min(n, m) / 3, 0.3, 0.5, seed).problem;
    if (kind == 3)
      for (double& v : p.S.data) v *= 0.02;
    cc::check_and_centre(p, "test");
    return p;
  }
  cc::Rng rng(seed);
  cc::Matrix X;
  if (kind == 1) {
    X = cc::matmul(gaussian(rng, n, 5), gaussian(rng, m, 5), false, true);
  } else {
    const int k = std::min(n, m);
    cc::Matrix A = gaussian(rng, n, k), B = gaussian(rng, m, k);
    for (int j = 0; j < k; ++j) {
      const double scale = std::pow(10.0, -4.5 * j / std::max(1, k - 1));
      for (int i = 0; i < n; ++i) A(i, j) *= scale;
    }
    X = cc::matmul(A, B, false, true);
  }
  // S: X'X-like signal plus symmetric noise.
  cc::Matrix S = cc::matmul(X, X, true, false);
  double rms = std::sqrt(cc::frobenius_sq(S) / (static_cast<double>(m) * m));
  for (int j = 0; j < m; ++j)
    for (int i = 0; i <= j; ++i) {
      const double e = 0.5 * rms * rng.normal();
      S(i, j) += e;
      if (i != j) S(j, i) += e;
    }
  cc::Problem p{X, S};
  cc::check_and_centre(p, "test");
  return p;
}

// count λ log-spaced over [lo, hi] s_max^2, shuffled.
std::vector<double> shuffled_grid(double s2, double lo, double hi, int count, std::uint64_t seed) {
  std::vector<double> l(count);
  for (int i = 0; i < count; ++i)
    l[i] = s2 * std::exp(std::log(lo) + (std::log(hi) - std::log(lo)) * i / std::max(1, count - 1));
  const std::vector<int> perm = cc::Rng(seed).permutation(count);
  std::vector<double> out(count);
  for (int i = 0; i < count; ++i) out[i] = l[perm[i]];
  return out;
}

// Reference for the linearised loss: the per-λ formula in quad precision (in double it
// loses digits to the cancellation T - 2 a M when λ << 4 s_i s_j).
double loss_linearized_quad(const cc::Reduced& red, double lambda) {
  __float128 acc = 0;
  for (int j = 0; j < red.r; ++j)
    for (int i = 0; i < red.r; ++i) {
      const __float128 a = static_cast<__float128>(red.sigma[i]) * red.sigma[j];
      const __float128 t = static_cast<__float128>(red.R(i, j)) - (i == j ? red.s[i] : 0.0);
      const __float128 M = 2 * a * t / (4 * a * a + lambda);
      const __float128 e = t - 2 * a * M;
      acc += e * e + static_cast<__float128>(lambda) * M * M;
    }
  return static_cast<double>(acc / 2) + red.loss_const();
}

// R^2 deviation in the path's units: absolute, relative where |R^2| > 1 (SS_res error
// relative to max(SS_tot, SS_res)).
double dev(double got, double ref) { return std::abs(got - ref) / std::max(1.0, std::abs(ref)); }

struct Shape {
  const char* name;
  int n, m, kind;
  double lo;              // smallest λ / s_max^2 (largest: 1e4)
  bool expect_interp;     // false: R^2 spans too many decades for 1e-12, per λ is right
};

class CovLambdaPath : public ::testing::TestWithParam<Shape> {};

TEST_P(CovLambdaPath, R2AndLossesEqualPerLambdaFormulaAtEveryLambda) {
  const Shape sh = GetParam();
  const cc::Problem p = make_problem(sh.n, sh.m, sh.kind, 11 + sh.kind);
  const cc::Reduced red = cc::reduce(p.X, p.S);
  ASSERT_GT(red.r, 0);
  const double s2 = red.s_max() * red.s_max();
  const std::vector<double> lam = shuffled_grid(s2, sh.lo, 1e4, 400, 5);
  const double tol = 1e-12;

  // Validation and train R^2 on every fold.
  const auto folds = cc::kfold_split(sh.m, 3, 2, "test");
  int interpolated = 0;
  for (const cc::Fold& fold : folds) {
    const cc::FoldData fd = cc::prepare_fold(p, fold);
    cc::PathStats sv, st;
    const auto val = cc::r2_val_path(fd, lam, {}, &sv);
    const auto tr = cc::r2_train_path(fd, lam, {}, &st);
    EXPECT_LE(sv.err_bound, tol);
    EXPECT_LE(st.err_bound, tol);
    interpolated += sv.interpolated + st.interpolated;
    double worst_v = 0, worst_t = 0;
    for (std::size_t l = 0; l < lam.size(); ++l) {
      const cc::Matrix M = cc::linearized_M(fd.red, lam[l]);
      const cc::R2Pair rv = cc::r2_val(fd, M), rt = cc::r2_train(fd, M);
      worst_v = std::max({worst_v, dev(val[l].linear, rv.linear), dev(val[l].exact, rv.exact)});
      worst_t = std::max({worst_t, dev(tr[l].linear, rt.linear), dev(tr[l].exact, rt.exact)});
    }
    // Within the stated tolerance and within the reported bound (an estimate: it must not
    // be violated).
    EXPECT_LE(worst_v, tol) << sh.name;
    EXPECT_LE(worst_t, tol) << sh.name;
    EXPECT_LE(worst_v, std::max(sv.err_bound, 1e-15)) << sh.name << " evals " << sv.evaluations;
    EXPECT_LE(worst_t, std::max(st.err_bound, 1e-15)) << sh.name << " evals " << st.evaluations;
    // (The rescaled shape spans R^2 magnitudes that no one piece can hold at 1e-12.)
    if (sh.kind == 3) {
      const auto largest = std::max_element(lam.begin(), lam.end()) - lam.begin();
      EXPECT_LT(val[static_cast<std::size_t>(largest)].linear, -100.0) << sh.name;
      EXPECT_GE(sv.pieces, 2) << sh.name;
    }
  }
  if (sh.expect_interp) {
    EXPECT_GT(interpolated, 0) << sh.name << ": the path never interpolated (test is vacuous)";
  }

  // Exact loss of W_lin and the linearised loss on all the data.
  cc::PathStats sl;
  const auto loss = cc::loss_lin_path(red, lam, {}, &sl);
  const auto lossl = cc::loss_linearized_path(red, lam);
  EXPECT_LE(sl.err_bound, tol);
  double worst = 0, worst_l = 0;
  for (std::size_t l = 0; l < lam.size(); ++l) {
    const double ref = cc::loss_reduced(red, cc::linearized_M(red, lam[l]), lam[l]);
    const double rel = std::abs(loss[l] - ref) / std::abs(ref);
    worst = std::max(worst, rel);
    worst_l = std::max(worst_l, std::abs(lossl[l] - loss_linearized_quad(red, lam[l])) /
                                    loss_linearized_quad(red, lam[l]));
  }
  EXPECT_LE(worst, tol) << sh.name;
  // The path's bound covers its interpolation; L_lin + B and loss_reduced also differ by
  // loss_reduced's own rounding (R against Σ(I+M)²Σ: up to ~1e-14 relative here).
  EXPECT_LE(worst, sl.err_bound + 1e-13) << sh.name << " evals " << sl.evaluations;
  EXPECT_LE(worst_l, tol) << sh.name;
}

INSTANTIATE_TEST_SUITE_P(Shapes, CovLambdaPath,
                         ::testing::Values(Shape{"n_lt_m", 40, 90, 0, 1e-10, true},
                                           Shape{"n_gt_m", 90, 45, 0, 1e-10, true},
                                           Shape{"rank5", 40, 60, 1, 1e-10, true},
                                           Shape{"ill1e9", 50, 50, 2, 1e-10, false},
                                           Shape{"ill1e9_lam_from_1em2", 50, 50, 2, 1e-2, true},
                                           Shape{"S_rescaled", 60, 120, 3, 1e-10, true}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(CovLambdaPathEdge, SingleDuplicateZeroAndForcedExact) {
  const cc::Problem p = make_problem(60, 80, 0, 3);
  const auto folds = cc::kfold_split(80, 4, 1, "test");
  const cc::FoldData fd = cc::prepare_fold(p, folds[0]);
  ASSERT_EQ(fd.red.s.back() > 0, true);
  const double s2 = fd.red.s_max() * fd.red.s_max();

  // A single λ: the per-λ formula, one evaluation, bit-identical.
  cc::PathStats st;
  auto one = cc::r2_val_path(fd, {0.3 * s2}, {}, &st);
  const cc::R2Pair ref = cc::r2_val(fd, cc::linearized_M(fd.red, 0.3 * s2));
  EXPECT_EQ(st.evaluations, 1);
  EXPECT_EQ(st.interpolated, 0);
  EXPECT_EQ(one[0].linear, ref.linear);
  EXPECT_EQ(one[0].exact, ref.exact);

  // λ = 0 (all s_i > 0), duplicates and a long grid, unsorted.
  std::vector<double> lam = shuffled_grid(s2, 1e-4, 1e3, 400, 9);
  lam.push_back(0.0);
  lam.push_back(lam[3]);
  lam.insert(lam.begin(), lam[10]);
  const auto path = cc::r2_val_path(fd, lam, {}, &st);
  EXPECT_GT(st.interpolated, 0);
  EXPECT_LT(st.evaluations, 200);
  for (std::size_t l = 0; l < lam.size(); ++l) {
    const cc::R2Pair r = cc::r2_val(fd, cc::linearized_M(fd.red, lam[l]));
    EXPECT_LE(dev(path[l].linear, r.linear), 1e-12) << lam[l];
    EXPECT_LE(dev(path[l].exact, r.exact), 1e-12) << lam[l];
  }
  EXPECT_EQ(path[0].linear, path[11].linear);  // duplicates agree

  // force_exact: the per-λ formula, bit for bit.
  cc::PathOptions opt;
  opt.force_exact = true;
  const auto forced = cc::r2_val_path(fd, lam, opt, &st);
  EXPECT_EQ(st.evaluations, static_cast<int>(lam.size()));
  for (std::size_t l = 0; l < lam.size(); ++l) {
    const cc::R2Pair r = cc::r2_val(fd, cc::linearized_M(fd.red, lam[l]));
    EXPECT_EQ(forced[l].linear, r.linear);
    EXPECT_EQ(forced[l].exact, r.exact);
  }
}

// A one-stimulus validation block has SS_tot = 0: R^2 is NaN at every λ, as per λ.
TEST(CovLambdaPathEdge, ZeroTotalSumOfSquaresGivesNaN) {
  const cc::Problem p = make_problem(20, 12, 0, 4);
  const cc::FoldData fd = cc::prepare_fold(p, cc::explicit_split(12, {3}, "test"));
  const double s2 = fd.red.s_max() * fd.red.s_max();
  const auto v = cc::r2_val_path(fd, shuffled_grid(s2, 1e-4, 1e2, 50, 1));
  for (const auto& x : v) {
    EXPECT_TRUE(std::isnan(x.linear));
    EXPECT_TRUE(std::isnan(x.exact));
  }
  EXPECT_TRUE(std::isnan(cc::r2_val(fd, cc::linearized_M(fd.red, s2)).linear));
}

// The engine's reported bound on functions with a known closed form: Stieltjes sums
// Σ w_k / (d_k + λ) (the shape of every path scalar) with poles spread over 12 decades,
// and one with a pole just left of the interval (slow decay: forces doubling/splitting).
TEST(CovLambdaPathEdge, EngineErrorBoundHoldsOnKnownFunctions) {
  cc::Rng rng(17);
  std::vector<double> w(60), d(60);
  for (int k = 0; k < 60; ++k) {
    w[k] = rng.normal();
    d[k] = std::pow(10.0, -8.0 + 12.0 * rng.uniform());
  }
  for (double near_pole : {0.0, 1e-9}) {
    const auto f = [&](double l, double* out) {
      double a = 0, b = 0;
      for (int k = 0; k < 60; ++k) a += w[k] / (d[k] + l), b += w[k] * l / (d[k] + l);
      out[0] = a * a;  // quadratic in the "M" entries, like SS_res
      out[1] = b + (near_pole > 0 ? near_pole / (l - 0.9 * 1e-7) : 0.0);
    };
    std::vector<double> lam(1500);
    for (int i = 0; i < 1500; ++i) lam[i] = std::pow(10.0, -7.0 + 10.0 * rng.uniform());
    cc::PathStats st;
    const double tol = 1e-13;
    const auto abs_tol = [&](int, const std::vector<double>&, const std::vector<double>& v) {
      double mx = 0;
      for (double x : v) mx = std::max(mx, std::abs(x));
      return tol * mx;
    };
    const auto out = cc::chebyshev_log_path(lam, 2, f, abs_tol, 1.0, false, &st);
    EXPECT_GT(st.interpolated, 0);
    double worst = 0;
    // Error relative to each piece's absolute tolerance is <= st.err_bound (<= 1).
    double mx0 = 0, mx1 = 0;
    std::vector<double> ref(2);
    for (double l : lam) {
      f(l, ref.data());
      mx0 = std::max(mx0, std::abs(ref[0])), mx1 = std::max(mx1, std::abs(ref[1]));
    }
    for (std::size_t i = 0; i < lam.size(); ++i) {
      f(lam[i], ref.data());
      worst = std::max({worst, std::abs(out[2 * i] - ref[0]) / (tol * mx0),
                        std::abs(out[2 * i + 1] - ref[1]) / (tol * mx1)});
    }
    EXPECT_LE(st.err_bound, 1.0);
    EXPECT_LE(worst, 1.0) << "near_pole " << near_pole << " pieces " << st.pieces << " degree "
                          << st.max_degree << " evals " << st.evaluations;
  }
}

}  // namespace
