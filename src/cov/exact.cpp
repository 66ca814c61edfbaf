#include "covfit/cov/exact.hpp"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <sstream>
#include <utility>

#include "covfit/cov/linearized.hpp"
#include "covfit/cov/validation.hpp"

namespace covfit::cov {

namespace {

using Clock = std::chrono::steady_clock;
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kEps = std::numeric_limits<double>::epsilon();
constexpr double kArmijo = 1e-4;
constexpr int kMaxBacktracks = 60;

double dot(const Matrix& A, const Matrix& B) {
  double s = 0.0;
  for (std::size_t k = 0; k < A.data.size(); ++k) s += A.data[k] * B.data[k];
  return s;
}

// Congruence with a symmetric A, out = X^T A X (trans) or X A X^T, exactly symmetric.
// With A = L + L^T (L: A's lower triangle, diagonal halved), X^T A X = C + C^T for
// C = X^T (L X): a triangular multiply (half a GEMM's flops) and one GEMM instead of two
// GEMMs (measured at r = 1000, one thread: dtrmm 59 ms, dgemm 107 ms). `Lh` and `T` are
// work matrices; A is not modified.
void congruence(const Matrix& X, const Matrix& A, bool trans, Matrix& out, Matrix& Lh, Matrix& T) {
  const int r = A.rows;
  Lh = A;
  for (int i = 0; i < r; ++i) Lh(i, i) *= 0.5;
  T = X;
  if (r == 0 || X.rows == 0) {
    out = Matrix(trans ? X.cols : X.rows, trans ? X.cols : X.rows);
    return;
  }
  if (trans) {  // T = L X (r x c), C = X^T T
    cblas_dtrmm(CblasColMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, T.rows, T.cols,
                1.0, Lh.data.data(), r, T.data.data(), T.rows);
    gemm(true, false, 1.0, X, T, 0.0, out);
  } else {  // T = X L (c x r), C = T X^T
    cblas_dtrmm(CblasColMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, T.rows, T.cols,
                1.0, Lh.data.data(), r, T.data.data(), T.rows);
    gemm(false, true, 1.0, T, X, 0.0, out);
  }
  const int c = out.rows;
  for (int j = 0; j < c; ++j)
    for (int i = j; i < c; ++i) {
      const double v = out(i, j) + out(j, i);
      out(i, j) = v;
      out(j, i) = v;
    }
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
  // f(I) and ||grad_P f(I)||_F: the scale of the relative-gradient test and the sublevel
  // bound of the certificate.
  std::pair<double, double> at_identity() const {
    Matrix A, g;
    const double fI = value(Matrix::identity(r_), A);
    gradient(Matrix::identity(r_), A, g);
    return {fI, frobenius(g)};
  }
  // grad_P f = A P + P A + lambda (P - I)
  void gradient(const Matrix& P, const Matrix& A, Matrix& g) const {
    Matrix Y = matmul(A, P);
    g = Matrix(r_, r_);
    for (int j = 0; j < r_; ++j)
      for (int i = 0; i < r_; ++i)
        g(i, j) = Y(i, j) + Y(j, i) + lam_ * (P(i, j) - (i == j ? 1.0 : 0.0));
  }
  // Hessian-vector product of f in P for symmetric D: dA P + P dA + A D + D A + lambda D,
  // dA = Sigma (D P + P D) Sigma (elementwise a^2). Three gemms.
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
  // Scaled sigma_i (s_max = 1).
  double sigma(int i) const { return std::sqrt(a_(i, i)); }

 private:
  int r_;
  double c_;
  Matrix a_, R_;
  double lam_ = 0.0, s_min_ = 0.0;
};

// What one lambda may spend, shared by all its starts and continuation stages.
class Budget {
 public:
  Budget(const ExactOptions& opt, Clock::time_point t0)
      : newton_left_(opt.max_newton), max_cg_(std::max(1, opt.max_cg)), stop_(opt.stop),
        deadline_(opt.max_seconds > 0.0
                      ? t0 + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(opt.max_seconds))
                      : Clock::time_point::max()) {}
  int max_cg() const { return max_cg_; }
  // False (and remembers why) once the Newton budget, the time or the stop flag says so.
  bool may_continue() {
    if (stop_ && stop_->load(std::memory_order_relaxed)) interrupted_ = true;
    else if (newton_left_ <= 0) exhausted_ = "Newton-step budget";
    else if (Clock::now() > deadline_) exhausted_ = "time budget";
    return !interrupted_ && !exhausted_;
  }
  // Inside CG: the stop flag and the clock only.
  bool cg_may_continue() {
    if (stop_ && stop_->load(std::memory_order_relaxed)) interrupted_ = true;
    else if (Clock::now() > deadline_) exhausted_ = "time budget";
    return !interrupted_ && !exhausted_;
  }
  void spend_newton() { --newton_left_; }
  bool interrupted() const { return interrupted_; }
  const char* exhausted() const { return exhausted_; }
  bool over() const { return interrupted_ || exhausted_; }

