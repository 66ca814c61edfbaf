// How good is the linearisation? Per-lambda scalars from the source post and MATH.md
// ("Diagnostics from the source post"), all in reduced form (no n x n matrices).
#pragma once
#include <vector>

#include "covfit/cov/exact.hpp"
#include "covfit/cov/matrix.hpp"
#include "covfit/cov/svd.hpp"

namespace covfit::cov {

// Magnitudes of W = U M U^T without forming W: diag from diag_of_W (O(n r^2)); the
// off-diagonal from ||W||_F^2 = ||M||_F^2 (orthonormal U) minus the diagonal's share.
struct WMagnitudes {
  double rms_diag = 0.0;     // sqrt(sum_i W_ii^2 / n)
  double rms_offdiag = 0.0;  // sqrt(sum_{i != j} W_ij^2 / (n (n - 1)))
};
WMagnitudes w_magnitudes(const Matrix& U, const Matrix& M);

// Equation 1 in U coordinates (upper triangles, i <= j, column by column):
//   LHS_U = 2 Sigma (R - Sigma^2) Sigma,  RHS_U(M) = 4 Sigma^2 M Sigma^2 + lambda M.
// LHS = U LHS_U U^T and RHS = U RHS_U U^T are the post's n x n matrices.
struct Eq1Pairs {
  std::vector<double> lhs, rhs;
};
Eq1Pairs eq1_pairs(const Reduced& red, const Matrix& M, double lambda);
// ||LHS_U - RHS_U(M)||_F / ||LHS_U||_F (0 at M = M_lin by construction).
double eq1_residual(const Reduced& red, const Matrix& M, double lambda);

struct LambdaDiagnostics {
  double lambda = 0.0;
  // Need the exact solution (NaN when none was given):
  double eq1_residual_exact = 0.0;  // eq1_residual at M*
  double dW = 0.0;                  // ||M_lin - M*||_F / ||M*||_F  (= same for n x n W)
  double kappa = 0.0;               // (L(W_lin) - L*) / (L(0) - L*); > 1: W_lin worse than 0
  // Cheap proxies, linearised solution only:
  double g_proxy = 0.0;             // ||grad L(W_lin)|| / ||grad L(0)||
  double q_proxy = 0.0;             // ||Sigma M^T M Sigma|| / ||Sigma (M + M^T) Sigma|| at M_lin
  WMagnitudes lin;                  // of W_lin
  WMagnitudes exact;                // of W* (NaN without the exact solution)
};
// `exact` may be null (exact-based entries are NaN). O(n r^2 + r^3).
LambdaDiagnostics diagnose(const Reduced& red, double lambda, const ExactResult* exact);

}  // namespace covfit::cov
