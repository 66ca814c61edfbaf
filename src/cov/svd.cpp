#include "covfit/cov/svd.hpp"

#include <lapacke.h>

#include <algorithm>

namespace covfit::cov {

ThinSvd thin_svd(const Matrix& X) {
  const int n = X.rows, m = X.cols, k = std::min(n, m);
  ThinSvd out;
  if (k == 0) return out;
  // Memory (doubles): the copy A (n m), U (n k), V^T (k m) and dgesdd's workspace (about
  // 4 k^2 for a tall X); at n = 20000, m = 5000 that is 3.4 GB besides X itself. A is freed
  // right after the call, and U is handed over without a copy when X has full rank.
  Matrix U(n, k), VT(k, m);
  std::vector<double> sv(k);
  int info = 0;
  {
    Matrix A = X;  // dgesdd destroys its input
    info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'S', n, m, A.data.data(), n, sv.data(),
                          U.data.data(), n, VT.data.data(), k);
  }
  if (info != 0 || !(sv[0] > 0.0)) {
    out.U = Matrix(n, 0);
    out.V = Matrix(m, 0);
    return out;
  }
  int r = 0;
  while (r < k && sv[r] > kRankTol * sv[0]) ++r;
  out.sigma.assign(sv.begin(), sv.begin() + r);
  if (r == k) {
    out.U = std::move(U);
  } else {
    out.U = Matrix(n, r);
    std::copy(U.data.begin(), U.data.begin() + static_cast<std::ptrdiff_t>(n) * r, out.U.data.begin());
  }
  out.V = Matrix(m, r);
  for (int j = 0; j < r; ++j)
    for (int i = 0; i < m; ++i) out.V(i, j) = VT(j, i);
  return out;
}

Reduced reduce(const Matrix& X, const Matrix& S) {
  Reduced red;
  red.n = X.rows;
  red.m = X.cols;
  ThinSvd svd = thin_svd(X);
  red.r = static_cast<int>(svd.sigma.size());
  red.U = std::move(svd.U);
  red.V = std::move(svd.V);
  red.sigma = std::move(svd.sigma);
  red.s.resize(red.r);
  for (int i = 0; i < red.r; ++i) red.s[i] = red.sigma[i] * red.sigma[i];
  red.R = matmul(red.V, matmul(S, red.V), true, false);
  symmetrise(red.R);
  red.S_fro_sq = frobenius_sq(S);
  red.R_fro_sq = frobenius_sq(red.R);
  Matrix VRVt = matmul(matmul(red.V, red.R), red.V, false, true);  // (m, m)
  red.outside_sq = frobenius_diff(S, VRVt);
  red.outside_sq *= red.outside_sq;
  return red;
}

}  // namespace covfit::cov
