// The fit job's tables in a results file (layout documented in docs/FORMAT.md).
//
//   /data/<name>/{x, y, values}   input points, written once at creation
//   /fit/tasks     one row per finished task: the commit record (see task_store.hpp)
//   /fit/curves    monitor rows; a task owns rows [curve_offset, curve_offset + curve_len)
//   /fit/kernels   final canonical kernels; [kernel_offset, kernel_offset + kernel_len)
//   /fit/raw       final raw parameters (float64); [raw_offset, raw_offset + raw_len)
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "covfit/data/points.hpp"
#include "covfit/io/task_store.hpp"
#include "covfit/job/spec.hpp"
#include "covfit/rbf/fit.hpp"

namespace covfit::io {

class FitTables {
 public:
  explicit FitTables(int n_targets);
  FitTables(const FitTables&) = delete;
  // In a new file: the input data sets (/data/<name>), and the empty tables.
  static void create_data(hid_t file, const std::vector<data::PointData>& data);
  void create(hid_t file, const std::vector<double>& target_losses);
  void open(hid_t file) { store_.open(file); }
  TaskStore& store() { return store_; }
  const TaskStore& store() const { return store_; }

  void append(const job::TaskCoord& task, const std::string& data_name, double data_variance,
              const rbf::FitResult& result);
  void flush() { store_.flush(); }
  const TableLayout& task_layout() const { return task_layout_; }

 private:
  int n_targets_;
  TableLayout task_layout_, curve_layout_, kernel_layout_;
  TaskStore store_;
};

}  // namespace covfit::io
