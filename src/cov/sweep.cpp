#include "covfit/cov/sweep.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <set>

#include "covfit/cov/diagonal.hpp"
#include "covfit/cov/exact.hpp"
#include "covfit/cov/lambda_path.hpp"
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

// Takes A's entries (column-major): an n x n W exists once.
StoredMatrix stored(const std::string& name, double lambda, double lambda_d, Matrix&& A) {
  return {name, lambda, lambda_d, A.rows, A.cols, std::move(A.data)};
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

// Progress of one work unit (its exact solves), reported through cfg.on_progress from
// whichever thread made it (serialised here).
class ProgressTracker {
 public:
  ProgressTracker(const SweepConfig& cfg, long long lambdas_total) : cfg_(cfg) {
    p_.parts_total = 1;
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

// The exact path over one block (lambdas largest first): the job's budgets, the stop flag,
// lambda-level progress. It continues from `start` (the previous block's end; the same
// bits as one path over both blocks) or, without one, starts with its own continuation.
// `end` gets where it ended (null if it has no solution to continue from).
std::vector<ExactResult> exact_path(const Reduced& red, const std::vector<double>& lam,
                                    const SweepConfig& cfg, const std::atomic<bool>* stop,
                                    ProgressTracker* progress, const WarmStart* start,
                                    std::shared_ptr<const WarmStart>* end = nullptr) {
  ExactOptions o = cfg.exact_options;
  o.stop = stop;
  WarmStart state = start ? *start : WarmStart{};
  std::vector<ExactResult> out = sweep_exact(red, lam, o, [&](const ExactResult& e) {
    if (progress) progress->lambda_done(e);
  }, &state);
  if (end) *end = state.have_warm ? std::make_shared<const WarmStart>(std::move(state)) : nullptr;
  return out;
}

bool exact_for(const SweepConfig& cfg, const Reduced& red) {
  return cfg.model == SweepModel::free && cfg.exact && red.r <= cfg.exact_max_rank;
}

// The grid in absolute units (lambda_unit = s_max^2 of the full data for s_max2).
std::vector<double> absolute(const std::vector<double>& v, double unit) {
  std::vector<double> out = v;
  for (double& x : out) x *= unit;
  return out;
}

// free_diag grid points of lambda index a: (a, b) for every lambda_d, or (a, a) paired.
std::vector<int> lambda_d_indices(const SweepConfig& cfg, int a) {
  if (cfg.lambda_d.empty()) return {a};
  std::vector<int> b(cfg.lambda_d.size());
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<int>(i);
  return b;
}

SweepRow empty_row(int a, int b, double lambda, double lambda_d) {
  SweepRow row;
  row.lambda_index = a;
  row.lambda_d_index = b;
  row.lambda = lambda;
  row.lambda_d = lambda_d;
  row.r2_val = row.r2_val_sd = row.r2_val_fwd = row.r2_val_fwd_sd = kNaN;
  row.r2_val_exact = row.r2_val_exact_sd = row.r2_train = kNaN;
  row.loss_lin = row.loss_linearized = row.loss_exact = kNaN;
  row.rel_grad = row.gap_bound = kNaN;
  row.diag.lambda = lambda;
  row.diag.eq1_residual_exact = row.diag.dW = row.diag.kappa = kNaN;
  row.diag.g_proxy = row.diag.q_proxy = kNaN;
  row.diag.lin = row.diag.exact = {kNaN, kNaN};
  return row;
}

// The matrices stored at one lambda of free: W (exact) or W_lin, d, the eq. 1 pairs, and
// W_lin beside an exact W.
void store_free(const Reduced& red, double lambda, const Matrix* exact_M, std::vector<StoredMatrix>& out) {
  Matrix M;
  linearized_M(red, lambda, M);
  const Matrix& Mw = exact_M ? *exact_M : M;
  out.push_back(stored(exact_M ? "W" : "W_lin", lambda, kNaN, form_W(red.U, Mw)));
  out.push_back(stored_vector(exact_M ? "d" : "d_lin", lambda, kNaN, diag_of_W(red.U, Mw)));
  Eq1Pairs pairs = eq1_pairs(red, Mw, lambda);
  out.push_back(stored_vector("eq1_lhs", lambda, kNaN, pairs.lhs));
  out.push_back(stored_vector("eq1_rhs", lambda, kNaN, pairs.rhs));
  if (exact_M) out.push_back(stored("W_lin", lambda, kNaN, form_W(red.U, M)));
}

// A unit's stored exact solution at a store lambda (r x r).
const char* const kExactM = "M";

// Grid indices free stores whatever the best lambda is (store_all, store_lambdas).
std::vector<int> fixed_store_indices(const SweepConfig& cfg, const std::vector<double>& lam, double unit) {
  std::vector<double> wanted;
  for (double w : cfg.store_lambdas) wanted.push_back(w * unit);
  return indices_to_store(lam, wanted, -1, cfg.store_all);
}

void free_full_unit(const SweepConfig& cfg, const Reduced& red, const std::vector<double>& lam,
                    const std::vector<int>& block, double unit, const WarmStart* start,
                    SweepUnitResult& u, const std::atomic<bool>* stop) {
  const bool exact = exact_for(cfg, red);
  std::vector<double> bl;
  for (int l : block) bl.push_back(lam[static_cast<std::size_t>(l)]);
  ProgressTracker progress(cfg, exact ? static_cast<long long>(bl.size()) : 0);
  std::vector<ExactResult> ex;
  if (exact) ex = exact_path(red, bl, cfg, stop, &progress, start, &u.warm_end);
  u.warm_started = exact && start;
  if (stop && stop->load()) return;
  const int B = static_cast<int>(block.size());
  u.rows.assign(static_cast<std::size_t>(B), SweepRow{});
  // The losses of W_lin along the block from a few dozen per-lambda evaluations
  // (lambda_path.hpp: within 1e-12 relative); the exact loss L(W_lin) is quartic in M,
  // O(r^3) per evaluation, so it is skipped when neither asked for nor needed.
  const std::vector<double> lin_loss = loss_linearized_path(red, bl);
  const std::vector<double> exact_loss = cfg.losses || exact ? loss_lin_path(red, bl) : std::vector<double>{};
  if (stop && stop->load()) return;
  // The diagnostics need the exact solution (O(n r^2 + r^3) per lambda): independent per
  // lambda, so in parallel (each single-threaded).
  {
    BlasThreads one(1);  // (BLAS from several threads)
#pragma omp parallel for schedule(dynamic, 8) num_threads(std::max(1, cfg.threads))
    for (int k = 0; k < B; ++k) {
      SweepRow& row = u.rows[static_cast<std::size_t>(k)];
      row = empty_row(block[static_cast<std::size_t>(k)], -1, bl[static_cast<std::size_t>(k)], kNaN);
      row.loss_lin = exact_loss.empty() ? kNaN : exact_loss[static_cast<std::size_t>(k)];
      row.loss_linearized = lin_loss[static_cast<std::size_t>(k)];
      if (!exact) continue;
      const ExactResult& e = ex[static_cast<std::size_t>(k)];
      row.loss_exact = e.loss;
      row.exact_status = exact_status_name(e.status);
      row.rel_grad = e.rel_grad;
      row.gap_bound = e.gap_bound;
      row.newton_iters = e.newton_iters;
      row.cg_iters = e.cg_iters;
      row.exact_seconds = e.seconds;
      row.diag = diagnose(red, row.lambda, &e);
    }
  }
  for (const ExactResult& e : ex) ++u.exact_counts[static_cast<int>(e.status)];
  // The exact solutions at the lambdas whose matrices are stored whatever the best: the
  // summary forms W, d, ... from them (W_lin needs only the reduction).
  if (!exact) return;
  const std::vector<int> keep = fixed_store_indices(cfg, lam, unit);
  for (int k = 0; k < B; ++k)
    if (std::binary_search(keep.begin(), keep.end(), block[static_cast<std::size_t>(k)]))
      u.stored.push_back(stored(kExactM, bl[static_cast<std::size_t>(k)], kNaN,
                                std::move(ex[static_cast<std::size_t>(k)].M)));
}

void free_fold_unit(const SweepConfig& cfg, const FoldData& fd, int fold, const std::vector<double>& lam,
                    const std::vector<int>& block, bool full_exact, const WarmStart* start,
                    SweepUnitResult& u, const std::atomic<bool>* stop) {
  const bool exact = full_exact && exact_for(cfg, fd.red);
  std::vector<double> bl;
  for (int l : block) bl.push_back(lam[static_cast<std::size_t>(l)]);
  ProgressTracker progress(cfg, exact ? static_cast<long long>(bl.size()) : 0);
  std::vector<ExactResult> fe;
  if (exact) fe = exact_path(fd.red, bl, cfg, stop, &progress, start, &u.warm_end);
  u.warm_started = exact && start;
  for (const ExactResult& e : fe) ++u.exact_counts[static_cast<int>(e.status)];
  if (stop && stop->load()) return;
  // R^2 of W_lin's two predictions along the block (lambda_path.hpp: within 1e-12), of the
  // exact solutions per lambda.
  const std::vector<R2Pair> r2 = r2_val_path(fd, bl);
  const std::vector<R2Pair> r2t = cfg.train_r2 ? r2_train_path(fd, bl) : std::vector<R2Pair>{};
  for (std::size_t k = 0; k < bl.size(); ++k) {
    if (stop && k % 64 == 0 && stop->load()) return;  // interrupted: results discarded
    SweepFoldRow row{fold, block[k], -1, bl[k], kNaN, r2[k].linear, r2[k].exact, kNaN, kNaN};
    if (exact) row.r2_val_exact = r2_val(fd, fe[k].M).exact;
    if (cfg.train_r2) row.r2_train = r2t[k].linear;
    u.fold_rows.push_back(row);
  }
}

void diag_unit(const SweepConfig& cfg, SweepData& data, const Reduced& full, int part,
               const std::vector<double>& lam, const std::vector<double>& lamd,
               const std::vector<int>& block, SweepUnitResult& u, const std::atomic<bool>* stop) {
  for (double l : lamd)
    if (!(l > 0)) throw InputError("lambda_d", "every lambda_d must be > 0");
  std::shared_ptr<const FoldData> fd;
  Matrix X_va;
  if (part >= 0) {
    fd = data.fold(part, &u.fold_svd_seconds);
    X_va = select_cols(data.problem().X, data.folds()[static_cast<std::size_t>(part)].val);
  }
  const Reduced& rd = part < 0 ? full : fd->red;
  u.r = rd.r;
  for (int a : block) {
    if (stop && stop->load()) return;
    DiagPath path(rd, lam[static_cast<std::size_t>(a)]);
    for (int b : lambda_d_indices(cfg, a)) {
      const double la = lam[static_cast<std::size_t>(a)], ld = lamd[static_cast<std::size_t>(b)];
      DiagLinearized sol = path.solve(ld);
      if (part < 0) {
        SweepRow row = empty_row(a, b, la, ld);
        Matrix B = matmul(full.U, sol.M);
        row.loss_lin = diag_loss(full, la, ld, sol.d, B);
        double sd = 0;
        for (double x : sol.d) sd += x * x;
        row.diag.lin = {std::sqrt(sd / static_cast<double>(sol.d.size())), w_magnitudes(full.U, sol.M).rms_offdiag};
        u.rows.push_back(row);
      } else {
        const R2Pair r2 = r2_val_diag(*fd, X_va, sol.d, sol.M);
        u.fold_rows.push_back({part, a, b, la, ld, r2.linear, r2.exact, kNaN, kNaN});
      }
    }
  }
}

}  // namespace

int sweep_lambda_block(const SweepConfig& cfg) {
  const int L = static_cast<int>(cfg.lambdas.size());
  if (cfg.lambda_block > 0) return std::min(std::max(L, 1), cfg.lambda_block);
  if (cfg.model == SweepModel::free && cfg.exact) return std::min(std::max(L, 1), kDefaultExactBlock);
  return std::max(L, 1);
}

std::vector<std::vector<int>> sweep_blocks(const SweepConfig& cfg) {
  std::vector<int> order(cfg.lambdas.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return cfg.lambdas[static_cast<std::size_t>(a)] > cfg.lambdas[static_cast<std::size_t>(b)]; });
  const std::size_t B = static_cast<std::size_t>(sweep_lambda_block(cfg));
  std::vector<std::vector<int>> blocks;
  for (std::size_t i = 0; i < order.size(); i += B)
    blocks.emplace_back(order.begin() + static_cast<std::ptrdiff_t>(i),
                        order.begin() + static_cast<std::ptrdiff_t>(std::min(order.size(), i + B)));
  if (blocks.empty()) blocks.emplace_back();
  return blocks;
}

SweepData::SweepData(const Problem& p, std::vector<Fold> folds, int blas_threads, int fold_capacity)
    : p_(p), folds_(std::move(folds)), blas_threads_(std::max(1, blas_threads)),
      capacity_(std::max(1, fold_capacity)) {}

std::shared_ptr<const Reduced> SweepData::full(double* seconds) {
  std::promise<std::shared_ptr<const Reduced>> mine;
  std::shared_future<std::shared_ptr<const Reduced>> theirs;
  {
    std::lock_guard lock(mu_);
    if (full_.valid()) theirs = full_;
    else full_ = mine.get_future().share();
  }
  if (theirs.valid()) return theirs.get();
  const auto t0 = Clock::now();
  try {
    // blas_threads > 1 only when units run one at a time (SweepData): nobody else calls BLAS.
    BlasThreads threads(blas_threads_);
    auto red = std::make_shared<const Reduced>(reduce(p_.X, p_.S));
    if (seconds) *seconds = since(t0);
    mine.set_value(red);
    return red;
  } catch (...) {
    mine.set_exception(std::current_exception());
    throw;
  }
}

std::shared_ptr<const FoldData> SweepData::fold(int f, double* seconds) {
  if (f < 0 || f >= static_cast<int>(folds_.size())) throw RuntimeError("sweep: fold " + std::to_string(f) + " out of range");
  std::promise<std::shared_ptr<const FoldData>> mine;
  std::shared_future<std::shared_ptr<const FoldData>> theirs;
  {
    std::lock_guard lock(mu_);
    recent_.remove(f);
    recent_.push_front(f);
    auto it = folds_cache_.find(f);
    if (it != folds_cache_.end()) {
      theirs = it->second;
    } else {
      folds_cache_[f] = mine.get_future().share();
      while (static_cast<int>(recent_.size()) > capacity_) {  // units keep what they use alive
        folds_cache_.erase(recent_.back());
        recent_.pop_back();
      }
    }
  }
  if (theirs.valid()) return theirs.get();
  const auto t0 = Clock::now();
  try {
    BlasThreads threads(blas_threads_);
    auto fd = std::make_shared<const FoldData>(prepare_fold(p_, folds_[static_cast<std::size_t>(f)]));
    if (seconds) *seconds = since(t0);
    mine.set_value(fd);
    return fd;
  } catch (...) {
    mine.set_exception(std::current_exception());
    throw;
  }
}

void SweepData::expect(SweepModel model, int part, int block) {
  std::lock_guard lock(mu_);
  warm_[{static_cast<int>(model), part, block}].expected = true;
}

void SweepData::set_warm(SweepModel model, int part, int block, std::shared_ptr<const WarmStart> w) {
  std::lock_guard lock(mu_);
  Slot& s = warm_[{static_cast<int>(model), part, block}];
  if (s.set) return;  // published once (a preloaded start is not replaced)
  s.set = true;
  s.promise.set_value(std::move(w));
}

std::shared_ptr<const WarmStart> SweepData::warm(SweepModel model, int part, int block) {
  std::shared_future<std::shared_ptr<const WarmStart>> f;
  {
    std::lock_guard lock(mu_);
    auto it = warm_.find({static_cast<int>(model), part, block});
    if (it == warm_.end() || (!it->second.set && !it->second.expected)) return nullptr;
    f = it->second.future;
  }
  return f.get();
}

SweepUnitResult run_sweep_unit(SweepData& data, const SweepConfig& cfg, int part, int block,
                               const std::atomic<bool>* stop) {
  const auto t0 = Clock::now();
  SweepUnitResult u;
  u.part = part;
  u.block = block;
  const std::vector<std::vector<int>> blocks = sweep_blocks(cfg);
  if (block < 0 || block >= static_cast<int>(blocks.size()))
    throw RuntimeError("sweep: block " + std::to_string(block) + " out of range");
  // Publish this unit's end whatever happens (a successor may be waiting for it).
  struct Publish {
    SweepData& data;
    SweepModel model;
    SweepUnitResult& u;
    ~Publish() { data.set_warm(model, u.part, u.block, u.warm_end); }
  } publish{data, cfg.model, u};
  const std::shared_ptr<const WarmStart> start = block > 0 ? data.warm(cfg.model, part, block - 1) : nullptr;
  BlasThreads threads(data.blas_threads());
  const std::shared_ptr<const Reduced> full = data.full(&u.full_svd_seconds);
  u.n = data.problem().X.rows;
  u.m = data.problem().X.cols;
  u.s_max = full->s_max();
  const double unit = cfg.lambda_relative ? full->s_max() * full->s_max() : 1.0;
  const std::vector<double> lam = absolute(cfg.lambdas, unit), lamd = absolute(cfg.lambda_d, unit);
  check_lambdas(lam, 0.0, false, "lambda");
  const std::vector<int>& idx = blocks[static_cast<std::size_t>(block)];
  if (full->r == 0) {
    u.ok = false;
    u.message = "X has numerical rank 0";
    u.seconds = since(t0);
    return u;
  }
  if (part < 0) {
    u.r = full->r;  // (diag_unit sets the same)
    u.loss_zero = loss_reduced(*full, Matrix(full->r, full->r), 1.0);  // lambda irrelevant at W = 0
    if (cfg.model == SweepModel::free) free_full_unit(cfg, *full, lam, idx, unit, start.get(), u, stop);
    else diag_unit(cfg, data, *full, part, lam, lamd.empty() ? lam : lamd, idx, u, stop);
  } else if (cfg.model == SweepModel::free) {
    std::shared_ptr<const FoldData> fd = data.fold(part, &u.fold_svd_seconds);
    u.r = fd->red.r;
    free_fold_unit(cfg, *fd, part, lam, idx, exact_for(cfg, *full), start.get(), u, stop);
  } else {
    diag_unit(cfg, data, *full, part, lam, lamd.empty() ? lam : lamd, idx, u, stop);
  }
  u.seconds = since(t0);
  return u;
}

SweepResult assemble_sweep(SweepData& data, const SweepConfig& cfg, std::vector<SweepUnitResult> units,
                           const std::atomic<bool>* stop, bool defer_stored) {
  const auto t0 = Clock::now();
  const std::vector<std::vector<int>> blocks = sweep_blocks(cfg);
  const int F = static_cast<int>(data.folds().size()), nb = static_cast<int>(blocks.size());
  const int L = static_cast<int>(cfg.lambdas.size());
  std::sort(units.begin(), units.end(), [](const SweepUnitResult& a, const SweepUnitResult& b) {
    return a.part < b.part || (a.part == b.part && a.block < b.block);
  });
  if (static_cast<int>(units.size()) != (F + 1) * nb)
    throw RuntimeError("sweep: " + std::to_string(units.size()) + " units, expected " + std::to_string((F + 1) * nb));
  for (int i = 0; i < static_cast<int>(units.size()); ++i)
    if (units[i].part != i / nb - 1 || units[i].block != i % nb)
      throw RuntimeError("sweep: unit (part " + std::to_string(units[i].part) + ", block " +
                         std::to_string(units[i].block) + ") duplicated or out of range");

  SweepResult res;
  const SweepUnitResult& head = units.front();
  res.n = head.n;
  res.m = head.m;
  res.folds = F;
  res.s_max = head.s_max;
  res.units = static_cast<int>(units.size());
  for (const auto& u : units) {
    res.svd_seconds += u.full_svd_seconds;
    res.fold_svd_seconds += u.fold_svd_seconds;
    const double work = u.seconds - u.full_svd_seconds - u.fold_svd_seconds;
    (u.part < 0 ? res.rows_seconds : res.folds_seconds) += work;
    res.seconds += u.seconds;
  }
  const auto finish = [&] { res.seconds += since(t0); };
  if (!head.ok) {
    res.ok = false;
    res.message = head.message;
    finish();
    return res;
  }
  res.r = head.r;
  res.loss_zero = head.loss_zero;
  const double unit = cfg.lambda_relative ? res.s_max * res.s_max : 1.0;
  const std::vector<double> lam = absolute(cfg.lambdas, unit);
  const bool diag = cfg.model == SweepModel::free_diag;

  // The grid, lambda-major: (a, b) per grid point (free: b = -1).
  std::vector<std::pair<int, int>> grid;
  for (int a = 0; a < L; ++a)
    if (!diag) grid.push_back({a, -1});
    else
      for (int b : lambda_d_indices(cfg, a)) grid.push_back({a, b});
  std::map<std::pair<int, int>, int> at;
  for (int g = 0; g < static_cast<int>(grid.size()); ++g) at[grid[static_cast<std::size_t>(g)]] = g;
  const int G = static_cast<int>(grid.size());
  const auto grid_index = [&](int a, int b) {
    auto it = at.find({a, diag ? b : -1});
    if (it == at.end()) throw RuntimeError("sweep: a unit row is not on the lambda grid");
    return it->second;
  };

  res.rows.assign(static_cast<std::size_t>(G), SweepRow{});
  std::vector<char> have_row(static_cast<std::size_t>(G), 0);
  std::vector<std::vector<double>> lin(F, std::vector<double>(G, kNaN)), fwd = lin, ex = lin, tr = lin;
  bool exact = false;
  std::vector<std::pair<int, const StoredMatrix*>> fixed;  // (grid index, matrix) from units
  for (const auto& u : units) {
    for (std::size_t k = 0; k < u.rows.size(); ++k) {
      const int g = grid_index(u.rows[k].lambda_index, u.rows[k].lambda_d_index);
      res.rows[static_cast<std::size_t>(g)] = u.rows[k];
      have_row[static_cast<std::size_t>(g)] = 1;
      if (!u.rows[k].exact_status.empty()) exact = true;
    }
    for (std::size_t k = 0; k < u.fold_rows.size(); ++k) {
      const SweepFoldRow& fr = u.fold_rows[k];
      const int g = grid_index(fr.lambda_index, fr.lambda_d_index);
      lin[u.part][g] = fr.r2_val;
      fwd[u.part][g] = fr.r2_val_fwd;
      ex[u.part][g] = fr.r2_val_exact;
      tr[u.part][g] = fr.r2_train;
    }
    if (u.part < 0)
      for (int s = 0; s < 4; ++s) res.exact_counts[s] += u.exact_counts[s];
    else if (!diag)
      res.fold_exact_uncertified += u.exact_counts[1] + u.exact_counts[2] + u.exact_counts[3];
  }
  for (int g = 0; g < G; ++g)
    if (!have_row[static_cast<std::size_t>(g)]) throw RuntimeError("sweep: grid point " + std::to_string(g) + " has no row");
  if (exact) res.message = exact_summary(res);
  for (int g = 0; g < G; ++g) {
    SweepRow& row = res.rows[static_cast<std::size_t>(g)];
    double t = 0;
    int cnt = 0;
    for (int f = 0; f < F; ++f)
      if (std::isfinite(tr[f][g])) t += tr[f][g], ++cnt;
    row.r2_train = cnt ? t / cnt : kNaN;
    for (int f = 0; f < F; ++f)
      res.fold_rows.push_back({f, row.lambda_index, row.lambda_d_index, row.lambda, row.lambda_d, lin[f][g],
                               fwd[f][g], exact ? ex[f][g] : kNaN, tr[f][g]});
  }
  std::vector<double> lam_flat;
  for (const auto& row : res.rows) lam_flat.push_back(row.lambda);
  // free_diag is scored as free is without exact solutions: the headline (best, one-SE)
  // is r2_val, the linearised solution's own linear prediction.
  summarise_into(res, lam_flat, lin, fwd, exact ? ex : fwd, exact, exact);

  std::shared_ptr<const Reduced> red = data.full();
  BlasThreads threads(data.blas_threads());
  if (!diag) {
    // Stored lambdas: store_lambdas / store_all, and the best. With exact solutions, the
    // units' (kExactM) and the best's, recomputed here when no unit stored it.
    std::vector<int> keep = fixed_store_indices(cfg, lam, unit);
    if (res.best >= 0 && !std::binary_search(keep.begin(), keep.end(), res.best))
      keep.insert(std::upper_bound(keep.begin(), keep.end(), res.best), res.best);
    std::map<int, std::shared_ptr<const Matrix>> exact_M;
    for (auto& u : units)
      for (auto& sm : u.stored) {
        int g = -1;
        for (const SweepRow& row : u.rows)
          if (row.lambda == sm.lambda) g = row.lambda_index;
        Matrix M(sm.rows, sm.cols);
        M.data = std::move(sm.data);
        exact_M[g] = std::make_shared<const Matrix>(std::move(M));
      }
    if (exact && res.best >= 0 && !exact_M.count(res.best)) {
      // The best lambda's block from its start (the previous block's end, as its unit
      // had it) down to the best lambda: the solution its unit found (same steps).
      std::vector<double> path;
      const WarmStart* start = nullptr;
      for (std::size_t b = 0; b < blocks.size(); ++b) {
        if (std::find(blocks[b].begin(), blocks[b].end(), res.best) == blocks[b].end()) continue;
        if (b > 0) start = units[b - 1].warm_end.get();  // units[0..nb): the full data's blocks
        for (int l : blocks[b]) {
          path.push_back(lam[static_cast<std::size_t>(l)]);
          if (l == res.best) break;
        }
      }
      std::vector<ExactResult> e = exact_path(*red, path, cfg, stop, nullptr, start);
      if (stop && stop->load()) {
        finish();
        return res;
      }
      exact_M[res.best] = std::make_shared<const Matrix>(std::move(e.back().M));
    }
    for (int g : keep) {
      StorePoint at{lam[static_cast<std::size_t>(g)], nullptr};
      if (exact) {
        auto it = exact_M.find(g);
        if (it == exact_M.end()) throw RuntimeError("sweep: no unit stored the exact solution at a stored lambda");
        at.exact_M = it->second;
      }
      res.store_points.push_back(std::move(at));
    }
    if (!defer_stored) {
      for (const StorePoint& at : res.store_points)
        for (StoredMatrix& m : form_stored(data, at)) res.stored.push_back(std::move(m));
      res.store_points.clear();
    }
  } else if (res.best >= 0) {
    // Exact (non-linearised) solution at the best pair, on all stimuli.
    SweepRow& best = res.rows[static_cast<std::size_t>(res.best)];
    DiagExactResult e = diag_exact(*red, best.lambda, best.lambda_d);
    best.loss_exact = e.loss;
    best.rel_grad = e.rel_grad;
    best.exact_status = exact_status_name(e.status);
    best.newton_iters = e.iters;
    best.exact_seconds = e.seconds;
    DiagLinearized dl = diag_linearized(*red, best.lambda, best.lambda_d);
    res.stored.push_back(stored_vector("d_lin", best.lambda, best.lambda_d, dl.d));
    res.stored.push_back(stored_vector("d", best.lambda, best.lambda_d, e.d));
    Matrix W = form_W(red->U, dl.M);
    for (int i = 0; i < W.rows; ++i) W(i, i) += dl.d[static_cast<std::size_t>(i)];
    res.stored.push_back(stored("W_lin", best.lambda, best.lambda_d, std::move(W)));
  }
  finish();
  return res;
}

std::vector<StoredMatrix> form_stored(SweepData& data, const StorePoint& at) {
  std::shared_ptr<const Reduced> red = data.full();
  BlasThreads threads(data.blas_threads());  // as the units and assemble_sweep
  std::vector<StoredMatrix> out;
  store_free(*red, at.lambda, at.exact_M.get(), out);
  return out;
}

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
  // W and W_lin with exact solutions (W_lin alone without), d, the eq. 1 pairs.
  const double per = 8.0 * ((cfg.exact ? 2.0 : 1.0) * nd * nd + nd + md * (md + 1.0));
  double count = 1 + static_cast<double>(cfg.store_lambdas.size());
  if (cfg.store_all) count = static_cast<double>(cfg.lambdas.size());
  return per * count;
}

