// The fit job's tables in a results file (layout documented in docs/FORMAT.md):
//
//   /fit/tasks     one row per finished task: the commit record (see task_store.hpp)
//   /fit/curves    monitor rows; a task owns rows [curve_offset, curve_offset + curve_len)
//   /fit/kernels   final canonical kernels; [kernel_offset, kernel_offset + kernel_len)
//   /fit/raw       final raw parameters (float64); [raw_offset, raw_offset + raw_len)
//   /fit/summary   one row per (data, param, optimizer, K) group of /fit/tasks, written when
//                  the file is complete (finalize); see summarise_fit
//
// Plain row structs; their field lists (fit_tables.cpp) are the only place a column is
// named. Converting a FitResult into these rows is run/'s job.
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "covfit/io/table.hpp"
#include "covfit/io/task_store.hpp"

namespace covfit::io {

struct FitTaskRow {
  std::int64_t id = 0;
  std::string data, param;
  std::int32_t K = 0;
  std::string optimizer;
  double lr_weight = 0, lr_centre = 0, lr_shape = 0;
  std::int32_t restart = 0;
  std::int64_t seed = 0;
  std::string status;
  std::int32_t steps = 0;
  double initial_loss = 0, final_loss = 0, final_rel_loss = 0, wall_seconds = 0;
  double grad_norm_weight = 0, grad_norm_centre = 0, grad_norm_shape = 0;
  double sigma_min = 0, sigma_max = 0, cond_max = 0;
  std::int64_t curve_offset = 0;  // filled in by the task store
  std::int32_t curve_len = 0;
  std::int64_t kernel_offset = 0;
  std::int32_t kernel_len = 0;
  std::int64_t raw_offset = 0;
  std::int32_t raw_len = 0;
  std::string message;
  double stop_loss = 0;  // the loss this task stopped at (status reached_target); 0: none
  std::vector<std::int32_t> steps_to_target;  // one per target level
  std::vector<double> seconds_to_target;
};

struct FitCurveRow {
  std::int64_t task_id = 0;
  std::int32_t step = 0;
  double seconds = 0, loss = 0;
  double grad_norm_weight = 0, grad_norm_centre = 0, grad_norm_shape = 0;
  double sigma_min = 0, sigma_max = 0, cond_max = 0;
};

struct FitKernelRow {
  std::int64_t task_id = 0;
  std::int32_t k = 0;
  double mu_x = 0, mu_y = 0, P11 = 0, P12 = 0, P22 = 0, w = 0;
};

// One row of /fit/summary: a group of tasks with the same (data, param, optimizer, K);
// restarts and learning rates are pooled. Medians are over the tasks whose value is finite.
struct FitSummaryRow {
  static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  std::string data, param, optimizer;
  std::int32_t K = 0;
  std::int64_t tasks = 0, failed = 0, on_target = 0;
  double level = kNaN;  // the success level (see summarise_fit); NaN if none
  std::int64_t reached = 0;
  double frac_reached = kNaN;
  double best_loss = kNaN, median_final_loss = kNaN, median_final_rel_loss = kNaN;
  double median_steps = kNaN, median_wall_seconds = kNaN, median_seconds_to_level = kNaN;
};

// The one implementation of the per-group summary (docs/FORMAT.md, "/fit/summary"): it is
// stored in the file when the file is complete, `covfit inspect` shows it (live on a file
// being written), and the Python reader reads the stored table. Success level of a group:
// the tightest `target_losses` level not below the largest stop_loss of its tasks (a task
// that stops at stop_loss cannot reach a tighter level); without a stop target, the
// tightest level. `reached` counts the tasks with a finite seconds_to_target at it.
// Rows are ordered by (param, optimizer, data, K). Rows with an empty status are skipped.
std::vector<FitSummaryRow> summarise_fit(const std::vector<FitTaskRow>& tasks,
                                         const std::vector<double>& target_losses);

class FitTables {
 public:
  explicit FitTables(int n_targets);
  FitTables(const FitTables&) = delete;
  void create(hid_t file, const std::vector<double>& target_losses);
  void open(hid_t file) { store_.open(file); }
  TaskStore& store() { return store_; }
  const TaskStore& store() const { return store_; }
  void append(const FitTaskRow& task, const std::vector<FitCurveRow>& curve,
              const std::vector<FitKernelRow>& kernels, const std::vector<double>& raw);
  void flush() { store_.flush(); }

  const Table<FitTaskRow>& tasks() const { return tasks_; }
  const Table<FitCurveRow>& curves() const { return curves_; }
  const Table<FitKernelRow>& kernels() const { return kernels_; }
  const Table<FitSummaryRow>& summary() const { return summary_; }
  static constexpr const char* kGroup = "/fit";

  // A complete file, open read-write without SWMR: (re)writes /fit/summary from /fit/tasks
  // and its target_losses (summarise_fit).
  static void write_summary(hid_t file);
  // The stored /fit/summary (read through its own layout); empty if the file has none.
  static std::vector<FitSummaryRow> read_summary(hid_t file);

 private:
  Table<FitTaskRow> tasks_;
  Table<FitCurveRow> curves_;
  Table<FitKernelRow> kernels_;
  Table<FitSummaryRow> summary_;
  TaskStore store_;
};

}  // namespace covfit::io
