#include "covfit/io/fit_tables.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include "covfit/core/error.hpp"

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

using S = FitSummaryRow;
std::vector<Field<S>> summary_fields() {
  return {
      field("data", &S::data, 32, "", "data set name"),
      field("param", &S::param, 16, "", "parameterisation"),
      field("optimizer", &S::optimizer, 8, "", "optimiser"),
      field("K", &S::K, "", "number of kernels"),
      field("tasks", &S::tasks, "", "tasks in the group (restarts and learning rates pooled)"),
      field("failed", &S::failed, "", "tasks with status diverged or failed"),
      field("on_target", &S::on_target, "", "tasks with status reached_target (stopped on target_loss / target_rel_variance)"),
      field("level", &S::level, "values^2", "success level: the tightest target_losses level not below the group's largest stop_loss (no stop target: the tightest level); NaN if none"),
      field("reached", &S::reached, "", "tasks whose loss went <= level (finite seconds_to_target there)"),
      field("frac_reached", &S::frac_reached, "", "reached / tasks (NaN without a level)"),
      field("best_loss", &S::best_loss, "values^2", "smallest finite final_loss"),
      field("median_final_loss", &S::median_final_loss, "values^2", "median final_loss (over the finite values; NaN if none)"),
      field("median_final_rel_loss", &S::median_final_rel_loss, "", "median final_rel_loss (over the finite values)"),
      field("median_steps", &S::median_steps, "steps", "median steps"),
      field("median_wall_seconds", &S::median_wall_seconds, "s", "median wall_seconds"),
      field("median_seconds_to_level", &S::median_seconds_to_level, "s", "median seconds to reach level, over the tasks that reached it (NaN if none)"),
  };
}

double median(std::vector<double> v) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return !std::isfinite(x); }), v.end());
  if (v.empty()) return FitSummaryRow::kNaN;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Index into `targets` of the tightest level >= stop, -1 if none.
int success_level(const std::vector<double>& targets, double stop) {
  int best = -1;
  for (std::size_t i = 0; i < targets.size(); ++i)
    if (targets[i] >= stop && (best < 0 || targets[i] < targets[static_cast<std::size_t>(best)]))
      best = static_cast<int>(i);
  return best;
}

}  // namespace

std::vector<FitSummaryRow> summarise_fit(const std::vector<FitTaskRow>& tasks,
                                         const std::vector<double>& targets) {
  using Key = std::tuple<std::string, std::string, std::string, std::int32_t>;
  std::map<Key, std::vector<const FitTaskRow*>> groups;
  for (const auto& t : tasks)
    if (!t.status.empty()) groups[{t.param, t.optimizer, t.data, t.K}].push_back(&t);
  std::vector<FitSummaryRow> out;
  for (const auto& [key, ts] : groups) {
    FitSummaryRow r;
    std::tie(r.param, r.optimizer, r.data, r.K) = key;
    r.tasks = static_cast<std::int64_t>(ts.size());
    double stop = 0;
    for (const auto* t : ts) stop = std::max(stop, t->stop_loss);
    const int lvl = success_level(targets, stop);
    const auto li = static_cast<std::size_t>(lvl);
    if (lvl >= 0) r.level = targets[li];
    std::vector<double> loss, rel, steps, secs, to_level;
    double best = INFINITY;
    for (const auto* t : ts) {
      if (t->status == "diverged" || t->status == "failed") ++r.failed;
      if (t->status == "reached_target") ++r.on_target;
      loss.push_back(t->final_loss);
      rel.push_back(t->final_rel_loss);
      steps.push_back(t->steps);
      secs.push_back(t->wall_seconds);
      if (std::isfinite(t->final_loss)) best = std::min(best, t->final_loss);
      if (lvl >= 0 && li < t->seconds_to_target.size() && std::isfinite(t->seconds_to_target[li])) {
        ++r.reached;
        to_level.push_back(t->seconds_to_target[li]);
      }
    }
    if (lvl >= 0) r.frac_reached = static_cast<double>(r.reached) / static_cast<double>(r.tasks);
    if (std::isfinite(best)) r.best_loss = best;
    r.median_final_loss = median(loss);
    r.median_final_rel_loss = median(rel);
    r.median_steps = median(steps);
    r.median_wall_seconds = median(secs);
    r.median_seconds_to_level = median(to_level);
    out.push_back(r);
  }
  return out;
}

FitTables::FitTables(int n_targets)
    : tasks_("tasks", "one row per finished task (the commit record)", task_fields(), n_targets),
      curves_("curves", "monitor rows, every log_every steps and at the last step", curve_fields()),
      kernels_("kernels", "final kernels in canonical form", kernel_fields()),
      summary_("summary", "one row per (data, param, optimizer, K) group of /fit/tasks, written when the file is complete", summary_fields()),
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

void FitTables::write_summary(hid_t file) {
  const std::string tasks_path = std::string(kGroup) + "/tasks";
  if (!exists(file, tasks_path)) return;
  FitTables t(0);
  const std::vector<FitTaskRow> tasks = read_all(file, tasks_path, t.tasks_);
  std::vector<double> targets;
  {
    Handle ds = open_dataset(file, tasks_path);
    if (has_attr(ds.get(), "target_losses")) targets = read_attr_doubles(ds.get(), "target_losses");
  }
  const std::vector<FitSummaryRow> rows = summarise_fit(tasks, targets);
  const std::string path = std::string(kGroup) + "/" + t.summary_.name();
  if (exists(file, path) && H5Ldelete(file, path.c_str(), H5P_DEFAULT) < 0)
    throw RuntimeError("cannot replace " + path);
  std::vector<char> bytes;
  for (const auto& r : rows) t.summary_.encode(r, bytes);
  AppendTable out = AppendTable::create(file, path, &t.summary_.layout(), 64);
  if (!rows.empty()) out.append(bytes.data(), rows.size());
  out.flush();
}

std::vector<FitSummaryRow> FitTables::read_summary(hid_t file) {
  const std::string path = std::string(kGroup) + "/summary";
  if (!exists(file, path)) return {};
  return read_all(file, path, FitTables(0).summary_);
}

}  // namespace covfit::io
