// free_diag model (W = diag(d) + F), linearised: against a dense solve of its normal
// equations over (d, all n^2 entries of F); direct == Woodbury; path == single solves.
#include <gtest/gtest.h>
#include <lapacke.h>

#include <cmath>
#include <sstream>

#include "covfit/cov/dense.hpp"
#include "covfit/cov/diagonal.hpp"
#include "covfit/cov/exact.hpp"
#include "covfit/cov/linearized.hpp"
#include "covfit/cov/problem.hpp"
#include "covfit/cov/random.hpp"
#include "covfit/cov/svd.hpp"
#include "covfit/cov/sweep.hpp"
#include "covfit/cov/validation.hpp"

namespace cc = covfit::cov;

namespace {

struct Dense {
  std::vector<double> d;
  cc::Matrix F;
};

// min || vec(S - X^T X) - A(diag(d) + F) ||^2 + lambda ||F||^2 + lambda_d ||d||^2 over
// (d, F) by dgels on the stacked system; A(W) = vec(X^T W^T J X + X^T J W X).
Dense brute_force(const cc::Matrix& X, const cc::Matrix& S, double lambda, double lambda_d) {
  const int n = X.rows, m = X.cols, N = n + n * n, rows = m * m + N;
  const cc::Matrix JX = cc::centre_rows(X);
  cc::Matrix A(rows, N);
  auto put = [&](const cc::Matrix& E, int c) {
    const cc::Matrix EX = cc::matmul(E, X);
    cc::Matrix Y = cc::matmul(EX, JX, true, false);
    cc::gemm(true, false, 1.0, JX, EX, 1.0, Y);
    for (int k = 0; k < m * m; ++k) A(k, c) = Y.data[k];
  };
  for (int k = 0; k < n; ++k) {
    cc::Matrix E(n, n);
    E(k, k) = 1.0;
    put(E, k);
    A(m * m + k, k) = std::sqrt(lambda_d);
  }
  for (int e = 0; e < n * n; ++e) {
    cc::Matrix E(n, n);
    E.data[e] = 1.0;
    put(E, n + e);
    A(m * m + n + e, n + e) = std::sqrt(lambda);
  }
  cc::Matrix rhs(rows, 1);
  const cc::Matrix XtX = cc::matmul(X, X, true, false);
  for (int k = 0; k < m * m; ++k) rhs.data[k] = S.data[k] - XtX.data[k];
  EXPECT_EQ(LAPACKE_dgels(LAPACK_COL_MAJOR, 'N', rows, N, 1, A.data.data(), rows,
                          rhs.data.data(), rows),
            0);
  Dense out{std::vector<double>(rhs.data.begin(), rhs.data.begin() + n), cc::Matrix(n, n)};
  for (int e = 0; e < n * n; ++e) out.F.data[e] = rhs.data[n + e];
  return out;
}

struct Shape {
  int n, m, rank;
};

class CovDiagonal : public ::testing::TestWithParam<Shape> {};

TEST_P(CovDiagonal, MatchesDenseNormalEquationsBothSolvers) {
  const Shape sh = GetParam();
  cc::Rng rng(50 + sh.n);
  cc::Matrix A(sh.n, sh.rank), B(sh.m, sh.rank), S(sh.m, sh.m);
  for (double& v : A.data) v = rng.normal();
  for (double& v : B.data) v = rng.normal();
  const cc::Matrix X = cc::centre_rows(cc::matmul(A, B, false, true));
  for (int j = 0; j < sh.m; ++j)
    for (int i = 0; i <= j; ++i) S(i, j) = S(j, i) = 2.0 * rng.normal();
  const cc::Reduced red = cc::reduce(X, S);
  const double s2 = red.s_max() * red.s_max();
  for (double lam_rel : {1e-2, 1.0})
    for (double lamd_rel : {1e-2, 1.0}) {
      const double lambda = lam_rel * s2, lambda_d = lamd_rel * s2;
      const Dense ref = brute_force(X, S, lambda, lambda_d);
      double dn = 0.0;
      for (double v : ref.d) dn += v * v;
      dn = std::sqrt(dn);
      for (auto solver : {cc::DiagSolver::direct, cc::DiagSolver::woodbury}) {
        const cc::DiagLinearized sol = cc::diag_linearized(red, lambda, lambda_d, solver);
        ASSERT_TRUE(sol.ok);
        double dd = 0.0;
        for (int k = 0; k < sh.n; ++k) dd += (sol.d[k] - ref.d[k]) * (sol.d[k] - ref.d[k]);
        EXPECT_LT(std::sqrt(dd), 1e-9 * dn) << lam_rel << " " << lamd_rel;
        const cc::Matrix F = cc::form_W(red.U, sol.M);
        EXPECT_LT(cc::frobenius_diff(F, ref.F), 1e-9 * cc::frobenius(ref.F));
        // The lambda_d path gives the same answer as the single solve.
        const cc::DiagLinearized path = cc::DiagPath(red, lambda, solver).solve(lambda_d);
        double dp = 0.0;
        for (int k = 0; k < sh.n; ++k) dp += (path.d[k] - ref.d[k]) * (path.d[k] - ref.d[k]);
        EXPECT_LT(std::sqrt(dp), 1e-9 * dn);
      }
    }
}

INSTANTIATE_TEST_SUITE_P(CovShapes, CovDiagonal,
                         ::testing::Values(Shape{6, 4, 4}, Shape{4, 6, 3}, Shape{6, 6, 2}),
                         [](const auto& info) {
                           std::ostringstream os;  // not std::string + (GCC 12 -Wrestrict)
                           os << "n" << info.param.n << "_m" << info.param.m << "_rank"
                              << info.param.rank;
                           return os.str();
                         });

TEST(CovDiagonalSolver, ChoosesCheaperMethod) {
  EXPECT_EQ(cc::diag_choose_solver(2000, 40), cc::DiagSolver::woodbury);  // p = 820
  EXPECT_EQ(cc::diag_choose_solver(500, 100), cc::DiagSolver::direct);    // p = 5050
}

}  // namespace

