#include "covfit/io/fit_tables.hpp"

namespace covfit::io {
namespace {

using T = FitTaskRow;
std::vector<Field<T>> task_fields() {
  return {
      field("id", &T::id, "", "task id = index in the job's grid (restart fastest, then lr_shape, lr_centre, lr_weight, optimizer, K, param, data)"),
      field("data", &T::data, 32, "", "data set name (/data/<name>)"),
      field("param", &T::param, 16, "", "parameterisation: full, isotropic, scaled_diag, direct_inverse, cholesky"),
      field("K", &T::K, "", "number of kernels"),
      field("optimizer", &T::optimizer, 8, "", "adam, lm, varpro"),
      field("lr_weight", &T::lr_weight, "", "Adam learning rate of the weights (unused by lm/varpro)"),
      field("lr_centre", &T::lr_centre, "", "Adam learning rate of the centres"),
      field("lr_shape", &T::lr_shape, "", "Adam learning rate of the shape parameters"),
      field("restart", &T::restart, "", "restart index"),
      field("seed", &T::seed, "", "seed of this task (from job seed and id), bit pattern of a uint64"),
      field("status", &T::status, 16, "", "converged, reached_target, max_steps, diverged, failed"),
      field("steps", &T::steps, "", "optimiser steps taken (LM: outer iterations)"),
      field("initial_loss", &T::initial_loss, "values^2", "MSE at step 0"),
      field("final_loss", &T::final_loss, "values^2", "MSE at the end"),
      field("final_rel_loss", &T::final_rel_loss, "", "final_loss / population variance of the data's values"),
      field("wall_seconds", &T::wall_seconds, "s", "seconds for the whole task (initialisation included)"),
      field("grad_norm_weight", &T::grad_norm_weight, "", "gradient norm of the weight group at the last checkpoint"),
      field("grad_norm_centre", &T::grad_norm_centre, "", "gradient norm of the centre group at the last checkpoint"),
      field("grad_norm_shape", &T::grad_norm_shape, "", "gradient norm of the shape group at the last checkpoint"),
      field("sigma_min", &T::sigma_min, "x", "smallest kernel width (1/sqrt of the eigenvalues of P) at the end"),
      field("sigma_max", &T::sigma_max, "x", "largest kernel width at the end"),
      field("cond_max", &T::cond_max, "", "largest condition number of P at the end"),
      field("curve_offset", &T::curve_offset, "row", "first row of /fit/curves"),
      field("curve_len", &T::curve_len, "rows", "rows in /fit/curves"),
      field("kernel_offset", &T::kernel_offset, "row", "first row of /fit/kernels"),
      field("kernel_len", &T::kernel_len, "rows", "rows in /fit/kernels (= K)"),
      field("raw_offset", &T::raw_offset, "element", "first element of /fit/raw"),
      field("raw_len", &T::raw_len, "elements", "elements of /fit/raw"),
      field("message", &T::message, 64, "", "human note for failures, empty otherwise"),
      field("stop_loss", &T::stop_loss, "values^2", "stopping target of this task (target_loss, or target_rel_variance x variance, the larger); 0: none"),
      field("steps_to_target", &T::steps_to_target, "steps", "first step whose loss was <= target_losses[i], -1 if never"),
      field("seconds_to_target", &T::seconds_to_target, "s", "seconds at that step, NaN if never"),
  };
}

using C = FitCurveRow;
std::vector<Field<C>> curve_fields() {
  return {
      field("task_id", &C::task_id, "", "task id"),
      field("step", &C::step, "steps", "optimiser step"),
      field("seconds", &C::seconds, "s", "since the task started"),
      field("loss", &C::loss, "values^2", "MSE"),
      field("grad_norm_weight", &C::grad_norm_weight, "", "norm of the raw gradient of the weights"),
      field("grad_norm_centre", &C::grad_norm_centre, "", "norm of the raw gradient of the centres"),
      field("grad_norm_shape", &C::grad_norm_shape, "", "norm of the raw gradient of the shape parameters"),
      field("sigma_min", &C::sigma_min, "x", "smallest kernel width"),
      field("sigma_max", &C::sigma_max, "x", "largest kernel width"),
      field("cond_max", &C::cond_max, "", "largest condition number of P"),
  };
}

using Kr = FitKernelRow;
std::vector<Field<Kr>> kernel_fields() {
  return {
      field("task_id", &Kr::task_id, "", "task id"),
      field("k", &Kr::k, "", "kernel index"),
      field("mu_x", &Kr::mu_x, "x", "centre, x"),
      field("mu_y", &Kr::mu_y, "x", "centre, y"),
      field("P11", &Kr::P11, "1/x^2", "precision P = [[P11, P12], [P12, P22]]"),
      field("P12", &Kr::P12, "1/x^2", "precision, off-diagonal"),
      field("P22", &Kr::P22, "1/x^2", "precision, (2, 2)"),
      field("w", &Kr::w, "values", "weight: f(x) = sum_k w_k exp(-1/2 (x - mu_k)^T P_k (x - mu_k))"),
  };
}

}  // namespace

FitTables::FitTables(int n_targets)
    : tasks_("tasks", "one row per finished task (the commit record)", task_fields(), n_targets),
      curves_("curves", "monitor rows, every log_every steps and at the last step", curve_fields()),
      kernels_("kernels", "final kernels in canonical form", kernel_fields()),
      store_(kGroup, "tasks", &tasks_.layout(),
             {{"curves", &curves_.layout(), "curve_offset", "curve_len", 1024},
              {"kernels", &kernels_.layout(), "kernel_offset", "kernel_len", 512},
              {"raw", nullptr, "raw_offset", "raw_len", 4096}}) {}

void FitTables::create(hid_t file, const std::vector<double>& target_losses) {
  store_.create(file);
  write_attr(store_.commit_id(), "target_losses", target_losses);
}

void FitTables::append(const FitTaskRow& task, const std::vector<FitCurveRow>& curve,
                       const std::vector<FitKernelRow>& kernels, const std::vector<double>& raw) {
  std::vector<std::vector<char>> rows(3);
  for (const auto& c : curve) curves_.encode(c, rows[0]);
  for (const auto& k : kernels) kernels_.encode(k, rows[1]);
  rows[2].resize(8 * raw.size());
  if (!raw.empty()) std::memcpy(rows[2].data(), raw.data(), rows[2].size());
  store_.append(Row(tasks_.layout(), tasks_.encode(task).data()), rows);
}

}  // namespace covfit::io
