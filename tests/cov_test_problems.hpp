// Random problems for the cov tests (cov_exact_test, cov_linearized_test). Test code only.
#pragma once
#include "covfit/cov/dense.hpp"
#include "covfit/cov/matrix.hpp"
#include "covfit/cov/random.hpp"

namespace covfit::cov::test {

// Centred X = J A B^T (n, m), A (n, rank) and B (m, rank) standard normal drawn from rng
// in that order: rank < min(n, m) makes X rank deficient.
inline Matrix random_low_rank_x(Rng& rng, int n, int m, int rank) {
  Matrix A(n, rank), B(m, rank);
  for (double& v : A.data) v = rng.normal();
  for (double& v : B.data) v = rng.normal();
  return centre_rows(matmul(A, B, false, true));
}

// Symmetric (m, m) with entries scale * N(0, 1), drawn column by column over the upper
// triangle.
inline Matrix random_symmetric(Rng& rng, int m, double scale) {
  Matrix S(m, m);
  for (int j = 0; j < m; ++j)
    for (int i = 0; i <= j; ++i) S(i, j) = S(j, i) = scale * rng.normal();
  return S;
}

}  // namespace covfit::cov::test
