#include "covfit/cov/dense.hpp"

namespace covfit::cov {

Matrix centre_rows(const Matrix& A) {
  Matrix B = A;
  for (int j = 0; j < B.cols; ++j) {
    double s = 0.0;
    for (int i = 0; i < B.rows; ++i) s += B(i, j);
    for (int i = 0; i < B.rows; ++i) B(i, j) -= s / B.rows;
  }
  return B;
}

namespace {
// (I + W) X
Matrix ipw_x(const Matrix& X, const Matrix& W) {
  Matrix Y = X;
  gemm(false, false, 1.0, W, X, 1.0, Y);
  return Y;
}
// E = S - Y^T J Y
Matrix residual(const Matrix& S, const Matrix& Y) {
  Matrix E = S;
  gemm(true, false, -1.0, Y, centre_rows(Y), 1.0, E);
  return E;
}
}  // namespace

double loss_dense(const Matrix& X, const Matrix& S, const Matrix& W, double lambda) {
  const Matrix E = residual(S, ipw_x(X, W));
  return 0.5 * frobenius_sq(E) + 0.5 * lambda * frobenius_sq(W);
}

double loss_linearized_dense(const Matrix& X, const Matrix& S, const Matrix& W, double lambda) {
  const Matrix JX = centre_rows(X);
  const Matrix WX = matmul(W, X);
  Matrix E = S;
  gemm(true, false, -1.0, X, X, 1.0, E);
  gemm(true, false, -1.0, WX, JX, 1.0, E);               // X^T W^T J X
  gemm(true, false, -1.0, JX, WX, 1.0, E);               // X^T J W X
  return 0.5 * frobenius_sq(E) + 0.5 * lambda * frobenius_sq(W);
}

Matrix grad_dense(const Matrix& X, const Matrix& S, const Matrix& W, double lambda) {
  const Matrix Y = ipw_x(X, W);
  const Matrix E = residual(S, Y);
  Matrix G = W;
  gemm(false, true, -2.0, centre_rows(matmul(Y, E)), X, lambda, G);
  return G;
}

}  // namespace covfit::cov
