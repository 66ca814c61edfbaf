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
      {"kernel_offset", Column::i64}, {"raw_offset", Column::i64},
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
                      {"w", Column::f64}}) {}

void FitTables::create(hid_t file, const std::vector<data::PointData>& data,
                       const std::vector<double>& target_losses) {
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
  create_group(file, "/fit");
  tasks_ = AppendTable::create(file, "/fit/tasks", &task_layout_, 64);
  curves_ = AppendTable::create(file, "/fit/curves", &curve_layout_, 1024);
  kernels_ = AppendTable::create(file, "/fit/kernels", &kernel_layout_, 512);
  raw_ = AppendTable::create(file, "/fit/raw", nullptr, 4096);
  write_attr(tasks_.id(), "target_losses", target_losses);
}

void FitTables::open(hid_t file) {
  tasks_ = AppendTable::open(file, "/fit/tasks", &task_layout_);
  curves_ = AppendTable::open(file, "/fit/curves", &curve_layout_);
  kernels_ = AppendTable::open(file, "/fit/kernels", &kernel_layout_);
  raw_ = AppendTable::open(file, "/fit/raw", nullptr);
}

std::vector<std::int64_t> FitTables::salvage_from(const FitTables& src,
                                                  const std::function<bool(std::int64_t)>& accept) {
  static const std::set<std::string> kStatuses = {"converged", "reached_target", "max_steps",
                                                  "diverged", "failed"};
  std::vector<std::int64_t> ids = src.tasks_.read_i64("id");
  std::vector<std::size_t> order(ids.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return ids[a] < ids[b]; });
  std::vector<std::int64_t> copied;
  std::set<std::int64_t> seen;
  const std::size_t row_bytes = task_layout_.row_bytes();
  for (std::size_t i : order) {
    try {
      std::vector<char> bytes = src.tasks_.read_rows(i, 1);
      Row row(task_layout_, bytes.data());
      const std::int64_t id = row.get_i64("id");
      if (!kStatuses.count(row.get_str("status")) || !accept(id) || seen.count(id)) continue;
      const auto coff = static_cast<hsize_t>(row.get_i64("curve_offset"));
      const auto clen = static_cast<hsize_t>(row.get_i64("curve_len"));
      const auto koff = static_cast<hsize_t>(row.get_i64("kernel_offset"));
      const auto K = static_cast<hsize_t>(row.get_i64("K"));
      const auto roff = static_cast<hsize_t>(row.get_i64("raw_offset"));
      const auto rlen = static_cast<hsize_t>(row.get_i64("raw_len"));
      if (coff + clen > src.curves_.size() || koff + K > src.kernels_.size() ||
          roff + rlen > src.raw_.size())
        continue;
      std::vector<char> curves = src.curves_.read_rows(coff, clen);
      std::vector<char> kernels = src.kernels_.read_rows(koff, K);
      std::vector<char> raw = src.raw_.read_rows(roff, rlen);
      bool consistent = true;
      for (hsize_t r = 0; r < clen; ++r)
        consistent &= Row(curve_layout_, curves.data() + r * curve_layout_.row_bytes()).get_i64("task_id") == id;
      for (hsize_t r = 0; r < K; ++r)
        consistent &= Row(kernel_layout_, kernels.data() + r * kernel_layout_.row_bytes()).get_i64("task_id") == id;
      if (!consistent) continue;
      row.set("curve_offset", static_cast<std::int64_t>(curves_.size()));
      row.set("kernel_offset", static_cast<std::int64_t>(kernels_.size()));
      row.set("raw_offset", static_cast<std::int64_t>(raw_.size()));
      curves_.append(curves.data(), clen);
      kernels_.append(kernels.data(), K);
      raw_.append(raw.data(), rlen);
      tasks_.append(row.bytes().data(), 1);
      (void)row_bytes;
      seen.insert(id);
      copied.push_back(id);
    } catch (const RuntimeError&) {
      continue;  // unreadable remains of a killed writer: recompute this task
    }
  }
  return copied;
}

std::vector<std::int64_t> FitTables::done_ids() const { return tasks_.read_i64("id"); }

void FitTables::append(const job::TaskCoord& task, const std::string& data_name,
                       double data_variance, const rbf::FitResult& r) {
  const std::int64_t curve_offset = static_cast<std::int64_t>(curves_.size());
  const std::int64_t kernel_offset = static_cast<std::int64_t>(kernels_.size());
  const std::int64_t raw_offset = static_cast<std::int64_t>(raw_.size());

  std::vector<char> buf;
  for (const auto& c : r.curve) {
    Row row(curve_layout_);
    row.set("task_id", task.id).set("step", c.step).set("seconds", c.seconds).set("loss", c.loss);
    row.set("grad_norm_weight", c.grad_norm[0]).set("grad_norm_centre", c.grad_norm[1]);
    row.set("grad_norm_shape", c.grad_norm[2]).set("sigma_min", c.sigma_min);
    row.set("sigma_max", c.sigma_max).set("cond_max", c.cond_max);
    buf.insert(buf.end(), row.bytes().begin(), row.bytes().end());
  }
  curves_.append(buf.data(), r.curve.size());
  buf.clear();
  for (std::size_t k = 0; k < r.kernels.size(); ++k) {
    const auto& K = r.kernels[k];
    Row row(kernel_layout_);
    row.set("task_id", task.id).set("k", static_cast<int>(k)).set("mu_x", K.mx).set("mu_y", K.my);
    row.set("P11", K.p11).set("P12", K.p12).set("P22", K.p22).set("w", K.w);
    buf.insert(buf.end(), row.bytes().begin(), row.bytes().end());
  }
  kernels_.append(buf.data(), r.kernels.size());
  raw_.append(r.raw.data(), r.raw.size());

  const rbf::Checkpoint last = r.curve.empty() ? rbf::Checkpoint{} : r.curve.back();
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
  row.set("curve_offset", curve_offset).set("curve_len", static_cast<int>(r.curve.size()));
  row.set("kernel_offset", kernel_offset).set("raw_offset", raw_offset);
  row.set("raw_len", static_cast<int>(r.raw.size())).set("message", r.message);
  for (int i = 0; i < n_targets_; ++i) {
    row.set("steps_to_target", static_cast<std::int64_t>(r.steps_to_target[static_cast<std::size_t>(i)]), i);
    row.set("seconds_to_target", r.seconds_to_target[static_cast<std::size_t>(i)], i);
  }
  pending_.insert(pending_.end(), row.bytes().begin(), row.bytes().end());
  ++pending_rows_;
}

void FitTables::flush() {
  curves_.flush();
  kernels_.flush();
  raw_.flush();
  if (pending_rows_) {
    tasks_.append(pending_.data(), pending_rows_);
    pending_.clear();
    pending_rows_ = 0;
  }
  tasks_.flush();
}

}  // namespace covfit::io
