#include "covfit/cov/diagonal.hpp"

#include <cmath>

#include "covfit/cov/validation.hpp"

namespace covfit::cov {

namespace {

struct System {
  Matrix Z;               // (n, p)
  std::vector<double> b;  // (n)
};

System build_system(const Reduced& red, double lambda) {
  const int n = red.n, r = red.r, p = r * (r + 1) / 2;
  System sys;
  sys.Z = Matrix(n, p);
  Matrix C(r, r);  // 2 a w T
  int col = 0;
  for (int j = 0; j < r; ++j)
    for (int i = 0; i < r; ++i) {
      const double a = red.sigma[i] * red.sigma[j];
      const double w = lambda / (4.0 * a * a + lambda);
      const double t = red.R(i, j) - (i == j ? red.s[i] : 0.0);
      C(i, j) = 2.0 * a * w * t;
      if (i > j) continue;
      const double scale = std::sqrt((i == j ? 1.0 : 2.0) * 4.0 * a * a * w);
      double* z = sys.Z.col(col++);
      for (int k = 0; k < n; ++k) z[k] = red.U(k, i) * red.U(k, j) * scale;
    }
  // b_k = sum_ij U_ki C_ij U_kj: row-wise dot of U C with U. O(n r^2).
  const Matrix UC = matmul(red.U, C);
  sys.b.assign(n, 0.0);
  for (int j = 0; j < r; ++j)
    for (int k = 0; k < n; ++k) sys.b[k] += UC(k, j) * red.U(k, j);
  return sys;
}

// Direct: costs n^2 p (syrk) + n^3/3; Woodbury: n p^2 + p^3/3 (flop counts, leading terms).
DiagSolver resolve(DiagSolver s, int n, int r) {
  return s == DiagSolver::automatic ? diag_choose_solver(n, r) : s;
}

// Z Z^T (n, n) by dsyrk on Z^T.
Matrix outer_gram(const Matrix& Z) { return matmul(Z, Z, false, true); }

}  // namespace

DiagSolver diag_choose_solver(int n, int r) {
  const double p = 0.5 * r * (r + 1.0), nn = n;
  const double direct = nn * nn * p + nn * nn * nn / 3.0;
  const double wood = nn * p * p + p * p * p / 3.0;
  return wood < direct ? DiagSolver::woodbury : DiagSolver::direct;
}

Matrix diag_M_from_d(const Reduced& red, double lambda, const std::vector<double>& d) {
  const int r = red.r;
  Matrix DU = red.U;
  for (int j = 0; j < r; ++j)
    for (int k = 0; k < red.n; ++k) DU(k, j) *= d[k];
  const Matrix K = matmul(red.U, DU, true, false);  // U^T diag(d) U
  Matrix M(r, r);
  for (int j = 0; j < r; ++j)
    for (int i = 0; i < r; ++i) {
      const double a = red.sigma[i] * red.sigma[j];
      const double t = red.R(i, j) - (i == j ? red.s[i] : 0.0);
      M(i, j) = 2.0 * a / (4.0 * a * a + lambda) * (t - 2.0 * a * 0.5 * (K(i, j) + K(j, i)));
    }
  return M;
}

DiagLinearized diag_linearized(const Reduced& red, double lambda, double lambda_d,
                               DiagSolver solver) {
  check_lambdas({lambda}, 0.0, false, "free_diag lambda");
  check_lambdas({lambda_d}, 0.0, false, "free_diag lambda_d");
  const int n = red.n;
  DiagLinearized out;
  out.used = resolve(solver, n, red.r);
  const System sys = build_system(red, lambda);
  Matrix d(n, 1);
  std::copy(sys.b.begin(), sys.b.end(), d.data.begin());
  if (out.used == DiagSolver::direct) {
    Matrix A = outer_gram(sys.Z);
    for (int k = 0; k < n; ++k) A(k, k) += lambda_d;
    out.ok = sym_solve(std::move(A), d);
  } else {
    // (Z Z^T + lambda_d I)^{-1} b = (b - Z (Z^T Z + lambda_d I)^{-1} Z^T b) / lambda_d
    Matrix G = gram(sys.Z);
    for (int k = 0; k < G.rows; ++k) G(k, k) += lambda_d;
    Matrix y = matmul(sys.Z, d, true, false);
    out.ok = sym_solve(std::move(G), y);
    gemm(false, false, -1.0, sys.Z, y, 1.0, d);
    for (double& v : d.data) v /= lambda_d;
  }
  if (!out.ok) d = Matrix(n, 1);
  out.d = std::move(d.data);
  out.M = diag_M_from_d(red, lambda, out.d);
  return out;
}

DiagPath::DiagPath(const Reduced& red, double lambda, DiagSolver solver)
    : red_(&red), lambda_(lambda), used_(resolve(solver, red.n, red.r)) {
  check_lambdas({lambda}, 0.0, false, "free_diag lambda");
  System sys = build_system(red, lambda);
  b_ = sys.b;
  SymEig eig;
  Matrix bm(red.n, 1);
  std::copy(b_.begin(), b_.end(), bm.data.begin());
  if (used_ == DiagSolver::direct) {
    ok_ = sym_eig(outer_gram(sys.Z), eig);
    Q_ = std::move(eig.Q);
  } else {
    ok_ = sym_eig(gram(sys.Z), eig);
    if (ok_) Q_ = matmul(sys.Z, eig.Q);  // (n, p)
  }
  ev_ = std::move(eig.w);
  if (ok_) qb_ = matmul(Q_, bm, true, false).data;
}

DiagLinearized DiagPath::solve(double lambda_d) const {
  check_lambdas({lambda_d}, 0.0, false, "free_diag lambda_d");
  const int n = red_->n;
  DiagLinearized out;
  out.used = used_;
  out.ok = ok_;
  Matrix d(n, 1);
  if (ok_) {
    Matrix coef(static_cast<int>(qb_.size()), 1);
    for (std::size_t k = 0; k < qb_.size(); ++k) coef.data[k] = qb_[k] / (std::max(ev_[k], 0.0) + lambda_d);
    if (used_ == DiagSolver::direct) {
      gemm(false, false, 1.0, Q_, coef, 0.0, d);
    } else {
      // Z Q is not orthonormal: (ZQ)^T(ZQ) = diag(ev); Woodbury in the eigenbasis.
      std::copy(b_.begin(), b_.end(), d.data.begin());
      gemm(false, false, -1.0, Q_, coef, 1.0, d);
      for (double& v : d.data) v /= lambda_d;
    }
  }
  out.d = std::move(d.data);
  out.M = diag_M_from_d(*red_, lambda_, out.d);
  return out;
}

}  // namespace covfit::cov