 private:
  int newton_left_;
  int max_cg_;
  const std::atomic<bool>* stop_;
  Clock::time_point deadline_;
  bool interrupted_ = false;
  const char* exhausted_ = nullptr;
};

// Preconditioned conjugate gradients on H x = b from x = 0, for both Newton variants: H is
// applied by a callback, the preconditioner is diagonal (elementwise Minv). The state
// persists between calls to `iterate`, so a solve can go on to a tighter tolerance
// (newton_g's final correction).
class Pcg {
 public:
  Matrix x, res, z, p, Hp;  // iterate, residual b - H x, Minv o res, direction, H p
  int it = 0;               // iterations (products with H) so far

  // x = 0, res = b, z = p = Minv o b. Minv must outlive the calls to iterate.
  void start(const Matrix& b, const Matrix& Minv) {
    minv_ = &Minv;
    x = Matrix(b.rows, b.cols);
    res = b;
    z = res;
    for (std::size_t k = 0; k < z.data.size(); ++k) z.data[k] *= Minv.data[k];
    p = z;
    rz_ = dot(res, z);
    it = 0;
  }
  // Iterates while it < max_it, more(it, ||res||_F) and the budget's stop flag and clock
  // allow; apply(p, Hp) sets Hp = H p. Returns false if it stopped at a direction of
  // non-positive curvature (p^T H p <= 0 or NaN), which x does not take.
  template <class Apply, class More>
  bool iterate(int max_it, Budget& budget, Apply&& apply, More&& more) {
    const Matrix& Minv = *minv_;
    while (it < max_it && more(it, frobenius(res))) {
      if (!budget.cg_may_continue()) break;
      apply(p, Hp);
      ++it;
      const double pHp = dot(p, Hp);
      if (!(pHp > 0.0)) return false;
      const double alpha = rz_ / pHp;
      for (std::size_t k = 0; k < x.data.size(); ++k) {
        x.data[k] += alpha * p.data[k];
        res.data[k] -= alpha * Hp.data[k];
      }
      for (std::size_t k = 0; k < z.data.size(); ++k) z.data[k] = res.data[k] * Minv.data[k];
      const double rz_new = dot(res, z);
      const double beta = rz_new / rz_;
      rz_ = rz_new;
      for (std::size_t k = 0; k < p.data.size(); ++k) p.data[k] = z.data[k] + beta * p.data[k];
    }
    return true;
  }

 private:
  const Matrix* minv_ = nullptr;
  double rz_ = 0.0;  // <res, z>
};

struct Run {
  Matrix P;
  double f = 0.0, gnorm = 0.0;
  bool stationary = false;
  int newton = 0, cg = 0, max_cg = 0;
  std::string why;

  // Counts one Newton step's CG iterations.
  void count_cg(int it) {
    cg += it;
    max_cg = std::max(max_cg, it);
  }
};

// COVFIT_EXACT_TRACE=1: one stderr line per Newton step (how the solver behaves on a case).
bool trace_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("COVFIT_EXACT_TRACE");
    return v && *v && std::string(v) != "0";
  }();
  return on;
}

// Armijo test of the trial point Pn (step t along a direction of slope `slope`). Near the
// optimum f changes below its rounding error, so a trial within rounding that reduces the
// gradient (or any such trial, for a final correction) is accepted too. On acceptance run,
// A and g move to Pn.
bool accept_trial(const Objective& obj, Run& run, Matrix& Pn, Matrix& A, Matrix& g, double t,
                  double slope, bool final_correction) {
  Matrix An, gn;
  const double fn = obj.value(Pn, An);
  if (!std::isfinite(fn)) return false;
  bool ok = fn <= run.f + kArmijo * t * slope;
  if (!ok && fn - run.f <= 64.0 * kEps * std::abs(run.f)) {
    obj.gradient(Pn, An, gn);
    ok = final_correction || frobenius(gn) < run.gnorm;
  }
  if (!ok) return false;
  run.P = std::move(Pn);
  run.f = fn;
  A = std::move(An);
  obj.gradient(run.P, A, g);
  run.gnorm = frobenius(g);
  return true;
}

