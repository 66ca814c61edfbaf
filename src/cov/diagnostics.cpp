#include "covfit/cov/diagnostics.hpp"

#include <cmath>
#include <limits>

#include "covfit/cov/linearized.hpp"

namespace covfit::cov {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double lhs_u(const Reduced& red, int i, int j) {
  return 2.0 * red.sigma[i] * (red.R(i, j) - (i == j ? red.s[i] : 0.0)) * red.sigma[j];
}
double rhs_u(const Reduced& red, const Matrix& M, double lambda, int i, int j) {
  return 4.0 * red.s[i] * M(i, j) * red.s[j] + lambda * M(i, j);
}
}  // namespace

WMagnitudes w_magnitudes(const Matrix& U, const Matrix& M) {
  const int n = U.rows;
  const std::vector<double> d = diag_of_W(U, M);
  double dsq = 0.0;
  for (double v : d) dsq += v * v;
  WMagnitudes out;
  out.rms_diag = std::sqrt(dsq / n);
  const double off = std::max(0.0, frobenius_sq(M) - dsq);
  out.rms_offdiag = n > 1 ? std::sqrt(off / (static_cast<double>(n) * (n - 1))) : 0.0;
  return out;
}

Eq1Pairs eq1_pairs(const Reduced& red, const Matrix& M, double lambda) {
  Eq1Pairs out;
  for (int j = 0; j < red.r; ++j)
    for (int i = 0; i <= j; ++i) {
      out.lhs.push_back(lhs_u(red, i, j));
      out.rhs.push_back(rhs_u(red, M, lambda, i, j));
    }
  return out;
}

double eq1_residual(const Reduced& red, const Matrix& M, double lambda) {
  double num = 0.0, den = 0.0;
  for (int j = 0; j < red.r; ++j)
    for (int i = 0; i < red.r; ++i) {
      const double l = lhs_u(red, i, j), d = l - rhs_u(red, M, lambda, i, j);
      num += d * d;
      den += l * l;
    }
  return den > 0.0 ? std::sqrt(num / den) : kNaN;
}

LambdaDiagnostics diagnose(const Reduced& red, double lambda, const ExactResult* exact) {
  LambdaDiagnostics out;
  out.lambda = lambda;
  const int r = red.r;
  const Matrix Ml = linearized_M(red, lambda);
  const Matrix Z(r, r);
  const double g0 = grad_norm_reduced(red, Z, lambda);
  out.g_proxy = g0 > 0.0 ? grad_norm_reduced(red, Ml, lambda) / g0 : kNaN;
  // q: the neglected quadratic term relative to the kept linear one.
  const Matrix MtM = matmul(Ml, Ml, true, false);
  double qn = 0.0, ln = 0.0;
  for (int j = 0; j < r; ++j)
    for (int i = 0; i < r; ++i) {
      const double a = red.sigma[i] * red.sigma[j];
      qn += a * a * MtM(i, j) * MtM(i, j);
      const double l = Ml(i, j) + Ml(j, i);
      ln += a * a * l * l;
    }
  out.q_proxy = ln > 0.0 ? std::sqrt(qn / ln) : kNaN;
  out.lin = w_magnitudes(red.U, Ml);
  if (exact && exact->M.rows == r) {
    out.eq1_residual_exact = eq1_residual(red, exact->M, lambda);
    const double nm = frobenius(exact->M);
    out.dW = nm > 0.0 ? frobenius_diff(Ml, exact->M) / nm : kNaN;
    const double L0 = loss_reduced(red, Z, lambda);
    const double Llin = loss_reduced(red, Ml, lambda);
    out.kappa = L0 > exact->loss ? (Llin - exact->loss) / (L0 - exact->loss) : kNaN;
    out.exact = w_magnitudes(red.U, exact->M);
  } else {
    out.eq1_residual_exact = out.dW = out.kappa = kNaN;
    out.exact = {kNaN, kNaN};
  }
  return out;
}

}  // namespace covfit::cov
