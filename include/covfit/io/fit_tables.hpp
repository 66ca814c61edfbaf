// The fit job's tables in a results file (layout documented in docs/FORMAT.md).
//
//   /data/<name>/{x, y, values}   input points, written once at creation
//   /fit/tasks     one row per finished task (the commit record, written last)
//   /fit/curves    monitor rows; a task owns rows [curve_offset, curve_offset + curve_len)
//   /fit/kernels   final canonical kernels; rows [kernel_offset, kernel_offset + K)
//   /fit/raw       final raw parameters (float64); [raw_offset, raw_offset + raw_len)
//
// A task row is appended after its curve, kernel and raw rows, and the tables are
// flushed in that order, so a reader that sees a task row can read all its data.
#pragma once
#include <cstdint>
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
  // In a resumed file: open, and drop rows that no task row points to (left by a kill).
  void open_and_repair(hid_t file);
  std::vector<std::int64_t> done_ids() const;
  void append(const job::TaskCoord& task, const std::string& data_name, double data_variance,
              const rbf::FitResult& result);
  void flush();  // dependents first, tasks last
  std::int64_t rows() const { return static_cast<std::int64_t>(tasks_.size()); }

  const TableLayout& task_layout() const { return task_layout_; }

 private:
  int n_targets_;
  TableLayout task_layout_, curve_layout_, kernel_layout_;
  AppendTable tasks_, curves_, kernels_, raw_;
};

}  // namespace covfit::io