// ---- exact free_diag model ------------------------------------------------------------

#include <chrono>
#include <deque>
#include <limits>
#include <sstream>

#include "covfit/cov/dense.hpp"

namespace covfit::cov {

double diag_loss(const Reduced& red, double lambda, double lambda_d, const std::vector<double>& d,
                 const Matrix& B, std::vector<double>* grad_d, Matrix* grad_B) {
  const int n = red.n, r = red.r;
  Matrix DU = red.U;
  for (int j = 0; j < r; ++j)
    for (int k = 0; k < n; ++k) DU(k, j) *= d[k];
  Matrix H = centre_rows(DU);  // J diag(d) U
  for (std::size_t k = 0; k < H.data.size(); ++k) H.data[k] += red.U.data[k] + B.data[k];
  Matrix E = gram(H);  // becomes Sigma E Sigma below
  double data = 0.0;
  for (int j = 0; j < r; ++j)
    for (int i = 0; i < r; ++i) {
      const double a = red.sigma[i] * red.sigma[j];
      const double e = red.R(i, j) - a * E(i, j);
      data += e * e;
      E(i, j) = a * e;
    }
  double dn = 0.0;
  for (double v : d) dn += v * v;
  const double L = 0.5 * data + 0.5 * lambda * frobenius_sq(B) + 0.5 * lambda_d * dn + red.loss_const();
  if (grad_d || grad_B) {
    Matrix GH;
    gemm(false, false, -2.0, H, E, 0.0, GH);
    const Matrix JG = centre_rows(GH);
    if (grad_B) {
      *grad_B = JG;
      for (std::size_t k = 0; k < B.data.size(); ++k) grad_B->data[k] += lambda * B.data[k];
    }
    if (grad_d) {
      grad_d->assign(n, 0.0);
      for (int j = 0; j < r; ++j)
        for (int k = 0; k < n; ++k) (*grad_d)[k] += JG(k, j) * red.U(k, j);
      for (int k = 0; k < n; ++k) (*grad_d)[k] += lambda_d * d[k];
    }
  }
  return L;
}

DiagExactResult diag_exact(const Reduced& red, double lambda, double lambda_d,
                           const DiagExactOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  check_lambdas({lambda}, 0.0, false, "free_diag lambda");
  check_lambdas({lambda_d}, 0.0, false, "free_diag lambda_d");
  const int n = red.n, r = red.r;
  const std::size_t nB = static_cast<std::size_t>(n) * r, N = n + nB;
  // Packed unknowns x = [d; vec(B)].
  auto eval = [&](const std::vector<double>& x, std::vector<double>& g) {
    std::vector<double> d(x.begin(), x.begin() + n), gd;
    Matrix B(n, r), gB;
    std::copy(x.begin() + n, x.end(), B.data.begin());
    const double f = diag_loss(red, lambda, lambda_d, d, B, &gd, &gB);
    g.resize(N);
    std::copy(gd.begin(), gd.end(), g.begin());
    std::copy(gB.data.begin(), gB.data.end(), g.begin() + n);
    return f;
  };
  auto dot = [](const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0.0;
    for (std::size_t k = 0; k < a.size(); ++k) s += a[k] * b[k];
    return s;
  };
  std::vector<double> x(N, 0.0), g;
  eval(x, g);
  const double g0 = std::sqrt(dot(g, g));

  const DiagLinearized lin = diag_linearized(red, lambda, lambda_d);
  std::copy(lin.d.begin(), lin.d.end(), x.begin());
  const Matrix B0 = matmul(red.U, lin.M);  // B = J F U = U M for F = U M U^T
  std::copy(B0.data.begin(), B0.data.end(), x.begin() + n);

  DiagExactResult out;
  double f = eval(x, g);
  out.loss_start = f;
  double gn = std::sqrt(dot(g, g));
  std::deque<std::vector<double>> S, Y;
  std::vector<double> q(N), xn(N), gnew;
  std::string why;
  for (; out.iters < opt.max_iter && gn > opt.rel_grad_tol * g0; ++out.iters) {
    // Two-loop recursion.
    q = g;
    std::vector<double> alpha(S.size());
    for (int i = static_cast<int>(S.size()) - 1; i >= 0; --i) {
      alpha[i] = dot(S[i], q) / dot(Y[i], S[i]);
      for (std::size_t k = 0; k < N; ++k) q[k] -= alpha[i] * Y[i][k];
    }
    const double gamma = S.empty() ? 1.0 / std::max(gn, 1e-300) : dot(S.back(), Y.back()) / dot(Y.back(), Y.back());
    for (double& v : q) v *= gamma;
    for (std::size_t i = 0; i < S.size(); ++i) {
      const double beta = dot(Y[i], q) / dot(Y[i], S[i]);
      for (std::size_t k = 0; k < N; ++k) q[k] += S[i][k] * (alpha[i] - beta);
    }
    double slope = -dot(g, q);
    if (!(slope < 0.0)) {  // lost descent: restart from steepest descent
      S.clear(), Y.clear();
      q = g;
      for (double& v : q) v /= std::max(gn, 1e-300);
      slope = -dot(g, q);
    }
    double t = 1.0, fn = 0.0;
    bool ok = false;
    for (int bt = 0; bt < 60 && !ok; ++bt, t *= 0.5) {
      for (std::size_t k = 0; k < N; ++k) xn[k] = x[k] - t * q[k];
      fn = eval(xn, gnew);
      ok = fn <= f + 1e-4 * t * slope ||
           (fn - f <= 64.0 * std::numeric_limits<double>::epsilon() * std::abs(f) &&
            dot(gnew, gnew) < gn * gn);
    }
    if (!ok) {
      why = "line search failed";
      break;
    }
    std::vector<double> s(N), y(N);
    for (std::size_t k = 0; k < N; ++k) s[k] = xn[k] - x[k], y[k] = gnew[k] - g[k];
    if (dot(s, y) > 0.0) {
      S.push_back(std::move(s)), Y.push_back(std::move(y));
      if (static_cast<int>(S.size()) > opt.memory) S.pop_front(), Y.pop_front();
    }
    x.swap(xn);
    g.swap(gnew);
    f = fn;
    gn = std::sqrt(dot(g, g));
  }
  out.d.assign(x.begin(), x.begin() + n);
  out.B = Matrix(n, r);
  std::copy(x.begin() + n, x.end(), out.B.data.begin());
  out.loss = f;
  out.rel_grad = g0 > 0.0 ? gn / g0 : gn;
  const bool conv = gn <= opt.rel_grad_tol * g0;
  out.status = conv ? ExactStatus::converged : ExactStatus::not_converged;
  std::ostringstream msg;
  msg.precision(3);
  msg << (conv ? "stationary" : (why.empty() ? "iteration limit" : why)) << " after " << out.iters
      << " L-BFGS iterations (rel grad " << out.rel_grad << ")";
  out.message = msg.str();
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace covfit::cov
