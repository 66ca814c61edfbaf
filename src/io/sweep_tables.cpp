#include "covfit/io/sweep_tables.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

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
// The matrix index of both stores; the last column says where the entries are.
std::vector<Field<M>> matrix_fields(const char* names, Field<M> where) {
  return {
      field("task_id", &M::task_id, "", "task id"),
      field("name", &M::name, 16, "", names),
      field("lambda", &M::lambda, "S^2", "absolute"),
      field("lambda_d", &M::lambda_d, "S^2", "absolute (NaN for free)"),
      field("rows", &M::rows, "", "rows"),
      field("cols", &M::cols, "", "columns"),
      std::move(where),
  };
}
std::vector<Field<M>> summary_matrix_fields() {
  return matrix_fields("W, W_lin (n, n); d, d_lin (n, 1); eq1_lhs, eq1_rhs (r(r+1)/2, 1)",
                       field("index", &M::index, "",
                             "index along the first axis of /sweep/matrices/<task_id>/<name> (lambdas ascending)"));
}
std::vector<Field<M>> unit_matrix_fields() {
  return matrix_fields("M (r, r): the exact solution at a stored lambda; P_end, logP_end, logP_prev (r, r): the path end",
                       field("offset", &M::offset, "element",
                             "first element in /sweep_units/values, from the unit's values_offset (symmetric matrices, as covfit holds them: column-major)"));
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
      field("values_offset", &U::values_offset, "element", "first element of /sweep_units/values"),
      field("values_len", &U::values_len, "elements", "elements of /sweep_units/values"),
  };
}

// A commit table's fields, then the (offset, count) columns of the dependents in `group`,
// before the units' values_offset / values_len (the columns' order in the file).
template <class C>
std::vector<Field<C>> with_ranges(std::vector<Field<C>> fields, const std::string& group) {
  const auto at = [&](const char* dep) { return "first row of " + group + "/" + dep; };
  const auto len = [&](const char* dep) { return "rows of " + group + "/" + dep; };
  std::vector<Field<C>> ranges = {
      field<C>("lambda_offset", &C::lambda_offset, "row", at("lambda").c_str()),
      field<C>("lambda_len", &C::lambda_len, "rows", len("lambda").c_str()),
      field<C>("fold_offset", &C::fold_offset, "row", at("folds").c_str()),
      field<C>("fold_len", &C::fold_len, "rows", len("folds").c_str()),
      field<C>("matrix_offset", &C::matrix_offset, "row", at("matrix_index").c_str()),
      field<C>("matrix_len", &C::matrix_len, "rows", len("matrix_index").c_str()),
  };
  auto end = std::find_if(fields.begin(), fields.end(), [](const Field<C>& f) { return f.column.name == "values_offset"; });
  fields.insert(end, ranges.begin(), ranges.end());
  return fields;
}

// The dependents of both sweep stores: lambda rows, fold rows, the matrix index and (units)
// the matrices' float64 values.
std::vector<DependentTable> sweep_dependents(const Table<SweepLambdaRow>& lambdas, const Table<SweepFoldRow>& folds,
                                             const Table<SweepMatrixRow>& matrices, bool values) {
  std::vector<DependentTable> deps = {{"lambda", &lambdas.layout(), "lambda_offset", "lambda_len", 1024},
                                      {"folds", &folds.layout(), "fold_offset", "fold_len", 2048},
                                      {"matrix_index", &matrices.layout(), "matrix_offset", "matrix_len", 64}};
  if (values) deps.push_back({"values", nullptr, "values_offset", "values_len", 16384});
  return deps;
}

// Bytes per piece when a matrix is written (a bounded buffer, whatever n).
constexpr std::size_t kPieceBytes = std::size_t{4} << 20;

// Rows [row0, row0 + nrows) of a column-major matrix, row-major, into `out`.
void rows_of(const MatrixView& m, std::int64_t row0, std::int64_t nrows, std::vector<double>& out) {
  out.resize(static_cast<std::size_t>(nrows * m.cols));
  for (std::int64_t j = 0; j < m.cols; ++j) {
    const double* col = m.data + j * m.rows + row0;
    for (std::int64_t i = 0; i < nrows; ++i) out[static_cast<std::size_t>(i * m.cols + j)] = col[i];
  }
}

}  // namespace

template <class Commit>
SweepStore<Commit>::SweepStore(const char* group, Table<Commit> commit, const char* lambda_desc, const char* fold_desc,
                               const char* matrix_desc, bool values)
    : group_(group), commit_(std::move(commit)), lambdas_("lambda", lambda_desc, lambda_fields()),
      folds_("folds", fold_desc, fold_fields()),
      matrices_("matrix_index", matrix_desc, values ? unit_matrix_fields() : summary_matrix_fields()),
      store_(group_, commit_.name(), &commit_.layout(), sweep_dependents(lambdas_, folds_, matrices_, values)) {}

