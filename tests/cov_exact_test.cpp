// Exact solver: stationarity in the full n x n space, global optimality against brute-force
// L-BFGS on W from several starts, the certificate, and the continuation fallback.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <deque>

#include "covfit/cov/dense.hpp"
#include "covfit/cov/exact.hpp"
#include "covfit/cov/linearized.hpp"
#include "covfit/cov/problem.hpp"
#include "covfit/cov/random.hpp"
#include "covfit/cov/svd.hpp"
#include "cov_test_problems.hpp"

namespace cc = covfit::cov;

namespace {

// Full-space gradient at the solution relative to the gradient at W = 0. The reduced solver
// stops at 1e-10 relative in P; the n x n gradient adds O(n^2 m) roundoff.
constexpr double kFullGradTol = 1e-8;
// Brute-force L-BFGS stops at a gradient of 1e-9 relative, i.e. loss ~1e-12 relative above
// its stationary value; the exact solver must not be worse than any start by more than this.
constexpr double kLossTol = 1e-9;

cc::Problem random_problem(int n, int m, int rank, std::uint64_t seed) {
  cc::Rng rng(seed);
  cc::Problem p{cc::test::random_low_rank_x(rng, n, m, rank), cc::Matrix(m, m)};
  // Target: a random PSD matrix plus symmetric noise, so some directions want shrinkage
  // (P with small eigenvalues) and full-space descent can get stuck.
  cc::Matrix C(m, m);
  for (double& v : C.data) v = rng.normal();
  p.S = cc::gram(C);
  for (int j = 0; j < m; ++j)
    for (int i = 0; i <= j; ++i) {
      const double e = 2.0 * rng.normal();
      p.S(i, j) += e;
      if (i != j) p.S(j, i) += e;
    }
  return p;
}

// Plain L-BFGS (memory 10, Armijo backtracking) on all n^2 entries of W.
double lbfgs_full(const cc::Problem& p, double lambda, cc::Matrix W, int max_iter = 20000) {
  const std::size_t N = W.data.size();
  auto dotv = [](const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0.0;
    for (std::size_t k = 0; k < a.size(); ++k) s += a[k] * b[k];
    return s;
  };
  double f = cc::loss_dense(p.X, p.S, W, lambda);
  std::vector<double> g = cc::grad_dense(p.X, p.S, W, lambda).data;
  const double g0 = std::sqrt(dotv(g, g));
  std::deque<std::vector<double>> S, Yv;
  for (int it = 0; it < max_iter && std::sqrt(dotv(g, g)) > 1e-9 * g0; ++it) {
    std::vector<double> q = g, alpha(S.size());
    for (int i = static_cast<int>(S.size()) - 1; i >= 0; --i) {
      alpha[i] = dotv(S[i], q) / dotv(Yv[i], S[i]);
      for (std::size_t k = 0; k < N; ++k) q[k] -= alpha[i] * Yv[i][k];
    }
    if (!S.empty()) {
      const double gamma = dotv(S.back(), Yv.back()) / dotv(Yv.back(), Yv.back());
      for (double& v : q) v *= gamma;
    } else {
      for (double& v : q) v /= g0;
    }
    for (std::size_t i = 0; i < S.size(); ++i) {
      const double beta = dotv(Yv[i], q) / dotv(Yv[i], S[i]);
      for (std::size_t k = 0; k < N; ++k) q[k] += S[i][k] * (alpha[i] - beta);
    }
    double slope = -dotv(g, q);
    if (slope >= 0) {  // not a descent direction: reset memory
      S.clear(), Yv.clear();
      q = g;
      for (double& v : q) v /= g0;
      slope = -dotv(g, q);
    }
    double t = 1.0, fn = 0.0;
    cc::Matrix Wn = W;
    for (int bt = 0; bt < 60; ++bt, t *= 0.5) {
      for (std::size_t k = 0; k < N; ++k) Wn.data[k] = W.data[k] - t * q[k];
      fn = cc::loss_dense(p.X, p.S, Wn, lambda);
      if (fn <= f + 1e-4 * t * slope) break;
    }
    if (!(fn < f)) break;
    std::vector<double> gn = cc::grad_dense(p.X, p.S, Wn, lambda).data, s(N), y(N);
    for (std::size_t k = 0; k < N; ++k) s[k] = Wn.data[k] - W.data[k], y[k] = gn[k] - g[k];
    if (dotv(s, y) > 1e-300) {
      S.push_back(s), Yv.push_back(y);
      if (S.size() > 10) S.pop_front(), Yv.pop_front();
    }
    W = Wn, f = fn, g = gn;
  }
  return f;
}

struct Case {
  int n, m, rank;
  double lambda_rel;  // lambda / s_max^2
};

class CovExact : public ::testing::TestWithParam<Case> {};

TEST_P(CovExact, GlobalOptimumCertified) {
  const Case c = GetParam();
  const cc::Problem p = random_problem(c.n, c.m, c.rank, 31 * c.n + c.m);
  const cc::Reduced red = cc::reduce(p.X, p.S);
  ASSERT_EQ(red.r, c.rank);
  const double lambda = c.lambda_rel * red.s_max() * red.s_max();
  const cc::ExactResult res = cc::solve_exact(red, lambda);
  ASSERT_EQ(res.status, cc::ExactStatus::converged) << res.message;
  EXPECT_LE(res.rel_grad, 1e-10);
  EXPECT_GT(res.min_eig_P, 0.0);
  EXPECT_LE(res.gap_bound, 1e-9 * std::abs(res.f) + 1e-300) << res.message;
  for (int j = 0; j < red.r; ++j)
    for (int i = 0; i < red.r; ++i) EXPECT_EQ(res.M(i, j), res.M(j, i));

  // Full-space stationarity and the loss identity through the n x n definitions.
  const cc::Matrix W = cc::form_W(red.U, res.M);
  const cc::Matrix Z(c.n, c.n);
  const double g = cc::frobenius(cc::grad_dense(p.X, p.S, W, lambda));
  EXPECT_LT(g, kFullGradTol * cc::frobenius(cc::grad_dense(p.X, p.S, Z, lambda)));
  const double L = cc::loss_dense(p.X, p.S, W, lambda);
  EXPECT_NEAR(res.loss, L, 1e-11 * L);

  // No start of brute-force L-BFGS on W does better: W = 0, the linearised solution, and
  // random W of two sizes.
  cc::Rng rng(99);
  std::vector<cc::Matrix> starts = {cc::Matrix(c.n, c.n),
                                    cc::form_W(red.U, cc::linearized_M(red, lambda))};
  for (double scale : {0.5, 1.5})
    for (int k = 0; k < 2; ++k) {
      cc::Matrix W0(c.n, c.n);
      for (double& v : W0.data) v = scale * rng.normal() / std::sqrt(c.n);
      starts.push_back(W0);
    }
  double best_bf = INFINITY;
  for (const cc::Matrix& W0 : starts) {
    const double Lbf = lbfgs_full(p, lambda, W0);
    EXPECT_LE(res.loss, Lbf + kLossTol * Lbf);
    best_bf = std::min(best_bf, Lbf);
  }
  // ... and some start finds the same value (the optimum is reachable, the test is live).
  EXPECT_NEAR(res.loss, best_bf, 1e-7 * best_bf);
}

INSTANTIATE_TEST_SUITE_P(CovCases, CovExact,
                         ::testing::Values(Case{6, 4, 4, 1e-3}, Case{6, 4, 4, 1e-1},
                                           Case{4, 7, 3, 1e-4}, Case{4, 7, 3, 1.0},
                                           Case{6, 6, 2, 1e-2}, Case{7, 5, 4, 10.0}),
                         [](const auto& info) {
                           const Case& c = info.param;
                           std::ostringstream os;  // not std::string + (GCC 12 -Wrestrict)
                           os << "n" << c.n << "_m" << c.m << "_r" << c.rank << "_case" << info.index;
                           return os.str();
                         });

// The continuation fallback alone (direct start disabled) reaches the same optimum.
TEST(CovExactSolver, ContinuationReachesSameOptimum) {
  const cc::Problem p = random_problem(30, 20, 20, 5);
  const cc::Reduced red = cc::reduce(p.X, p.S);
  const double lambda = 1e-4 * red.s_max() * red.s_max();
  const cc::ExactResult a = cc::solve_exact(red, lambda);
  cc::ExactOptions opt;
  opt.direct_start = false;
  const cc::ExactResult b = cc::solve_exact(red, lambda, opt);
  ASSERT_EQ(a.status, cc::ExactStatus::converged) << a.message;
  ASSERT_EQ(b.status, cc::ExactStatus::converged) << b.message;
  EXPECT_TRUE(b.used_continuation);
  EXPECT_LT(cc::frobenius_diff(a.M, b.M), 1e-7 * cc::frobenius(a.M));
  EXPECT_NEAR(a.loss, b.loss, 1e-12 * a.loss);
}

// A sweep (warm starts) gives the same solutions as independent solves, in input order.
TEST(CovExactSolver, SweepMatchesIndependentSolves) {
  const cc::Problem p = random_problem(25, 30, 18, 6);
  const cc::Reduced red = cc::reduce(p.X, p.S);
  const double s2 = red.s_max() * red.s_max();
  const std::vector<double> lambdas = {1e-3 * s2, 1.0 * s2, 1e-5 * s2, 1e-1 * s2};
  const auto sweep = cc::sweep_exact(red, lambdas);
  ASSERT_EQ(sweep.size(), lambdas.size());
  for (std::size_t i = 0; i < lambdas.size(); ++i) {
    const cc::ExactResult one = cc::solve_exact(red, lambdas[i]);
    ASSERT_EQ(sweep[i].status, cc::ExactStatus::converged) << sweep[i].message;
    EXPECT_EQ(sweep[i].lambda, lambdas[i]);
    EXPECT_LT(cc::frobenius_diff(sweep[i].M, one.M), 1e-7 * (1.0 + cc::frobenius(one.M)));
    // Exact optimum is never worse than the linearised W under the exact loss.
    EXPECT_LE(sweep[i].loss, cc::loss_reduced(red, cc::linearized_M(red, lambdas[i]), lambdas[i]));
  }
}

// A dense path (a quarter decade per step: sweep_exact then starts each lambda from the
// log-linear prediction of its two larger neighbours): every lambda certified and equal to
// an independent cold solve within the two certificates.
TEST(CovExactSolver, DensePathWithPredictedStartsMatchesColdSolves) {
  const cc::Problem p = random_problem(30, 24, 20, 11);
  const cc::Reduced red = cc::reduce(p.X, p.S);
  const double s2 = red.s_max() * red.s_max();
  std::vector<double> lambdas;
  for (int k = 0; k <= 16; ++k) lambdas.push_back(std::pow(10.0, -k / 4.0) * s2);
  const auto path = cc::sweep_exact(red, lambdas);
  ASSERT_EQ(path.size(), lambdas.size());
  for (std::size_t i = 0; i < lambdas.size(); ++i) {
    SCOPED_TRACE("lambda/s_max^2 = " + std::to_string(lambdas[i] / s2) + ": " + path[i].message);
    ASSERT_EQ(path[i].status, cc::ExactStatus::converged);
    const cc::ExactResult cold = cc::solve_exact(red, lambdas[i]);
    ASSERT_EQ(cold.status, cc::ExactStatus::converged) << cold.message;
    const double rounding = 1e-13 * std::abs(cold.f);
    EXPECT_LE(path[i].f - cold.f, cold.gap_bound + path[i].gap_bound + rounding);
    EXPECT_LE(cold.f - path[i].f, cold.gap_bound + path[i].gap_bound + rounding);
    EXPECT_LT(cc::frobenius_diff(path[i].M, cold.M), 1e-7 * (1.0 + cc::frobenius(cold.M)));
  }
}

}  // namespace
