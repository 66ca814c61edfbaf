#include "covfit/cov/sweep.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <mutex>
#include <set>

#include "covfit/cov/diagonal.hpp"
#include "covfit/cov/exact.hpp"
#include "covfit/cov/linearized.hpp"
#include "covfit/cov/matrix.hpp"
#include "covfit/cov/svd.hpp"
#include "covfit/core/error.hpp"
#include "covfit/core/parallel.hpp"

namespace covfit::cov {
namespace {

using Clock = std::chrono::steady_clock;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

StoredMatrix stored(const std::string& name, double lambda, double lambda_d, const Matrix& A) {
  StoredMatrix s{name, lambda, lambda_d, A.rows, A.cols, std::vector<double>(A.size())};
  for (int i = 0; i < A.rows; ++i)
    for (int j = 0; j < A.cols; ++j) s.data[static_cast<std::size_t>(i) * A.cols + j] = A(i, j);
  return s;
}
StoredMatrix stored_vector(const std::string& name, double lambda, double lambda_d,
                           const std::vector<double>& v) {
  return {name, lambda, lambda_d, static_cast<int>(v.size()), 1, v};
}

// Grid indices to store: the best, the nearest to each requested lambda, or all.
std::vector<int> indices_to_store(const std::vector<double>& grid, const std::vector<double>& wanted,
                                  int best, bool all) {
  std::set<int> idx;
  if (all)
    for (int i = 0; i < static_cast<int>(grid.size()); ++i) idx.insert(i);
  if (best >= 0) idx.insert(best);
  for (double w : wanted) {
    if (!(w > 0)) continue;  // validated by the job reader; never pick a NaN distance
    int near = 0;
    for (int i = 1; i < static_cast<int>(grid.size()); ++i)
      if (std::abs(std::log(grid[i] / w)) < std::abs(std::log(grid[near] / w))) near = i;
    if (!grid.empty()) idx.insert(near);
  }
  return {idx.begin(), idx.end()};
}

// R^2 over the upper triangle of the val block for W = diag(d) + U M U^T: of the linear
// prediction (.linear) and of the exact forward map S_hat = H^T J H, H = (I + W) X_va (.exact).
R2Pair r2_val_diag(const FoldData& fd, const Matrix& X_va, const std::vector<double>& d,
                   const Matrix& M) {
  // Y = W X_va with W = diag(d) + U M U^T (symmetric). The linear prediction (the one the
  // linearised loss fits, as for free) is X'X + X'W'X + X'WX (J X = X), the forward map
  // H'H with H = J (X + Y).
  const Matrix UMP = matmul(fd.red.U, matmul(M, fd.P_va));
  Matrix Y = UMP, H = X_va;
  for (int j = 0; j < H.cols; ++j) {
    double mean = 0;
    for (int i = 0; i < H.rows; ++i) {
      Y(i, j) += d[static_cast<std::size_t>(i)] * X_va(i, j);
      H(i, j) += Y(i, j);
      mean += H(i, j);
    }
    mean /= H.rows;
    for (int i = 0; i < H.rows; ++i) H(i, j) -= mean;  // J H
  }
  const Matrix Sfwd = gram(H);
  const Matrix Slin = gram(X_va);
  const Matrix XtY = matmul(X_va, Y, true, false);
  double ss_fwd = 0, ss_lin = 0;
  for (int j = 0; j < Sfwd.cols; ++j)
    for (int i = 0; i <= j; ++i) {
      const double e = fd.S_va(i, j) - Sfwd(i, j);
      const double el = fd.S_va(i, j) - (Slin(i, j) + XtY(i, j) + XtY(j, i));
      ss_fwd += e * e;
      ss_lin += el * el;
    }
  if (!(fd.ss_tot_va > 0)) return {kNaN, kNaN};
  return {1.0 - ss_lin / fd.ss_tot_va, 1.0 - ss_fwd / fd.ss_tot_va};
}

void summarise_into(SweepResult& res, const std::vector<double>& lam_for_summary,
                    const std::vector<std::vector<double>>& lin,
                    const std::vector<std::vector<double>>& fwd,
                    const std::vector<std::vector<double>>& ex, bool have_exact,
                    bool headline_exact) {
  CvSummary sl = summarise(lam_for_summary, lin), sf = summarise(lam_for_summary, fwd);
  CvSummary se = have_exact ? summarise(lam_for_summary, ex) : CvSummary{};
  for (std::size_t l = 0; l < res.rows.size(); ++l) {
    SweepRow& row = res.rows[l];
    row.r2_val = sl.mean[l];
    row.r2_val_sd = sl.sd[l];
    row.r2_val_fwd = sf.mean[l];
    row.r2_val_fwd_sd = sf.sd[l];
    row.r2_val_exact = have_exact ? se.mean[l] : kNaN;
    row.r2_val_exact_sd = have_exact ? se.sd[l] : kNaN;
  }
  const CvSummary& head = headline_exact ? se : sl;
  res.best = head.best;
  res.one_se = head.one_se;
  res.best_exact = have_exact ? se.best : -1;
}

// Progress of one sweep task over its parts and exact solves, reported through
// cfg.on_progress from whichever worker thread made it (serialised here).
class ProgressTracker {
 public:
  ProgressTracker(const SweepConfig& cfg, int parts, long long lambdas_total)
      : cfg_(cfg) {
    p_.parts_total = parts;
    p_.lambdas_total = lambdas_total;
  }
  void part_done() {
    update([](SweepProgress& p) {
      ++p.parts_done;
      p.part_just_done = true;
    });
  }
  void lambda_done(const ExactResult& e) {
    update([&](SweepProgress& p) {
      ++p.lambdas_done;
      p.part_just_done = false;
      if (e.status == ExactStatus::budget) ++p.budget;
      if (e.status == ExactStatus::not_converged) ++p.not_converged;
    });
  }
 private:
  template <class F>
  void update(F&& f) {
    std::lock_guard lock(mu_);
    f(p_);
    if (cfg_.on_progress) cfg_.on_progress(p_);
  }
  const SweepConfig& cfg_;
  std::mutex mu_;
  SweepProgress p_;
};

// parallel_items over the F + 1 parts of a sweep, with progress after each.
// fn(fold) gets fold = -1 for the full-data part, handed out first because it is the
// longest (largest rank, sequential exact path); then the folds 0..F-1.
template <class Fn>
void for_each_part(const SweepConfig& cfg, int F, const std::atomic<bool>* stop,
                   ProgressTracker& progress, Fn&& fn) {
  parallel_items(F + 1, cfg.threads, stop, [&](long long item) {
    fn(static_cast<int>(item) - 1);
    progress.part_done();
  });
}

// The exact path of one part: the job's budgets, the stop flag, lambda-level progress.
std::vector<ExactResult> exact_path(const Reduced& red, const std::vector<double>& lam,
                                    const SweepConfig& cfg, const std::atomic<bool>* stop,
                                    ProgressTracker& progress) {
  ExactOptions o = cfg.exact_options;
  o.stop = stop;
  return sweep_exact(red, lam, o, [&](const ExactResult& e) { progress.lambda_done(e); });
}

void run_free(const Problem& p, const SweepConfig& cfg, const Reduced& red,
              const std::vector<double>& lam, SweepResult& res, const std::atomic<bool>* stop) {
  const int F = static_cast<int>(cfg.folds.size()), L = static_cast<int>(lam.size());
  const bool exact = cfg.exact && red.r <= cfg.exact_max_rank;
  std::vector<std::vector<double>> lin(F, std::vector<double>(L, kNaN)), fwd = lin, ex = lin, tr = lin;
  std::vector<ExactResult> full_exact;
  // Folds and the full-data exact path are independent: one work item each, each on one
  // thread (BLAS on one thread, set by the caller), so results do not depend on the
  // thread count.
  auto t_folds = Clock::now();
  ProgressTracker progress(cfg, F + 1, exact ? static_cast<long long>(F + 1) * L : 0);
  std::vector<int> fold_uncertified(static_cast<std::size_t>(F), 0);
  for_each_part(cfg, F, stop, progress, [&](int item) {
      if (item < 0) {
        if (exact) full_exact = exact_path(red, lam, cfg, stop, progress);
        return;
      }
      const FoldData fd = prepare_fold(p, cfg.folds[static_cast<std::size_t>(item)]);
      std::vector<ExactResult> fe;
      if (exact) fe = exact_path(fd.red, lam, cfg, stop, progress);
      for (const ExactResult& e : fe)
        if (e.status != ExactStatus::converged) ++fold_uncertified[static_cast<std::size_t>(item)];
      Matrix M;
      for (int l = 0; l < L; ++l) {
        if (stop && l % 64 == 0 && stop->load()) return;  // interrupted: results discarded
        linearized_M(fd.red, lam[static_cast<std::size_t>(l)], M);
        R2Pair r = r2_val(fd, M);
        lin[item][l] = r.linear;
        fwd[item][l] = r.exact;
        if (exact) ex[item][l] = r2_val(fd, fe[static_cast<std::size_t>(l)].M).exact;
        if (cfg.train_r2) tr[item][l] = r2_train(fd, M).linear;
      }
  });
  res.folds_seconds = since(t_folds);
  if (stop && stop->load()) return;

  // Rows on all stimuli: independent per lambda, so in parallel (each single-threaded).
  // The diagnostics need the exact solution (and cost O(n r^2 + r^3) per lambda), so a
  // linearised-only sweep computes the losses alone.
  auto t_rows = Clock::now();
  res.rows.assign(static_cast<std::size_t>(L), SweepRow{});
#pragma omp parallel for schedule(dynamic, 8) num_threads(std::max(1, cfg.threads))
  for (int l = 0; l < L; ++l) {
    SweepRow& row = res.rows[static_cast<std::size_t>(l)];
    row.lambda = lam[static_cast<std::size_t>(l)];
    row.lambda_d = kNaN;
    Matrix Ml;
    linearized_M(red, row.lambda, Ml);
    row.loss_lin = cfg.losses || exact ? loss_reduced(red, Ml, row.lambda) : kNaN;
    row.loss_linearized = loss_linearized_reduced(red, Ml, row.lambda);
    const ExactResult* e = exact ? &full_exact[static_cast<std::size_t>(l)] : nullptr;
    row.loss_exact = e ? e->loss : kNaN;
    row.exact_status = e ? exact_status_name(e->status) : "";
    row.rel_grad = e ? e->rel_grad : kNaN;
    row.gap_bound = e ? e->gap_bound : kNaN;
    row.newton_iters = e ? e->newton_iters : 0;
    row.cg_iters = e ? e->cg_iters : 0;
    row.exact_seconds = e ? e->seconds : 0;
    if (e) {
      row.diag = diagnose(red, row.lambda, e);
    } else {
      row.diag.lambda = row.lambda;
      row.diag.eq1_residual_exact = row.diag.dW = row.diag.kappa = kNaN;
      row.diag.g_proxy = row.diag.q_proxy = kNaN;
      row.diag.lin = row.diag.exact = {kNaN, kNaN};
    }
    double t = 0;
    int cnt = 0;
    for (int f = 0; f < F; ++f)
      if (std::isfinite(tr[f][l])) t += tr[f][l], ++cnt;
    row.r2_train = cnt ? t / cnt : kNaN;
  }
  res.rows_seconds = since(t_rows);
  if (exact) {
    for (const ExactResult& e : full_exact) ++res.exact_counts[static_cast<int>(e.status)];
    for (int n : fold_uncertified) res.fold_exact_uncertified += n;
    res.message = exact_summary(res);
  }
  for (int l = 0; l < L; ++l)
    for (int f = 0; f < F; ++f)
      res.fold_rows.push_back({f, lam[static_cast<std::size_t>(l)], kNaN, lin[f][l], fwd[f][l],
                               exact ? ex[f][l] : kNaN, tr[f][l]});
  summarise_into(res, lam, lin, fwd, ex, exact, exact);

  Matrix M;
  std::vector<double> wanted;
  for (double w : cfg.store_lambdas) wanted.push_back(w * (cfg.lambda_relative ? red.s_max() * red.s_max() : 1.0));
  for (int l : indices_to_store(lam, wanted, res.best, cfg.store_all)) {
    const double lambda = lam[static_cast<std::size_t>(l)];
    linearized_M(red, lambda, M);
    const Matrix& Mw = exact ? full_exact[static_cast<std::size_t>(l)].M : M;
    res.stored.push_back(stored(exact ? "W" : "W_lin", lambda, kNaN, form_W(red.U, Mw)));
    res.stored.push_back(stored_vector(exact ? "d" : "d_lin", lambda, kNaN, diag_of_W(red.U, Mw)));
    Eq1Pairs pairs = eq1_pairs(red, Mw, lambda);
    res.stored.push_back(stored_vector("eq1_lhs", lambda, kNaN, pairs.lhs));
    res.stored.push_back(stored_vector("eq1_rhs", lambda, kNaN, pairs.rhs));
    if (exact) res.stored.push_back(stored("W_lin", lambda, kNaN, form_W(red.U, M)));
  }
}

void run_free_diag(const Problem& p, const SweepConfig& cfg, const Reduced& red,
                   const std::vector<double>& lam, std::vector<double> lamd, SweepResult& res,
                   const std::atomic<bool>* stop) {
  const bool paired = lamd.empty();
  if (paired) lamd = lam;
  for (double l : lamd)
    if (!(l > 0)) throw InputError("lambda_d", "every lambda_d must be > 0");
  // Grid points (lambda index, lambda_d index), lambda-major.
  std::vector<std::pair<int, int>> grid;
  for (int a = 0; a < static_cast<int>(lam.size()); ++a) {
    if (paired) grid.push_back({a, a});
    else
      for (int b = 0; b < static_cast<int>(lamd.size()); ++b) grid.push_back({a, b});
  }
  const int F = static_cast<int>(cfg.folds.size()), G = static_cast<int>(grid.size());
  std::vector<std::vector<double>> fwd(F, std::vector<double>(G, kNaN)), linp = fwd;
  std::vector<double> loss(G), rms_d(G), rms_off(G);
  ProgressTracker progress(cfg, F + 1, 0);
  for_each_part(cfg, F, stop, progress, [&](int item) {
      const bool full = item < 0;
      FoldData fd;
      Matrix X_va;
      if (!full) {
        fd = prepare_fold(p, cfg.folds[static_cast<std::size_t>(item)]);
        X_va = select_cols(p.X, cfg.folds[static_cast<std::size_t>(item)].val);
      }
      const Reduced& rd = full ? red : fd.red;
      int last_a = -1;
      std::unique_ptr<DiagPath> path;
      for (int g = 0; g < G; ++g) {
        auto [a, b] = grid[static_cast<std::size_t>(g)];
        if (a != last_a) {
          path = std::make_unique<DiagPath>(rd, lam[static_cast<std::size_t>(a)]);
          last_a = a;
        }
        DiagLinearized sol = path->solve(lamd[static_cast<std::size_t>(b)]);
        if (full) {
          Matrix B = matmul(red.U, sol.M);
          loss[g] = diag_loss(red, lam[static_cast<std::size_t>(a)], lamd[static_cast<std::size_t>(b)], sol.d, B);
          double sd = 0;
          for (double x : sol.d) sd += x * x;
          rms_d[g] = std::sqrt(sd / static_cast<double>(sol.d.size()));
          rms_off[g] = w_magnitudes(red.U, sol.M).rms_offdiag;
        } else {
          const R2Pair r2 = r2_val_diag(fd, X_va, sol.d, sol.M);
          linp[item][g] = r2.linear;
          fwd[item][g] = r2.exact;
        }
      }
  });
  if (stop && stop->load()) return;

  std::vector<double> lam_flat;
  for (int g = 0; g < G; ++g) {
    auto [a, b] = grid[static_cast<std::size_t>(g)];
    SweepRow row;
    row.lambda = lam[static_cast<std::size_t>(a)];
    row.lambda_d = lamd[static_cast<std::size_t>(b)];
    row.loss_lin = loss[g];
    row.loss_linearized = kNaN;
    row.loss_exact = kNaN;
    row.rel_grad = row.gap_bound = kNaN;
    row.r2_train = kNaN;
    row.diag.lambda = row.lambda;
    row.diag.eq1_residual_exact = row.diag.dW = row.diag.kappa = kNaN;
    row.diag.g_proxy = row.diag.q_proxy = kNaN;
    row.diag.lin = {rms_d[g], rms_off[g]};
    row.diag.exact = {kNaN, kNaN};
    res.rows.push_back(row);
    lam_flat.push_back(row.lambda);
    for (int f = 0; f < F; ++f) res.fold_rows.push_back({f, row.lambda, row.lambda_d, linp[f][g], fwd[f][g], kNaN, kNaN});
  }
  // Scored as free is without exact solutions: the headline (best lambda, one-SE) is r2_val,
  // the linearised solution's own linear prediction; r2_val_fwd is its exact forward map.
  summarise_into(res, lam_flat, linp, fwd, fwd, false, false);
  if (res.best < 0) return;

  // Exact (non-linearised) solution at the best pair, on all stimuli.
  SweepRow& best = res.rows[static_cast<std::size_t>(res.best)];
  DiagExactResult e = diag_exact(red, best.lambda, best.lambda_d);
  best.loss_exact = e.loss;
  best.rel_grad = e.rel_grad;
  best.exact_status = exact_status_name(e.status);
  best.newton_iters = e.iters;
  best.exact_seconds = e.seconds;
  DiagLinearized lin = diag_linearized(red, best.lambda, best.lambda_d);
  res.stored.push_back(stored_vector("d_lin", best.lambda, best.lambda_d, lin.d));
  res.stored.push_back(stored_vector("d", best.lambda, best.lambda_d, e.d));
  Matrix W = form_W(red.U, lin.M);
  for (int i = 0; i < W.rows; ++i) W(i, i) += lin.d[static_cast<std::size_t>(i)];
  res.stored.push_back(stored("W_lin", best.lambda, best.lambda_d, W));
}

}  // namespace

std::string exact_summary(const SweepResult& res) {
  const auto n = [&](ExactStatus s) { return res.exact_counts[static_cast<int>(s)]; };
  std::string out = "exact path: " + std::to_string(n(ExactStatus::converged)) + " certified";
  if (n(ExactStatus::budget)) out += ", " + std::to_string(n(ExactStatus::budget)) + " budget";
  if (n(ExactStatus::not_converged))
    out += ", " + std::to_string(n(ExactStatus::not_converged)) + " not converged";
  if (res.fold_exact_uncertified)
    out += "; folds: " + std::to_string(res.fold_exact_uncertified) + " uncertified solves";
  return out;
}

double SweepResult::headline_r2() const {
  if (best_exact >= 0) return rows[static_cast<std::size_t>(best_exact)].r2_val_exact;
  if (best >= 0) return rows[static_cast<std::size_t>(best)].r2_val;
  return kNaN;
}

double sweep_store_bytes(const SweepConfig& cfg, int n, int m) {
  const double nd = n, md = m;
  if (cfg.model == SweepModel::free_diag) return 8.0 * (nd * nd + 2.0 * nd);  // W_lin, d_lin, d
  const double per = 8.0 * (2.0 * nd * nd + nd + md * (md + 1.0));
  double count = 1 + static_cast<double>(cfg.store_lambdas.size());
  if (cfg.store_all) count = static_cast<double>(cfg.lambdas.size());
  return per * count;
}

SweepResult run_sweep(const Problem& p, const SweepConfig& cfg, const std::atomic<bool>* stop) {
  const auto t0 = Clock::now();
  SweepResult res;
  res.n = p.X.rows;
  res.m = p.X.cols;
  res.folds = static_cast<int>(cfg.folds.size());
  Reduced red;
  // BLAS on one thread throughout (folds are the parallelism, and results must not depend
  // on thread counts); more only for the one full-data SVD when asked (blas_threads).
  BlasThreads one(1);
  {
    BlasThreads svd_threads(std::max(1, cfg.blas_threads));
    red = reduce(p.X, p.S);
  }
  res.svd_seconds = since(t0);
  res.r = red.r;
  res.s_max = red.s_max();
  if (red.r == 0) {
    res.ok = false;
    res.message = "X has numerical rank 0";
    return res;
  }
  std::vector<double> lam = cfg.lambdas;
  const double scale = cfg.lambda_relative ? red.s_max() * red.s_max() : 1.0;
  for (double& l : lam) l *= scale;
  std::vector<double> lamd = cfg.lambda_d;
  for (double& l : lamd) l *= scale;
  check_lambdas(lam, 0.0, false, "lambda");
  res.loss_zero = loss_reduced(red, Matrix(red.r, red.r), 1.0);  // lambda irrelevant at W = 0
  if (cfg.model == SweepModel::free) run_free(p, cfg, red, lam, res, stop);
  else run_free_diag(p, cfg, red, lam, lamd, res, stop);
  res.seconds = since(t0);
  return res;
}

}  // namespace covfit::cov