// Predicted decrease (Newton decrement^2 / 2) below this fraction of f: f cannot move further
// in double precision. One more correction is still applied (it fixes the last digits of P).
constexpr double kDecrementTol = 1e-14;
constexpr int kMaxSmallSteps = 4;
// Relative CG residual of the final correction.
constexpr double kFinalCgTol = 1e-10;
constexpr int kExtraSteps = 3;
// A start that converges does so in 3-15 steps; one that has not after this many is
// abandoned for the next start (or a finer continuation step).
constexpr int kMaxNewtonPerStart = 40;
// A continuation stage (a step down in lambda from a solution) that has not converged after
// this many steps is retried with a smaller step in lambda.
constexpr int kMaxNewtonPerStage = 15;
// Steps of the Newton-in-P fallback per start.
constexpr int kMaxNewtonP = 100;
// The cheap first attempt of solve_from: from lambda >= kCheapLambda s_max^2, up to
// kCheapSteps Newton-in-P steps of at most kCheapCg CG iterations, kept if certified to
// a gap below kCheapGapTol |f|.
constexpr double kCheapLambda = 1e-2;
constexpr int kCheapSteps = 6;
constexpr int kCheapCg = 30;
constexpr double kCheapGapTol = 1e-14;

// Newton in G = P^2 with the iterate kept as P (see exact.hpp), from P0 > 0 until the
// gradient is below tol_abs or the Newton decrement says f is final.
Run newton_g(const Objective& obj, Matrix P0, double tol_abs, double g0norm, Budget& budget,
             int max_steps = kMaxNewtonPerStart) {
  const int r = obj.r();
  const double lam = obj.lam();
  Run run;
  run.P = std::move(P0);
  Matrix A, g, gt, tmp, K, Wm(r, r), Tw(r, r), delta(r, r), Dinv(r, r), mumu(r, r);
  Matrix b, E1, E2, d, Pn, Lh, Tc;
  Pcg pcg;
  SymEig eP, eK;
  run.f = obj.value(run.P, A);
  obj.gradient(run.P, A, g);
  run.gnorm = frobenius(g);
  bool final_step = false;
  double first_gnorm = 1.0;
  int small_steps = 0;
  int past_tol = 0;  // Newton steps taken with the gradient already below tol_abs
  while (!final_step) {
    if (!std::isfinite(run.f) || !std::isfinite(run.gnorm)) {
      run.why = "non-finite loss";
      break;
    }
    if (!budget.may_continue()) {
      run.why = budget.interrupted() ? "interrupted" : budget.exhausted();
      break;
    }
    if (!sym_eig(run.P, eP) || !(eP.w.front() > 0.0)) {
      run.why = "P lost positive definiteness";
      break;
    }
    const std::vector<double>& w = eP.w;
    const Matrix& Q = eP.Q;
    // grad_G h = T^{-1} grad_P f, in P's eigenbasis: (Q^T g Q)_kl / (w_k + w_l).
    congruence(Q, g, true, gt, Lh, Tc);
    std::vector<double> w34(r);
    for (int k = 0; k < r; ++k) w34[k] = std::pow(w[k], 0.75);
    for (int l = 0; l < r; ++l)
      for (int k = 0; k < r; ++k) {
        Tw(k, l) = w[k] + w[l];
        gt(k, l) /= Tw(k, l);
        delta(k, l) = lam / (2.0 * w[k] * w[l] * Tw(k, l));
      }
    // Preconditioner: S (x) S + lambda/4 B (x) B with B = P^{-3/2} is diagonal in the
    // coordinates Z = P^{3/4} Y, Y the eigenvectors of P^{3/4} S P^{3/4} (eigenvalues mu):
    // there it is mu_k mu_l + lambda/4. Wm = Q^T Z = diag(w^{3/4}) Q^T Y' (P's basis).
    tmp = Q;  // Sigma Q: rows scaled by sigma_i
    for (int j = 0; j < r; ++j)
      for (int i = 0; i < r; ++i) tmp(i, j) *= obj.sigma(i);
    K = gram(tmp);  // Q^T S Q
    for (int l = 0; l < r; ++l)
      for (int k = 0; k < r; ++k) K(k, l) *= w34[k] * w34[l];
    if (!sym_eig(K, eK)) {
      run.why = "eigendecomposition failed";
      break;
    }
    for (int l = 0; l < r; ++l)
      for (int k = 0; k < r; ++k) {
        Wm(k, l) = w34[k] * eK.Q(k, l);
        const double mk = std::max(eK.w[k], 0.0), ml = std::max(eK.w[l], 0.0);
        mumu(k, l) = mk * ml;
        Dinv(k, l) = 1.0 / (mk * ml + 0.25 * lam);
      }
    // Right-hand side -Z^T grad_G h Z (= -J^T grad_P f for dP = J y).
    congruence(Wm, gt, true, b, Lh, Tc);
    for (double& v : b.data) v = -v;
    const double bnorm = frobenius(b);
    const double rel = g0norm > 0.0 ? run.gnorm / g0norm : run.gnorm;
    // Forcing term relative to this run's first gradient (superlinear convergence whatever
    // the gradient's size relative to grad f(I)).
    if (run.newton == 0) first_gnorm = std::max(run.gnorm, std::numeric_limits<double>::min());
    const double eta = 0.1 * std::min(0.5, std::sqrt(run.gnorm / std::min(first_gnorm, std::max(g0norm, std::numeric_limits<double>::min()))));
    // Operator in Z coordinates: y -> Z^T H_G (Z y Z^T) Z = mumu o y + Wm^T (delta o E) Wm,
    // E = Wm y Wm^T (= dG in P's basis). Positive definite: plain PCG (its curvature test
    // can stop it only through rounding).
    // (Newton in P with this preconditioner was tried: the P-Hessian's indefinite part
    // costs more steps; 31 s against 18 s on the 150 x 150 example, same certificates.)
    auto apply_hg = [&](const Matrix& v, Matrix& Hv) {
      congruence(Wm, v, false, E2, Lh, Tc);
      for (std::size_t k = 0; k < E2.data.size(); ++k) E2.data[k] *= delta.data[k];
      congruence(Wm, E2, true, Hv, Lh, Tc);
      for (std::size_t k = 0; k < Hv.data.size(); ++k) Hv.data[k] += mumu.data[k] * v.data[k];
    };
    auto cg_until = [&](double target) {
      pcg.iterate(budget.max_cg(), budget, apply_hg,
                  [&](int, double res_norm) { return res_norm > target * bnorm; });
    };
    pcg.start(b, Dinv);
    Matrix& x = pcg.x;
    cg_until(eta);
    // The last correction (gradient or decrement test passed: decrement^2 = <b, x>) is
    // solved to kFinalCgTol: it sets the last digits of P and the certificate's g_h.
    if ((run.gnorm <= tol_abs || 0.5 * dot(b, x) <= kDecrementTol * std::abs(run.f)) &&
        eta > kFinalCgTol)
      cg_until(kFinalCgTol);
    run.count_cg(pcg.it);
    if (budget.interrupted()) {
      run.why = "interrupted";
      break;
    }
    if (dot(x, x) == 0.0) x = pcg.z;  // no CG step made: preconditioned steepest descent
    // dG = Z x Z^T (P's basis); decrement^2 = -<grad_G h, dG>; dP = T^{-1} dG.
    congruence(Wm, x, false, E1, Lh, Tc);
    const double decrement_sq = -dot(gt, E1);
    for (std::size_t k = 0; k < E1.data.size(); ++k) E1.data[k] /= Tw.data[k];
    congruence(Q, E1, false, d, Lh, Tc);
    const double slope = dot(g, d);
    if (!(slope < 0.0) || !(decrement_sq > 0.0)) {
      // No descent left to find: the gradient is rounding noise.
      run.stationary = run.gnorm <= tol_abs || decrement_sq <= kDecrementTol * std::abs(run.f);
      if (!run.stationary) run.why = "no descent direction";
      break;
    }
    // The gradient test alone stops too early at small lambda (the certificate's bound is
    // quadratic in the gradient): past it, up to kExtraSteps more Newton steps run while
    // the decrement has not reached f's rounding.
    if (run.gnorm <= tol_abs) ++past_tol;
    final_step = 0.5 * decrement_sq <= kDecrementTol * std::abs(run.f) || past_tol > kExtraSteps;
    // Armijo backtracking inside P > 0. Near the optimum f changes below its rounding
    // error, so a step that keeps f within rounding and reduces the gradient is accepted too.
    // (A curved path P^{1/2} exp(t P^{-1/2} dP P^{-1/2}) P^{1/2}, inside P > 0 for every t,
    // was tried for steps that leave the cone: more Newton steps on every test case.)
    double t = 1.0;
    bool accepted = false;
    int not_pd = 0;
    bool known_pd = false;
    for (int bt = 0; bt < kMaxBacktracks; ++bt, t *= 0.5) {
      Pn = run.P;
      for (std::size_t k = 0; k < Pn.data.size(); ++k) Pn.data[k] += t * d.data[k];
      // P + t dP > 0 for every t below one that gave P > 0 (the cone is convex).
      if (!known_pd && is_positive_definite(Pn)) known_pd = true;
      if (!known_pd) {
        ++not_pd;
        continue;
      }
      if (accept_trial(obj, run, Pn, A, g, t, slope, final_step)) {
        accepted = true;
        break;
      }
    }
    ++run.newton;
    budget.spend_newton();
    // Steps cut to < 1/64 several times in a row: the Newton model is poor this far from
    // the optimum (typically a large drop in lambda). Leave it to the next start.
    small_steps = accepted && t < 1.0 / 64 ? small_steps + 1 : 0;
    if (trace_enabled())
      std::fprintf(stderr, "exact: lambda %.3e newton %d cg %d step %.3g (%d halvings for P > 0) rel grad %.3e dec^2/f %.3e f %.17g%s\n",
                   lam, run.newton, pcg.it, accepted ? t : 0.0, not_pd, rel, decrement_sq / std::abs(run.f),
                   run.f, final_step ? " (final correction)" : "");
    if (final_step) {
      // Converged before this correction; the correction only sharpens P.
      run.stationary = true;
      break;
    }
    if (!accepted) {
      run.why = "line search failed";
      break;
    }
    if (small_steps >= kMaxSmallSteps) {
      run.why = "stalled (step lengths < 1/64)";
      break;
    }
    if (run.newton >= max_steps) {
      run.why = "slow (" + std::to_string(max_steps) + " Newton steps)";
      break;
    }
  }
  if (!run.stationary && run.gnorm <= tol_abs) run.stationary = true;
  if (!run.stationary && run.why.empty()) run.why = "iteration limit";
  return run;
}

