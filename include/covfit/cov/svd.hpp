// The one expensive step of every covariance workload: thin SVD of X and the projection of
// S onto X's right singular vectors. Everything downstream (linearised closed form, exact
// solver, diagnostics, validation) lives in these r-dimensional coordinates (MATH.md).
#pragma once
#include <vector>

#include "covfit/cov/matrix.hpp"

namespace covfit::cov {

// Singular values below kRankTol * sigma_1 are treated as zero (MATH.md: numerical rank).
inline constexpr double kRankTol = 1e-10;

struct ThinSvd {
  Matrix U;                   // (n, r), orthonormal columns; U^T 1 = 0 when X is centred
  std::vector<double> sigma;  // (r), descending, > kRankTol * sigma_1
  Matrix V;                   // (m, r), orthonormal columns
};
// X = U diag(sigma) V^T via LAPACKE_dgesdd, truncated to the numerical rank. An SVD that
// fails to converge (LAPACK info > 0, essentially never for finite input) returns r = 0.
ThinSvd thin_svd(const Matrix& X);

struct Reduced {
  int n = 0, m = 0, r = 0;
  Matrix U;                   // (n, r)
  std::vector<double> sigma;  // (r) singular values of X, descending
  std::vector<double> s;      // (r) s_i = sigma_i^2
  Matrix V;                   // (m, r)
  Matrix R;                   // (r, r) V^T S V, exactly symmetric
  double S_fro_sq = 0.0;      // ||S||_F^2
  double R_fro_sq = 0.0;      // ||R||_F^2
  // ||S - V R V^T||_F^2 = ||S||^2 - ||R||^2, computed without the subtraction: the two
  // norms can be 1e13 apart from their difference (9 digits lost).
  double outside_sq = 0.0;
  // L(U M U^T) = (reduced loss) + loss_const(): the part of S outside span(V) that no W
  // can fit.
  double loss_const() const { return 0.5 * outside_sq; }
  double s_max() const { return s.empty() ? 0.0 : s.front(); }
};
// X: (n, m) with centred columns, S: (m, m) symmetric (see check_and_centre).
// Cost O(n m min(n, m)) for the SVD + O(m^2 r) for R.
Reduced reduce(const Matrix& X, const Matrix& S);

}  // namespace covfit::cov
