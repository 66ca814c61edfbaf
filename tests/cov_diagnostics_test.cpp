// Diagnostics: reduced-form quantities against their n x n definitions.
#include <gtest/gtest.h>

#include <cmath>

#include "covfit/cov/dense.hpp"
#include "covfit/cov/diagnostics.hpp"
#include "covfit/cov/exact.hpp"
#include "covfit/cov/linearized.hpp"
#include "covfit/cov/problem.hpp"

namespace cc = covfit::cov;

namespace {

TEST(CovDiagnostics, MatchDenseDefinitions) {
  const auto pl = cc::planted_problem(9, 6, 3, 0.3, 0.6, 12);
  const cc::Problem& p = pl.problem;
  const cc::Reduced red = cc::reduce(p.X, p.S);
  const double lambda = 0.05 * red.s_max() * red.s_max();
  const cc::ExactResult ex = cc::solve_exact(red, lambda);
  ASSERT_EQ(ex.status, cc::ExactStatus::converged) << ex.message;
  const cc::LambdaDiagnostics dg = cc::diagnose(red, lambda, &ex);

  const cc::Matrix Ml = cc::linearized_M(red, lambda);
  const cc::Matrix Wl = cc::form_W(red.U, Ml), Ws = cc::form_W(red.U, ex.M), Z(9, 9);
  // Equation 1 with n x n matrices: LHS = 2 X E0 X^T, RHS = 4 X X^T W X X^T + lambda W.
  cc::Matrix E0 = p.S;
  cc::gemm(true, false, -1.0, p.X, p.X, 1.0, E0);
  const cc::Matrix LHS = cc::matmul(cc::matmul(p.X, E0), p.X, false, true);
  const cc::Matrix XXt = cc::matmul(p.X, p.X, false, true);
  auto rhs = [&](const cc::Matrix& W) {
    cc::Matrix out = W;
    cc::gemm(false, false, 4.0, cc::matmul(XXt, W), XXt, lambda, out);
    return out;
  };
  cc::Matrix LHS2 = LHS;
  for (double& v : LHS2.data) v *= 2.0;
  EXPECT_NEAR(dg.eq1_residual_exact,
              cc::frobenius_diff(LHS2, rhs(Ws)) / cc::frobenius(LHS2), 1e-10);
  EXPECT_LT(cc::frobenius_diff(LHS2, rhs(Wl)), 1e-10 * cc::frobenius(LHS2));  // M_lin solves it
  EXPECT_LT(cc::eq1_residual(red, Ml, lambda), 1e-14);

  EXPECT_NEAR(dg.dW, cc::frobenius_diff(Wl, Ws) / cc::frobenius(Ws), 1e-10);
  const double L0 = cc::loss_dense(p.X, p.S, Z, lambda), Ls = cc::loss_dense(p.X, p.S, Ws, lambda);
  EXPECT_NEAR(dg.kappa, (cc::loss_dense(p.X, p.S, Wl, lambda) - Ls) / (L0 - Ls), 1e-8);
  EXPECT_GT(dg.kappa, 0.0);
  EXPECT_NEAR(dg.g_proxy,
              cc::frobenius(cc::grad_dense(p.X, p.S, Wl, lambda)) /
                  cc::frobenius(cc::grad_dense(p.X, p.S, Z, lambda)),
              1e-10);
  double d2 = 0, o2 = 0;
  for (int j = 0; j < 9; ++j)
    for (int i = 0; i < 9; ++i) (i == j ? d2 : o2) += Ws(i, j) * Ws(i, j);
  EXPECT_NEAR(dg.exact.rms_diag, std::sqrt(d2 / 9), 1e-12);
  EXPECT_NEAR(dg.exact.rms_offdiag, std::sqrt(o2 / 72), 1e-12);
  const cc::Eq1Pairs pr = cc::eq1_pairs(red, Ml, lambda);
  ASSERT_EQ(pr.lhs.size(), static_cast<std::size_t>(red.r * (red.r + 1) / 2));
  for (std::size_t k = 0; k < pr.lhs.size(); ++k) EXPECT_NEAR(pr.lhs[k], pr.rhs[k], 1e-12 * std::abs(pr.lhs[0]));
}

// Linearisation improves with lambda (MATH.md: accurate only for lambda >~ s_max^2).
TEST(CovDiagnostics, LinearisationImprovesWithLambda) {
  const auto pl = cc::planted_problem(30, 20, 5, 0.2, 0.8, 4);
  const cc::Reduced red = cc::reduce(pl.problem.X, pl.problem.S);
  const double s2 = red.s_max() * red.s_max();
  const std::vector<double> lambdas = {1e-3 * s2, 1e-1 * s2, 10.0 * s2};
  const auto ex = cc::sweep_exact(red, lambdas);
  double prev_dW = INFINITY;
  for (std::size_t i = 0; i < lambdas.size(); ++i) {
    const auto dg = cc::diagnose(red, lambdas[i], &ex[i]);
    EXPECT_LT(dg.dW, prev_dW);
    prev_dW = dg.dW;
  }
  EXPECT_LT(prev_dW, 0.05);
}

}  // namespace
