// One sweep task: a data set and a model over the whole lambda (x lambda_d) grid, with
// cross-validation, exact solutions, diagnostics and the matrices worth keeping.
// Pure computation (no I/O); io/sweep_tables.hpp writes the result.
//
// free:      per fold, the linearised closed form at every lambda (R^2 of its own
//            prediction, of the exact forward map, and of the exact solution); on all
//            stimuli, exact solutions (warm-started path), losses and diagnostics.
// free_diag: W = diag(d) + F, linearised over the lambda x lambda_d grid (one
//            factorisation per lambda, see diagonal.hpp), R^2 per fold of its linear
//            prediction (r2_val, scored as free is) and of the exact forward map
//            (r2_val_fwd); the exact (L-BFGS) solution at the best pair on all stimuli.
#pragma once
#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "covfit/cov/diagnostics.hpp"
#include "covfit/cov/exact.hpp"
#include "covfit/cov/problem.hpp"
#include "covfit/cov/validation.hpp"

namespace covfit::cov {

enum class SweepModel { free, free_diag };

struct SweepProgress {
  int parts_done = 0, parts_total = 0;            // folds + the full data
  long long lambdas_done = 0, lambdas_total = 0;  // exact solves over all parts (0: none)
  int budget = 0, not_converged = 0;              // of the exact solves done so far
  bool part_just_done = false;                    // this report is the end of a part
};

struct SweepConfig {
  SweepModel model = SweepModel::free;
  std::vector<double> lambdas;        // as given
  bool lambda_relative = false;       // multiply by s_max^2 of the full data
  std::vector<double> lambda_d;       // free_diag; empty: paired with lambda
  std::vector<Fold> folds;
  bool exact = true;
  int exact_max_rank = 400;
  bool train_r2 = false;
  bool losses = true;                 // free: L(W_lin) on all stimuli per lambda (O(r^3) each)
  std::vector<double> store_lambdas;  // free: nearest grid points also stored (same units as lambdas)
  bool store_all = false;             // free: W at every lambda (free_diag always stores the best pair only)
  int threads = 1;                    // folds in parallel (each single-threaded)
  // Budgets of every exact solve (max_newton, max_cg, max_seconds per lambda); the stop
  // flag and callbacks in it are set by run_sweep.
  ExactOptions exact_options;
  // Called (from worker threads, serialised) after each part (a fold or the full data) and
  // after each exact lambda solve. For progress output on long sweeps.
  std::function<void(const SweepProgress&)> on_progress;
  int blas_threads = 1;               // for the one full-data SVD; > 1 is faster for a big
                                      // X but results then depend on it at ~1e-13. The
                                      // OpenBLAS count is process-wide: with > 1, run no
                                      // other sweep at the same time.
};

struct SweepRow {
  double lambda = 0, lambda_d = 0;      // absolute; lambda_d NaN for free
  double r2_val = 0, r2_val_sd = 0;     // the model's own (linearised) prediction, mean/sd over folds
  double r2_val_fwd = 0, r2_val_fwd_sd = 0;      // exact forward map of the linearised W
  double r2_val_exact = 0, r2_val_exact_sd = 0;  // exact solution (NaN if not computed)
  double r2_train = 0;                  // mean over folds of train-block R^2 (NaN unless asked)
  double loss_lin = 0;                  // L(W_lin) on all stimuli (exact loss)
  double loss_linearized = 0;           // L_lin(W_lin)
  double loss_exact = 0;                // L(W*) (NaN if not computed)
  std::string exact_status;             // exact_status_name(): converged | budget |
                                        // not_converged | "" (not computed)
  double rel_grad = 0, gap_bound = 0;   // certificate of the exact solution
  int newton_iters = 0, cg_iters = 0;
  double exact_seconds = 0;
  LambdaDiagnostics diag;
};

struct SweepFoldRow {
  int fold = 0;
  double lambda = 0, lambda_d = 0;
  double r2_val = 0, r2_val_fwd = 0, r2_val_exact = 0, r2_train = 0;
};

struct StoredMatrix {
  std::string name;    // W, W_lin, d, d_lin, eq1_lhs, eq1_rhs
  double lambda = 0, lambda_d = 0;
  int rows = 0, cols = 0;
  std::vector<double> data;  // row-major
};

struct SweepResult {
  bool ok = true;
  std::string message;
  int n = 0, m = 0, r = 0, folds = 0;
  double s_max = 0;
  double loss_zero = 0;                  // L(0)
  double svd_seconds = 0;               // the one full-data SVD
  double folds_seconds = 0;             // folds (their SVDs, R^2 per lambda, exact paths)
  double rows_seconds = 0;              // losses / diagnostics per lambda on all stimuli
  double seconds = 0;                   // everything
  std::vector<SweepRow> rows;            // lambda-major, then lambda_d
  std::vector<SweepFoldRow> fold_rows;
  int best = -1, one_se = -1;            // indices into rows (by the headline R^2)
  int best_exact = -1;                   // by r2_val_exact (free with exact solutions)
  std::vector<StoredMatrix> stored;
  // free with exact solutions: full-data rows per ExactStatus, and exact fold solves that
  // ended uncertified (their r2_val_exact uses the best iterate).
  int exact_counts[4] = {0, 0, 0, 0};
  int fold_exact_uncertified = 0;

  // The headline validation R^2: of the exact solution at best_exact where computed,
  // else of the linearised model at best. NaN if there is none.
  double headline_r2() const;
};

// "exact path: 39 certified, 2 budget; folds: 3 uncertified solves" (the task's message).
std::string exact_summary(const SweepResult& res);

// Bytes the stored matrices will take (printed before a store = "all" run).
double sweep_store_bytes(const SweepConfig& cfg, int n, int m);

// p must have passed check_and_centre. Throws InputError for bad lambdas or folds;
// numerical trouble is reported in the rows (exact_status) or in ok/message.
SweepResult run_sweep(const Problem& p, const SweepConfig& cfg, const std::atomic<bool>* stop);

}  // namespace covfit::cov