// Newton-CG on f in P itself (the first solver, MATH.md): Jacobi-preconditioned truncated CG
// with the P-Hessian, no constraint P > 0 during the iteration. It handles what Newton in G
// does slowly: directions where P must shrink by decades (Newton in P is exact there). Its
// CG needs many iterations at small lambda, so it runs only as a fallback, and its result
// is polished by newton_g (quadratic convergence near the optimum, certificate-grade).
Run newton_p(const Objective& obj, Matrix P0, double tol_abs, double g0norm, Budget& budget,
             int max_steps, int cg_cap = 0) {
  const int max_cg = cg_cap > 0 ? std::min(cg_cap, budget.max_cg()) : budget.max_cg();
  Run run;
  run.P = std::move(P0);
  Matrix A, g, Minv, b, Y, dA, Pn;
  Pcg pcg;
  run.f = obj.value(run.P, A);
  obj.gradient(run.P, A, g);
  run.gnorm = frobenius(g);
  while (run.newton < max_steps && run.gnorm > tol_abs) {
    if (!budget.may_continue()) {
      run.why = budget.interrupted() ? "interrupted" : budget.exhausted();
      break;
    }
    const double eta = std::min(0.5, std::sqrt(run.gnorm / std::max(g0norm, kEps)));
    obj.precond(run.P, Minv);
    b = g;
    for (double& v : b.data) v = -v;
    pcg.start(b, Minv);
    // CG stops at negative curvature (P is not in a convex region) or once the residual is
    // below res_tol, tested after each iteration (not before the first; a NaN residual
    // does not stop it).
    const double res_tol = std::max(eta * run.gnorm, 0.5 * tol_abs);
    const bool convex = pcg.iterate(
        max_cg, budget, [&](const Matrix& v, Matrix& Hv) { obj.hessvec(run.P, A, v, Hv, Y, dA); },
        [&](int it, double res_norm) { return it == 0 || !(res_norm <= res_tol); });
    if (!convex && pcg.it == 1) pcg.x = pcg.z;  // preconditioned steepest descent
    Matrix& d = pcg.x;
    run.count_cg(pcg.it);
    if (budget.interrupted()) {
      run.why = "interrupted";
      break;
    }
    double slope = dot(g, d);
    if (!(slope < 0.0)) {  // CG broke down: preconditioned steepest descent
      for (std::size_t k = 0; k < d.data.size(); ++k) d.data[k] = -Minv.data[k] * g.data[k];
      slope = dot(g, d);
    }
    double t = 1.0;
    bool accepted = false;
    for (int bt = 0; bt < kMaxBacktracks; ++bt, t *= 0.5) {
      Pn = run.P;
      for (std::size_t k = 0; k < Pn.data.size(); ++k) Pn.data[k] += t * d.data[k];
      if (accept_trial(obj, run, Pn, A, g, t, slope, false)) {
        accepted = true;
        break;
      }
    }
    ++run.newton;
    budget.spend_newton();
    if (trace_enabled())
      std::fprintf(stderr, "exact: lambda %.3e P-newton %d cg %d step %.3g rel grad %.3e f %.17g\n",
                   obj.lam(), run.newton, pcg.it, accepted ? t : 0.0,
                   g0norm > 0.0 ? run.gnorm / g0norm : run.gnorm, run.f);
    if (!accepted) {
      run.why = "line search failed";
      break;
    }
  }
  run.stationary = run.gnorm <= tol_abs;
  if (!run.stationary && run.why.empty()) run.why = "iteration limit";
  return run;
}

