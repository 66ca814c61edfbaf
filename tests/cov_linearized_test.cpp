// The linearised closed form and the reduced losses against brute-force dense computation.
#include <gtest/gtest.h>
#include <lapacke.h>

#include <cmath>
#include <sstream>
#include <utility>

#include "covfit/cov/dense.hpp"
#include "covfit/cov/linearized.hpp"
#include "covfit/cov/problem.hpp"
#include "covfit/cov/random.hpp"
#include "covfit/cov/svd.hpp"
#include "cov_test_problems.hpp"

namespace cc = covfit::cov;

namespace {

// Closed form vs dense solve: the dense solve's error grows like eps * s_max^2 / lambda,
// and the smallest lambda used is 1e-3 s_max^2, so 1e-9 leaves a wide margin.
constexpr double kClosedFormTol = 1e-9;
// Same quantity computed two ways with O(r^3) vs O(n^2 m) roundoff.
constexpr double kReducedVsDenseTol = 1e-10;

// Centred X of the given rank (rank < min(n, m) makes it rank deficient), symmetric S.
cc::Problem random_problem(int n, int m, int rank, std::uint64_t seed) {
  cc::Rng rng(seed);
  cc::Matrix X = cc::test::random_low_rank_x(rng, n, m, rank);
  return {std::move(X), cc::test::random_symmetric(rng, m, 3.0)};
}

// Minimiser of L_lin over all n^2 entries of W by dense least squares:
//   min || vec(S - X^T X) - A vec(W) ||^2 + lambda ||vec W||^2,
//   A vec(W) = vec(X^T W^T J X + X^T J W X), stacked with sqrt(lambda) I and solved by dgels.
cc::Matrix brute_force_linearized(const cc::Problem& p, double lambda) {
  const int n = p.X.rows, m = p.X.cols, N = n * n, rows = m * m + N;
  const cc::Matrix JX = cc::centre_rows(p.X);
  cc::Matrix A(rows, N);
  for (int b = 0; b < n; ++b)
    for (int a = 0; a < n; ++a) {
      cc::Matrix E(n, n);
      E(a, b) = 1.0;
      const cc::Matrix EX = cc::matmul(E, p.X);
      cc::Matrix Y = cc::matmul(EX, JX, true, false);
      cc::gemm(true, false, 1.0, JX, EX, 1.0, Y);
      const int c = a + b * n;
      for (int k = 0; k < m * m; ++k) A(k, c) = Y.data[k];
      A(m * m + c, c) = std::sqrt(lambda);
    }
  cc::Matrix rhs(rows, 1);
  const cc::Matrix XtX = cc::matmul(p.X, p.X, true, false);
  for (int k = 0; k < m * m; ++k) rhs.data[k] = p.S.data[k] - XtX.data[k];
  const int info = LAPACKE_dgels(LAPACK_COL_MAJOR, 'N', rows, N, 1, A.data.data(), rows,
                                 rhs.data.data(), rows);
  EXPECT_EQ(info, 0);
  cc::Matrix W(n, n);
  for (int k = 0; k < N; ++k) W.data[k] = rhs.data[k];
  return W;
}

struct Shape {
  int n, m, rank;
};

class CovClosedForm : public ::testing::TestWithParam<Shape> {};

TEST_P(CovClosedForm, MatchesDenseNormalEquations) {
  const Shape sh = GetParam();
  const cc::Problem p = random_problem(sh.n, sh.m, sh.rank, 100 + sh.n * 10 + sh.m);
  const cc::Reduced red = cc::reduce(p.X, p.S);
  ASSERT_EQ(red.r, sh.rank);
  for (double rel : {1e-3, 1e-1, 1.0, 30.0}) {
    const double lambda = rel * red.s_max() * red.s_max();
    const cc::Matrix M = cc::linearized_M(red, lambda);
    const cc::Matrix W = cc::form_W(red.U, M);
    const cc::Matrix Wb = brute_force_linearized(p, lambda);
    EXPECT_LT(cc::frobenius_diff(W, Wb), kClosedFormTol * cc::frobenius(Wb))
        << "lambda/s_max^2 = " << rel;
    // Its loss is the dense minimum, and the reduced loss agrees with the dense one.
    const double Ld = cc::loss_linearized_dense(p.X, p.S, W, lambda);
    EXPECT_NEAR(cc::loss_linearized_reduced(red, M, lambda), Ld, kReducedVsDenseTol * Ld);
  }
}

INSTANTIATE_TEST_SUITE_P(CovShapes, CovClosedForm,
                         ::testing::Values(Shape{7, 4, 4}, Shape{4, 7, 3}, Shape{6, 6, 2},
                                           Shape{5, 8, 2}),
                         [](const auto& info) {
                           std::ostringstream os;  // not std::string + (GCC 12 -Wrestrict)
                           os << "n" << info.param.n << "_m" << info.param.m << "_rank"
                              << info.param.rank;
                           return os.str();
                         });

// Reduced exact loss, linearised loss and gradient norm equal the n x n definitions for
// arbitrary (nonsymmetric) M.
TEST(CovReducedLoss, EqualsDenseForNonsymmetricM) {
  for (const Shape sh : {Shape{9, 5, 4}, Shape{5, 9, 4}, Shape{8, 8, 3}}) {
    const cc::Problem p = random_problem(sh.n, sh.m, sh.rank, 7 + sh.n);
    const cc::Reduced red = cc::reduce(p.X, p.S);
    cc::Rng rng(11);
    cc::Matrix M(red.r, red.r);
    for (double& v : M.data) v = 0.7 * rng.normal();
    const cc::Matrix W = cc::form_W(red.U, M);
    const double lambda = 0.37 * red.s_max();
    const double L = cc::loss_dense(p.X, p.S, W, lambda);
    EXPECT_NEAR(cc::loss_reduced(red, M, lambda), L, kReducedVsDenseTol * L);
    const double Ll = cc::loss_linearized_dense(p.X, p.S, W, lambda);
    EXPECT_NEAR(cc::loss_linearized_reduced(red, M, lambda), Ll, kReducedVsDenseTol * Ll);
    const double g = cc::frobenius(cc::grad_dense(p.X, p.S, W, lambda));
    EXPECT_NEAR(cc::grad_norm_reduced(red, M, lambda), g, kReducedVsDenseTol * g);
    const auto d = cc::diag_of_W(red.U, M);
    for (int i = 0; i < sh.n; ++i) EXPECT_NEAR(d[i], W(i, i), 1e-13 * cc::frobenius(W));
  }
}

// Central differences of the dense loss confirm the dense gradient formula used as the
// reference for the exact solver.
TEST(CovReducedLoss, DenseGradientMatchesFiniteDifferences) {
  const cc::Problem p = random_problem(5, 4, 3, 5);
  cc::Rng rng(2);
  cc::Matrix W(5, 5);
  for (double& v : W.data) v = 0.3 * rng.normal();
  const double lambda = 0.8;
  const cc::Matrix G = cc::grad_dense(p.X, p.S, W, lambda);
  const double h = 1e-6;
  for (int k = 0; k < 25; ++k) {
    cc::Matrix Wp = W, Wm = W;
    Wp.data[k] += h;
    Wm.data[k] -= h;
    const double fd =
        (cc::loss_dense(p.X, p.S, Wp, lambda) - cc::loss_dense(p.X, p.S, Wm, lambda)) / (2 * h);
    EXPECT_NEAR(G.data[k], fd, 1e-6 * (1.0 + std::abs(fd)));
  }
}

// OpenBLAS's threaded kernels (dgesdd's dgemv/dgemm) split reductions differently for
// different thread counts, so bit-reproducibility needs a fixed BLAS thread count: with one
// BLAS thread (what the orchestrator uses) repeated runs are bit-identical, and 1 vs 2
// threads differ only at roundoff level. If this test starts failing on the first check,
// something in cov became nondeterministic (e.g. an unordered parallel reduction).
TEST(CovReducedLoss, DeterministicWithFixedBlasThreads) {
  const auto pl = cc::planted_problem(300, 200, 10, 0.3, 0.5, 5);
  auto run = [&](int threads) {
    cc::BlasThreads guard(threads);
    const cc::Reduced red = cc::reduce(pl.problem.X, pl.problem.S);
    cc::Matrix M = cc::linearized_M(red, 0.1 * red.s_max() * red.s_max());
    return cc::form_W(red.U, M);
  };
  const cc::Matrix a = run(1), b = run(1), c = run(2);
  EXPECT_TRUE(a.data == b.data);
  EXPECT_LT(cc::frobenius_diff(a, c), 1e-11 * cc::frobenius(a));
}

}  // namespace
