#include "covfit/rbf/fit.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>

#include <cblas.h>
#include <lapacke.h>

#include "covfit/core/random.hpp"
#include "covfit/rbf/kernels.hpp"
#include "rbf/weights.hpp"

namespace covfit::rbf {
namespace {

using detail::solve_weights;
using detail::weight_slot;
using detail::kRowChunk;
using detail::normal_equations;

using Clock = std::chrono::steady_clock;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Loss (and raw gradient) with the SIMD kernels in the configured precision.
class Objective {
 public:
  // Dense SIMD kernels when the cull tolerance is 0, else the local (tiled) evaluation.
  Objective(const FitConfig& cfg, const Points& pts) : cfg_(cfg), K_(cfg.K), n_(pts.x.size()) {
    local_.cull_tol = effective_cull_tol(cfg);
    local_.recurrence = cfg.grid_recurrence;
    use_local_ = local_.cull_tol > 0;
    if (use_local_) {
      if (cfg.f32) tiles32_ = pts.grid ? TiledPoints<float>::from_grid(*pts.grid)
                                       : TiledPoints<float>::from_points(pts.x, pts.y, pts.values);
      else tiles64_ = pts.grid ? TiledPoints<double>::from_grid(*pts.grid)
                               : TiledPoints<double>::from_points(pts.x, pts.y, pts.values);
    } else if (cfg.f32) {
      pts32_ = PointSet<float>::from(pts.x, pts.y, pts.values);
    } else {
      pts64_ = PointSet<double>::from(pts.x, pts.y, pts.values);
    }
    can_.resize(static_cast<std::size_t>(K_));
    gcan_.resize(static_cast<std::size_t>(K_));
  }
  // grad may be empty (loss only).
  double operator()(std::span<const double> raw, std::span<double> grad) {
    raw_to_canonical(cfg_.param, raw, can_);
    std::span<Canonical> g = grad.empty() ? std::span<Canonical>() : std::span<Canonical>(gcan_);
    const bool big = n_ >= kParallelPointsMin && n_ * static_cast<std::size_t>(K_) >= kParallelWorkMin;
    const int threads = cfg_.threads > 1 && big ? cfg_.threads : 1;
    double loss;
    if (use_local_) {
      local_.threads = threads;
      loss = cfg_.f32 ? loss_grad_local<float>(tiles32_, can_, g, local_, &stats_)
                      : loss_grad_local<double>(tiles64_, can_, g, local_, &stats_);
    } else {
      loss = cfg_.f32 ? loss_grad_simd<float>(pts32_, can_, g, threads)
                      : loss_grad_simd<double>(pts64_, can_, g, threads);
    }
    if (!grad.empty()) canonical_to_raw_grad(cfg_.param, raw, gcan_, grad);
    return loss;
  }
  const std::vector<Canonical>& canonical() const { return can_; }

 private:
  const FitConfig& cfg_;
  int K_;
  std::size_t n_;
  PointSet<float> pts32_;
  PointSet<double> pts64_;
  bool use_local_ = false;
  LocalOptions local_;
  LocalStats stats_;
  TiledPoints<float> tiles32_;
  TiledPoints<double> tiles64_;
  std::vector<Canonical> can_, gcan_;
};

// Bookkeeping shared by all optimisers: targets, checkpoints, stopping rules.
class Monitor {
 public:
  Monitor(const FitConfig& cfg, FitResult& res) : cfg_(cfg), res_(res), t0_(Clock::now()) {
    res_.steps_to_target.assign(cfg.target_losses.size(), -1);
    res_.seconds_to_target.assign(cfg.target_losses.size(), kNaN);
  }
  double elapsed() const { return seconds_since(t0_); }

