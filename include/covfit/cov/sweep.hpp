// One sweep task: a data set and a model over the whole lambda (x lambda_d) grid, with
// cross-validation, exact solutions, diagnostics and the matrices worth keeping.
// Pure computation (no I/O); io/sweep_tables.hpp writes the result.
//
// A task is cut into work units that can run anywhere and commit separately: one part
// (the full data, or one fold) over one block of the lambda grid (sweep_blocks: blocks
// of lambda_block grid points, largest lambda first). A part's blocks form a chain: block
// b's exact path starts from the solution block b-1 ended with (WarmStart, stored with
// that unit, so a resume continues from the last committed block), block 0 from its own
// continuation. Given its predecessor's warm start a unit's result does not depend on
// which process computed it; shards therefore take whole chains. assemble_sweep turns a
// task's units into its SweepResult (means over folds, best and one-SE lambda, matrices
// at the best lambda); run_sweep does both in one process.
//
// free:      per fold, the linearised closed form at every lambda (R^2 of its own
//            prediction, of the exact forward map, and of the exact solution); on all
//            stimuli, exact solutions (warm-started path per block), losses and diagnostics.
// free_diag: W = diag(d) + F, linearised over the lambda x lambda_d grid (one
//            factorisation per lambda, see diagonal.hpp), R^2 per fold of its linear
//            prediction (r2_val, scored as free is) and of the exact forward map
//            (r2_val_fwd); the exact (L-BFGS) solution at the best pair on all stimuli.
#pragma once
#include <atomic>
#include <functional>
#include <future>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
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
  int lambda_block = 0;               // lambda grid points per work unit; 0: automatic
                                      // (sweep_lambda_block)
};

// Lambda grid points per work unit: lambda_block if set; else, for free with exact
// solutions, kDefaultExactBlock (each block is a checkpoint and a cold start); else the
// whole grid (linearised parts are cheap, and one unit per part computes its SVD once).
inline constexpr int kDefaultExactBlock = 10;
int sweep_lambda_block(const SweepConfig& cfg);
// The lambda blocks of every part: indices into cfg.lambdas, largest lambda first
// (ties in grid order), cut into blocks of sweep_lambda_block.
std::vector<std::vector<int>> sweep_blocks(const SweepConfig& cfg);
// Units are numbered block-major: unit i of a task with F folds is block i / (F + 1) of
// part i % (F + 1) - 1, so the parts' chains advance side by side.
inline int sweep_unit_part(int i, int folds) { return i % (folds + 1) - 1; }
inline int sweep_unit_block(int i, int folds) { return i / (folds + 1); }

struct SweepRow {
  int lambda_index = -1, lambda_d_index = -1;  // grid indices (lambda_d: -1 for free)
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
  int lambda_index = -1, lambda_d_index = -1;
  double lambda = 0, lambda_d = 0;
  double r2_val = 0, r2_val_fwd = 0, r2_val_exact = 0, r2_train = 0;
};

struct StoredMatrix {
  std::string name;    // W, W_lin, d, d_lin, eq1_lhs, eq1_rhs
  double lambda = 0, lambda_d = 0;
  int rows = 0, cols = 0;
  // Column-major, as cov::Matrix (the n x n W is moved in, never copied); a vector has
  // cols = 1. Empty: the entries are kept elsewhere (a unit's, in the results file).
  std::vector<double> data;
};

// A lambda at which a free task stores matrices (the best, store_lambdas, all with
// store = "all"), and the exact solution there (M* in U coordinates, W* = U M* U^T; null
// without exact solutions). form_stored makes its matrices from it: W (or W_lin), d, the
// eq. 1 pairs (and W_lin beside an exact W). Units keep only these r x r solutions, so an
// n x n matrix is formed once, when the summary is written, one lambda at a time.
struct StorePoint {
  double lambda = 0;
  std::shared_ptr<const Matrix> exact_M;
};

struct SweepResult {
  bool ok = true;
  std::string message;
  int n = 0, m = 0, r = 0, folds = 0;
  double s_max = 0;
  double loss_zero = 0;                  // L(0)
  // Sums over the task's units (thread seconds, wherever they ran):
  double svd_seconds = 0;               // the full-data SVD (once per process that needed it)
  double fold_svd_seconds = 0;          // the folds' SVDs (once per process and fold)
  double folds_seconds = 0;             // fold units (R^2 per lambda, exact paths), without SVDs
  double rows_seconds = 0;              // full-data units (losses, exact path, diagnostics)
  double seconds = 0;                   // all units, plus assembling the result
  int units = 0;                        // work units the result was assembled from
  std::vector<SweepRow> rows;            // lambda-major, then lambda_d
  std::vector<SweepFoldRow> fold_rows;
  int best = -1, one_se = -1;            // indices into rows (by the headline R^2)
  int best_exact = -1;                   // by r2_val_exact (free with exact solutions)
  std::vector<StoredMatrix> stored;      // formed (free: unless assembled with defer_stored)
  std::vector<StorePoint> store_points;  // free assembled with defer_stored: form_stored makes
                                         // each point's matrices (grid order)
  // free with exact solutions: full-data rows per ExactStatus, and exact fold solves that
  // ended uncertified (their r2_val_exact uses the best iterate).
  int exact_counts[4] = {0, 0, 0, 0};
  int fold_exact_uncertified = 0;

  // The headline validation R^2: of the exact solution at best_exact where computed,
  // else of the linearised model at best. NaN if there is none.
  double headline_r2() const;
};

