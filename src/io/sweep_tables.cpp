#include "covfit/io/sweep_tables.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>

#include "covfit/core/error.hpp"

namespace covfit::io {
namespace {

using T = SweepTaskRow;
std::vector<Field<T>> task_fields() {
  return {
      field("id", &T::id, "", "task id = data index x number of models + model index"),
      field("data", &T::data, 32, "", "data set name"),
      field("model", &T::model, 16, "", "free or free_diag"),
      field("status", &T::status, 16, "", "ok or failed (e.g. rank 0; see message)"),
      field("message", &T::message, 64, "", "why a task failed, empty otherwise"),
      field("n", &T::n, "", "rows of X (input channels)"),
      field("m", &T::m, "", "columns of X (stimuli)"),
      field("r", &T::r, "", "numerical rank of X"),
      field("folds", &T::folds, "", "number of cross-validation folds"),
      field("centred_by_covfit", &T::centred_by_covfit, "", "1 if X's columns were not centred and covfit centred them"),
      field("s_max", &T::s_max, "X^2", "largest squared singular value of X"),
      field("loss_zero", &T::loss_zero, "S^2", "L(W = 0) on all stimuli"),
      field("lambda_units", &T::lambda_units, 8, "", "units of lambda in the job: absolute or s_max2"),
      field("lambda_unit", &T::lambda_unit, "S^2", "lambda = lambda_job * lambda_unit (1, or s_max^2 for s_max2)"),
      field("best_by", &T::best_by, 16, "", "column of /sweep/lambda whose mean over folds picked best_lambda and one_se_lambda"),
      field("best_lambda", &T::best_lambda, "S^2", "grid point with the largest mean of the best_by column"),
      field("best_lambda_d", &T::best_lambda_d, "S^2", "lambda_d of that grid point (free_diag; NaN for free)"),
      field("best_r2_val", &T::best_r2_val, "", "the best_by column at best_lambda"),
      field("one_se_lambda", &T::one_se_lambda, "S^2", "largest lambda whose mean best_by is within one standard error (sd with ddof=1 / sqrt(folds)) of the best"),
      field("best_exact_lambda", &T::best_exact_lambda, "S^2", "grid point with the largest mean r2_val_exact (NaN if not computed)"),
      field("best_r2_val_exact", &T::best_r2_val_exact, "", "that mean r2_val_exact"),
      field("svd_seconds", &T::svd_seconds, "s", "full-data SVD (summed over the processes that computed it)"),
      field("fold_svd_seconds", &T::fold_svd_seconds, "s", "the folds' SVDs (summed over the processes that computed them)"),
      field("folds_seconds", &T::folds_seconds, "s", "fold units without their SVDs: R^2 per lambda, exact paths"),
      field("rows_seconds", &T::rows_seconds, "s", "full-data units without the SVD: losses, exact path, diagnostics per lambda"),
      field("seconds", &T::seconds, "s", "all work units (thread seconds, summed) and assembling the summary"),
      field("units", &T::units, "", "work units the summary was assembled from (rows of /sweep_units/units)"),
      field("lambda_offset", &T::lambda_offset, "row", "first row of /sweep/lambda"),
      field("lambda_len", &T::lambda_len, "rows", "rows of /sweep/lambda"),
      field("fold_offset", &T::fold_offset, "row", "first row of /sweep/folds"),
      field("fold_len", &T::fold_len, "rows", "rows of /sweep/folds"),
      field("matrix_offset", &T::matrix_offset, "row", "first row of /sweep/matrix_index"),
      field("matrix_len", &T::matrix_len, "rows", "rows of /sweep/matrix_index"),
      field("values_offset", &T::values_offset, "element", "first element of /sweep/values"),
      field("values_len", &T::values_len, "elements", "elements of /sweep/values"),
  };
}

using L = SweepLambdaRow;
std::vector<Field<L>> lambda_fields() {
  return {
      field("task_id", &L::task_id, "", "task id"),
      field("data", &L::data, 32, "", "data set name"),
      field("model", &L::model, 16, "", "free or free_diag"),
      field("lambda_index", &L::lambda_index, "", "index of lambda in the job's lambda grid"),
      field("lambda_d_index", &L::lambda_d_index, "", "index of lambda_d in the job's lambda_d grid (-1 for free; free_diag paired: = lambda_index)"),
      field("lambda", &L::lambda, "S^2", "ridge weight on ||W||^2, absolute"),
      field("lambda_d", &L::lambda_d, "S^2", "ridge weight on the diagonal d (free_diag; NaN for free), absolute"),
      field("lambda_job", &L::lambda_job, "job", "lambda in the job's lambda_units (lambda / lambda_unit)"),
      field("lambda_d_job", &L::lambda_d_job, "job", "lambda_d in the job's lambda_units"),
      field("r2_val", &L::r2_val, "", "validation R^2, mean over folds, of the linearised W's own linear prediction X'X + X'(W+W')X (both models; free: X'X + P'(M+M')P)"),
      field("r2_val_sd", &L::r2_val_sd, "", "sd over folds (ddof=1) of r2_val"),
      field("r2_val_fwd", &L::r2_val_fwd, "", "validation R^2 of the exact forward map X'(I+W)'J(I+W)X at the linearised W"),
      field("r2_val_fwd_sd", &L::r2_val_fwd_sd, "", "sd over folds (ddof=1)"),
      field("r2_val_exact", &L::r2_val_exact, "", "validation R^2 of the exact solution (free with exact = true; NaN otherwise)"),
      field("r2_val_exact_sd", &L::r2_val_exact_sd, "", "sd over folds (ddof=1)"),
      field("r2_train", &L::r2_train, "", "mean train-block R^2 (train_r2 = true; NaN otherwise)"),
      field("loss_lin", &L::loss_lin, "S^2", "L(W_lin) on all stimuli"),
      field("loss_linearized", &L::loss_linearized, "S^2", "L_lin(W_lin) on all stimuli"),
      field("loss_exact", &L::loss_exact, "S^2", "L(W*) (free: every lambda with exact; free_diag: the best pair only)"),
      field("exact_status", &L::exact_status, 16, "", "exact solver outcome (converged, not_converged, ...); empty if not computed"),
      field("rel_grad", &L::rel_grad, "", "||grad f(P*)|| / ||grad f(I)||"),
      field("gap_bound", &L::gap_bound, "S^2", "certified bound on f(P*) - f*"),
      field("newton_iters", &L::newton_iters, "", "exact solver Newton iterations (free_diag: L-BFGS iterations)"),
      field("cg_iters", &L::cg_iters, "", "exact solver CG iterations"),
      field("exact_seconds", &L::exact_seconds, "s", "exact solver time"),
      field("eq1_residual", &L::eq1_residual, "", "equation 1 residual at the exact solution (docs/MATH.md)"),
      field("dW", &L::dW, "", "|M_lin - M*| / |M*|"),
      field("kappa", &L::kappa, "", "loss gap of the linearised solution"),
      field("g_proxy", &L::g_proxy, "", "linearisation diagnostic (docs/MATH.md)"),
      field("q_proxy", &L::q_proxy, "", "linearisation diagnostic (docs/MATH.md)"),
      field("rms_diag_lin", &L::rms_diag_lin, "", "rms of the diagonal of W_lin (free_diag: of d)"),
      field("rms_offdiag_lin", &L::rms_offdiag_lin, "", "rms of the off-diagonal of W_lin (free_diag: of F)"),
      field("rms_diag_exact", &L::rms_diag_exact, "", "rms of the diagonal of W*"),
      field("rms_offdiag_exact", &L::rms_offdiag_exact, "", "rms of the off-diagonal of W*"),
  };
}

using F = SweepFoldRow;
std::vector<Field<F>> fold_fields() {
  return {
      field("task_id", &F::task_id, "", "task id"),
      field("fold", &F::fold, "", "fold index"),
      field("lambda_index", &F::lambda_index, "", "index of lambda in the job's lambda grid"),
      field("lambda_d_index", &F::lambda_d_index, "", "index of lambda_d in the job's lambda_d grid (-1 for free)"),
      field("lambda", &F::lambda, "S^2", "absolute"),
      field("lambda_d", &F::lambda_d, "S^2", "absolute (NaN for free)"),
      field("r2_val", &F::r2_val, "", "this fold's validation R^2 (as r2_val of /sweep/lambda)"),
      field("r2_val_fwd", &F::r2_val_fwd, "", "this fold's r2_val_fwd"),
      field("r2_val_exact", &F::r2_val_exact, "", "this fold's r2_val_exact"),
      field("r2_train", &F::r2_train, "", "this fold's train-block R^2"),
  };
}

using M = SweepMatrixRow;
std::vector<Field<M>> matrix_fields() {
  return {
      field("task_id", &M::task_id, "", "task id"),
      field("name", &M::name, 16, "", "W, W_lin (n, n); d, d_lin (n, 1); eq1_lhs, eq1_rhs (r(r+1)/2, 1)"),
      field("lambda", &M::lambda, "S^2", "absolute"),
      field("lambda_d", &M::lambda_d, "S^2", "absolute (NaN for free)"),
      field("rows", &M::rows, "", "rows"),
      field("cols", &M::cols, "", "columns"),
      field("offset", &M::offset, "element", "first element in /sweep/values, from the task's values_offset; row-major"),
  };
}

using U = SweepUnitRow;
std::vector<Field<U>> unit_fields() {
  return {
      field("id", &U::id, "", "work unit id (the job's task numbering: data set, model, part, block)"),
      field("task_id", &U::task_id, "", "the sweep task (data set, model) it belongs to: id in /sweep/tasks"),
      field("data", &U::data, 32, "", "data set name"),
      field("model", &U::model, 16, "", "free or free_diag"),
      field("status", &U::status, 16, "", "ok or failed (e.g. rank 0; see message)"),
      field("message", &U::message, 64, "", "why a unit failed, empty otherwise"),
      field("run", &U::run, 64, "", "the run that computed it (host:pid:start time); a resume or merge copies units, never recomputes them"),
      field("part", &U::part, "", "-1: the full data (losses, exact path, diagnostics); k >= 0: fold k (R^2)"),
      field("block", &U::block, "", "lambda block (blocks of lambda_block grid points, largest lambda first)"),
      field("blocks", &U::blocks, "", "lambda blocks per part"),
      field("n", &U::n, "", "rows of X"),
      field("m", &U::m, "", "columns of X"),
      field("r", &U::r, "", "numerical rank of this part's X (the fold's train block for folds)"),
      field("s_max", &U::s_max, "X^2", "largest squared singular value of the full X"),
      field("loss_zero", &U::loss_zero, "S^2", "L(W = 0) on all stimuli (full-data units)"),
      field("full_svd_seconds", &U::full_svd_seconds, "s", "the full-data SVD, if this unit computed it (0: reused)"),
      field("fold_svd_seconds", &U::fold_svd_seconds, "s", "this fold's SVD, if this unit computed it (0: reused)"),
      field("seconds", &U::seconds, "s", "the whole unit"),
      field("exact_converged", &U::exact_converged, "", "exact solves of this unit that converged (certified)"),
      field("exact_not_converged", &U::exact_not_converged, "", "exact solves that did not converge"),
      field("exact_budget", &U::exact_budget, "", "exact solves stopped by a budget"),
      field("exact_interrupted", &U::exact_interrupted, "", "exact solves interrupted"),
      field("lambda_offset", &U::lambda_offset, "row", "first row of /sweep_units/lambda"),
      field("lambda_len", &U::lambda_len, "rows", "rows of /sweep_units/lambda"),
      field("fold_offset", &U::fold_offset, "row", "first row of /sweep_units/folds"),
      field("fold_len", &U::fold_len, "rows", "rows of /sweep_units/folds"),
      field("matrix_offset", &U::matrix_offset, "row", "first row of /sweep_units/matrix_index"),
      field("matrix_len", &U::matrix_len, "rows", "rows of /sweep_units/matrix_index"),
      field("values_offset", &U::values_offset, "element", "first element of /sweep_units/values"),
      field("values_len", &U::values_len, "elements", "elements of /sweep_units/values"),
  };
}

bool same(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

// The dependents of both sweep stores (/sweep for tasks, /sweep_units for work units):
// lambda rows, fold rows, the matrix index and the matrices' float64 values.
std::vector<DependentTable> sweep_dependents(const Table<SweepLambdaRow>& lambdas, const Table<SweepFoldRow>& folds,
                                             const Table<SweepMatrixRow>& matrices) {
  return {{"lambda", &lambdas.layout(), "lambda_offset", "lambda_len", 1024},
          {"folds", &folds.layout(), "fold_offset", "fold_len", 2048},
          {"matrix_index", &matrices.layout(), "matrix_offset", "matrix_len", 64},
          {"values", nullptr, "values_offset", "values_len", 16384}};
}

// Those dependents' rows as the bytes TaskStore::append takes, in sweep_dependents' order.
std::vector<std::vector<char>> encode_dependents(const Table<SweepLambdaRow>& lt, const Table<SweepFoldRow>& ft,
                                                 const Table<SweepMatrixRow>& mt,
                                                 const std::vector<SweepLambdaRow>& lambdas,
                                                 const std::vector<SweepFoldRow>& folds,
                                                 const std::vector<SweepMatrixRow>& matrices,
                                                 const std::vector<double>& values) {
  std::vector<std::vector<char>> rows(4);
  for (const auto& r : lambdas) lt.encode(r, rows[0]);
  for (const auto& r : folds) ft.encode(r, rows[1]);
  for (const auto& r : matrices) mt.encode(r, rows[2]);
  rows[3].resize(8 * values.size());
  if (!values.empty()) std::memcpy(rows[3].data(), values.data(), rows[3].size());
  return rows;
}

}  // namespace

SweepTables::SweepTables()
    : tasks_("tasks", "one row per (data set, model): the commit record", task_fields()),
      lambdas_("lambda", "one row per lambda (free) or per (lambda, lambda_d) (free_diag)", lambda_fields()),
      folds_("folds", "per fold and grid point: the values behind the means", fold_fields()),
      matrices_("matrix_index", "stored matrices in /sweep/values", matrix_fields()),
      store_(kGroup, "tasks", &tasks_.layout(), sweep_dependents(lambdas_, folds_, matrices_)) {}

SweepUnitTables::SweepUnitTables()
    : units_("units", "one row per work unit: the commit record", unit_fields()),
      lambdas_("lambda", "full-data units: one row per grid point (R^2 columns NaN until assembled)", lambda_fields()),
      folds_("folds", "fold units: one row per grid point", fold_fields()),
      matrices_("matrix_index", "matrices stored by units in /sweep_units/values", matrix_fields()),
      store_(kGroup, "units", &units_.layout(), sweep_dependents(lambdas_, folds_, matrices_)) {}

void SweepUnitTables::append(const SweepUnitRow& unit, const std::vector<SweepLambdaRow>& lambdas,
                             const std::vector<SweepFoldRow>& folds,
                             const std::vector<SweepMatrixRow>& matrices, const std::vector<double>& values) {
  store_.append(Row(units_.layout(), units_.encode(unit).data()),
                encode_dependents(lambdas_, folds_, matrices_, lambdas, folds, matrices, values));
}

SweepUnitTables::Contents SweepUnitTables::read(hid_t file) {
  SweepUnitTables t;
  Contents c;
  const std::string g = kGroup;
  c.units = read_all(file, g + "/units", t.units_);
  c.lambdas = read_all(file, g + "/lambda", t.lambdas_);
  c.folds = read_all(file, g + "/folds", t.folds_);
  c.matrices = read_all(file, g + "/matrix_index", t.matrices_);
  return c;
}

std::vector<double> SweepUnitTables::read_values(hid_t file, std::int64_t offset, std::int64_t count) {
  AppendTable values = AppendTable::open(file, std::string(kGroup) + "/values", nullptr);
  std::vector<char> bytes = values.read_rows(static_cast<hsize_t>(offset), static_cast<hsize_t>(count));
  std::vector<double> out(static_cast<std::size_t>(count));
  if (count > 0) std::memcpy(out.data(), bytes.data(), 8 * out.size());
  return out;
}

void SweepTables::create(hid_t file) {
  store_.create(file);
  // The sd convention of every *_sd column (and of the one-SE rule), for h5py users.
  Handle ds = open_dataset(file, std::string(kGroup) + "/lambda");
  write_attr(ds.get(), "sd_ddof", std::int64_t{1});
}

void SweepTables::append(const SweepTaskRow& task, const std::vector<SweepLambdaRow>& lambdas,
                         const std::vector<SweepFoldRow>& folds,
                         const std::vector<SweepMatrixRow>& matrices, const std::vector<double>& values) {
  store_.append(Row(tasks_.layout(), tasks_.encode(task).data()),
                encode_dependents(lambdas_, folds_, matrices_, lambdas, folds, matrices, values));
}

void SweepTables::write_matrix_datasets(hid_t file) {
  if (exists(file, "/sweep/matrices") || !exists(file, "/sweep/matrix_index")) return;
  SweepTables t;
  const std::vector<SweepTaskRow> tasks = read_all(file, "/sweep/tasks", t.tasks_);
  const std::vector<SweepMatrixRow> index = read_all(file, "/sweep/matrix_index", t.matrices_);
  const std::vector<SweepLambdaRow> lambdas = read_all(file, "/sweep/lambda", t.lambdas_);
  AppendTable values = AppendTable::open(file, "/sweep/values", nullptr);
  create_group(file, "/sweep/matrices");
  for (const auto& task : tasks) {
    if (task.status.empty()) continue;
    // Job-unit lambdas of this task, by absolute lambda.
    auto job_units = [&](double lam, double lam_d, double& lj, double& ldj) {
      lj = lam / task.lambda_unit;
      ldj = lam_d / task.lambda_unit;
      for (std::int64_t i = task.lambda_offset; i < task.lambda_offset + task.lambda_len; ++i) {
        const auto& r = lambdas[static_cast<std::size_t>(i)];
        if (same(r.lambda, lam) && same(r.lambda_d, lam_d)) {
          lj = r.lambda_job;
          ldj = r.lambda_d_job;
        }
      }
    };
    std::map<std::string, std::vector<const SweepMatrixRow*>> by_name;
    for (std::int64_t i = task.matrix_offset; i < task.matrix_offset + task.matrix_len; ++i)
      by_name[index[static_cast<std::size_t>(i)].name].push_back(&index[static_cast<std::size_t>(i)]);
    const std::string group = "/sweep/matrices/" + std::to_string(task.id);
    Handle g = create_group(file, group);
    write_attr(g.get(), "data", task.data);
    write_attr(g.get(), "model", task.model);
    for (auto& [name, ms] : by_name) {
      std::stable_sort(ms.begin(), ms.end(), [](const SweepMatrixRow* a, const SweepMatrixRow* b) {
        return a->lambda < b->lambda || (a->lambda == b->lambda && a->lambda_d < b->lambda_d);
      });
      const std::int64_t rows = ms.front()->rows, cols = ms.front()->cols;
      const std::string path = group + "/" + name;
      // One matrix in memory at a time (store = "all" can mean hundreds of n x n).
      Handle out = create_array(file, path, {ms.size(), static_cast<hsize_t>(rows), static_cast<hsize_t>(cols)});
      std::vector<double> lam, lamd, lamj, lamdj;
      std::int64_t best = -1;
      for (const SweepMatrixRow* m : ms) {
        if (m->rows != rows || m->cols != cols)
          throw RuntimeError("matrix " + name + " of task " + std::to_string(task.id) + " changes shape");
        std::vector<char> bytes = values.read_rows(static_cast<hsize_t>(task.values_offset + m->offset),
                                                   static_cast<hsize_t>(rows * cols));
        write_slab(out.get(), lam.size(), reinterpret_cast<const double*>(bytes.data()));
        if (same(m->lambda, task.best_lambda) && same(m->lambda_d, task.best_lambda_d))
          best = static_cast<std::int64_t>(lam.size());
        double lj, ldj;
        job_units(m->lambda, m->lambda_d, lj, ldj);
        lam.push_back(m->lambda);
        lamd.push_back(m->lambda_d);
        lamj.push_back(lj);
        lamdj.push_back(ldj);
      }
      out.reset();
      Handle ds = open_dataset(file, path);
      write_attr(ds.get(), "lambda", lam);
      write_attr(ds.get(), "lambda_d", lamd);
      write_attr(ds.get(), "lambda_job", lamj);
      write_attr(ds.get(), "lambda_d_job", lamdj);
      write_attr(ds.get(), "lambda_units", task.lambda_units);
      write_attr(ds.get(), "best_index", best);
      write_attr(ds.get(), "dims", std::string("lambda, row, col"));
    }
  }
}

}  // namespace covfit::io
