// The sweep job's tables (layout documented in docs/FORMAT.md).
//
// While a run goes on, work units commit into /sweep_units (SweepUnitTables, SWMR
// appendable, what resume and merge copy):
//   /sweep_units/units   one row per work unit (task, part, lambda block): the commit record
//   /sweep_units/lambda  full-data units: one row per grid point (losses, exact solution)
//   /sweep_units/folds   fold units: one row per grid point (this fold's R^2)
//   /sweep_units/matrix_index, /sweep_units/values   matrices stored by units
// When every unit is done (the run's end, or merge), the tasks' summaries are assembled
// from the units and written as (SweepTables):
//
//   /sweep/tasks         one row per (data set, model): the commit record
//   /sweep/lambda        one row per lambda (and lambda_d): R^2, losses, certificate, diagnostics
//   /sweep/folds         per fold and lambda: validation R^2
//   /sweep/matrix_index  index of stored matrices (W, d, eq. 1 pairs) into /sweep/values
//   /sweep/values        float64; a matrix's `offset` counts from its task's values_offset
//   /sweep/matrices/<task id>/<name>   written when the file is complete (finalize):
//                        every stored matrix as a plain dataset (lambda, rows, cols)
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

struct SweepTaskRow {
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
  std::int64_t lambda_offset = 0;
  std::int32_t lambda_len = 0;
  std::int64_t fold_offset = 0;
  std::int32_t fold_len = 0;
  std::int64_t matrix_offset = 0;
  std::int32_t matrix_len = 0;
  std::int64_t values_offset = 0, values_len = 0;
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
  std::int64_t rows = 0, cols = 0, offset = 0;
};

// One work unit's commit row.
struct SweepUnitRow {
  std::int64_t id = 0, task_id = 0;
  std::string data, model, status, message;
  std::string run;  // which run computed it: "<host>:<pid>:<start time>"
  std::int32_t part = -1, block = 0, blocks = 1;
  std::int32_t n = 0, m = 0, r = 0;
  double s_max = 0, loss_zero = 0;
  double full_svd_seconds = 0, fold_svd_seconds = 0, seconds = 0;
  std::int32_t exact_converged = 0, exact_not_converged = 0, exact_budget = 0, exact_interrupted = 0;
  std::int64_t lambda_offset = 0;
  std::int32_t lambda_len = 0;
  std::int64_t fold_offset = 0;
  std::int32_t fold_len = 0;
  std::int64_t matrix_offset = 0;
  std::int32_t matrix_len = 0;
  std::int64_t values_offset = 0, values_len = 0;
};

class SweepUnitTables {
 public:
  SweepUnitTables();
  SweepUnitTables(const SweepUnitTables&) = delete;
  void create(hid_t file) { store_.create(file); }
  void open(hid_t file) { store_.open(file); }
  TaskStore& store() { return store_; }
  const TaskStore& store() const { return store_; }
  void append(const SweepUnitRow& unit, const std::vector<SweepLambdaRow>& lambdas,
              const std::vector<SweepFoldRow>& folds, const std::vector<SweepMatrixRow>& matrices,
              const std::vector<double>& values);
  void flush() { store_.flush(); }

  // Everything committed in `file` (any order), and one unit's stored matrix entries.
  struct Contents {
    std::vector<SweepUnitRow> units;
    std::vector<SweepLambdaRow> lambdas;
    std::vector<SweepFoldRow> folds;
    std::vector<SweepMatrixRow> matrices;
  };
  static Contents read(hid_t file);
  static std::vector<double> read_values(hid_t file, std::int64_t offset, std::int64_t count);

  const Table<SweepUnitRow>& units() const { return units_; }
  const Table<SweepLambdaRow>& lambdas() const { return lambdas_; }
  const Table<SweepFoldRow>& folds() const { return folds_; }
  const Table<SweepMatrixRow>& matrices() const { return matrices_; }
  static constexpr const char* kGroup = "/sweep_units";

 private:
  Table<SweepUnitRow> units_;
  Table<SweepLambdaRow> lambdas_;
  Table<SweepFoldRow> folds_;
  Table<SweepMatrixRow> matrices_;
  TaskStore store_;
};

class SweepTables {
 public:
  SweepTables();
  SweepTables(const SweepTables&) = delete;
  void create(hid_t file);
  void open(hid_t file) { store_.open(file); }
  TaskStore& store() { return store_; }
  const TaskStore& store() const { return store_; }
  // `values`: the matrices' entries, row-major, at each matrix row's `offset`.
  void append(const SweepTaskRow& task, const std::vector<SweepLambdaRow>& lambdas,
              const std::vector<SweepFoldRow>& folds, const std::vector<SweepMatrixRow>& matrices,
              const std::vector<double>& values);
  void flush() { store_.flush(); }

  // In a complete, closed file (opened read-write without SWMR): every stored matrix as
  // /sweep/matrices/<task id>/<name>, float64 (lambda, rows, cols), lambdas ascending,
  // with attributes lambda, lambda_d, lambda_job, lambda_d_job, best_index, data, model.
  // Does nothing if /sweep/matrices exists.
  static void write_matrix_datasets(hid_t file);

  const Table<SweepTaskRow>& tasks() const { return tasks_; }
  const Table<SweepLambdaRow>& lambdas() const { return lambdas_; }
  const Table<SweepFoldRow>& folds() const { return folds_; }
  const Table<SweepMatrixRow>& matrices() const { return matrices_; }
  static constexpr const char* kGroup = "/sweep";

 private:
  Table<SweepTaskRow> tasks_;
  Table<SweepLambdaRow> lambdas_;
  Table<SweepFoldRow> folds_;
  Table<SweepMatrixRow> matrices_;
  TaskStore store_;
};

}  // namespace covfit::io
