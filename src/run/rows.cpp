#include "rows.hpp"

#include <algorithm>
#include <cmath>
#include <map>

#include "covfit/core/error.hpp"

namespace covfit::run {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double at_or_nan(const std::vector<cov::SweepRow>& rows, int i, double cov::SweepRow::*field) {
  return i >= 0 ? rows[static_cast<std::size_t>(i)].*field : kNaN;
}

}  // namespace

void write_fit_data(hid_t file, const std::vector<data::PointData>& data) {
  for (const auto& d : data) {
    io::Handle g = io::create_group(file, "/data/" + d.name);
    hsize_t n = d.x.size();
    io::write_array(g.get(), "x", {n}, d.x.data());
    io::write_array(g.get(), "y", {n}, d.y.data());
    io::write_array(g.get(), "values", {n}, d.values.data());
    io::write_attr(g.get(), "variance", d.variance());
    if (!d.planted.empty()) {
      std::vector<double> flat;
      for (const auto& k : d.planted) flat.insert(flat.end(), {k.mx, k.my, k.p11, k.p12, k.p22, k.w});
      io::write_array(g.get(), "planted_kernels", {d.planted.size(), 6}, flat.data());
    }
  }
}

void append_fit(io::FitTables& tables, const job::TaskCoord& task, const std::string& data_name,
                double data_variance, double stop_loss, const rbf::FitResult& r) {
  std::vector<io::FitCurveRow> curve;
  for (const auto& c : r.curve)
    curve.push_back({task.id, c.step, c.seconds, c.loss, c.grad_norm[0], c.grad_norm[1],
                     c.grad_norm[2], c.sigma_min, c.sigma_max, c.cond_max});
  std::vector<io::FitKernelRow> kernels;
  for (std::size_t k = 0; k < r.kernels.size(); ++k) {
    const auto& K = r.kernels[k];
    kernels.push_back({task.id, static_cast<std::int32_t>(k), K.mx, K.my, K.p11, K.p12, K.p22, K.w});
  }
  const rbf::Checkpoint& last = r.final;  // monitors of the returned parameters
  io::FitTaskRow t;
  t.id = task.id;
  t.data = data_name;
  t.param = std::string(rbf::param_name(task.param));
  t.K = task.K;
  t.optimizer = std::string(rbf::optimizer_name(task.optimizer));
  t.lr_weight = task.lr_weight;
  t.lr_centre = task.lr_centre;
  t.lr_shape = task.lr_shape;
  t.restart = task.restart;
  t.seed = static_cast<std::int64_t>(task.seed);
  t.status = std::string(rbf::status_name(r.status));
  t.steps = r.steps;
  t.initial_loss = r.initial_loss;
  t.final_loss = r.final_loss;
  t.final_rel_loss = data_variance > 0 ? r.final_loss / data_variance : kNaN;
  t.wall_seconds = r.seconds;
  t.grad_norm_weight = last.grad_norm[0];
  t.grad_norm_centre = last.grad_norm[1];
  t.grad_norm_shape = last.grad_norm[2];
  t.sigma_min = last.sigma_min;
  t.sigma_max = last.sigma_max;
  t.cond_max = last.cond_max;
  t.message = r.message;
  t.stop_loss = stop_loss;
  t.steps_to_target.assign(r.steps_to_target.begin(), r.steps_to_target.end());
  t.seconds_to_target = r.seconds_to_target;
  tables.append(t, curve, kernels, r.raw);
}

void write_matrix(hid_t loc, const std::string& name, const cov::Matrix& A) {
  std::vector<double> rm(A.size());
  for (int i = 0; i < A.rows; ++i)
    for (int j = 0; j < A.cols; ++j) rm[static_cast<std::size_t>(i) * A.cols + j] = A(i, j);
  io::write_array(loc, name, {static_cast<hsize_t>(A.rows), static_cast<hsize_t>(A.cols)}, rm.data());
}

void write_sweep_data(hid_t file, const std::vector<data::CovData>& data) {
  for (const auto& d : data) {
    if (d.W0.size() == 0) continue;  // HDF5 input: the user has it; planted: keep it
    io::Handle g = io::create_group(file, "/data/" + d.name);
    write_matrix(g.get(), "X", d.problem.X);
    write_matrix(g.get(), "S", d.problem.S);
    write_matrix(g.get(), "W0", d.W0);
  }
}