// The certificate at P (scaled units): f(P) - f* <= gap, ||P^2 - G*|| <= G_dist; both inf
// unless P > 0. fI = f(I) bounds the sublevel set.
struct Certificate {
  double min_eig_P = std::numeric_limits<double>::quiet_NaN();
  double gap = kInf, G_dist = kInf;
};
Certificate certify(const Objective& obj, const Matrix& P, double fI) {
  const int r = obj.r();
  Certificate out;
  Matrix A;
  obj.value(P, A);
  SymEig eig;
  if (!sym_eig(P, eig)) return out;
  out.min_eig_P = eig.w.front();
  if (!(out.min_eig_P > 0.0)) return out;
  // g_h = ||A + lambda/2 (I - P^{-1})||_F. h's Hessian is >= s_min^2 + lambda/4 gmax^{-3/2}
  // on any segment whose G have eigenvalues <= gmax. G* lies in the sublevel set
  // (||P*|| <= 1 + sqrt(2 f(I) / lambda)) and within rho = g_h / mu of G, so the segment
  // [G, G*] has gmax <= max(pmax^2, min(sublevel bound, pmax^2 + rho)); each rho gives a
  // larger mu and a smaller rho (a few rounds tighten the bound at small lambda).
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
  const double level = std::max(pmax * pmax, bound * bound);
  auto mu_for = [&](double gmax) { return obj.s_min() * obj.s_min() + 0.25 * lam * std::pow(gmax, -1.5); };
  double mu = mu_for(level);
  for (int round = 0; round < 8; ++round) {
    const double rho = ghn / mu;
    const double gmax = std::max(pmax * pmax, std::min(level, pmax * pmax + rho));
    mu = std::max(mu, mu_for(gmax));
  }
  out.gap = ghn * ghn / (2.0 * mu);
  out.G_dist = ghn / mu;
  return out;
}

