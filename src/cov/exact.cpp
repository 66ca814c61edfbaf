#include "covfit/cov/exact.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <sstream>

#include "covfit/cov/linearized.hpp"
#include "covfit/cov/validation.hpp"

namespace covfit::cov {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kEps = std::numeric_limits<double>::epsilon();
constexpr double kArmijo = 1e-4;
constexpr int kMaxBacktracks = 60;

double dot(const Matrix& A, const Matrix& B) {
  double s = 0.0;
  for (std::size_t k = 0; k < A.data.size(); ++k) s += A.data[k] * B.data[k];
  return s;
}

// The reduced problem in units where s_max = 1 (s/c, R/c, lambda/c^2, c = s_max): P is
// unchanged, f scales by c^2. Keeps the Hessian's entries O(1) whatever the data's units.
class Objective {
 public:
  Objective(const Reduced& red, double lambda) : r_(red.r), c_(red.s_max()) {
    a_ = Matrix(r_, r_);
    R_ = Matrix(r_, r_);
    for (int j = 0; j < r_; ++j)
      for (int i = 0; i < r_; ++i) {
        a_(i, j) = red.sigma[i] * red.sigma[j] / c_;  // sqrt(s_i s_j) in scaled units
        R_(i, j) = red.R(i, j) / c_;
      }
    lam_ = lambda / (c_ * c_);
    s_min_ = red.s.back() / c_;
  }
  int r() const { return r_; }
  double c() const { return c_; }
  double lam() const { return lam_; }
  double s_min() const { return s_min_; }

  // f(P); also A = Sigma (Sigma P^2 Sigma - R) Sigma.
  double value(const Matrix& P, Matrix& A) const {
    A = gram(P);  // P^2 = P^T P for symmetric P
    double data = 0.0;
    for (std::size_t k = 0; k < A.data.size(); ++k) {
      const double a = a_.data[k];
      const double e = a * A.data[k] - R_.data[k];
      data += e * e;
      A.data[k] = a * e;
    }
    double pen = 0.0;
    for (int j = 0; j < r_; ++j)
      for (int i = 0; i < r_; ++i) {
        const double d = P(i, j) - (i == j ? 1.0 : 0.0);
        pen += d * d;
      }
    return 0.5 * data + 0.5 * lam_ * pen;
  }
  // grad_P f = A P + P A + lambda (P - I)
  void gradient(const Matrix& P, const Matrix& A, Matrix& g) const {
    Matrix Y = matmul(A, P);
    g = Matrix(r_, r_);
    for (int j = 0; j < r_; ++j)
      for (int i = 0; i < r_; ++i)
        g(i, j) = Y(i, j) + Y(j, i) + lam_ * (P(i, j) - (i == j ? 1.0 : 0.0));
  }
  // Hessian-vector product for symmetric D: dA P + P dA + A D + D A + lambda D,
  // dA = Sigma (D P + P D) Sigma^... (elementwise a^2). Three gemms.
  void hessvec(const Matrix& P, const Matrix& A, const Matrix& D, Matrix& out, Matrix& Y,
               Matrix& dA) const {
    gemm(false, false, 1.0, D, P, 0.0, Y);  // D P
    if (dA.rows != r_) dA = Matrix(r_, r_);
    for (int j = 0; j < r_; ++j)
      for (int i = 0; i < r_; ++i) {
        const double a = a_(i, j);
        dA(i, j) = a * a * (Y(i, j) + Y(j, i));
      }
    gemm(false, false, 1.0, dA, P, 0.0, Y);  // dA P
    gemm(false, false, 1.0, A, D, 1.0, Y);   // + A D
    if (out.rows != r_) out = Matrix(r_, r_);
    for (int j = 0; j < r_; ++j)
      for (int i = 0; i < r_; ++i) out(i, j) = Y(i, j) + Y(j, i) + lam_ * D(i, j);
  }
  // Jacobi preconditioner's inverse: 1 / (s_i s_j (P_ii + P_jj)^2 + lambda).
  void precond(const Matrix& P, Matrix& Minv) const {
    Minv = Matrix(r_, r_);
    for (int j = 0; j < r_; ++j)
      for (int i = 0; i < r_; ++i) {
        const double a = a_(i, j), pp = P(i, i) + P(j, j);
        const double d = a * a * pp * pp + lam_;
        Minv(i, j) = d > 0.0 ? 1.0 / d : 1.0;
      }
  }