  // Called with the loss at the start of `step` (before its update). Returns true if the
  // fit should stop, with res_.status set.
  bool observe(int step, double loss, std::span<const double> grad,
               const std::vector<Canonical>& kernels) {
    if (step == 0) res_.initial_loss = loss;
    res_.final_loss = loss;
    res_.steps = step;
    if (!std::isfinite(loss)) {
      res_.status = Status::diverged;
      res_.message = "loss became non-finite at step " + std::to_string(step);
      checkpoint(step, loss, grad, kernels);
      return true;
    }
    double t = elapsed();
    for (std::size_t i = 0; i < cfg_.target_losses.size(); ++i)
      if (res_.steps_to_target[i] < 0 && loss <= cfg_.target_losses[i]) {
        res_.steps_to_target[i] = step;
        res_.seconds_to_target[i] = t;
      }
    bool at_checkpoint = step % cfg_.log_every == 0;
    if (at_checkpoint) checkpoint(step, loss, grad, kernels);
    auto finish = [&](Status s) {
      res_.status = s;
      if (!at_checkpoint) checkpoint(step, loss, grad, kernels);
      return true;
    };
    if (cfg_.target_loss > 0 && loss <= cfg_.target_loss) return finish(Status::reached_target);
    if (loss < best_loss_) {
      best_loss_ = loss;
    }
    // Converged: the best loss has improved by less than rel_tol (relative) over the last
    // `patience` checkpoints. Judged on the best loss, so an Adam spike is not "converged".
    if (at_checkpoint) {
      history_.push_back(best_loss_);
      std::size_t n = history_.size(), p = static_cast<std::size_t>(cfg_.patience);
      if (n > p) {
        double before = history_[n - 1 - p];
        if ((before - best_loss_) <= cfg_.rel_tol * std::abs(before)) return finish(Status::converged);
      }
    }
    if (step >= cfg_.max_steps) return finish(Status::max_steps);
    return false;
  }

  void checkpoint(int step, double loss, std::span<const double> grad,
                  const std::vector<Canonical>& kernels) {
    if (!res_.curve.empty() && res_.curve.back().step == step) return;
    Checkpoint c;
    c.step = step;
    c.seconds = elapsed();
    c.loss = loss;
    const int width = raw_width(cfg_.param);
    for (std::size_t i = 0; i < grad.size(); ++i) {
      int g = static_cast<int>(raw_group(cfg_.param, static_cast<int>(i % width)));
      c.grad_norm[g] += grad[i] * grad[i];
    }
    for (double& g : c.grad_norm) g = std::sqrt(g);
    shape_monitors(kernels, c.sigma_min, c.sigma_max, c.cond_max);
    res_.curve.push_back(c);
  }