template <class Commit>
void SweepStore<Commit>::append_rows(const Commit& commit, const std::vector<SweepLambdaRow>& lambdas,
                                     const std::vector<SweepFoldRow>& folds,
                                     const std::vector<SweepMatrixRow>& matrices,
                                     const std::vector<MatrixView>& values) {
  std::vector<DependentRows> rows(3);
  for (const auto& r : lambdas) lambdas_.encode(r, rows[0].bytes);
  for (const auto& r : folds) folds_.encode(r, rows[1].bytes);
  for (const auto& r : matrices) matrices_.encode(r, rows[2].bytes);
  if (matrices_.layout().index("offset") >= 0) {  // the store has /values
    rows.emplace_back();
    rows[3].write = [&values](AppendTable& to) {
      for (const MatrixView& m : values) to.append(m.data, static_cast<hsize_t>(m.rows * m.cols));
    };
  }
  store_.append(Row(commit_.layout(), commit_.encode(commit).data()), rows);
}

template <class Commit>
typename SweepStore<Commit>::Contents SweepStore<Commit>::read_contents(hid_t file) const {
  Contents c;
  c.commits = read_all(file, group_ + "/" + commit_.name(), commit_);
  c.lambdas = read_all(file, group_ + "/lambda", lambdas_);
  c.folds = read_all(file, group_ + "/folds", folds_);
  c.matrices = read_all(file, group_ + "/matrix_index", matrices_);
  return c;
}

template class SweepStore<SweepUnitRow>;
template class SweepStore<SweepTaskRow>;

SweepUnitTables::SweepUnitTables()
    : SweepStore(kGroup, Table<SweepUnitRow>("units", "one row per work unit: the commit record",
                                             with_ranges(unit_fields(), kGroup)),
                 "full-data units: one row per grid point (R^2 columns NaN until assembled)",
                 "fold units: one row per grid point", "matrices stored by units in /sweep_units/values", true) {}

std::vector<double> SweepUnitTables::read_values(hid_t file, std::int64_t offset, std::int64_t count) {
  AppendTable values = AppendTable::open(file, std::string(kGroup) + "/values", nullptr);
  std::vector<double> out(static_cast<std::size_t>(count));
  values.read_rows(static_cast<hsize_t>(offset), static_cast<hsize_t>(count), out.data());
  return out;
}

SweepTables::SweepTables()
    : SweepStore(kGroup, Table<SweepTaskRow>("tasks", "one row per (data set, model): the commit record",
                                             with_ranges(task_fields(), kGroup)),
                 "one row per lambda (free) or per (lambda, lambda_d) (free_diag)",
                 "per fold and grid point: the values behind the means",
                 "stored matrices: slabs of /sweep/matrices/<task_id>/<name>", false) {}

void SweepTables::create(hid_t file) {
  store_.create(file);
  // The sd convention of every *_sd column (and of the one-SE rule), for h5py users.
  Handle ds = open_dataset(file, std::string(kGroup) + "/lambda");
  write_attr(ds.get(), "sd_ddof", std::int64_t{1});
  create_group(file, std::string(kGroup) + "/matrices");
}

MatrixStacks::MatrixStacks(hid_t file, const SweepTaskRow& task)
    : file_(file), group_(std::string(SweepTables::kGroup) + "/matrices/" + std::to_string(task.id)),
      lambda_units_(task.lambda_units) {
  Handle g = create_group(file, group_);
  write_attr(g.get(), "data", task.data);
  write_attr(g.get(), "model", task.model);
}

void MatrixStacks::stack(const std::string& name, std::int64_t slabs, std::int64_t rows, std::int64_t cols) {
  create_array(file_, group_ + "/" + name,
               {static_cast<hsize_t>(slabs), static_cast<hsize_t>(rows), static_cast<hsize_t>(cols)});
}

void MatrixStacks::write(const std::string& name, std::int64_t slab, const MatrixView& m) {
  Handle ds = open_dataset(file_, group_ + "/" + name);
  const auto piece = static_cast<std::int64_t>(slab_piece_rows(ds.get(), kPieceBytes));
  std::vector<double> buf;
  for (std::int64_t r = 0; r < m.rows; r += piece) {
    const std::int64_t nr = std::min(piece, m.rows - r);
    rows_of(m, r, nr, buf);
    write_slab_rows(ds.get(), static_cast<hsize_t>(slab), static_cast<hsize_t>(r), static_cast<hsize_t>(nr),
                    buf.data());
  }
}

void MatrixStacks::finish(const std::string& name, const std::vector<double>& lambda,
                          const std::vector<double>& lambda_d, const std::vector<double>& lambda_job,
                          const std::vector<double>& lambda_d_job, std::int64_t best_index) {
  Handle ds = open_dataset(file_, group_ + "/" + name);
  write_attr(ds.get(), "lambda", lambda);
  write_attr(ds.get(), "lambda_d", lambda_d);
  write_attr(ds.get(), "lambda_job", lambda_job);
  write_attr(ds.get(), "lambda_d_job", lambda_d_job);
  write_attr(ds.get(), "lambda_units", lambda_units_);
  write_attr(ds.get(), "best_index", best_index);
  write_attr(ds.get(), "dims", std::string("lambda, row, col"));
}

}  // namespace covfit::io
