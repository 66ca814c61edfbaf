// The sweep job's tables (layout documented in docs/FORMAT.md):
//
//   /data/<name>/{X, S, W0}  planted inputs (row-major, as numpy sees them)
//   /sweep/tasks     one row per (data set, model): the commit record
//   /sweep/lambda    one row per lambda (and lambda_d): R^2, losses, certificate, diagnostics
//   /sweep/folds     per fold and lambda: validation R^2
//   /sweep/matrices  index of stored matrices (W, d, eq. 1 pairs) into /sweep/values
//   /sweep/values    float64; a matrix's `offset` counts from its task's values_offset
#pragma once
#include <string>
#include <vector>

#include "covfit/cov/sweep.hpp"
#include "covfit/data/cov_data.hpp"
#include "covfit/io/task_store.hpp"

namespace covfit::io {

class SweepTables {
 public:
  SweepTables();
  SweepTables(const SweepTables&) = delete;
  static void create_data(hid_t file, const std::vector<data::CovData>& data);
  void create(hid_t file) { store_.create(file); }
  void open(hid_t file) { store_.open(file); }
  TaskStore& store() { return store_; }
  const TaskStore& store() const { return store_; }
  void append(std::int64_t id, const std::string& data_name, const std::string& model,
              bool centred, const cov::SweepResult& r);
  void flush() { store_.flush(); }

 private:
  TableLayout task_layout_, lambda_layout_, fold_layout_, matrix_layout_;
  TaskStore store_;
};

}  // namespace covfit::io
