// The sweep job's tables (layout documented in docs/FORMAT.md).
//
// While a run goes on, work units commit into /sweep_units (SweepUnitTables, SWMR
// appendable, what resume and merge copy):
//   /sweep_units/units   one row per work unit (task, part, lambda block): the commit record
//   /sweep_units/lambda  full-data units: one row per grid point (losses, exact solution)
//   /sweep_units/folds   fold units: one row per grid point (this fold's R^2)
//   /sweep_units/matrix_index, /sweep_units/values   matrices stored by units
// When every unit is done (the run's end, or merge), the tasks' summaries are assembled
// from the units and written, on the finalize copy (no SWMR), as (SweepTables):
//
//   /sweep/tasks         one row per (data set, model): the commit record
//   /sweep/lambda        one row per lambda (and lambda_d): R^2, losses, certificate, diagnostics
//   /sweep/folds         per fold and lambda: validation R^2
//   /sweep/matrix_index  index of the stored matrices (W, d, eq. 1 pairs)
//   /sweep/matrices/<task id>/<name>   the stored matrices, float64 (lambda, rows, cols):
//                        each in the file once (format 4; format 3 also had /sweep/values)
//
// Units store r x r matrices only (exact solutions at the stored lambdas, path ends);
// the summary forms each n x n matrix once and writes it from its own buffer in pieces of
// a few MB (MatrixStacks), never copied whole.
//
// Plain row structs; their field lists (sweep_tables.cpp) are the only place a column is
// named. Converting a SweepResult into these rows is run/'s job.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "covfit/io/table.hpp"
#include "covfit/io/task_store.hpp"

namespace covfit::io {

// The rows a commit row of either sweep store points to (its last columns).
struct SweepRanges {
  std::int64_t lambda_offset = 0;
  std::int32_t lambda_len = 0;
  std::int64_t fold_offset = 0;
  std::int32_t fold_len = 0;
  std::int64_t matrix_offset = 0;
  std::int32_t matrix_len = 0;
};

struct SweepTaskRow : SweepRanges {
  std::int64_t id = 0;
  std::string data, model, status, message;
  std::int32_t n = 0, m = 0, r = 0, folds = 0, centred_by_covfit = 0;
  double s_max = 0, loss_zero = 0;
  std::string lambda_units;          // the job's: "absolute" or "s_max2"
  double lambda_unit = 1;            // lambda = lambda_job * lambda_unit (1 or s_max^2)
  std::string best_by;               // column of /sweep/lambda that picked best and one-SE
  double best_lambda = 0, best_lambda_d = 0, best_r2_val = 0, one_se_lambda = 0;
  double best_exact_lambda = 0, best_r2_val_exact = 0;
  double svd_seconds = 0, fold_svd_seconds = 0, folds_seconds = 0, rows_seconds = 0, seconds = 0;
  std::int32_t units = 0;
};

struct SweepLambdaRow {
  std::int64_t task_id = 0;
  std::string data, model;
  std::int32_t lambda_index = 0, lambda_d_index = -1;  // in the job's grids (-1: none)
  double lambda = 0, lambda_d = 0, lambda_job = 0, lambda_d_job = 0;
  double r2_val = 0, r2_val_sd = 0, r2_val_fwd = 0, r2_val_fwd_sd = 0;
  double r2_val_exact = 0, r2_val_exact_sd = 0, r2_train = 0;
  double loss_lin = 0, loss_linearized = 0, loss_exact = 0;
  std::string exact_status;
  double rel_grad = 0, gap_bound = 0;
  std::int32_t newton_iters = 0, cg_iters = 0;
  double exact_seconds = 0, eq1_residual = 0, dW = 0, kappa = 0, g_proxy = 0, q_proxy = 0;
  double rms_diag_lin = 0, rms_offdiag_lin = 0, rms_diag_exact = 0, rms_offdiag_exact = 0;
};

struct SweepFoldRow {
  std::int64_t task_id = 0;
  std::int32_t fold = 0;
  std::int32_t lambda_index = 0, lambda_d_index = -1;
  double lambda = 0, lambda_d = 0, r2_val = 0, r2_val_fwd = 0, r2_val_exact = 0, r2_train = 0;
};

struct SweepMatrixRow {
  std::int64_t task_id = 0;
  std::string name;
  double lambda = 0, lambda_d = 0;
  std::int64_t rows = 0, cols = 0;
  std::int64_t offset = 0;  // units: first element in /sweep_units/values (from values_offset)
  std::int64_t index = 0;   // summary: index along /sweep/matrices/<task id>/<name>'s first axis
};

// A matrix's entries in memory, column-major (cov::Matrix's layout; a vector: cols = 1).
struct MatrixView {
  const double* data = nullptr;
  std::int64_t rows = 0, cols = 0;
};

// /sweep/matrices/<task id>/<name> of one task: one float64 dataset (slabs, rows, cols)
// per name, created by `stack` and filled slab by slab (each written row-major from its
// own column-major buffer in pieces of a few MB), then `finish` writes its attributes.
class MatrixStacks {
 public:
  // On a file opened without SWMR (finalize): the group, with attributes data and model.
  MatrixStacks(hid_t file, const SweepTaskRow& task);
  void stack(const std::string& name, std::int64_t slabs, std::int64_t rows, std::int64_t cols);
  void write(const std::string& name, std::int64_t slab, const MatrixView& m);
  // lambda, lambda_d, lambda_job, lambda_d_job (one per slab), lambda_units, best_index
  // (the slab at the task's best lambda, -1: none) and dims.
  void finish(const std::string& name, const std::vector<double>& lambda, const std::vector<double>& lambda_d,
              const std::vector<double>& lambda_job, const std::vector<double>& lambda_d_job,
              std::int64_t best_index);