 private:
  int r_;
  double c_;
  Matrix a_, R_;
  double lam_ = 0.0, s_min_ = 0.0;
};

struct Run {
  Matrix P;
  double f = 0.0, gnorm = 0.0;
  bool stationary = false;
  int newton = 0, cg = 0;
  std::string why;
};

// Line-search Newton-CG from P0 until ||g|| <= tol_abs.
Run newton_cg(const Objective& obj, Matrix P0, double tol_abs, double g0norm,
              const ExactOptions& opt) {
  const int r = obj.r();
  Run run;
  run.P = std::move(P0);
  Matrix A, g, Minv, d, res, z, p, Hp, Y, dA, Pn, An;
  run.f = obj.value(run.P, A);
  obj.gradient(run.P, A, g);
  run.gnorm = frobenius(g);
  for (; run.newton < opt.max_newton; ++run.newton) {
    if (run.gnorm <= tol_abs) break;
    // Inexact Newton direction: truncated preconditioned CG with forcing term eta.
    const double eta = std::min(0.5, std::sqrt(run.gnorm / std::max(g0norm, kEps)));
    obj.precond(run.P, Minv);
    d = Matrix(r, r);
    res = g;
    for (double& v : res.data) v = -v;
    z = res;
    for (std::size_t k = 0; k < z.data.size(); ++k) z.data[k] *= Minv.data[k];
    p = z;
    double rz = dot(res, z);
    for (int it = 0; it < opt.max_cg; ++it) {
      obj.hessvec(run.P, A, p, Hp, Y, dA);
      ++run.cg;
      const double pHp = dot(p, Hp);
      if (!(pHp > 0.0)) {  // negative curvature: P is not in a convex region
        if (it == 0) d = z;  // preconditioned steepest descent
        break;
      }
      const double alpha = rz / pHp;
      for (std::size_t k = 0; k < d.data.size(); ++k) {
        d.data[k] += alpha * p.data[k];
        res.data[k] -= alpha * Hp.data[k];
      }
      // Solving beyond the target tolerance buys nothing: stop at half of it.
      if (frobenius(res) <= std::max(eta * run.gnorm, 0.5 * tol_abs)) break;
      for (std::size_t k = 0; k < z.data.size(); ++k) z.data[k] = res.data[k] * Minv.data[k];
      const double rz_new = dot(res, z);
      const double beta = rz_new / rz;
      rz = rz_new;
      for (std::size_t k = 0; k < p.data.size(); ++k) p.data[k] = z.data[k] + beta * p.data[k];
    }
    double slope = dot(g, d);
    if (!(slope < 0.0)) {  // CG broke down: fall back to preconditioned steepest descent
      for (std::size_t k = 0; k < d.data.size(); ++k) d.data[k] = -Minv.data[k] * g.data[k];
      slope = dot(g, d);
    }
    // Armijo backtracking. Near the optimum f changes below its rounding error, so a step
    // that keeps f within rounding and reduces the gradient is accepted too.
    double t = 1.0;
    bool accepted = false;
    Matrix gn;
    for (int bt = 0; bt < kMaxBacktracks; ++bt, t *= 0.5) {
      Pn = run.P;
      for (std::size_t k = 0; k < Pn.data.size(); ++k) Pn.data[k] += t * d.data[k];
      const double fn = obj.value(Pn, An);
      if (!std::isfinite(fn)) continue;
      bool ok = fn <= run.f + kArmijo * t * slope;
      if (!ok && fn - run.f <= 64.0 * kEps * std::abs(run.f)) {
        obj.gradient(Pn, An, gn);
        ok = frobenius(gn) < run.gnorm;
      }
      if (ok) {
        run.P = std::move(Pn);
        run.f = fn;
        A = std::move(An);
        obj.gradient(run.P, A, g);
        run.gnorm = frobenius(g);
        accepted = true;
        break;
      }
    }
    if (!accepted) {
      run.why = "line search failed";
      break;
    }
  }
  run.stationary = run.gnorm <= tol_abs;
  if (!run.stationary && run.why.empty()) run.why = "iteration limit";
  return run;
}

// I + M projected onto {P >= floor I}.
Matrix projected_start(const Matrix& M, double floor) {
  Matrix P = M;
  for (int i = 0; i < P.rows; ++i) P(i, i) += 1.0;
  SymEig eig;
  if (!sym_eig(P, eig)) return Matrix::identity(P.rows);
  if (eig.w.empty() || eig.w.front() >= floor) return P;
  Matrix QL = eig.Q;
  for (int j = 0; j < P.cols; ++j) {
    const double w = std::max(eig.w[j], floor);
    for (int i = 0; i < P.rows; ++i) QL(i, j) *= w;
  }
  P = matmul(QL, eig.Q, false, true);
  symmetrise(P);
  return P;
}

double min_eig(const Matrix& P) {
  SymEig e;
  if (P.rows == 0) return kInf;
  if (!sym_eig(P, e, false)) return -kInf;
  return e.w.front();
}

}  // namespace

