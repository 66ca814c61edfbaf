#include "covfit/io/fit_tables.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <set>

#include "covfit/core/error.hpp"

namespace covfit::io {
namespace {

std::vector<Column> task_columns(int n_targets) {
  std::vector<Column> c = {
      {"id", Column::i64},           {"data", Column::str, 32},
      {"param", Column::str, 16},    {"K", Column::i32},
      {"optimizer", Column::str, 8}, {"lr_weight", Column::f64},
      {"lr_centre", Column::f64},    {"lr_shape", Column::f64},
      {"restart", Column::i32},      {"seed", Column::i64},
      {"status", Column::str, 16},   {"steps", Column::i32},
      {"initial_loss", Column::f64}, {"final_loss", Column::f64},
      {"final_rel_loss", Column::f64}, {"wall_seconds", Column::f64},
      {"grad_norm_weight", Column::f64}, {"grad_norm_centre", Column::f64},
      {"grad_norm_shape", Column::f64}, {"sigma_min", Column::f64},
      {"sigma_max", Column::f64},    {"cond_max", Column::f64},
      {"curve_offset", Column::i64}, {"curve_len", Column::i32},
      {"kernel_offset", Column::i64}, {"kernel_len", Column::i32},
      {"raw_offset", Column::i64},
      {"raw_len", Column::i32},      {"message", Column::str, 64}};
  if (n_targets > 0) {
    c.push_back({"steps_to_target", Column::i32, n_targets});
    c.push_back({"seconds_to_target", Column::f64, n_targets});
  }
  return c;
}

}  // namespace

FitTables::FitTables(int n_targets)
    : n_targets_(n_targets),
      task_layout_(task_columns(n_targets)),
      curve_layout_({{"task_id", Column::i64},
                     {"step", Column::i32},
                     {"seconds", Column::f64},
                     {"loss", Column::f64},
                     {"grad_norm_weight", Column::f64},
                     {"grad_norm_centre", Column::f64},
                     {"grad_norm_shape", Column::f64},
                     {"sigma_min", Column::f64},
                     {"sigma_max", Column::f64},
                     {"cond_max", Column::f64}}),
      kernel_layout_({{"task_id", Column::i64},
                      {"k", Column::i32},
                      {"mu_x", Column::f64},
                      {"mu_y", Column::f64},
                      {"P11", Column::f64},
                      {"P12", Column::f64},
                      {"P22", Column::f64},
                      {"w", Column::f64}}),
      store_("/fit", "tasks", &task_layout_,
             {{"curves", &curve_layout_, "curve_offset", "curve_len", 1024},
              {"kernels", &kernel_layout_, "kernel_offset", "kernel_len", 512},
              {"raw", nullptr, "raw_offset", "raw_len", 4096}}) {}

void FitTables::create_data(hid_t file, const std::vector<data::PointData>& data) {
  for (const auto& d : data) {
    Handle g = create_group(file, "/data/" + d.name);
    hsize_t n = d.x.size();
    write_array(g.get(), "x", {n}, d.x.data());
    write_array(g.get(), "y", {n}, d.y.data());
    write_array(g.get(), "values", {n}, d.values.data());
    write_attr(g.get(), "variance", d.variance());
    if (!d.planted.empty()) {
      std::vector<double> flat;
      for (const auto& k : d.planted) flat.insert(flat.end(), {k.mx, k.my, k.p11, k.p12, k.p22, k.w});
      write_array(g.get(), "planted_kernels", {d.planted.size(), 6}, flat.data());
    }
  }
}

void FitTables::create(hid_t file, const std::vector<double>& target_losses) {
  store_.create(file);
  write_attr(store_.commit_id(), "target_losses", target_losses);
}

void FitTables::append(const job::TaskCoord& task, const std::string& data_name,
                       double data_variance, const rbf::FitResult& r) {
  std::vector<std::vector<char>> rows(3);
  std::vector<char>& buf = rows[0];
  for (const auto& c : r.curve) {
    Row row(curve_layout_);
    row.set("task_id", task.id).set("step", c.step).set("seconds", c.seconds).set("loss", c.loss);
    row.set("grad_norm_weight", c.grad_norm[0]).set("grad_norm_centre", c.grad_norm[1]);
    row.set("grad_norm_shape", c.grad_norm[2]).set("sigma_min", c.sigma_min);
    row.set("sigma_max", c.sigma_max).set("cond_max", c.cond_max);
    buf.insert(buf.end(), row.bytes().begin(), row.bytes().end());
  }
  for (std::size_t k = 0; k < r.kernels.size(); ++k) {
    const auto& K = r.kernels[k];
    Row row(kernel_layout_);
    row.set("task_id", task.id).set("k", static_cast<int>(k)).set("mu_x", K.mx).set("mu_y", K.my);
    row.set("P11", K.p11).set("P12", K.p12).set("P22", K.p22).set("w", K.w);
    rows[1].insert(rows[1].end(), row.bytes().begin(), row.bytes().end());
  }
  rows[2].resize(8 * r.raw.size());
  std::memcpy(rows[2].data(), r.raw.data(), rows[2].size());

  const rbf::Checkpoint& last = r.final;  // monitors of the returned parameters
  Row row(task_layout_);
  row.set("id", task.id).set("data", data_name).set("param", std::string(rbf::param_name(task.param)));
  row.set("K", task.K).set("optimizer", std::string(rbf::optimizer_name(task.optimizer)));
  row.set("lr_weight", task.lr_weight).set("lr_centre", task.lr_centre).set("lr_shape", task.lr_shape);
  row.set("restart", task.restart).set("seed", static_cast<std::int64_t>(task.seed));
  row.set("status", std::string(rbf::status_name(r.status))).set("steps", r.steps);
  row.set("initial_loss", r.initial_loss).set("final_loss", r.final_loss);
  row.set("final_rel_loss", data_variance > 0 ? r.final_loss / data_variance : std::nan(""));
  row.set("wall_seconds", r.seconds);
  row.set("grad_norm_weight", last.grad_norm[0]).set("grad_norm_centre", last.grad_norm[1]);
  row.set("grad_norm_shape", last.grad_norm[2]).set("sigma_min", last.sigma_min);
  row.set("sigma_max", last.sigma_max).set("cond_max", last.cond_max);
  row.set("message", r.message);
  for (int i = 0; i < n_targets_; ++i) {
    row.set("steps_to_target", static_cast<std::int64_t>(r.steps_to_target[static_cast<std::size_t>(i)]), i);
    row.set("seconds_to_target", r.seconds_to_target[static_cast<std::size_t>(i)], i);
  }
  store_.append(row, rows);
}

}  // namespace covfit::io