 private:
  const FitConfig& cfg_;
  FitResult& res_;
  Clock::time_point t0_;
  std::vector<double> history_;
  double best_loss_ = std::numeric_limits<double>::infinity();
};

void fit_adam(const FitConfig& cfg, const Points& pts, std::vector<double>& raw, FitResult& res,
              const std::atomic<bool>* stop) {
  Objective objective(cfg, pts);
  Monitor monitor(cfg, res);
  const std::size_t P = raw.size();
  const int width = raw_width(cfg.param);
  std::vector<double> grad(P), m(P, 0.0), v(P, 0.0), lr(P);
  for (std::size_t i = 0; i < P; ++i)
    lr[i] = cfg.lr[static_cast<int>(raw_group(cfg.param, static_cast<int>(i % width)))];
  double b1t = 1, b2t = 1;
  // Exponential decay lr(t) = lr0 * ratio^(t / max_steps); ratio = 1 keeps lr constant.
  const double decay = std::pow(cfg.lr_final_ratio, 1.0 / std::max(cfg.max_steps, 1));
  double lr_scale = 1;
  // Adam's loss is not monotone: keep the best iterate and return it.
  std::vector<double> best_raw(raw);
  double best_loss = std::numeric_limits<double>::infinity();
  for (int step = 0;; ++step) {
    double loss = objective(raw, grad);
    if (loss < best_loss) {
      best_loss = loss;
      best_raw = raw;
    }
    if (monitor.observe(step, loss, grad, objective.canonical())) break;
    if (stop && stop->load(std::memory_order_relaxed)) {
      res.status = Status::interrupted;
      break;
    }
    double scale = 1;
    if (cfg.clip_grad > 0) {
      double norm = std::sqrt(std::inner_product(grad.begin(), grad.end(), grad.begin(), 0.0));
      if (norm > cfg.clip_grad) scale = cfg.clip_grad / norm;
    }
    b1t *= cfg.beta1;
    b2t *= cfg.beta2;
    for (std::size_t i = 0; i < P; ++i) {
      double g = grad[i] * scale;
      m[i] = cfg.beta1 * m[i] + (1 - cfg.beta1) * g;
      v[i] = cfg.beta2 * v[i] + (1 - cfg.beta2) * g * g;
      double mhat = m[i] / (1 - b1t), vhat = v[i] / (1 - b2t);
      raw[i] -= lr_scale * lr[i] * mhat / (std::sqrt(vhat) + cfg.eps);
    }
    lr_scale *= decay;
    project(cfg.param, raw, cfg.bounds);
  }
  if (std::isfinite(best_loss) && res.status != Status::diverged) {
    raw = best_raw;
    res.final_loss = best_loss;
  }
}

// d canonical / d raw per kernel and the raw -> Jacobian column map, for one iterate.
struct JacobianMap {
  std::vector<Canonical> can;
  std::vector<std::vector<double>> dcan;  // dcan[j][k*width + s] = d canonical_j(k) / d raw(k, s)
  std::vector<int> col_of;                // raw index -> column in J (or -1)
};

JacobianMap jacobian_map(const FitConfig& cfg, std::span<const double> raw, const std::vector<int>& cols) {
  const int K = cfg.K;
  JacobianMap m;
  m.can.resize(static_cast<std::size_t>(K));
  raw_to_canonical(cfg.param, raw, m.can);
  m.dcan.assign(6, std::vector<double>(raw.size()));
  std::vector<Canonical> unit(static_cast<std::size_t>(K));
  for (int j = 0; j < 6; ++j) {
    for (auto& u : unit) {
      double* f = &u.mx;
      for (int q = 0; q < 6; ++q) f[q] = q == j ? 1.0 : 0.0;
    }
    canonical_to_raw_grad(cfg.param, raw, unit, m.dcan[static_cast<std::size_t>(j)]);
  }
  m.col_of.assign(raw.size(), -1);
  for (std::size_t c = 0; c < cols.size(); ++c) m.col_of[static_cast<std::size_t>(cols[c])] = static_cast<int>(c);
  return m;
}

// One block of points (a row chunk, or a tile with its kernels): x, y, values of n points
// (mask, if set: 0 for padding and masked cells, whose rows stay zero) and the kernels that
// matter there (ascending).
struct PointBlock {
  const double *x, *y, *v, *mask;
  std::size_t n;
  std::span<const std::uint32_t> kernels;
};

// For one block: residuals r_i = f(x_i) - y_i over the block's kernels and the matrix
// B = [Phi | J] (n x m, column-major). With `phi`, column j < kernels.size() is the basis
// exp(-q_k(x_i) / 2) of the block's j-th kernel; the Jacobian dr/draw of raw slot ri goes
// to column local_col[ri] (>= 0; -1 for slots not optimised or not in the block), and
// m = the number of columns. Double precision; exp vectorised, the rest scalar.
void residual_jacobian(const FitConfig& cfg, const JacobianMap& map, const PointBlock& blk,
                       bool phi, const std::vector<int>& local_col, std::size_t m,
                       std::vector<double>& r, std::vector<double>& B, std::vector<double>& ebuf) {
  const int width = raw_width(cfg.param);
  const std::size_t n = blk.n;
  r.assign(n, 0.0);
  B.assign(n * m, 0.0);
  ebuf.resize(n);
  for (std::size_t j = 0; j < blk.kernels.size(); ++j) {
    const int k = static_cast<int>(blk.kernels[j]);
    const Canonical& c = map.can[static_cast<std::size_t>(k)];
    for (std::size_t i = 0; i < n; ++i) {
      const double dx = blk.x[i] - c.mx, dy = blk.y[i] - c.my;
      ebuf[i] = -0.5 * (c.p11 * dx * dx + 2 * c.p12 * dx * dy + c.p22 * dy * dy);
    }
    exp_simd<double>(ebuf, ebuf);
    if (blk.mask)
      for (std::size_t i = 0; i < n; ++i) ebuf[i] *= blk.mask[i];
    if (phi) std::copy(ebuf.begin(), ebuf.end(), B.begin() + static_cast<std::ptrdiff_t>(n * j));
    for (std::size_t i = 0; i < n; ++i) {
      double dx = blk.x[i] - c.mx, dy = blk.y[i] - c.my;
      double e = ebuf[i];
      double we = c.w * e;
      r[i] += we;
      // df/d(mx, my, p11, p12, p22, w)
      double d[6] = {we * (c.p11 * dx + c.p12 * dy), we * (c.p12 * dx + c.p22 * dy),
                     -0.5 * we * dx * dx, -we * dx * dy, -0.5 * we * dy * dy, e};
      for (int s = 0; s < width; ++s) {
        std::size_t ri = static_cast<std::size_t>(k * width + s);
        int col = local_col[ri];
        if (col < 0) continue;
        double v = 0;
        for (int q = 0; q < 6; ++q) v += map.dcan[static_cast<std::size_t>(q)][ri] * d[q];
        B[static_cast<std::size_t>(col) * n + i] += v;
      }
    }
  }
  for (std::size_t i = 0; i < n; ++i) r[i] -= blk.mask ? blk.mask[i] * blk.v[i] : blk.v[i];
}

// Largest change of one raw parameter in one LM step (a box trust region on top of the
// damping): centres 10 % of the data extent; a shape slot 0.5 x max(1, |slot|) at the
// current iterate where shape slots are logarithms or logits (full, isotropic), else
// 0.5 x max(1, largest |shape slot| of the kernel) (precisions, scales, Cholesky entries:
// p12 moves on the scale of p11). Without it,
// a slot the loss barely sees (the rotation of a nearly isotropic kernel, a kernel's width
// far outside the data) gets a tiny diag(J^T J) and a huge step: the rotation logit
// saturates (its sigmoid stops responding) or a width lands on its bound, and the kernel
// stays there for the rest of the fit.
constexpr double kStepCapCentre = 0.1, kStepCapShape = 0.5;
// Accept a step when actual / predicted reduction exceeds this (Ceres' min_relative_decrease).
constexpr double kMinGainRatio = 1e-3;
// Damping beyond this (relative to the scaling diagonal) means no descent step is left.
constexpr double kMuMax = 1e16;
constexpr int kMaxAttempts = 30;

// Working storage of one LM / VarPro fit, allocated once.
struct LmWork {
  std::vector<int> cols;         // raw index of each optimised column
  std::vector<double> cap;       // per column: largest |step|
  std::vector<double> A, g;      // J^T J (lower), J^T r
  std::vector<double> D;         // scaling: max over iterations of diag(J^T J) (Moré)
  std::vector<double> Ad, delta, Adelta, trial;
  std::vector<unsigned char> fixed;  // columns held at a bound this step
  double centre_cap = 0;         // kStepCapCentre x data extent
};

// Columns (every raw slot; VarPro: all but the weights) and storage for P of them.
LmWork lm_work(const FitConfig& cfg, const Points& pts, bool varpro) {
  const int width = raw_width(cfg.param), wslot = weight_slot(cfg.param);
  LmWork w;
  double extent = 0;
  if (!pts.x.empty()) {
    auto [x0, x1] = std::minmax_element(pts.x.begin(), pts.x.end());
    auto [y0, y1] = std::minmax_element(pts.y.begin(), pts.y.end());
    extent = std::max(*x1 - *x0, *y1 - *y0);
  }
  w.centre_cap = kStepCapCentre * std::max(extent, 1e-300);
  for (int k = 0; k < cfg.K; ++k)
    for (int s = 0; s < width; ++s)
      if (!varpro || s != wslot) w.cols.push_back(k * width + s);
  const std::size_t P = w.cols.size();
  w.cap.assign(P, std::numeric_limits<double>::infinity());
  w.D.assign(P, 0.0);
  w.delta.resize(P);
  w.Adelta.resize(P);
  w.fixed.resize(P);
  return w;
}

// Step caps at the iterate `raw` (see kStepCapShape); weights are not capped.
void update_caps(const FitConfig& cfg, std::span<const double> raw, LmWork& w) {
  const int width = raw_width(cfg.param);
  const bool per_slot = cfg.param == Param::full || cfg.param == Param::isotropic;
  for (std::size_t c = 0; c < w.cols.size(); ++c) {
    const int ri = w.cols[c], k = ri / width;
    const Group grp = raw_group(cfg.param, ri % width);
    if (grp == Group::centre) w.cap[c] = w.centre_cap;
    if (grp != Group::shape) continue;
    double scale = std::max(1.0, std::abs(raw[static_cast<std::size_t>(ri)]));
    if (!per_slot)
      for (int s = 0; s < width; ++s)
        if (raw_group(cfg.param, s) == Group::shape)
          scale = std::max(scale, std::abs(raw[static_cast<std::size_t>(k * width + s)]));
    w.cap[c] = kStepCapShape * scale;
  }
}

// Moré scaling: D = max over iterations of diag(A), floored at 1e-12 of its largest entry
// (columns the data never saw, e.g. a kernel outside every point, have a zero diagonal;
// the floor keeps the damped system positive definite).
void update_scaling(LmWork& w) {
  const std::size_t P = w.cols.size();
  double dmax = 0;
  for (std::size_t i = 0; i < P; ++i) {
    w.D[i] = std::max(w.D[i], w.A[i * P + i]);
    dmax = std::max(dmax, w.D[i]);
  }
  for (std::size_t i = 0; i < P; ++i) w.D[i] = std::max(w.D[i], 1e-12 * std::max(dmax, 1e-300));
}

// Trial point for damping mu: solves (A + mu D) delta = -g over the free columns, caps the
// step to the box, projects onto the bounds. Columns that a bound stops from moving are
// fixed and the system solved again once (their step would otherwise be wasted and spoil
// the model). Returns the predicted loss reduction of the step actually taken (the
// projected one), in loss units (RSS / N); <= 0 if there is none.
double damped_trial(const FitConfig& cfg, std::span<const double> raw, double mu, double n_points,
                    LmWork& w) {
  const int P = static_cast<int>(w.cols.size());
  const std::size_t Ps = static_cast<std::size_t>(P);
  std::fill(w.fixed.begin(), w.fixed.end(), 0);
  for (int pass = 0; pass < 2; ++pass) {
    w.Ad = w.A;
    for (int i = 0; i < P; ++i) {
      const std::size_t ii = static_cast<std::size_t>(i);
      w.delta[ii] = -w.g[ii];
      if (w.fixed[ii]) {  // row/column i -> identity, rhs 0: delta_i = 0
        for (int j = 0; j < P; ++j) {
          w.Ad[ii * Ps + static_cast<std::size_t>(j)] = 0;
          w.Ad[static_cast<std::size_t>(j) * Ps + ii] = 0;
        }
        w.Ad[ii * Ps + ii] = 1;
        w.delta[ii] = 0;
      } else {
        w.Ad[ii * Ps + ii] += mu * w.D[ii];
      }
    }
    if (LAPACKE_dposv(LAPACK_COL_MAJOR, 'L', P, 1, w.Ad.data(), P, w.delta.data(), P) != 0) return -1;
    w.trial.assign(raw.begin(), raw.end());
    for (int i = 0; i < P; ++i) {
      const std::size_t ii = static_cast<std::size_t>(i);
      const double c = w.cap[ii];
      w.trial[static_cast<std::size_t>(w.cols[ii])] += std::clamp(w.delta[ii], -c, c);
    }
    project(cfg.param, w.trial, cfg.bounds);
    bool refix = false;
    for (int i = 0; i < P; ++i) {
      const std::size_t ii = static_cast<std::size_t>(i), ri = static_cast<std::size_t>(w.cols[ii]);
      const bool wanted = w.delta[ii] != 0;
      w.delta[ii] = w.trial[ri] - raw[ri];  // the step actually taken
      if (pass == 0 && wanted && w.delta[ii] == 0) {
        // a bound held this column where it is: fix it and solve again
        w.fixed[ii] = 1;
        refix = true;
      }
    }
    if (!refix) break;
  }
  // predicted reduction of RSS = -(2 g.delta + delta^T A delta); A holds the lower triangle
  cblas_dsymv(CblasColMajor, CblasLower, P, 1.0, w.A.data(), P, w.delta.data(), 1, 0.0, w.Adelta.data(), 1);
  double gd = 0, dAd = 0;
  for (std::size_t i = 0; i < Ps; ++i) {
    gd += w.g[i] * w.delta[i];
    dAd += w.delta[i] * w.Adelta[i];
  }
  return -(2 * gd + dAd) / n_points;
}

// Levenberg-Marquardt as a trust-region method (Moré 1978; Nielsen's damping update as in
// Ceres' LevenbergMarquardtStrategy): solve (J^T J + mu D) delta = -J^T r with D the largest
// diag(J^T J) seen so far (scale invariant, never shrinking), cap the step to a box
// (kStepCap*), project onto the bounds, and accept when the gain ratio rho = actual /
// predicted reduction exceeds kMinGainRatio; then mu *= max(1/3, 1 - (2 rho - 1)^3),
// else mu *= nu, nu *= 2. The Jacobian is not recomputed after a rejection.
// With `varpro` the weights are eliminated (solved exactly for every trial) and only
// centre/shape slots are optimised, using Kaufman's Jacobian (I - Phi Phi^+) J_theta.
void fit_lm(const FitConfig& cfg, const Points& pts, std::vector<double>& raw, FitResult& res,
            bool varpro, const std::atomic<bool>* stop) {
  Objective objective(cfg, pts);
  Monitor monitor(cfg, res);
  const int width = raw_width(cfg.param), K = cfg.K, wslot = weight_slot(cfg.param);
  const double n_points = static_cast<double>(pts.x.size());
  // Local evaluation on: the normal equations may use the same tiles (culled blocks).
  std::optional<TiledPoints<double>> tiles;
  if (effective_cull_tol(cfg) > 0)
    tiles = pts.grid ? TiledPoints<double>::from_grid(*pts.grid)
                     : TiledPoints<double>::from_points(pts.x, pts.y, pts.values);
  LmWork w = lm_work(cfg, pts, varpro);

  std::vector<Canonical> can(static_cast<std::size_t>(K));
  std::vector<double> wk;
  auto set_weights = [&](std::vector<double>& params) {
    raw_to_canonical(cfg.param, params, can);
    if (!solve_weights(can, pts, wk)) return false;
    for (int k = 0; k < K; ++k) params[static_cast<std::size_t>(k * width + wslot)] = wk[static_cast<std::size_t>(k)];
    return true;
  };
  if (varpro && !set_weights(raw)) {
    res.status = Status::failed;
    res.message = "weight least-squares failed";
    return;
  }

  std::vector<double> grad(raw.size());
  double mu = cfg.lm_mu0, nu = 2;
  double loss = objective(raw, grad);
  for (int step = 0;; ++step) {
    if (monitor.observe(step, loss, grad, objective.canonical())) break;
    if (stop && stop->load(std::memory_order_relaxed)) {
      res.status = Status::interrupted;
      break;
    }
    if (!normal_equations(cfg, pts, tiles ? &*tiles : nullptr, raw, w.cols, varpro, w.A, w.g)) {
      res.status = Status::failed;
      res.message = "variable projection: basis Gram matrix not positive definite";
      break;
    }
    update_caps(cfg, raw, w);
    update_scaling(w);
    bool accepted = false;
    for (int attempt = 0; attempt < kMaxAttempts && !accepted && mu <= kMuMax; ++attempt) {
      const double pred = damped_trial(cfg, raw, mu, n_points, w);
      double trial_loss = kNaN;
      if (pred > 0 && (!varpro || set_weights(w.trial))) trial_loss = objective(w.trial, {});
      const double rho = (loss - trial_loss) / pred;
      if (pred > 0 && std::isfinite(trial_loss) && trial_loss < loss && rho > kMinGainRatio) {
        raw.swap(w.trial);
        loss = objective(raw, grad);
        const double t = 2 * rho - 1;
        mu *= std::max(1.0 / 3, 1 - t * t * t);
        mu = std::max(mu, 1e-15);
        nu = 2;
        accepted = true;
      } else {
        mu *= nu;
        nu *= 2;
      }
    }
    if (!accepted) {
      // No damping gives a decrease: we are at a (numerical) minimum.
      monitor.checkpoint(step + 1, loss, grad, objective.canonical());
      res.steps = step + 1;
      res.status = Status::converged;  // damping exhausted: no descent direction left
      break;
    }
  }
}

}  // namespace

namespace detail {

// Normal equations A = J^T J (lower triangle), g = J^T r over all points, in one pass over
// blocks of points: each block's B = [Phi | J] goes into M = B^T B by BLAS syrk and B^T r by
// gemv, so no N x P Jacobian is held. Blocks are 4096-point row chunks with every kernel,
// or, with `tiles` (local evaluation), the tiles with only the kernels the cull rule keeps
// there (tile_kernel_pairs): a tile's syrk then has the columns of those kernels only and
// is added into M at their places, so at large K the cost is O(sum over tiles of
// points x (columns there)^2) instead of O(N (K + P)^2). With `varpro`, J is Kaufman's
// projected Jacobian (I - Phi Phi^+) J, whose normal equations are the Schur complement
//   A = J^T J - (J^T Phi) G^-1 (Phi^T J),  g = J^T r - (J^T Phi) G^-1 Phi^T r,
// G = Phi^T Phi + the weights' tiny ridge, formed with G = L L^T as W = (J^T Phi) L^-T,
// A -= W W^T (syrk). Returns false if G is not positive definite.
// Culled blocks are used when they keep at most this fraction of all (tile, kernel) pairs
// (their syrk cost goes with the square of it; measured on the DEM, VarPro at the greedy
// start: K = 100 keeps 0.77 and builds 1.4x faster than dense, K = 400 keeps 0.32, 5.6x).
constexpr double kTilePairsMaxFraction = 0.8;

bool normal_equations(const FitConfig& cfg, const Points& pts, const TiledPoints<double>* tiles,
                      std::span<const double> raw, const std::vector<int>& cols, bool varpro,
                      std::vector<double>& A, std::vector<double>& g) {
  const std::size_t N = pts.x.size(), P = cols.size();
  const int K = cfg.K, Pi = static_cast<int>(P), nphi = varpro ? K : 0;
  const int M = Pi + nphi;
  const std::size_t Ms = static_cast<std::size_t>(M), off = static_cast<std::size_t>(nphi);
  const int width = raw_width(cfg.param);
  const JacobianMap map = jacobian_map(cfg, raw, cols);
  std::vector<double> r, B, ebuf, BtB(Ms * Ms, 0.0), Btr(Ms, 0.0);
  std::vector<std::size_t> begin;
  std::vector<std::uint32_t> ks;
  if (tiles) {
    tile_kernel_pairs(*tiles, map.can, effective_cull_tol(cfg), begin, ks);
    // Tiles pay off only when they drop most pairs (small K: every kernel covers the data).
    if (static_cast<double>(ks.size()) > kTilePairsMaxFraction * static_cast<double>(tiles->tiles()) * K) tiles = nullptr;
  }
  if (!tiles) {
    std::vector<std::uint32_t> all(static_cast<std::size_t>(K));
    std::iota(all.begin(), all.end(), 0u);
    std::vector<int> local_col(map.col_of);  // J columns after the K Phi columns
    for (int& c : local_col)
      if (c >= 0) c += nphi;
    for (std::size_t i0 = 0; i0 < N; i0 += kRowChunk) {
      const std::size_t n = std::min(kRowChunk, N - i0);
      const int ni = static_cast<int>(n);
      const PointBlock blk{pts.x.data() + i0, pts.y.data() + i0, pts.values.data() + i0, nullptr, n, all};
      residual_jacobian(cfg, map, blk, varpro, local_col, Ms, r, B, ebuf);
      cblas_dsyrk(CblasColMajor, CblasLower, CblasTrans, M, ni, 1.0, B.data(), ni, 1.0, BtB.data(), M);
      cblas_dgemv(CblasColMajor, CblasTrans, ni, M, 1.0, B.data(), ni, r.data(), 1, 1.0, Btr.data(), 1);
    }
  } else {
    std::vector<int> local_col(map.col_of.size(), -1), global;  // global: M index of each local column
    std::vector<double> Mloc, bloc;
    for (std::size_t t = 0; t < tiles->tiles(); ++t) {
      const std::span<const std::uint32_t> kt(ks.data() + begin[t], begin[t + 1] - begin[t]);
      if (kt.empty()) continue;
      global.clear();
      if (varpro)
        for (std::uint32_t k : kt) global.push_back(static_cast<int>(k));
      for (std::uint32_t k : kt)
        for (int s = 0; s < width; ++s) {
          const std::size_t ri = static_cast<std::size_t>(k) * static_cast<std::size_t>(width) + static_cast<std::size_t>(s);
          if (map.col_of[ri] < 0) continue;
          local_col[ri] = static_cast<int>(global.size());
          global.push_back(nphi + map.col_of[ri]);
        }
      const std::size_t o = tiles->offset[t], n = tiles->offset[t + 1] - o, m = global.size();
      const int ni = static_cast<int>(n), mi = static_cast<int>(m);
      const PointBlock blk{tiles->x.data() + o, tiles->y.data() + o, tiles->t.data() + o, tiles->mask.data() + o, n, kt};
      residual_jacobian(cfg, map, blk, varpro, local_col, m, r, B, ebuf);
      Mloc.assign(m * m, 0.0);
      bloc.assign(m, 0.0);
      cblas_dsyrk(CblasColMajor, CblasLower, CblasTrans, mi, ni, 1.0, B.data(), ni, 0.0, Mloc.data(), mi);
      cblas_dgemv(CblasColMajor, CblasTrans, ni, mi, 1.0, B.data(), ni, r.data(), 1, 0.0, bloc.data(), 1);
      // global is ascending, so the local lower triangle lands in the global one
      for (std::size_t b = 0; b < m; ++b) {
        const std::size_t gb = static_cast<std::size_t>(global[b]);
        Btr[gb] += bloc[b];
        for (std::size_t a = b; a < m; ++a) BtB[gb * Ms + static_cast<std::size_t>(global[a])] += Mloc[b * m + a];
      }
      for (std::uint32_t k : kt)
        for (int s = 0; s < width; ++s) local_col[static_cast<std::size_t>(k) * static_cast<std::size_t>(width) + static_cast<std::size_t>(s)] = -1;
    }
  }
  A.assign(P * P, 0.0);
  g.assign(Btr.begin() + static_cast<std::ptrdiff_t>(off), Btr.end());
  for (std::size_t j = 0; j < P; ++j)
    for (std::size_t i = j; i < P; ++i) A[j * P + i] = BtB[(off + j) * Ms + off + i];
  if (!varpro) return true;
  // G (K x K, lower) at BtB[0, 0]; C = J^T Phi (P x K) at BtB[K, 0], both with leading dim M.
  double* G = BtB.data();
  double* C = BtB.data() + off;
  double tr = 0;
  for (int i = 0; i < K; ++i) tr += G[static_cast<std::size_t>(i) * Ms + static_cast<std::size_t>(i)];
  const double ridge = 1e-10 * std::max(tr / K, 1e-300);  // as solve_weights
  for (int i = 0; i < K; ++i) G[static_cast<std::size_t>(i) * Ms + static_cast<std::size_t>(i)] += ridge;
  if (LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', K, G, M) != 0) return false;
  // W = C L^-T: solve W L^T = C
  cblas_dtrsm(CblasColMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, Pi, K, 1.0, G, M, C, M);
  cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, Pi, K, -1.0, C, M, 1.0, A.data(), Pi);
  // g -= W L^-1 (Phi^T r)
  cblas_dtrsv(CblasColMajor, CblasLower, CblasNoTrans, CblasNonUnit, K, G, M, Btr.data(), 1);
  cblas_dgemv(CblasColMajor, CblasNoTrans, Pi, K, -1.0, C, M, Btr.data(), 1, 1.0, g.data(), 1);
  return true;
}

}  // namespace detail

std::string_view optimizer_name(Optimizer o) {
  switch (o) {
    case Optimizer::adam: return "adam";
    case Optimizer::lm: return "lm";
    case Optimizer::varpro: return "varpro";
  }
  return "?";
}

std::string_view status_name(Status s) {
  switch (s) {
    case Status::converged: return "converged";
    case Status::reached_target: return "reached_target";
    case Status::max_steps: return "max_steps";
    case Status::diverged: return "diverged";
    case Status::failed: return "failed";
    case Status::interrupted: return "interrupted";
  }
  return "?";
}

void shape_monitors(std::span<const Canonical> kernels, double& sigma_min, double& sigma_max,
                    double& cond_max) {
  sigma_min = std::numeric_limits<double>::infinity();
  sigma_max = 0;
  cond_max = 1;
  for (const auto& k : kernels) {
    auto ev = eig_sym2(k.p11, k.p12, k.p22);  // ascending; sigma = 1 / sqrt(eig)
    if (ev[0] <= 0) {
      cond_max = std::numeric_limits<double>::infinity();
      sigma_max = std::numeric_limits<double>::infinity();
      sigma_min = std::min(sigma_min, 1 / std::sqrt(ev[1]));
      continue;
    }
    sigma_min = std::min(sigma_min, 1 / std::sqrt(ev[1]));
    sigma_max = std::max(sigma_max, 1 / std::sqrt(ev[0]));
    cond_max = std::max(cond_max, ev[1] / ev[0]);
  }
}

namespace {
FitResult fit_impl(const FitConfig& cfg, const Points& pts, std::vector<double> raw,
                   const std::atomic<bool>* stop, Clock::time_point t0);
}  // namespace

FitResult fit(const FitConfig& cfg, const Points& pts, const std::atomic<bool>* stop) {
  const auto t0 = Clock::now();  // the initialisation counts in FitResult::seconds
  return fit_impl(cfg, pts, initial_raw(cfg, pts), stop, t0);
}

FitResult fit_from(const FitConfig& cfg, const Points& pts, std::vector<double> raw,
                   const std::atomic<bool>* stop) {
  return fit_impl(cfg, pts, std::move(raw), stop, Clock::now());
}

namespace {
FitResult fit_impl(const FitConfig& cfg, const Points& pts, std::vector<double> raw,
                   const std::atomic<bool>* stop, Clock::time_point t0) {
  FitResult res;
  switch (cfg.optimizer) {
    case Optimizer::adam: fit_adam(cfg, pts, raw, res, stop); break;
    case Optimizer::lm:
    case Optimizer::varpro: {
      FitConfig lm_cfg = cfg;
      if (cfg.lm_max_steps > 0) lm_cfg.max_steps = cfg.lm_max_steps;
      fit_lm(lm_cfg, pts, raw, res, cfg.optimizer == Optimizer::varpro, stop);
      break;
    }
  }
  res.raw = raw;
  res.kernels.resize(static_cast<std::size_t>(cfg.K));
  raw_to_canonical(cfg.param, raw, res.kernels);
  // Monitors of the parameters actually returned (one more gradient evaluation).
  {
    Objective objective(cfg, pts);
    std::vector<double> grad(raw.size());
    res.final.loss = objective(raw, grad);
    res.final.step = res.steps;
    const int width = raw_width(cfg.param);
    for (std::size_t i = 0; i < grad.size(); ++i)
      res.final.grad_norm[static_cast<int>(raw_group(cfg.param, static_cast<int>(i % width)))] += grad[i] * grad[i];
    for (double& g : res.final.grad_norm) g = std::sqrt(g);
    shape_monitors(res.kernels, res.final.sigma_min, res.final.sigma_max, res.final.cond_max);
  }
  res.seconds = seconds_since(t0);
  res.final.seconds = res.seconds;
  return res;
}
}  // namespace

}  // namespace covfit::rbf