// Where a block's exact path ended (its last solution and the predictor's state): the
// next block's start.
using WarmStart = ExactPathState;

// What one work unit computed. Rows carry their grid indices, so units can arrive in any
// order.
struct SweepUnitResult {
  int part = -1, block = 0;            // part -1: the full data; else the fold
  bool ok = true;                      // false: the part's X has rank 0 (message says so)
  std::string message;
  int n = 0, m = 0, r = 0;             // r: rank of this part's X
  double s_max = 0, loss_zero = 0;     // of the full data (loss_zero: full part only)
  double full_svd_seconds = 0;         // the full-data SVD, if this unit computed it
  double fold_svd_seconds = 0;         // this fold's SVD, if this unit computed it
  double seconds = 0;                  // the whole unit
  std::vector<SweepRow> rows;          // full part: losses, exact solution, diagnostics
  std::vector<SweepFoldRow> fold_rows; // fold part: R^2 of this fold
  std::vector<StoredMatrix> stored;    // full part with exact solutions: "M" (r x r), the
                                       // exact solution at each store_lambdas / store_all
                                       // lambda of this block (assemble_sweep forms W there)
  int exact_counts[4] = {0, 0, 0, 0};  // exact solves of this unit per ExactStatus
  std::shared_ptr<const WarmStart> warm_end;  // exact path's last solution (null: none)
  bool warm_started = false;           // block > 0 started from its predecessor's warm_end
};

// The reductions a process shares between the units of one data set: the full-data SVD
// (kept; every unit needs s_max for lambda units) and the folds' (the last few used).
// Thread-safe; a reduction is computed once even when two units ask at the same time.
class SweepData {
 public:
  // blas_threads > 1: the caller runs units one at a time, and every BLAS call of a unit
  // (SVDs, the lambda path's products) runs on that many threads; 1: units side by side.
  SweepData(const Problem& p, std::vector<Fold> folds, int blas_threads, int fold_capacity = 3);
  const Problem& problem() const { return p_; }
  int blas_threads() const { return blas_threads_; }
  const std::vector<Fold>& folds() const { return folds_; }
  // `seconds` gets the time spent computing it here (0 if cached or computed elsewhere).
  std::shared_ptr<const Reduced> full(double* seconds = nullptr);
  std::shared_ptr<const FoldData> fold(int f, double* seconds = nullptr);
  // Warm starts along a part's chain of blocks (per model: the reductions are shared by
  // a data set's models). set_warm publishes the end of (part, block) (null: it has none);
  // warm() returns it, waiting for it when that unit was announced with expect() and is
  // not published yet (it is being computed here), and null when it is neither published
  // nor expected (then the block starts cold).
  void expect(SweepModel model, int part, int block);
  void set_warm(SweepModel model, int part, int block, std::shared_ptr<const WarmStart> w);
  std::shared_ptr<const WarmStart> warm(SweepModel model, int part, int block);

 private:
  const Problem& p_;
  std::vector<Fold> folds_;
  int blas_threads_, capacity_;
  std::mutex mu_;
  std::shared_future<std::shared_ptr<const Reduced>> full_;
  std::map<int, std::shared_future<std::shared_ptr<const FoldData>>> folds_cache_;
  std::list<int> recent_;  // fold ids, most recent first
  struct Slot {
    std::promise<std::shared_ptr<const WarmStart>> promise;
    std::shared_future<std::shared_ptr<const WarmStart>> future = promise.get_future().share();
    bool expected = false, set = false;
  };
  std::map<std::tuple<int, int, int>, Slot> warm_;
};

// One work unit of a task whose folds are data.folds(): its exact path starts from
// data.warm(cfg.model, part, block - 1) and it publishes its own end with data.set_warm (always,
// null when it has none, so no successor waits forever). Throws InputError for bad
// lambdas. Returns with partial rows if `stop` was raised (the caller discards it).
SweepUnitResult run_sweep_unit(SweepData& data, const SweepConfig& cfg, int part, int block,
                               const std::atomic<bool>* stop);

// The task's result from all of its units (any order). Recomputes what depends on the
// best lambda: the exact solution there unless a unit stored it (the exact path of the
// best lambda's block, from the same start, so the same bits) and free_diag's exact
// solution at the best pair. free's stored matrices are formed from the units' exact
// solutions (or W_lin from the reduction) into `stored`, or, with `defer_stored`, listed in
// `store_points` for the caller to form (form_stored) and write one lambda at a time.
// Throws RuntimeError if a unit is missing or duplicated.
SweepResult assemble_sweep(SweepData& data, const SweepConfig& cfg,
                           std::vector<SweepUnitResult> units, const std::atomic<bool>* stop,
                           bool defer_stored = false);
// The matrices free stores at `at` (data.full()'s reduction; BLAS on data.blas_threads()).
std::vector<StoredMatrix> form_stored(SweepData& data, const StorePoint& at);

// "exact path: 39 certified, 2 budget; folds: 3 uncertified solves" (the task's message).
std::string exact_summary(const SweepResult& res);

// Bytes the stored matrices will take (printed before a store = "all" run).
double sweep_store_bytes(const SweepConfig& cfg, int n, int m);

// Every unit in this process (cfg.threads side by side, in sweep_unit_order), then
// assemble_sweep.
// p must have passed check_and_centre. Throws InputError for bad lambdas or folds;
// numerical trouble is reported in the rows (exact_status) or in ok/message.
SweepResult run_sweep(const Problem& p, const SweepConfig& cfg, const std::atomic<bool>* stop);

}  // namespace covfit::cov