SweepResult run_sweep(const Problem& p, const SweepConfig& cfg, const std::atomic<bool>* stop) {
  const int F = static_cast<int>(cfg.folds.size()), nb = static_cast<int>(sweep_blocks(cfg).size());
  SweepData data(p, cfg.folds, cfg.blas_threads, std::max(F, cfg.threads + 1));
  std::vector<SweepUnitResult> units(static_cast<std::size_t>((F + 1) * nb));
  for (int i = 0; i < static_cast<int>(units.size()); ++i)
    data.expect(cfg.model, sweep_unit_part(i, F), sweep_unit_block(i, F));
  // Units side by side, each on one thread, block-major (units are handed out in order, so
  // a unit's predecessor in its chain is always under way or done). The OpenBLAS thread
  // count is process-wide: one thread for the whole run (a unit restoring the count it
  // found must not hand another unit a multi-threaded BLAS mid-way), and units one at a
  // time, each with blas_threads BLAS threads, when blas_threads > 1.
  BlasThreads one_blas(1);
  SweepConfig one = cfg;
  one.threads = 1;
  const int side_by_side = cfg.blas_threads > 1 ? 1 : cfg.threads;
  parallel_items(static_cast<long long>(units.size()), side_by_side, stop, [&](long long i) {
    const int k = static_cast<int>(i);
    units[static_cast<std::size_t>(i)] =
        run_sweep_unit(data, one, sweep_unit_part(k, F), sweep_unit_block(k, F), stop);
  });
  if (stop && stop->load()) return {};
  return assemble_sweep(data, cfg, std::move(units), stop);
}

}  // namespace covfit::cov