// Newton in G from P0; if that does not converge, Newton in P from where it stopped, then
// Newton in G again from that point (the polish that certifies). Counts are summed.
Run solve_from(const Objective& obj, Matrix P0, double tol_abs, double g0norm, Budget& budget,
               int max_steps, double fI) {
  // At large lambda (P near I, Jacobi nearly exact) a few cheap Newton-in-P steps usually
  // reach a certificate at rounding level: Newton in G's two eigendecompositions per step
  // would cost more than they save (measured: 101 vs 184 ms at 1e-1 s_max^2, r = 250).
  int cheap_newton = 0, cheap_cg = 0;
  if (obj.lam() >= kCheapLambda) {
    Run q = newton_p(obj, P0, tol_abs, g0norm, budget, kCheapSteps, kCheapCg);
    cheap_newton = q.newton;
    cheap_cg = q.cg;
    if (q.stationary && certify(obj, q.P, fI).gap <= kCheapGapTol * std::abs(q.f)) return q;
    // Newton in P only accepts descent steps: q.P is P0 or better, if still inside P > 0.
    if (is_positive_definite(q.P)) P0 = std::move(q.P);
  }
  Run a = newton_g(obj, std::move(P0), tol_abs, g0norm, budget, max_steps);
  a.newton += cheap_newton;
  a.cg += cheap_cg;
  if (a.stationary || budget.over()) return a;
  Run b = newton_p(obj, a.P, tol_abs, g0norm, budget, kMaxNewtonP);
  const int newton = a.newton + b.newton, cg = a.cg + b.cg, max_cg = std::max(a.max_cg, b.max_cg);
  const std::string why = "in G: " + a.why + "; in P: " + b.why;
  Run c;
  if (budget.over() || !is_positive_definite(b.P)) {
    // No polish: keep the better iterate inside P > 0 (a's always is); its own counts are
    // in the totals added below.
    c = is_positive_definite(b.P) && b.f < a.f ? std::move(b) : std::move(a);
    c.why = why;
    c.newton = c.cg = c.max_cg = 0;
  } else {
    c = newton_g(obj, b.P, tol_abs, g0norm, budget, max_steps);
    if (!c.stationary) c.why = why + "; polish: " + c.why;
  }
  c.newton += newton;
  c.cg += cg;
  c.max_cg = std::max(c.max_cg, max_cg);
  return c;
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

// f(A) = Q diag(f(w)) Q^T for symmetric A; false if the eigendecomposition fails or f(w)
// is not finite.
template <class F>
bool sym_apply(const Matrix& A, F&& f, Matrix& out) {
  SymEig e;
  if (!sym_eig(A, e)) return false;
  Matrix QL = e.Q;
  for (int j = 0; j < A.cols; ++j) {
    const double v = f(e.w[j]);
    if (!std::isfinite(v)) return false;
    for (int i = 0; i < A.rows; ++i) QL(i, j) *= v;
  }
  out = matmul(QL, e.Q, false, true);
  symmetrise(out);
  return true;
}
bool sym_log(const Matrix& P, Matrix& out) {
  return sym_apply(P, [](double w) { return w > 0.0 ? std::log(w) : std::numeric_limits<double>::quiet_NaN(); }, out);
}

// Sweeps: the start at the next lambda is predicted from the last two solutions on the path
// (log-linear in lambda, exp(log P1 + theta (log P1 - log P0)), always > 0) when the steps
// in lambda are at most this many decades. On the 41-lambda path of cov_bench (a quarter
// decade per step) it saves 16% of the Newton steps; over whole decades (the hard-shape
// tests) it is a poor predictor and left fewer lambdas certified on one case (8 vs 10 of 13).
constexpr double kPredictMaxDecades = 0.5;

}  // namespace