ExactResult solve_exact(const Reduced& red, double lambda, const ExactOptions& opt,
                        const Matrix* warm_P) {
  check_lambdas({lambda}, 0.0, false, "exact solver lambda");
  const auto t0 = std::chrono::steady_clock::now();
  ExactResult out;
  out.lambda = lambda;
  const int r = red.r;
  if (r == 0) {
    out.status = ExactStatus::converged;
    out.message = "rank 0: W = 0";
    out.loss = red.loss_const();
    out.min_eig_P = kInf;
    return out;
  }
  const Objective obj(red, lambda);
  Matrix A, g;
  const Matrix I = Matrix::identity(r);
  const double fI = obj.value(I, A);
  obj.gradient(I, A, g);
  const double g0 = frobenius(g);
  const double tol_abs = opt.rel_grad_tol * g0;

  Run best;
  bool have = false;
  std::string log;
  auto accept = [&](Run&& run, const char* name) {
    out.newton_iters += run.newton;
    out.cg_iters += run.cg;
    const double me = min_eig(run.P);
    const bool ok = run.stationary && me > 0.0;
    if (!log.empty()) log += "; ";
    log += std::string(name) + (ok ? ": converged" : run.stationary ? ": stationary but P not > 0"
                                                                    : ": " + run.why);
    // Starts are tried until one is accepted, so `best` is never an accepted run here.
    if (!have || ok || run.f < best.f) best = std::move(run), have = true;
    return ok;
  };

  bool done = false;
  if (warm_P && warm_P->rows == r && warm_P->cols == r)
    done = accept(newton_cg(obj, *warm_P, tol_abs, g0, opt), "warm start");
  if (!done && opt.direct_start)
    done = accept(newton_cg(obj, projected_start(linearized_M(red, lambda), opt.start_floor),
                            tol_abs, g0, opt),
                  "I + M_lin start");
  if (!done) {
    // lambda-continuation: at lambda >= 400 s_max^2, P* ~ I + M_lin; walk down to lambda.
    out.used_continuation = true;
    double lam_k = opt.continuation_from * red.s_max() * red.s_max();
    Matrix P = projected_start(linearized_M(red, std::max(lam_k, lambda)), opt.start_floor);
    while (lam_k > lambda) {
      const Objective stage(red, lam_k);
      Matrix As, gs;
      stage.value(I, As);
      stage.gradient(I, As, gs);
      const double g0s = frobenius(gs);
      Run run = newton_cg(stage, P, opt.rel_grad_tol * g0s, g0s, opt);
      out.newton_iters += run.newton;
      out.cg_iters += run.cg;
      P = std::move(run.P);
      lam_k /= opt.continuation_factor;
    }
    done = accept(newton_cg(obj, P, tol_abs, g0, opt), "continuation");
  }

  // Result and certificate (scaled units, then back to the data's units).
  const double c2 = obj.c() * obj.c();
  Matrix P = best.P;
  out.M = P;
  for (int i = 0; i < r; ++i) out.M(i, i) -= 1.0;
  const double f = obj.value(P, A);
  obj.gradient(P, A, g);
  out.f = f * c2;
  out.loss = out.f + red.loss_const();
  out.rel_grad = g0 > 0.0 ? frobenius(g) / g0 : frobenius(g);
  out.gap_bound = kInf;
  out.G_dist_bound = kInf;
  SymEig eig;
  if (sym_eig(P, eig)) {
    out.min_eig_P = eig.w.front();
    if (out.min_eig_P > 0.0) {
      // g_h = ||A + lambda/2 (I - P^{-1})||_F, mu = s_min^2 + lambda/4 gmax^{-3/2}.
      Matrix QL = eig.Q;
      for (int j = 0; j < r; ++j)
        for (int i = 0; i < r; ++i) QL(i, j) /= eig.w[j];
      const Matrix Pinv = matmul(QL, eig.Q, false, true);
      Matrix gh = A;
      const double lam = obj.lam();
      for (int j = 0; j < r; ++j)
        for (int i = 0; i < r; ++i) gh(i, j) += 0.5 * lam * ((i == j ? 1.0 : 0.0) - Pinv(i, j));
      const double ghn = frobenius(gh);
      const double pmax = eig.w.back();
      const double bound = 1.0 + std::sqrt(2.0 * fI / lam);
      const double gmax = std::max(pmax * pmax, bound * bound);
      const double mu = obj.s_min() * obj.s_min() + 0.25 * lam * std::pow(gmax, -1.5);
      out.gap_bound = ghn * ghn / (2.0 * mu) * c2;
      out.G_dist_bound = ghn / mu;
    }
  } else {
    out.min_eig_P = std::numeric_limits<double>::quiet_NaN();
  }
  out.status = done ? ExactStatus::converged : ExactStatus::not_converged;
  std::ostringstream msg;
  msg.precision(3);
  msg << log << " (rel grad " << out.rel_grad << ", min eig P " << out.min_eig_P << ")";
  out.message = msg.str();
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

std::vector<ExactResult> sweep_exact(const Reduced& red, const std::vector<double>& lambdas,
                                     const ExactOptions& opt) {
  check_lambdas(lambdas, 0.0, false, "exact sweep lambda");
  std::vector<std::size_t> order(lambdas.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return lambdas[a] > lambdas[b]; });
  std::vector<ExactResult> out(lambdas.size());
  Matrix warm;
  bool have_warm = false;
  for (std::size_t idx : order) {
    if (opt.stop && opt.stop->load()) {
      out[idx].lambda = lambdas[idx];
      out[idx].message = "interrupted";
      continue;
    }
    out[idx] = solve_exact(red, lambdas[idx], opt, have_warm ? &warm : nullptr);
    if (out[idx].status == ExactStatus::converged) {
      warm = out[idx].M;
      for (int i = 0; i < warm.rows; ++i) warm(i, i) += 1.0;
      have_warm = true;
    }
  }
  return out;
}

}  // namespace covfit::cov
