#include "covfit/cov/problem.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "covfit/core/error.hpp"
#include "covfit/cov/random.hpp"
#include "covfit/cov/svd.hpp"

namespace covfit::cov {

namespace {

std::string shape(const Matrix& A) {
  return "(" + std::to_string(A.rows) + ", " + std::to_string(A.cols) + ")";
}

std::string num(double v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}

void check_finite(const Matrix& A, const char* name, const std::string& where) {
  for (int j = 0; j < A.cols; ++j)
    for (int i = 0; i < A.rows; ++i)
      if (!std::isfinite(A(i, j)))
        throw InputError(where, std::string(name) + "(" + std::to_string(i) + ", " +
                                    std::to_string(j) + ") = " + num(A(i, j)) +
                                    " is not finite (0-based row, column)");
}

}  // namespace

void check_lapack_shape(int n, int m, const std::string& where) {
  const long long elements = static_cast<long long>(n) * m;
  const long long k = std::min(n, m);
  const std::string what = "X of shape (" + std::to_string(n) + ", " + std::to_string(m) + ")";
  if (elements > kMaxLapackIndex)
    throw InputError(where, what + " has " + std::to_string(elements) +
                                " entries; its SVD (LAPACK with 32-bit indices) takes at most " +
                                std::to_string(kMaxLapackIndex));
  if (4 * k * k + 7 * k > kMaxLapackIndex)
    throw InputError(where, what + ": the SVD's workspace (about 4 min(n, m)^2 doubles) would "
                                "overflow LAPACK's 32-bit indices; min(n, m) can be at most " +
                                std::to_string(kMaxSvdMinDim));
}

bool check_and_centre(Problem& p, const std::string& where) {
  const int n = p.X.rows, m = p.X.cols;
  if (n < 2 || m < 1)
    throw InputError(where, "X has shape " + shape(p.X) +
                                "; need at least 2 channels (rows) and 1 stimulus (column)");
  check_lapack_shape(n, m, where);
  if (p.S.rows != m || p.S.cols != m)
    throw InputError(where, "S has shape " + shape(p.S) + " but X has shape " + shape(p.X) +
                                "; S must be (m, m) = (" + std::to_string(m) + ", " +
                                std::to_string(m) + ")");
  check_finite(p.X, "X", where);
  check_finite(p.S, "S", where);

  double smax = 0.0;
  for (double v : p.S.data) smax = std::max(smax, std::abs(v));
  double worst = 0.0;
  int wi = 0, wj = 0;
  for (int j = 0; j < m; ++j)
    for (int i = j + 1; i < m; ++i) {
      const double d = std::abs(p.S(i, j) - p.S(j, i));
      if (d > worst) worst = d, wi = i, wj = j;
    }
  if (worst > kSymmetryTol * smax)
    throw InputError(where, "S is not symmetric: S(" + std::to_string(wi) + ", " +
                                std::to_string(wj) + ") = " + num(p.S(wi, wj)) + " but S(" +
                                std::to_string(wj) + ", " + std::to_string(wi) + ") = " +
                                num(p.S(wj, wi)) + " (difference " + num(worst) +
                                " > " + num(kSymmetryTol) + " * max|S| = " +
                                num(kSymmetryTol * smax) + ")");
  symmetrise(p.S);

  // Centring: J X = X is what makes U^T 1 = 0 and every reduced formula exact.
  bool centred = true;
  std::vector<double> mean(m);
  for (int j = 0; j < m; ++j) {
    double s = 0.0, mx = 0.0;
    for (int i = 0; i < n; ++i) s += p.X(i, j), mx = std::max(mx, std::abs(p.X(i, j)));
    mean[j] = s / n;
    if (std::abs(mean[j]) > kCentreTol * mx) centred = false;
  }
  if (!centred)
    for (int j = 0; j < m; ++j)
      for (int i = 0; i < n; ++i) p.X(i, j) -= mean[j];
  if (frobenius_sq(p.X) == 0.0)
    throw InputError(where, "X of shape " + shape(p.X) +
                                " is zero after centring each column over channels; nothing to fit");
  // s_max^2 (lambda's unit) lies between (||X||_F^2 / min(n, m))^2 and ||X||_F^4; the sweep
  // divides by it and multiplies by it, so both must be normal doubles. (X scaled by 1e200
  // made s_max^2 = inf: every exact solve was meaningless and lambda in s_max^2 units inf.)
  const double fx = frobenius_sq(p.X);
  const double lo = fx / std::min(n, m);
  if (!std::isfinite(fx * fx) || !(lo * lo > kMinScale))
    throw InputError(where, "X's scale is outside what a sweep can handle in double precision: "
                            "||X||_F^2 = " + num(fx) + ", so s_max^2 (the unit of lambda) would be "
                            "about " + num(fx * fx) + "; rescale X by a power of 10 (and S by its square)");
  const double fs = frobenius_sq(p.S);
  if (!std::isfinite(fs))
    throw InputError(where, "S's scale overflows double precision (||S||_F^2 = inf); rescale S");
  return !centred;
}

PlantedProblem planted_problem(int n, int m, int rank, double noise, double w0_scale,
                               std::uint64_t seed) {
  check_lapack_shape(n, m, "planted problem");
  Rng rng(seed);
  rank = std::max(1, std::min(rank, std::min(n - 1, m)));
  Matrix A(n, rank), B(m, rank), X(n, m);
  for (double& v : A.data) v = rng.normal();
  for (double& v : B.data) v = rng.normal();
  gemm(false, true, 1.0 / std::sqrt(static_cast<double>(rank)), A, B, 0.0, X);
  for (double& v : X.data) v += noise * rng.normal();
  for (int j = 0; j < m; ++j) {
    double s = 0.0;
    for (int i = 0; i < n; ++i) s += X(i, j);
    for (int i = 0; i < n; ++i) X(i, j) -= s / n;
  }

  // W0 in the top-`rank` left singular subspace: the part of W that the data identify.
  Matrix Uk;
  {
    ThinSvd svd = thin_svd(X);  // (freed before the n x n W0 is formed)
    const int kk = std::min(rank, static_cast<int>(svd.sigma.size()));
    Uk = Matrix(n, kk);
    std::copy(svd.U.data.begin(), svd.U.data.begin() + static_cast<std::ptrdiff_t>(n) * kk,
              Uk.data.begin());
  }
  const int k = Uk.cols;
  Matrix M0(k, k);
  const double sd = w0_scale / (2.0 * std::sqrt(static_cast<double>(k)));
  for (int j = 0; j < k; ++j)
    for (int i = 0; i <= j; ++i) M0(i, j) = M0(j, i) = sd * rng.normal();

  PlantedProblem out;
  out.W0 = matmul(Uk, matmul(M0, Uk, false, true));  // (n, n)
  symmetrise(out.W0);
  // Y = (I + W0) X without n x n products; J Y = Y since X and U_k are centred.
  Matrix Y = X;
  gemm(false, false, 1.0, Uk, matmul(M0, matmul(Uk, X, true, false)), 1.0, Y);
  Matrix S = gram(Y);
  const double rms = std::sqrt(frobenius_sq(S) / (static_cast<double>(m) * m));
  for (int j = 0; j < m; ++j)
    for (int i = 0; i <= j; ++i) {
      const double e = noise * rms * rng.normal();
      S(i, j) += e;
      if (i != j) S(j, i) += e;
    }
  out.problem.X = std::move(X);
  out.problem.S = std::move(S);
  return out;
}

}  // namespace covfit::cov