const char* exact_status_name(ExactStatus s) {
  switch (s) {
    case ExactStatus::converged: return "converged";
    case ExactStatus::not_converged: return "not_converged";
    case ExactStatus::budget: return "budget";
    case ExactStatus::interrupted: return "interrupted";
  }
  return "?";
}

ExactResult solve_exact(const Reduced& red, double lambda, const ExactOptions& opt,
                        const Matrix* warm_P, double warm_lambda) {
  check_lambdas({lambda}, 0.0, false, "exact solver lambda");
  const auto t0 = Clock::now();
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
  if (!(obj.lam() > 0.0) || !std::isfinite(obj.lam()) || !(obj.c() > 0.0) || !std::isfinite(obj.c())) {
    // lambda / s_max^2 under- or overflows: no solve is meaningful in double precision.
    out.status = ExactStatus::not_converged;
    std::ostringstream msg;
    msg << "lambda / s_max^2 = " << lambda << " / " << obj.c() << "^2 is outside double range";
    out.message = msg.str();
    out.M = Matrix(r, r);
    out.loss = out.f = out.rel_grad = out.gap_bound = out.G_dist_bound = kInf;
    out.min_eig_P = 1.0;
    return out;
  }
  Matrix A, g;
  const auto [fI, g0] = obj.at_identity();
  const double tol_abs = opt.rel_grad_tol * g0;
  Budget budget(opt, t0);

  Run best;
  bool have = false;
  std::string log;
  auto count = [&](const Run& run) {
    out.newton_iters += run.newton;
    out.cg_iters += run.cg;
    out.max_cg_per_newton = std::max(out.max_cg_per_newton, run.max_cg);
  };
  auto accept = [&](Run&& run, const char* name) {
    count(run);
    const bool ok = run.stationary && min_eig(run.P) > 0.0;
    if (!log.empty()) log += "; ";
    log += std::string(name) + (ok ? ": converged" : run.stationary ? ": stationary but P not > 0"
                                                                    : ": " + run.why);
    // Starts are tried until one is accepted, so `best` is never an accepted run here.
    if (!have || ok || run.f < best.f) best = std::move(run), have = true;
    return ok;
  };

  // Path following from a solution P at lam_from > lambda down to lambda: steps of at most
  // continuation_factor, each warm-started from the last; a step whose solve fails is
  // retried with the square root of its factor (down to 1.01). Returns the run at lambda.
  auto walk_down = [&](double lam_from, Matrix P, const char* name) {
    double lam_c = lam_from, factor = opt.continuation_factor;
    while (!budget.over()) {
      const double lam_n = std::max(lambda, lam_c / factor);
      const Objective stage(red, lam_n);
      const double g0s = stage.at_identity().second;
      Run run = lam_n == lambda
                    ? solve_from(stage, P, opt.rel_grad_tol * g0s, g0s, budget, kMaxNewtonPerStage, fI)
                    : newton_g(stage, P, opt.rel_grad_tol * g0s, g0s, budget, kMaxNewtonPerStage);
      if (lam_n == lambda) {
        if (run.stationary || budget.over() || factor < 1.01) return accept(std::move(run), name);
        count(run);
      } else {
        count(run);
        if (run.stationary) {
          lam_c = lam_n;
          P = std::move(run.P);
          factor = std::min(opt.continuation_factor, factor * factor);
          continue;
        }
      }
      factor = std::sqrt(factor);
      if (factor < 1.01) break;
    }
    if (!have) accept(Run{P, obj.value(P, A), kInf, false, 0, 0, 0, "budget"}, name);
    return false;
  };

  bool done = false;
  if (warm_P && warm_P->rows == r && warm_P->cols == r && is_positive_definite(*warm_P)) {
    // A warm start from far above lambda follows the path down: one Newton solve across
    // decades of lambda stalls (the Newton model in G overshoots P's shrinking eigenvalues).
    if (warm_lambda > opt.continuation_factor * lambda)
      done = walk_down(warm_lambda, *warm_P, "warm start (path following)");
    else
      done = accept(solve_from(obj, *warm_P, tol_abs, g0, budget, kMaxNewtonPerStart, fI), "warm start");
  }
  if (!done && opt.direct_start && !budget.over())
    done = accept(solve_from(obj, projected_start(linearized_M(red, lambda), opt.start_floor),
                             tol_abs, g0, budget, kMaxNewtonPerStart, fI),
                  "I + M_lin start");
  if (!done && !budget.over()) {
    // lambda-continuation: at lambda >= 400 s_max^2, P* ~ I + M_lin; follow the path down.
    out.used_continuation = true;
    const double lam0 = std::max(opt.continuation_from * red.s_max() * red.s_max(), lambda);
    Matrix P0 = projected_start(linearized_M(red, lam0), opt.start_floor);
    if (lam0 > lambda) {
      const Objective stage(red, lam0);
      const double g0s = stage.at_identity().second;
      Run run = newton_g(stage, P0, opt.rel_grad_tol * g0s, g0s, budget);
      count(run);
      P0 = std::move(run.P);
    }
    done = walk_down(lam0, std::move(P0), "continuation");
  }
  if (!have) {  // a budget ran out before any start ran: report the I + M_lin start
    Matrix P = projected_start(linearized_M(red, lambda), opt.start_floor);
    const double fP = obj.value(P, A);
    accept(Run{std::move(P), fP, kInf, false, 0, 0, 0, "budget"}, "no start run");
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
  const Certificate cert = certify(obj, P, fI);
  out.min_eig_P = cert.min_eig_P;
  out.gap_bound = cert.gap * c2;
  out.G_dist_bound = cert.G_dist;
  out.status = done                  ? ExactStatus::converged
               : budget.interrupted() ? ExactStatus::interrupted
               : budget.exhausted()   ? ExactStatus::budget
                                      : ExactStatus::not_converged;
  std::ostringstream msg;
  msg.precision(3);
  msg << log;
  if (out.status == ExactStatus::budget) msg << " [" << budget.exhausted() << " ran out]";
  msg << " (rel grad " << out.rel_grad << ", min eig P " << out.min_eig_P << ")";
  out.message = msg.str();
  out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return out;
}

std::vector<ExactResult> sweep_exact(const Reduced& red, const std::vector<double>& lambdas,
                                     const ExactOptions& opt,
                                     const std::function<void(const ExactResult&)>& each,
                                     ExactPathState* state) {
  check_lambdas(lambdas, 0.0, false, "exact sweep lambda");
  std::vector<std::size_t> order(lambdas.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return lambdas[a] > lambdas[b]; });
  std::vector<ExactResult> out(lambdas.size());
  // The last solution on the path (P = I + M) and, for the predictor, the logs of the last
  // two certified ones (ExactPathState).
  ExactPathState local;
  ExactPathState& ps = state ? *state : local;
  Matrix& warm = ps.warm;
  Matrix& log_prev = ps.log_prev;
  Matrix& log_warm = ps.log_warm;
  double& warm_lambda = ps.warm_lambda;
  double& prev_lambda = ps.prev_lambda;
  bool& have_warm = ps.have_warm;
  bool& have_logs = ps.have_logs;
  bool& have_logs_for_warm = ps.have_logs_for_warm;
  if (have_warm && warm.rows != red.r) ps = ExactPathState{};  // not this problem's: start cold
  for (std::size_t idx : order) {
    if (opt.stop && opt.stop->load()) {
      out[idx].lambda = lambdas[idx];
      out[idx].status = ExactStatus::interrupted;
      out[idx].message = "interrupted";
      continue;
    }
    const double lambda = lambdas[idx];
    Matrix predicted;
    const Matrix* start = have_warm ? &warm : nullptr;
    if (have_logs && lambda < warm_lambda && warm_lambda < prev_lambda &&
        std::log10(warm_lambda / lambda) <= kPredictMaxDecades &&
        std::log10(prev_lambda / warm_lambda) <= kPredictMaxDecades) {
      const double theta = std::log(warm_lambda / lambda) / std::log(prev_lambda / warm_lambda);
      Matrix L = log_warm;
      for (std::size_t i = 0; i < L.data.size(); ++i) L.data[i] += theta * (log_warm.data[i] - log_prev.data[i]);
      if (sym_apply(L, [](double w) { return std::exp(w); }, predicted) && is_positive_definite(predicted))
        start = &predicted;
    }
    out[idx] = solve_exact(red, lambda, opt, start, warm_lambda);
    const ExactStatus st = out[idx].status;
    // A budget-limited iterate is still P > 0 and near the path: a good next start (but
    // not a point to predict from).
    if (st == ExactStatus::converged || st == ExactStatus::budget) {
      const bool was_certified = have_warm && have_logs_for_warm;
      warm = out[idx].M;
      for (int i = 0; i < warm.rows; ++i) warm(i, i) += 1.0;
      have_warm = true;
      Matrix L;
      const bool logged = st == ExactStatus::converged && sym_log(warm, L);
      have_logs = logged && was_certified;
      if (have_logs) {
        log_prev = std::move(log_warm);
        prev_lambda = warm_lambda;
      }
      if (logged) log_warm = std::move(L);
      have_logs_for_warm = logged;
      warm_lambda = lambda;
    }
    if (each) each(out[idx]);
  }
  return out;
}

}  // namespace covfit::cov
