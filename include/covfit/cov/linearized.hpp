// The linearised problem's closed form and the losses, all in the reduced coordinates of
// svd.hpp (W = U M U^T). Nothing here forms an n x n matrix except form_W.
#pragma once
#include <vector>

#include "covfit/cov/matrix.hpp"
#include "covfit/cov/svd.hpp"

namespace covfit::cov {

// Minimiser of L_lin (MATH.md): M_ij = 2 sqrt(s_i s_j) (R_ij - s_i delta_ij) / (4 s_i s_j + lambda).
// (r, r), symmetric. O(r^2). lambda > 0 (lambda = 0 is allowed when all s_i > 0).
Matrix linearized_M(const Reduced& red, double lambda);
// Same, written into `M` (reused storage for sweeps).
void linearized_M(const Reduced& red, double lambda, Matrix& M);

// Exact loss L(U M U^T) for any (r, r) M, including the constant 1/2(||S||^2 - ||R||^2):
//   1/2 ||R - Sigma P^T P Sigma||^2 + lambda/2 ||M||^2 + const,  P = I + M.
// Valid for nonsymmetric M too (J U = U, U^T U = I). O(r^3).
double loss_reduced(const Reduced& red, const Matrix& M, double lambda);
// Linearised loss L_lin(U M U^T) = 1/2 ||R - Sigma (I + M + M^T) Sigma||^2 + lambda/2 ||M||^2 + const.
double loss_linearized_reduced(const Reduced& red, const Matrix& M, double lambda);
// ||grad L(W)||_F at W = U M U^T, from the full-space gradient
//   grad L(W) = -2 J (I+W) X E X^T + lambda W = U (2 P A' + lambda M) U^T,
//   A' = Sigma (Sigma P^T P Sigma - R) Sigma. O(r^3).
double grad_norm_reduced(const Reduced& red, const Matrix& M, double lambda);

// diag(W)_i = sum_ab U_ia M_ab U_ib for W = U M U^T, without forming W. (n) O(n r^2).
std::vector<double> diag_of_W(const Matrix& U, const Matrix& M);
// W = U M U^T, (n, n). O(n^2 r) -- only for output or tests.
Matrix form_W(const Matrix& U, const Matrix& M);

}  // namespace covfit::cov