 private:
  hid_t file_;
  std::string group_, lambda_units_;
};

// One work unit's commit row.
struct SweepUnitRow : SweepRanges {
  std::int64_t id = 0, task_id = 0;
  std::string data, model, status, message;
  std::string run;  // which run computed it: "<host>:<pid>:<start time>"
  std::int32_t part = -1, block = 0, blocks = 1;
  std::int32_t n = 0, m = 0, r = 0;
  double s_max = 0, loss_zero = 0;
  double full_svd_seconds = 0, fold_svd_seconds = 0, seconds = 0;
  std::int32_t exact_converged = 0, exact_not_converged = 0, exact_budget = 0, exact_interrupted = 0;
  std::int64_t values_offset = 0, values_len = 0;
};

// The two sweep stores (/sweep_units for work units, /sweep for the tasks' summaries)
// are one mechanism: a commit table (`Commit` rows) with the dependents lambda rows, fold
// rows and the matrix index, plus, for units, the matrices' float64 values.
template <class Commit>
class SweepStore {
 public:
  SweepStore(const SweepStore&) = delete;
  void create(hid_t file) { store_.create(file); }
  void open(hid_t file) { store_.open(file); }
  TaskStore& store() { return store_; }
  const TaskStore& store() const { return store_; }
  void flush() { store_.flush(); }

  const Table<SweepLambdaRow>& lambdas() const { return lambdas_; }
  const Table<SweepFoldRow>& folds() const { return folds_; }
  const Table<SweepMatrixRow>& matrices() const { return matrices_; }

  // Everything committed in `file` (any order).
  struct Contents {
    std::vector<Commit> commits;
    std::vector<SweepLambdaRow> lambdas;
    std::vector<SweepFoldRow> folds;
    std::vector<SweepMatrixRow> matrices;
  };

 protected:
  // `values`: whether the store has a /values dependent (units).
  SweepStore(const char* group, Table<Commit> commit, const char* lambda_desc, const char* fold_desc,
             const char* matrix_desc, bool values);
  // `values` (a store with values only): the matrices' entries, in `matrices`' order.
  void append_rows(const Commit& commit, const std::vector<SweepLambdaRow>& lambdas,
                   const std::vector<SweepFoldRow>& folds, const std::vector<SweepMatrixRow>& matrices,
                   const std::vector<MatrixView>& values);
  Contents read_contents(hid_t file) const;

  std::string group_;
  Table<Commit> commit_;
  Table<SweepLambdaRow> lambdas_;
  Table<SweepFoldRow> folds_;
  Table<SweepMatrixRow> matrices_;
  TaskStore store_;
};

class SweepUnitTables : public SweepStore<SweepUnitRow> {
 public:
  SweepUnitTables();
  // `values`: the entries of each matrix row, stored as they are in memory (units store
  // only r x r symmetric matrices: exact solutions and path ends).
  void append(const SweepUnitRow& unit, const std::vector<SweepLambdaRow>& lambdas,
              const std::vector<SweepFoldRow>& folds, const std::vector<SweepMatrixRow>& matrices,
              const std::vector<MatrixView>& values) {
    append_rows(unit, lambdas, folds, matrices, values);
  }
  static Contents read(hid_t file) { return SweepUnitTables().read_contents(file); }
  // `count` entries of /sweep_units/values from `offset` (small matrices: path ends).
  static std::vector<double> read_values(hid_t file, std::int64_t offset, std::int64_t count);
  const Table<SweepUnitRow>& units() const { return commit_; }
  static constexpr const char* kGroup = "/sweep_units";
};

class SweepTables : public SweepStore<SweepTaskRow> {
 public:
  SweepTables();
  // On a file opened without SWMR (finalize): the tables, and the group /sweep/matrices.
  void create(hid_t file);
  // `matrices`: the index rows (task_id, name, lambda, ..., index) of the task's
  // matrices, which its MatrixStacks has written.
  void append(const SweepTaskRow& task, const std::vector<SweepLambdaRow>& lambdas,
              const std::vector<SweepFoldRow>& folds, const std::vector<SweepMatrixRow>& matrices) {
    append_rows(task, lambdas, folds, matrices, {});
  }
  const Table<SweepTaskRow>& tasks() const { return commit_; }
  static constexpr const char* kGroup = "/sweep";
};

}  // namespace covfit::io