namespace {

cc::Matrix diag_plus(const std::vector<double>& d, const cc::Matrix& F) {
  cc::Matrix W = F;
  for (std::size_t k = 0; k < d.size(); ++k) W(k, k) += d[k];
  return W;
}

// diag_loss and its gradient against the n x n definitions.
TEST(CovDiagonalExact, LossAndGradientMatchDense) {
  cc::Rng rng(8);
  const int n = 7, m = 5;
  cc::Matrix X(n, m), S(m, m), C(m, m);
  for (double& v : X.data) v = rng.normal();
  X = cc::centre_rows(X);
  for (double& v : C.data) v = rng.normal();
  S = cc::gram(C);
  const cc::Reduced red = cc::reduce(X, S);
  std::vector<double> d(n);
  for (double& v : d) v = 0.3 * rng.normal();
  cc::Matrix B(n, red.r);
  for (double& v : B.data) v = 0.3 * rng.normal();
  B = cc::centre_rows(B);
  const double lambda = 0.7, lambda_d = 1.3;
  std::vector<double> gd;
  cc::Matrix gB;
  const double L = cc::diag_loss(red, lambda, lambda_d, d, B, &gd, &gB);
  const cc::Matrix F = cc::matmul(B, red.U, false, true);
  const cc::Matrix W = diag_plus(d, F);
  double dn = 0;
  for (double v : d) dn += v * v;
  const double Ld = cc::loss_dense(X, S, W, 0.0) + 0.5 * lambda * cc::frobenius_sq(F) + 0.5 * lambda_d * dn;
  EXPECT_NEAR(L, Ld, 1e-11 * Ld);
  // Chain rule from the dense data gradient: dL/dd_k = G_kk, dL/dB = J G U (+ penalties).
  const cc::Matrix G = cc::grad_dense(X, S, W, 0.0);
  const cc::Matrix JGU = cc::matmul(cc::centre_rows(G), red.U);
  for (int k = 0; k < n; ++k) EXPECT_NEAR(gd[k], G(k, k) + lambda_d * d[k], 1e-10 * cc::frobenius(G));
  for (std::size_t k = 0; k < B.data.size(); ++k)
    EXPECT_NEAR(gB.data[k], JGU.data[k] + lambda * B.data[k], 1e-10 * cc::frobenius(G));
}

// L-BFGS from the linearised solution: stationary (certificate below tolerance), no worse
// than its start, than W = 0, or than the certified Free-model optimum (d = 0, B = U M*),
// and its loss is the n x n loss of diag(d) + B U^T.
TEST(CovDiagonalExact, StationaryAndImprovesOnStarts) {
  const auto pl = cc::planted_problem(15, 10, 4, 0.3, 0.5, 3);
  const cc::Reduced red = cc::reduce(pl.problem.X, pl.problem.S);
  const double s2 = red.s_max() * red.s_max();
  for (double rel : {1e-2, 1.0}) {
    const double lambda = rel * s2, lambda_d = rel * s2;
    const cc::DiagExactResult res = cc::diag_exact(red, lambda, lambda_d);
    ASSERT_EQ(res.status, cc::ExactStatus::converged) << res.message;
    EXPECT_LE(res.rel_grad, 1e-9);
    EXPECT_LE(res.loss, res.loss_start);
    const std::vector<double> zero(red.n, 0.0);
    EXPECT_LE(res.loss, cc::diag_loss(red, lambda, lambda_d, zero, cc::Matrix(red.n, red.r)));
    // With d = 0 the model is the Free model, whose certified optimum bounds this one.
    const cc::ExactResult free = cc::solve_exact(red, lambda);
    EXPECT_LE(res.loss, cc::diag_loss(red, lambda, lambda_d, zero, cc::matmul(red.U, free.M)) * (1 + 1e-12));
    // The reported loss is the n x n loss of diag(d) + B U^T.
    const cc::Matrix W = diag_plus(res.d, cc::matmul(res.B, red.U, false, true));
    double dn = 0;
    for (double v : res.d) dn += v * v;
    const double Ld = cc::loss_dense(pl.problem.X, pl.problem.S, W, 0.0) +
                      0.5 * lambda * cc::frobenius_sq(res.B) + 0.5 * lambda_d * dn;
    EXPECT_NEAR(res.loss, Ld, 1e-10 * Ld);
  }
}

}  // namespace

