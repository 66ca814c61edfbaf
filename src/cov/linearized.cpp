#include "covfit/cov/linearized.hpp"

#include <cassert>
#include <cmath>

namespace covfit::cov {

void linearized_M(const Reduced& red, double lambda, Matrix& M) {
  const int r = red.r;
  if (M.rows != r || M.cols != r) M = Matrix(r, r);
  for (int j = 0; j < r; ++j)
    for (int i = 0; i < r; ++i) {
      const double a = red.sigma[i] * red.sigma[j];  // sqrt(s_i s_j)
      const double t = red.R(i, j) - (i == j ? red.s[i] : 0.0);
      M(i, j) = 2.0 * a * t / (4.0 * a * a + lambda);
    }
}

Matrix linearized_M(const Reduced& red, double lambda) {
  Matrix M;
  linearized_M(red, lambda, M);
  return M;
}

namespace {
// 1/2 ||R - Sigma Q Sigma||_F^2 for symmetric-or-not (r, r) Q.
double data_term(const Reduced& red, const Matrix& Q) {
  double acc = 0.0;
  for (int j = 0; j < red.r; ++j)
    for (int i = 0; i < red.r; ++i) {
      const double e = red.R(i, j) - red.sigma[i] * Q(i, j) * red.sigma[j];
      acc += e * e;
    }
  return 0.5 * acc;
}
Matrix plus_identity(const Matrix& M) {
  Matrix P = M;
  for (int i = 0; i < P.rows; ++i) P(i, i) += 1.0;
  return P;
}
}  // namespace

double loss_reduced(const Reduced& red, const Matrix& M, double lambda) {
  assert(M.rows == red.r && M.cols == red.r);
  const Matrix G = gram(plus_identity(M));  // P^T P
  return data_term(red, G) + 0.5 * lambda * frobenius_sq(M) + red.loss_const();
}

double loss_linearized_reduced(const Reduced& red, const Matrix& M, double lambda) {
  assert(M.rows == red.r && M.cols == red.r);
  Matrix Q = plus_identity(M);
  for (int j = 0; j < red.r; ++j)
    for (int i = 0; i < red.r; ++i) Q(i, j) += M(j, i);
  return data_term(red, Q) + 0.5 * lambda * frobenius_sq(M) + red.loss_const();
}

double grad_norm_reduced(const Reduced& red, const Matrix& M, double lambda) {
  const int r = red.r;
  const Matrix P = plus_identity(M);
  Matrix A = gram(P);
  for (int j = 0; j < r; ++j)
    for (int i = 0; i < r; ++i) {
      const double si = red.sigma[i], sj = red.sigma[j];
      A(i, j) = si * sj * (si * A(i, j) * sj - red.R(i, j));
    }
  Matrix Gr = M;  // 2 P A + lambda M
  gemm(false, false, 2.0, P, A, lambda, Gr);
  return frobenius(Gr);
}

std::vector<double> diag_of_W(const Matrix& U, const Matrix& M) {
  const int n = U.rows, r = U.cols;
  std::vector<double> d(n, 0.0);
  if (r == 0) return d;
  const Matrix UM = matmul(U, M);
  for (int k = 0; k < r; ++k)
    for (int i = 0; i < n; ++i) d[i] += UM(i, k) * U(i, k);
  return d;
}

Matrix form_W(const Matrix& U, const Matrix& M) { return matmul(matmul(U, M), U, false, true); }

}  // namespace covfit::cov
