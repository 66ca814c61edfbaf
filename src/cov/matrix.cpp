#include "covfit/cov/matrix.hpp"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <cassert>
#include <cmath>

namespace covfit::cov {

Matrix Matrix::identity(int n) {
  Matrix I(n, n);
  for (int i = 0; i < n; ++i) I(i, i) = 1.0;
  return I;
}

void gemm(bool transA, bool transB, double alpha, const Matrix& A, const Matrix& B, double beta,
          Matrix& C) {
  const int m = transA ? A.cols : A.rows;
  const int k = transA ? A.rows : A.cols;
  const int kb = transB ? B.cols : B.rows;
  const int n = transB ? B.rows : B.cols;
  assert(k == kb);
  (void)kb;
  if (beta == 0.0 && (C.rows != m || C.cols != n || C.data.size() != static_cast<std::size_t>(m) * static_cast<std::size_t>(n)))
    C = Matrix(m, n);  // (also a moved-from C)
  assert(C.rows == m && C.cols == n);
  if (m == 0 || n == 0) return;
  if (k == 0) {  // BLAS leaves C alone for k = 0 only when beta = 1; make it explicit
    for (double& c : C.data) c *= beta;
    return;
  }
  cblas_dgemm(CblasColMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
              m, n, k, alpha, A.data.data(), std::max(1, A.rows), B.data.data(),
              std::max(1, B.rows), beta, C.data.data(), std::max(1, C.rows));
}

Matrix matmul(const Matrix& A, const Matrix& B, bool transA, bool transB) {
  Matrix C;
  gemm(transA, transB, 1.0, A, B, 0.0, C);
  return C;
}

Matrix gram(const Matrix& A) {
  const int n = A.cols, k = A.rows;
  Matrix C(n, n);
  if (n == 0 || k == 0) return C;
  cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, n, k, 1.0, A.data.data(), std::max(1, A.rows),
              0.0, C.data.data(), n);
  for (int j = 0; j < n; ++j)
    for (int i = j + 1; i < n; ++i) C(i, j) = C(j, i);
  return C;
}

Matrix transpose(const Matrix& A) {
  Matrix T(A.cols, A.rows);
  for (int j = 0; j < A.cols; ++j)
    for (int i = 0; i < A.rows; ++i) T(j, i) = A(i, j);
  return T;
}

double frobenius_sq(const Matrix& A) {
  double s = 0.0;
  for (double v : A.data) s += v * v;
  return s;
}
double frobenius(const Matrix& A) { return std::sqrt(frobenius_sq(A)); }

double frobenius_diff(const Matrix& A, const Matrix& B) {
  assert(A.rows == B.rows && A.cols == B.cols);
  double s = 0.0;
  for (std::size_t k = 0; k < A.data.size(); ++k) {
    const double d = A.data[k] - B.data[k];
    s += d * d;
  }
  return std::sqrt(s);
}

void symmetrise(Matrix& A) {
  assert(A.rows == A.cols);
  for (int j = 0; j < A.cols; ++j)
    for (int i = j + 1; i < A.rows; ++i) {
      const double v = 0.5 * (A(i, j) + A(j, i));
      A(i, j) = v;
      A(j, i) = v;
    }
}

Matrix select_cols(const Matrix& A, const std::vector<int>& idx) {
  Matrix B(A.rows, static_cast<int>(idx.size()));
  for (std::size_t c = 0; c < idx.size(); ++c)
    std::copy(A.col(idx[c]), A.col(idx[c]) + A.rows, B.col(static_cast<int>(c)));
  return B;
}

Matrix select_block(const Matrix& A, const std::vector<int>& rows, const std::vector<int>& cols) {
  Matrix B(static_cast<int>(rows.size()), static_cast<int>(cols.size()));
  for (std::size_t c = 0; c < cols.size(); ++c)
    for (std::size_t r = 0; r < rows.size(); ++r)
      B(static_cast<int>(r), static_cast<int>(c)) = A(rows[r], cols[c]);
  return B;
}

bool sym_eig(const Matrix& A, SymEig& out, bool vectors) {
  const int n = A.rows;
  out.w.assign(n, 0.0);
  Matrix Q = A;
  if (n > 0) {
    const int info = LAPACKE_dsyevd(LAPACK_COL_MAJOR, vectors ? 'V' : 'N', 'U', n, Q.data.data(), n,
                                    out.w.data());
    if (info != 0) return false;
  }
  out.Q = vectors ? std::move(Q) : Matrix();
  return true;
}

bool is_positive_definite(const Matrix& A) {
  const int n = A.rows;
  if (n == 0) return true;
  Matrix L = A;
  return LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', n, L.data.data(), n) == 0;
}

bool sym_solve(Matrix A, Matrix& B) {
  const int n = A.rows;
  if (n == 0) return true;
  Matrix A0 = A, B0 = B;
  if (LAPACKE_dposv(LAPACK_COL_MAJOR, 'U', n, B.cols, A.data.data(), n, B.data.data(), n) == 0)
    return true;
  // Not numerically positive definite: Bunch-Kaufman on the original data.
  B = std::move(B0);
  std::vector<lapack_int> ipiv(n);
  return LAPACKE_dsysv(LAPACK_COL_MAJOR, 'U', n, B.cols, A0.data.data(), n, ipiv.data(),
                       B.data.data(), n) == 0;
}

BlasThreads::BlasThreads(int n) : previous_(openblas_get_num_threads()) {
  openblas_set_num_threads(std::max(1, n));
}
BlasThreads::~BlasThreads() { openblas_set_num_threads(previous_); }

}  // namespace covfit::cov