// One scoring rule for both models: free_diag's r2_val is the linear prediction of its
// linearised W = diag(d) + F, X'X + X'(W + W')X, as free's r2_val is for its W_lin; and
// r2_val_fwd is the forward map X'(I+W)'J(I+W)X. (Before, free_diag's r2_val was the
// forward map while free's was the linear prediction, so best R2 compared different things.)
TEST(CovDiagonalSweep, R2ValIsTheLinearPredictionAsForFree) {
  cc::PlantedProblem pp = cc::planted_problem(14, 12, 4, 0.2, 0.5, 21);
  cc::Problem p = pp.problem;
  cc::check_and_centre(p, "test");
  const cc::Fold fold = cc::explicit_split(12, {1, 4, 7, 10}, "test");
  const double lambda = 0.05, lambda_d = 0.2;
  cc::SweepConfig cfg;
  cfg.model = cc::SweepModel::free_diag;
  cfg.lambdas = {lambda};
  cfg.lambda_d = {lambda_d};
  cfg.folds = {fold};
  cfg.exact = false;
  const cc::SweepResult res = cc::run_sweep(p, cfg, nullptr);
  ASSERT_EQ(res.rows.size(), 1u);

  // Brute force on the train block, then both predictions of the val block.
  const cc::Matrix X_tr = cc::select_cols(p.X, fold.train), X_va = cc::select_cols(p.X, fold.val);
  const cc::Reduced red = cc::reduce(X_tr, cc::select_block(p.S, fold.train, fold.train));
  const cc::DiagLinearized sol = cc::diag_linearized(red, lambda, lambda_d);
  cc::Matrix W = cc::form_W(red.U, sol.M);
  for (int i = 0; i < W.rows; ++i) W(i, i) += sol.d[static_cast<std::size_t>(i)];
  const cc::Matrix S_va = cc::select_block(p.S, fold.val, fold.val);
  const cc::Matrix WX = cc::matmul(W, X_va);
  cc::Matrix lin = cc::matmul(X_va, X_va, true, false);
  cc::gemm(true, false, 1.0, X_va, WX, 1.0, lin);
  cc::gemm(true, false, 1.0, WX, X_va, 1.0, lin);
  cc::Matrix H = X_va;
  for (std::size_t k = 0; k < H.data.size(); ++k) H.data[k] += WX.data[k];
  H = cc::centre_rows(H);
  const cc::Matrix fwd = cc::matmul(H, H, true, false);
  auto r2 = [&](const cc::Matrix& Shat) {
    double mean = 0, cnt = 0, ss = 0, tot = 0;
    for (int j = 0; j < S_va.cols; ++j)
      for (int i = 0; i <= j; ++i) mean += S_va(i, j), ++cnt;
    mean /= cnt;
    for (int j = 0; j < S_va.cols; ++j)
      for (int i = 0; i <= j; ++i) {
        ss += (S_va(i, j) - Shat(i, j)) * (S_va(i, j) - Shat(i, j));
        tot += (S_va(i, j) - mean) * (S_va(i, j) - mean);
      }
    return 1.0 - ss / tot;
  };
  EXPECT_NEAR(res.rows[0].r2_val, r2(lin), 1e-10);
  EXPECT_NEAR(res.rows[0].r2_val_fwd, r2(fwd), 1e-10);
  EXPECT_GT(std::abs(res.rows[0].r2_val - res.rows[0].r2_val_fwd), 1e-6);  // they differ here
}
