#include "covfit/io/sweep_tables.hpp"

#include <cmath>
#include <cstring>

namespace covfit::io {
namespace {

double at_or_nan(const std::vector<cov::SweepRow>& rows, int i, double cov::SweepRow::*field) {
  return i >= 0 ? rows[static_cast<std::size_t>(i)].*field : std::nan("");
}

template <class T>
void append_bytes(std::vector<char>& buf, const T& row) {
  buf.insert(buf.end(), row.bytes().begin(), row.bytes().end());
}

}  // namespace

SweepTables::SweepTables()
    : task_layout_({{"id", Column::i64},          {"data", Column::str, 32},
                    {"model", Column::str, 16},   {"status", Column::str, 16},
                    {"message", Column::str, 64}, {"n", Column::i32},
                    {"m", Column::i32},           {"r", Column::i32},
                    {"folds", Column::i32},       {"centred_by_covfit", Column::i32},
                    {"s_max", Column::f64},       {"loss_zero", Column::f64},
                    {"best_lambda", Column::f64}, {"best_lambda_d", Column::f64},
                    {"best_r2_val", Column::f64}, {"one_se_lambda", Column::f64},
                    {"best_exact_lambda", Column::f64}, {"best_r2_val_exact", Column::f64},
                    {"svd_seconds", Column::f64}, {"folds_seconds", Column::f64},
                    {"rows_seconds", Column::f64}, {"seconds", Column::f64},
                    {"lambda_offset", Column::i64}, {"lambda_len", Column::i32},
                    {"fold_offset", Column::i64}, {"fold_len", Column::i32},
                    {"matrix_offset", Column::i64}, {"matrix_len", Column::i32},
                    {"values_offset", Column::i64}, {"values_len", Column::i64}}),
      lambda_layout_({{"task_id", Column::i64},     {"data", Column::str, 32},
                      {"model", Column::str, 16},   {"lambda", Column::f64},
                      {"lambda_d", Column::f64},    {"r2_val", Column::f64},
                      {"r2_val_sd", Column::f64},   {"r2_val_fwd", Column::f64},
                      {"r2_val_fwd_sd", Column::f64}, {"r2_val_exact", Column::f64},
                      {"r2_val_exact_sd", Column::f64}, {"r2_train", Column::f64},
                      {"loss_lin", Column::f64},    {"loss_linearized", Column::f64},
                      {"loss_exact", Column::f64},  {"exact_status", Column::str, 16},
                      {"rel_grad", Column::f64},    {"gap_bound", Column::f64},
                      {"newton_iters", Column::i32}, {"cg_iters", Column::i32},
                      {"exact_seconds", Column::f64}, {"eq1_residual", Column::f64},
                      {"dW", Column::f64},          {"kappa", Column::f64},
                      {"g_proxy", Column::f64},     {"q_proxy", Column::f64},
                      {"rms_diag_lin", Column::f64}, {"rms_offdiag_lin", Column::f64},
                      {"rms_diag_exact", Column::f64}, {"rms_offdiag_exact", Column::f64}}),
      fold_layout_({{"task_id", Column::i64}, {"fold", Column::i32},
                    {"lambda", Column::f64},  {"lambda_d", Column::f64},
                    {"r2_val", Column::f64},  {"r2_val_fwd", Column::f64},
                    {"r2_val_exact", Column::f64}, {"r2_train", Column::f64}}),
      matrix_layout_({{"task_id", Column::i64}, {"name", Column::str, 16},
                      {"lambda", Column::f64},  {"lambda_d", Column::f64},
                      {"rows", Column::i64},    {"cols", Column::i64},
                      {"offset", Column::i64}}),
      store_("/sweep", "tasks", &task_layout_,
             {{"lambda", &lambda_layout_, "lambda_offset", "lambda_len", 1024},
              {"folds", &fold_layout_, "fold_offset", "fold_len", 2048},
              {"matrices", &matrix_layout_, "matrix_offset", "matrix_len", 64},
              {"values", nullptr, "values_offset", "values_len", 16384}}) {}

void SweepTables::create_data(hid_t file, const std::vector<data::CovData>& data) {
  for (const auto& d : data) {
    if (d.W0.size() == 0) continue;  // HDF5 input: the user has it; planted: keep it
    Handle g = create_group(file, "/data/" + d.name);
    data::matrix_to_hdf5(g.get(), "X", d.problem.X);
    data::matrix_to_hdf5(g.get(), "S", d.problem.S);
    data::matrix_to_hdf5(g.get(), "W0", d.W0);
  }
}

void SweepTables::append(std::int64_t id, const std::string& data_name, const std::string& model,
                         bool centred, const cov::SweepResult& r) {
  std::vector<std::vector<char>> rows(4);
  for (const auto& x : r.rows) {
    Row row(lambda_layout_);
    row.set("task_id", id).set("data", data_name).set("model", model);
    row.set("lambda", x.lambda).set("lambda_d", x.lambda_d);
    row.set("r2_val", x.r2_val).set("r2_val_sd", x.r2_val_sd);
    row.set("r2_val_fwd", x.r2_val_fwd).set("r2_val_fwd_sd", x.r2_val_fwd_sd);
    row.set("r2_val_exact", x.r2_val_exact).set("r2_val_exact_sd", x.r2_val_exact_sd);
    row.set("r2_train", x.r2_train).set("loss_lin", x.loss_lin);
    row.set("loss_linearized", x.loss_linearized).set("loss_exact", x.loss_exact);
    row.set("exact_status", x.exact_status).set("rel_grad", x.rel_grad).set("gap_bound", x.gap_bound);
    row.set("newton_iters", x.newton_iters).set("cg_iters", x.cg_iters);
    row.set("exact_seconds", x.exact_seconds).set("eq1_residual", x.diag.eq1_residual_exact);
    row.set("dW", x.diag.dW).set("kappa", x.diag.kappa).set("g_proxy", x.diag.g_proxy);
    row.set("q_proxy", x.diag.q_proxy).set("rms_diag_lin", x.diag.lin.rms_diag);
    row.set("rms_offdiag_lin", x.diag.lin.rms_offdiag).set("rms_diag_exact", x.diag.exact.rms_diag);
    row.set("rms_offdiag_exact", x.diag.exact.rms_offdiag);
    append_bytes(rows[0], row);
  }
  for (const auto& f : r.fold_rows) {
    Row row(fold_layout_);
    row.set("task_id", id).set("fold", f.fold).set("lambda", f.lambda).set("lambda_d", f.lambda_d);
    row.set("r2_val", f.r2_val).set("r2_val_fwd", f.r2_val_fwd).set("r2_val_exact", f.r2_val_exact);
    row.set("r2_train", f.r2_train);
    append_bytes(rows[1], row);
  }
  std::int64_t offset = 0;
  for (const auto& m : r.stored) {
    Row row(matrix_layout_);
    row.set("task_id", id).set("name", m.name).set("lambda", m.lambda).set("lambda_d", m.lambda_d);
    row.set("rows", static_cast<std::int64_t>(m.rows)).set("cols", static_cast<std::int64_t>(m.cols));
    row.set("offset", offset);
    append_bytes(rows[2], row);
    const std::size_t at = rows[3].size();
    rows[3].resize(at + 8 * m.data.size());
    std::memcpy(rows[3].data() + at, m.data.data(), 8 * m.data.size());
    offset += static_cast<std::int64_t>(m.data.size());
  }
  Row t(task_layout_);
  t.set("id", id).set("data", data_name).set("model", model);
  t.set("status", std::string(r.ok ? "ok" : "failed")).set("message", r.message);
  t.set("n", r.n).set("m", r.m).set("r", r.r).set("folds", r.folds);
  t.set("centred_by_covfit", centred ? 1 : 0).set("s_max", r.s_max).set("loss_zero", r.loss_zero);
  t.set("best_lambda", at_or_nan(r.rows, r.best, &cov::SweepRow::lambda));
  t.set("best_lambda_d", at_or_nan(r.rows, r.best, &cov::SweepRow::lambda_d));
  t.set("best_r2_val", r.headline_r2());
  t.set("one_se_lambda", at_or_nan(r.rows, r.one_se, &cov::SweepRow::lambda));
  t.set("best_exact_lambda", at_or_nan(r.rows, r.best_exact, &cov::SweepRow::lambda));
  t.set("best_r2_val_exact", at_or_nan(r.rows, r.best_exact, &cov::SweepRow::r2_val_exact));
  t.set("svd_seconds", r.svd_seconds).set("folds_seconds", r.folds_seconds);
  t.set("rows_seconds", r.rows_seconds).set("seconds", r.seconds);
  store_.append(t, rows);
}

}  // namespace covfit::io