namespace {

// A unit's exact path end (cov::ExactPathState), stored with it as the next block's start:
// P = I + M at the last solution, and the logs the path predictor continues from.
const char* const kEndP = "P_end";
const char* const kEndLog = "logP_end";
const char* const kEndLogPrev = "logP_prev";

bool is_path_end(const std::string& name) { return name == kEndP || name == kEndLog || name == kEndLogPrev; }

io::SweepLambdaRow lambda_row(std::int64_t id, const std::string& data_name, const std::string& model,
                              double unit, const cov::SweepRow& x) {
  io::SweepLambdaRow row;
  row.task_id = id;
  row.data = data_name;
  row.model = model;
  row.lambda_index = x.lambda_index;
  row.lambda_d_index = x.lambda_d_index;
  row.lambda = x.lambda;
  row.lambda_d = x.lambda_d;
  row.lambda_job = x.lambda / unit;
  row.lambda_d_job = x.lambda_d / unit;
  row.r2_val = x.r2_val;
  row.r2_val_sd = x.r2_val_sd;
  row.r2_val_fwd = x.r2_val_fwd;
  row.r2_val_fwd_sd = x.r2_val_fwd_sd;
  row.r2_val_exact = x.r2_val_exact;
  row.r2_val_exact_sd = x.r2_val_exact_sd;
  row.r2_train = x.r2_train;
  row.loss_lin = x.loss_lin;
  row.loss_linearized = x.loss_linearized;
  row.loss_exact = x.loss_exact;
  row.exact_status = x.exact_status;
  row.rel_grad = x.rel_grad;
  row.gap_bound = x.gap_bound;
  row.newton_iters = x.newton_iters;
  row.cg_iters = x.cg_iters;
  row.exact_seconds = x.exact_seconds;
  row.eq1_residual = x.diag.eq1_residual_exact;
  row.dW = x.diag.dW;
  row.kappa = x.diag.kappa;
  row.g_proxy = x.diag.g_proxy;
  row.q_proxy = x.diag.q_proxy;
  row.rms_diag_lin = x.diag.lin.rms_diag;
  row.rms_offdiag_lin = x.diag.lin.rms_offdiag;
  row.rms_diag_exact = x.diag.exact.rms_diag;
  row.rms_offdiag_exact = x.diag.exact.rms_offdiag;
  return row;
}

// The inverse of lambda_row (a unit's row read back for assembly).
cov::SweepRow sweep_row(const io::SweepLambdaRow& r) {
  cov::SweepRow x;
  x.lambda_index = r.lambda_index;
  x.lambda_d_index = r.lambda_d_index;
  x.lambda = r.lambda;
  x.lambda_d = r.lambda_d;
  x.r2_val = r.r2_val;
  x.r2_val_sd = r.r2_val_sd;
  x.r2_val_fwd = r.r2_val_fwd;
  x.r2_val_fwd_sd = r.r2_val_fwd_sd;
  x.r2_val_exact = r.r2_val_exact;
  x.r2_val_exact_sd = r.r2_val_exact_sd;
  x.r2_train = r.r2_train;
  x.loss_lin = r.loss_lin;
  x.loss_linearized = r.loss_linearized;
  x.loss_exact = r.loss_exact;
  x.exact_status = r.exact_status;
  x.rel_grad = r.rel_grad;
  x.gap_bound = r.gap_bound;
  x.newton_iters = r.newton_iters;
  x.cg_iters = r.cg_iters;
  x.exact_seconds = r.exact_seconds;
  x.diag.lambda = r.lambda;
  x.diag.eq1_residual_exact = r.eq1_residual;
  x.diag.dW = r.dW;
  x.diag.kappa = r.kappa;
  x.diag.g_proxy = r.g_proxy;
  x.diag.q_proxy = r.q_proxy;
  x.diag.lin = {r.rms_diag_lin, r.rms_offdiag_lin};
  x.diag.exact = {r.rms_diag_exact, r.rms_offdiag_exact};
  return x;
}

io::SweepFoldRow fold_row(std::int64_t id, const cov::SweepFoldRow& f) {
  return {id, f.fold, f.lambda_index, f.lambda_d_index, f.lambda, f.lambda_d, f.r2_val, f.r2_val_fwd,
          f.r2_val_exact, f.r2_train};
}

// A matrix index row of task (or unit) `id`.
io::SweepMatrixRow matrix_row(std::int64_t id, const std::string& name, double lambda, double lambda_d, int rows,
                              int cols) {
  return {id, name, lambda, lambda_d, rows, cols, 0, 0};
}

bool same(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

}  // namespace

void append_sweep_unit(io::SweepUnitTables& tables, const job::SweepUnit& unit, const std::string& data_name,
                       const std::string& model, const std::string& run, const cov::SweepUnitResult& r) {
  io::SweepUnitRow u;
  u.id = unit.id;
  u.run = run;
  u.task_id = unit.task.id;
  u.data = data_name;
  u.model = model;
  u.status = r.ok ? "ok" : "failed";
  u.message = r.message;
  u.part = r.part;
  u.block = r.block;
  u.blocks = unit.blocks;
  u.n = r.n;
  u.m = r.m;
  u.r = r.r;
  u.s_max = r.s_max;
  u.loss_zero = r.loss_zero;
  u.full_svd_seconds = r.full_svd_seconds;
  u.fold_svd_seconds = r.fold_svd_seconds;
  u.seconds = r.seconds;
  u.exact_converged = r.exact_counts[static_cast<int>(cov::ExactStatus::converged)];
  u.exact_not_converged = r.exact_counts[static_cast<int>(cov::ExactStatus::not_converged)];
  u.exact_budget = r.exact_counts[static_cast<int>(cov::ExactStatus::budget)];
  u.exact_interrupted = r.exact_counts[static_cast<int>(cov::ExactStatus::interrupted)];
  std::vector<io::SweepLambdaRow> lambdas;
  // Unit rows hold absolute lambdas; lambda_job is filled in when the task is assembled.
  for (const auto& x : r.rows) lambdas.push_back(lambda_row(unit.id, data_name, model, 1.0, x));
  for (auto& x : lambdas) x.lambda_job = x.lambda_d_job = std::nan("");
  std::vector<io::SweepFoldRow> folds;
  for (const auto& f : r.fold_rows) folds.push_back(fold_row(unit.id, f));
  // The exact solutions at stored lambdas, then the path end (the next block's start):
  // r x r and symmetric each, stored as they are (read back the same way, same bits).
  std::vector<io::SweepMatrixRow> matrices;
  std::vector<io::MatrixView> values;
  std::int64_t offset = 0;
  const auto add = [&](const std::string& name, double lambda, double lambda_d, int rows, int cols,
                       const double* data) {
    matrices.push_back(matrix_row(unit.id, name, lambda, lambda_d, rows, cols));
    matrices.back().offset = offset;
    offset += static_cast<std::int64_t>(rows) * cols;
    values.push_back({data, static_cast<std::int64_t>(rows) * cols, 1});
  };
  for (const auto& m : r.stored) add(m.name, m.lambda, m.lambda_d, m.rows, m.cols, m.data.data());
  if (const cov::WarmStart* w = r.warm_end.get()) {
    const auto end = [&](const char* name, double lambda, const cov::Matrix& A) {
      add(name, lambda, std::nan(""), A.rows, A.cols, A.data.data());
    };
    end(kEndP, w->warm_lambda, w->warm);
    if (w->have_logs_for_warm) end(kEndLog, w->warm_lambda, w->log_warm);
    if (w->have_logs) end(kEndLogPrev, w->prev_lambda, w->log_prev);
  }
  tables.append(u, lambdas, folds, matrices, values);
}

std::map<std::int64_t, std::vector<cov::SweepUnitResult>> read_sweep_units(hid_t file, bool stored) {
  const io::SweepUnitTables::Contents c = io::SweepUnitTables::read(file);
  std::map<std::int64_t, std::vector<cov::SweepUnitResult>> out;
  const auto slice = [](std::int64_t off, std::int64_t len, std::size_t size, const std::string& what) {
    if (off < 0 || len < 0 || static_cast<std::size_t>(off + len) > size)
      throw RuntimeError("sweep unit rows out of range in " + what);
  };
  for (const io::SweepUnitRow& u : c.commits) {
    cov::SweepUnitResult r;
    r.part = u.part;
    r.block = u.block;
    r.ok = u.status == "ok";
    r.message = u.message;
    r.n = u.n;
    r.m = u.m;
    r.r = u.r;
    r.s_max = u.s_max;
    r.loss_zero = u.loss_zero;
    r.full_svd_seconds = u.full_svd_seconds;
    r.fold_svd_seconds = u.fold_svd_seconds;
    r.seconds = u.seconds;
    r.exact_counts[static_cast<int>(cov::ExactStatus::converged)] = u.exact_converged;
    r.exact_counts[static_cast<int>(cov::ExactStatus::not_converged)] = u.exact_not_converged;
    r.exact_counts[static_cast<int>(cov::ExactStatus::budget)] = u.exact_budget;
    r.exact_counts[static_cast<int>(cov::ExactStatus::interrupted)] = u.exact_interrupted;
    slice(u.lambda_offset, u.lambda_len, c.lambdas.size(), "/sweep_units/lambda");
    for (std::int64_t i = u.lambda_offset; i < u.lambda_offset + u.lambda_len; ++i)
      r.rows.push_back(sweep_row(c.lambdas[static_cast<std::size_t>(i)]));
    slice(u.fold_offset, u.fold_len, c.folds.size(), "/sweep_units/folds");
    for (std::int64_t i = u.fold_offset; i < u.fold_offset + u.fold_len; ++i) {
      const io::SweepFoldRow& f = c.folds[static_cast<std::size_t>(i)];
      r.fold_rows.push_back({f.fold, f.lambda_index, f.lambda_d_index, f.lambda, f.lambda_d, f.r2_val,
                             f.r2_val_fwd, f.r2_val_exact, f.r2_train});
    }
    slice(u.matrix_offset, u.matrix_len, c.matrices.size(), "/sweep_units/matrix_index");
    cov::WarmStart end;
    for (std::int64_t i = u.matrix_offset; i < u.matrix_offset + u.matrix_len; ++i) {
      const io::SweepMatrixRow& m = c.matrices[static_cast<std::size_t>(i)];
      if (m.offset < 0 || m.rows < 0 || m.cols < 0 || m.offset + m.rows * m.cols > u.values_len)
        throw RuntimeError("sweep unit matrix out of range in /sweep_units/values");
      if (!stored && !is_path_end(m.name)) continue;
      cov::StoredMatrix sm{m.name, m.lambda, m.lambda_d, static_cast<int>(m.rows), static_cast<int>(m.cols), {}};
      sm.data = io::SweepUnitTables::read_values(file, u.values_offset + m.offset, m.rows * m.cols);
      if (!is_path_end(sm.name)) {
        r.stored.push_back(std::move(sm));
      } else {
        cov::Matrix A(sm.rows, sm.cols);
        A.data = std::move(sm.data);
        if (sm.name == kEndP) end.have_warm = true, end.warm_lambda = sm.lambda, end.warm = std::move(A);
        if (sm.name == kEndLog) end.have_logs_for_warm = true, end.log_warm = std::move(A);
        if (sm.name == kEndLogPrev) end.have_logs = true, end.prev_lambda = sm.lambda, end.log_prev = std::move(A);
      }
    }
    if (end.have_warm) r.warm_end = std::make_shared<const cov::WarmStart>(std::move(end));
    out[u.task_id].push_back(std::move(r));
  }
  return out;
}

namespace {

// A task's stored matrices into /sweep/matrices/<id>/: r.stored (formed), then one store
// point at a time (formed by `form`, written, dropped). One stack per name, lambdas
// ascending (then lambda_d). Returns the index rows, in the order the matrices are formed.
std::vector<io::SweepMatrixRow> write_stored(hid_t file, const io::SweepTaskRow& t, double unit,
                                             const cov::SweepResult& r, const FormStored& form) {
  const std::int64_t id = t.id;
  struct Slab {
    std::size_t point;  // r.stored's index, or r.stored.size() + store point
    double lambda, lambda_d;
  };
  const auto at = [&](std::size_t p) {
    return p < r.stored.size() ? std::pair{r.stored[p].lambda, r.stored[p].lambda_d}
                               : std::pair{r.store_points[p - r.stored.size()].lambda, std::nan("")};
  };
  std::vector<cov::StoredMatrix> first;  // the first point's matrices: names and shapes
  std::map<std::string, std::vector<Slab>> slabs;
  std::map<std::string, std::pair<int, int>> shape;
  for (std::size_t p = 0; p < r.stored.size(); ++p) {
    slabs[r.stored[p].name].push_back({p, r.stored[p].lambda, r.stored[p].lambda_d});
    shape[r.stored[p].name] = {r.stored[p].rows, r.stored[p].cols};
  }
  if (!r.store_points.empty()) first = form(r.store_points.front());
  for (std::size_t q = 0; q < r.store_points.size(); ++q)
    for (const auto& m : first) {
      slabs[m.name].push_back({r.stored.size() + q, r.store_points[q].lambda, std::nan("")});
      shape[m.name] = {m.rows, m.cols};
    }
  io::MatrixStacks out(file, t);
  std::map<std::pair<std::string, std::size_t>, std::int64_t> index;  // (name, point) -> slab
  for (auto& [name, ss] : slabs) {
    std::stable_sort(ss.begin(), ss.end(), [](const Slab& a, const Slab& b) {
      return a.lambda < b.lambda || (a.lambda == b.lambda && a.lambda_d < b.lambda_d);
    });
    for (std::size_t k = 0; k < ss.size(); ++k) index[{name, ss[k].point}] = static_cast<std::int64_t>(k);
    out.stack(name, static_cast<std::int64_t>(ss.size()), shape[name].first, shape[name].second);
  }
  std::vector<io::SweepMatrixRow> matrices;
  const auto write = [&](std::size_t p, const cov::StoredMatrix& m) {
    if (std::pair{m.rows, m.cols} != shape[m.name] || !index.count({m.name, p}))
      throw RuntimeError("matrix " + m.name + " of task " + std::to_string(id) + " changes shape");
    out.write(m.name, index[{m.name, p}], {m.data.data(), m.rows, m.cols});
    matrices.push_back(matrix_row(id, m.name, at(p).first, at(p).second, m.rows, m.cols));
    matrices.back().index = index[{m.name, p}];
  };
  for (std::size_t p = 0; p < r.stored.size(); ++p) write(p, r.stored[p]);
  const std::size_t per_point = first.size();
  for (std::size_t q = 0; q < r.store_points.size(); ++q) {
    const std::vector<cov::StoredMatrix> ms = q == 0 ? std::move(first) : form(r.store_points[q]);
    if (ms.size() != per_point)
      throw RuntimeError("stored matrices of task " + std::to_string(id) + " differ between lambdas");
    for (const auto& m : ms) write(r.stored.size() + q, m);
  }
  for (const auto& [name, ss] : slabs) {
    std::vector<double> lam, lamd, lamj, lamdj;
    std::int64_t best = -1;
    for (const Slab& s : ss) {
      if (same(s.lambda, t.best_lambda) && same(s.lambda_d, t.best_lambda_d)) best = static_cast<std::int64_t>(lam.size());
      lam.push_back(s.lambda);
      lamd.push_back(s.lambda_d);
      lamj.push_back(s.lambda / unit);
      lamdj.push_back(s.lambda_d / unit);
    }
    out.finish(name, lam, lamd, lamj, lamdj, best);
  }
  return matrices;
}

}  // namespace

void append_sweep(hid_t file, io::SweepTables& tables, std::int64_t id, const std::string& data_name,
                  const std::string& model, bool centred, bool lambda_relative, const cov::SweepResult& r,
                  const FormStored& form) {
  const double unit = lambda_relative ? r.s_max * r.s_max : 1.0;
  std::vector<io::SweepLambdaRow> lambdas;
  for (const auto& x : r.rows) lambdas.push_back(lambda_row(id, data_name, model, unit, x));
  std::vector<io::SweepFoldRow> folds;
  for (const auto& f : r.fold_rows) folds.push_back(fold_row(id, f));
  io::SweepTaskRow t;
  t.id = id;
  t.data = data_name;
  t.model = model;
  t.status = r.ok ? "ok" : "failed";
  t.message = r.message;
  t.n = r.n;
  t.m = r.m;
  t.r = r.r;
  t.folds = r.folds;
  t.centred_by_covfit = centred ? 1 : 0;
  t.s_max = r.s_max;
  t.loss_zero = r.loss_zero;
  t.lambda_units = lambda_relative ? "s_max2" : "absolute";
  t.lambda_unit = unit;
  // cov picks best and one-SE by the exact solution's R^2 where it computed one for
  // every lambda, else by the model's own r2_val (cov::SweepResult::best).
  t.best_by = r.best_exact >= 0 ? "r2_val_exact" : "r2_val";
  t.best_lambda = at_or_nan(r.rows, r.best, &cov::SweepRow::lambda);
  t.best_lambda_d = at_or_nan(r.rows, r.best, &cov::SweepRow::lambda_d);
  t.best_r2_val = r.headline_r2();
  t.one_se_lambda = at_or_nan(r.rows, r.one_se, &cov::SweepRow::lambda);
  t.best_exact_lambda = at_or_nan(r.rows, r.best_exact, &cov::SweepRow::lambda);
  t.best_r2_val_exact = at_or_nan(r.rows, r.best_exact, &cov::SweepRow::r2_val_exact);
  t.svd_seconds = r.svd_seconds;
  t.fold_svd_seconds = r.fold_svd_seconds;
  t.units = r.units;
  t.folds_seconds = r.folds_seconds;
  t.rows_seconds = r.rows_seconds;
  t.seconds = r.seconds;

  tables.append(t, lambdas, folds, write_stored(file, t, unit, r, form));
}

}  // namespace covfit::run
