// The fit job's tables in a results file (layout documented in docs/FORMAT.md).
//
//   /data/<name>/{x, y, values}   input points, written once at creation
//   /fit/tasks     one row per finished task: the commit record
//   /fit/curves    monitor rows; a task owns rows [curve_offset, curve_offset + curve_len)
//   /fit/kernels   final canonical kernels; rows [kernel_offset, kernel_offset + K)
//   /fit/raw       final raw parameters (float64); [raw_offset, raw_offset + raw_len)
//
// Task rows are held back until the rows they point to are flushed, so a reader (or a
// resume after a kill) that sees a task row finds all of its data.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "covfit/data/points.hpp"
#include "covfit/io/h5.hpp"
#include "covfit/job/spec.hpp"
#include "covfit/rbf/fit.hpp"

namespace covfit::io {

class FitTables {
 public:
  explicit FitTables(int n_targets);
  // In a new file: the tables and the input data sets.
  void create(hid_t file, const std::vector<data::PointData>& data,
              const std::vector<double>& target_losses);
  // Existing tables (reading, salvage source).
  void open(hid_t file);
  // Copy every complete, consistent task of `src` for which accept(id) is true into
  // these (new) tables, in id order; returns the ids copied. A task whose rows cannot
  // be read or do not match is skipped (it will be recomputed).
  std::vector<std::int64_t> salvage_from(const FitTables& src,
                                         const std::function<bool(std::int64_t)>& accept);
  std::vector<std::int64_t> done_ids() const;
  void append(const job::TaskCoord& task, const std::string& data_name, double data_variance,
              const rbf::FitResult& result);
  void flush();  // dependents, then the held-back task rows
  std::int64_t rows() const { return static_cast<std::int64_t>(tasks_.size() + pending_rows_); }

  const TableLayout& task_layout() const { return task_layout_; }

 private:
  void append_task_row(const Row& row);
  int n_targets_;
  TableLayout task_layout_, curve_layout_, kernel_layout_;
  AppendTable tasks_, curves_, kernels_, raw_;
  std::vector<char> pending_;  // task rows waiting for their dependents' flush
  std::size_t pending_rows_ = 0;
};

}  // namespace covfit::io
