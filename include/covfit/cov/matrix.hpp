// A minimal dense matrix for the covariance workload, plus the few BLAS/LAPACK calls the
// cov module needs.
//
// Column-major so that `data()` can be handed to CBLAS/LAPACKE without copies. This is
// deliberately not a linear-algebra library: just storage, indexing and thin wrappers.
//
// Threads: every function here calls OpenBLAS, which may start its own threads. A caller
// that runs cov functions inside an OpenMP region must first call
// `openblas_set_num_threads(1)` (or hold a `BlasThreads guard(1)`) outside the region, or
// the cores are oversubscribed.
// Determinism: with a fixed BLAS thread count every cov result is bit-reproducible. OpenBLAS's
// threaded kernels (inside dgesdd in particular) sum in a thread-count-dependent order, so
// 1 vs 2 BLAS threads differ at the 1e-13 relative level. For results that are independent
// of --threads, run cov with one BLAS thread (tests/cov_linearized_test.cpp checks both).
#pragma once
#include <cstddef>
#include <vector>

namespace covfit::cov {

struct Matrix {
  int rows = 0;
  int cols = 0;
  std::vector<double> data;  // column-major, size rows * cols

  Matrix() = default;
  Matrix(int r, int c, double fill = 0.0)
      : rows(r), cols(c), data(static_cast<std::size_t>(r) * static_cast<std::size_t>(c), fill) {}

  double& operator()(int i, int j) { return data[idx(i, j)]; }
  double operator()(int i, int j) const { return data[idx(i, j)]; }
  double* col(int j) { return data.data() + idx(0, j); }
  const double* col(int j) const { return data.data() + idx(0, j); }
  std::size_t size() const { return data.size(); }

  static Matrix identity(int n);

 private:
  std::size_t idx(int i, int j) const {
    return static_cast<std::size_t>(i) + static_cast<std::size_t>(j) * static_cast<std::size_t>(rows);
  }
};

// C = alpha op(A) op(B) + beta C (dgemm). C must already have the right shape when beta != 0;
// otherwise it is (re)shaped.
void gemm(bool transA, bool transB, double alpha, const Matrix& A, const Matrix& B, double beta,
          Matrix& C);
// Convenience: op(A) op(B).
Matrix matmul(const Matrix& A, const Matrix& B, bool transA = false, bool transB = false);
// A^T A (dsyrk, full symmetric result).
Matrix gram(const Matrix& A);

Matrix transpose(const Matrix& A);
double frobenius_sq(const Matrix& A);
double frobenius(const Matrix& A);
// ||A - B||_F, shapes must agree.
double frobenius_diff(const Matrix& A, const Matrix& B);
// A <- (A + A^T) / 2 (square A).
void symmetrise(Matrix& A);
// Columns `idx` of A.
Matrix select_cols(const Matrix& A, const std::vector<int>& idx);
// Rows and columns `idx` of a square A.
Matrix select_block(const Matrix& A, const std::vector<int>& rows, const std::vector<int>& cols);

// Symmetric eigendecomposition A = Q diag(w) Q^T (dsyevd), eigenvalues ascending.
// Returns false if LAPACK reports failure.
struct SymEig {
  std::vector<double> w;
  Matrix Q;  // columns are eigenvectors; empty when only eigenvalues were requested
};
bool sym_eig(const Matrix& A, SymEig& out, bool vectors = true);

// True when the symmetric A is numerically positive definite (a Cholesky factorisation
// of A succeeds, dpotrf).
bool is_positive_definite(const Matrix& A);

// Solve A x = B for symmetric positive definite A (dposv); falls back to the symmetric
// indefinite solver (dsysv) when A is not numerically positive definite. B is overwritten
// with the solution. Returns false if both fail.
bool sym_solve(Matrix A, Matrix& B);

// RAII: sets the OpenBLAS thread count, restores the previous one on destruction. Create
// it outside any OpenMP parallel region (the setting is process-global).
class BlasThreads {
 public:
  explicit BlasThreads(int n);
  ~BlasThreads();
  BlasThreads(const BlasThreads&) = delete;
  BlasThreads& operator=(const BlasThreads&) = delete;

 private:
  int previous_;
};

}  // namespace covfit::cov
