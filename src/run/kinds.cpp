#include "kinds.hpp"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>

#include "covfit/core/error.hpp"
#include "covfit/core/limits.hpp"
#include "covfit/cov/sweep.hpp"
#include "covfit/data/cov_data.hpp"
#include "covfit/data/points.hpp"
#include "covfit/io/fit_tables.hpp"
#include "covfit/io/sweep_tables.hpp"
#include "rows.hpp"

namespace covfit::run {
namespace {

// Copy finished tasks between two files of one job kind (resume, merge).
template <class Tables, class... Args>
std::vector<std::int64_t> copy_between(hid_t from, hid_t to,
                                       const std::function<bool(std::int64_t)>& accept,
                                       Args... args) {
  Tables old(args...), fresh(args...);
  old.open(from);
  fresh.open(to);
  return fresh.store().copy_tasks_from(old.store(), accept);
}

rbf::FitConfig fit_config(const job::Job& job, const job::TaskCoord& t, double variance) {
  rbf::FitConfig c = job.fit.base;
  c.param = t.param;
  c.K = t.K;
  c.optimizer = t.optimizer;
  c.lr[0] = t.lr_weight;
  c.lr[1] = t.lr_centre;
  c.lr[2] = t.lr_shape;
  c.seed = t.seed;
  if (job.fit.target_rel_variance > 0) {  // the tighter of the two targets
    const double t_rel = job.fit.target_rel_variance * variance;
    c.target_loss = c.target_loss > 0 ? std::max(c.target_loss, t_rel) : t_rel;
  }
  return c;
}

class FitKind : public Kind {
 public:
  explicit FitKind(const job::Job& job)
      : job_(job), n_targets_(static_cast<int>(job.fit.base.target_losses.size())), tables_(n_targets_) {}
  void load_data() override {
    for (const auto& spec : job_.data) data_.push_back(data::load(spec));
    for (const auto& d : data_) variance_.push_back(d.variance());
  }
  std::vector<std::string> describe_data() const override {
    std::vector<std::string> out;
    for (const auto& d : data_)
      out.push_back(d.name + ": " + std::to_string(d.x.size()) + " points, variance " +
                    std::to_string(d.variance()));
    return out;
  }
  // Per task: curve rows every log_every steps, K kernels, K * 6 raw values, one task row.
  double expected_bytes() const override {
    const auto& c = job_.fit.base;
    double bytes = 0;
    for (std::int64_t id = 0; id < job_.task_count(); ++id) {
      const job::TaskCoord t = job_.task(id);
      bytes += 80.0 * (c.max_steps / std::max(1, c.log_every) + 2) + 104.0 * t.K + 400.0;
    }
    return bytes;
  }
  // Adam: every task to max_steps at ~1.5 ns per kernel-point pair per step (measured: 4096
  // points, K = 16, 3000 steps in 0.3 s). LM / VarPro: ~1.5 ns per point and K² per step
  // (culled Jacobian blocks; measured: jobs/real_grid_lm.toml, 138,632 points, K = 25,
  // 200 steps in 25-31 s), typically tens of steps (assumed 50, or max_steps if smaller;
  // lm_max_steps if set).
  double rough_cpu_seconds() const override {
    const auto& c = job_.fit.base;
    double s = 0;
    for (std::int64_t id = 0; id < job_.task_count(); ++id) {
      const job::TaskCoord t = job_.task(id);
      const double N = static_cast<double>(data_[static_cast<std::size_t>(t.data)].x.size());
      const double per_step = t.optimizer == rbf::Optimizer::adam ? 1.5e-9 * N * t.K
                                                                  : 1.5e-9 * N * t.K * t.K;
      // LM / VarPro: lm_max_steps when set (a job that sets it expects to use it), else
      // max_steps capped at a typical 50.
      const int lm_steps = c.lm_max_steps > 0 ? c.lm_max_steps : std::min(c.max_steps, 50);
      const int steps = t.optimizer == rbf::Optimizer::adam ? c.max_steps : lm_steps;
      s += per_step * steps;
    }
    return s;
  }
  void create_data(hid_t f) override { write_fit_data(f, data_); }
  void create_tables(hid_t f) override { io::FitTables(n_targets_).create(f, job_.fit.base.target_losses); }
  void open_tables(hid_t f) override { tables_.open(f); }
  // The per-group summary (/fit/summary), once every task is in the file.
  void finalize(hid_t f) override { io::FitTables::write_summary(f); }
  io::TaskStore& store() override { return tables_.store(); }
  std::vector<std::int64_t> copy_tasks(hid_t old_file, hid_t new_file,
                                      const std::function<bool(std::int64_t)>& accept) override {
    return copy_between<io::FitTables>(old_file, new_file, accept, n_targets_);
  }
  Done compute(std::int64_t id, int inner_threads, const std::atomic<bool>* stop) override {
    job::TaskCoord task = job_.task(id);
    const auto di = static_cast<std::size_t>(task.data);
    const data::PointData& d = data_[di];
    rbf::FitConfig cfg = fit_config(job_, task, variance_[di]);
    cfg.threads = inner_threads;
    rbf::FitResult result = rbf::fit(cfg, {d.x, d.y, d.values, d.grid ? &*d.grid : nullptr}, stop);
    if (result.status == rbf::Status::interrupted) return {};
    Done done{std::string(rbf::status_name(result.status)), result.final_loss, nullptr};
    done.write = [this, task, var = variance_[di], stop = cfg.target_loss, name = d.name,
                  r = std::move(result)] {
      append_fit(tables_, task, name, var, stop, r);
    };
    return done;
  }
  std::string score_name() const override { return "loss"; }
  bool higher_is_better() const override { return false; }
  // Only large data sets: small fits are better run side by side, one per thread.
  bool parallel_inside_task() const override {
    for (const auto& d : data_)
      if (d.x.size() >= rbf::kParallelPointsMin) return true;
    return false;
  }

 private:
  const job::Job& job_;
  int n_targets_;
  std::vector<data::PointData> data_;
  std::vector<double> variance_;
  io::FitTables tables_;
};

class SweepKind : public Kind {
 public:
  SweepKind(const job::Job& job, bool progress, const std::atomic<bool>* stop)
      : job_(job), progress_(progress), stop_(stop) {}
  void load_data() override {
    for (const auto& spec : job_.cov_data) data_.push_back(data::load_cov(spec));
    // Folds depend only on m: validate them now, before any file is touched.
    for (const auto& d : data_) folds_.push_back(make_folds(d.problem.X.cols));
    // Refuse a problem that cannot fit before any file exists. What a process holds for a
    // data set (8-byte doubles; r = min(n, m)) besides X and S: the full reduction (U, V, R) and,
    // while dgesdd runs, its copy of X and workspace; the folds' reductions it keeps (the
    // cache) and two in flight (X_tr and the SVD's workspace); the stored matrices (each
    // once: written from its own buffer in pieces of a few MB).
    const double threads = std::max(1, omp_get_max_threads());
    for (const auto& d : data_)
      for (job::CovModel m : job_.sweep.models) {
        const double n = d.problem.X.rows, mm = d.problem.X.cols, r = std::min(n, mm);
        const auto& fs = folds_[static_cast<std::size_t>(&d - data_.data())];
        const double folds = static_cast<double>(fs.size());
        double m_tr = 0;  // the largest train block
        for (const auto& f : fs) m_tr = std::max(m_tr, static_cast<double>(f.train.size()));
        const double r_f = std::min(n, m_tr);
        const double kept = std::min(folds, job_.sweep_blocks(m) > 1 ? std::max(threads + 1, folds) : threads + 1);
        const double fold = n * r_f + 3 * mm * r_f + mm * mm;
        // (X and S are loaded already: the available memory no longer counts them.)
        const double doubles = (n * r + 2 * mm * r + r * r) + (n * mm + 5 * r * r) + kept * fold +
                               std::min(threads, 2.0) * (n * m_tr + 5 * r_f * r_f);
        check_memory(8.0 * doubles + cov::sweep_store_bytes(sweep_config(m), d.problem.X.rows, d.problem.X.cols),
                     "data '" + d.name + "'", "a sweep task on X (" + std::to_string(d.problem.X.rows) +
                         " x " + std::to_string(d.problem.X.cols) + ")");
      }
    if (progress_) {
      // Stored W matrices are n x n each: say how much before computing anything.
      double bytes = 0;
      for (const auto& d : data_)
        for (job::CovModel m : job_.sweep.models)
          bytes += cov::sweep_store_bytes(sweep_config(m), d.problem.X.rows, d.problem.X.cols);
      std::fprintf(stderr, "covfit: stored matrices will take about %.1f MB (before compression)\n",
                   bytes / 1e6);
    }
  }
  std::vector<std::string> describe_data() const override {
    std::vector<std::string> out;
    for (const auto& d : data_)
      out.push_back(d.name + ": X " + std::to_string(d.problem.X.rows) + " x " +
                    std::to_string(d.problem.X.cols) + ", S " + std::to_string(d.problem.S.rows) +
                    " x " + std::to_string(d.problem.S.cols) +
                    (d.centred_by_us ? " (X's columns will be centred)" : ""));
    return out;
  }
  double expected_bytes() const override {
    double bytes = 0;
    const std::size_t L = job_.sweep.base.lambdas.size() *
                          std::max<std::size_t>(1, job_.sweep.base.lambda_d.size());
    for (std::size_t di = 0; di < data_.size(); ++di)
      for (job::CovModel m : job_.sweep.models) {
        const auto& X = data_[di].problem.X;
        // The stored matrices, in the summary (units keep r x r solutions only).
        bytes += cov::sweep_store_bytes(sweep_config(m), X.rows, X.cols);
        bytes += 2.0 * static_cast<double>(L) * (250.0 + 60.0 * static_cast<double>(folds_[di].size()));
      }
    return bytes;
  }
  // Exact: scaled from jobs/sweep_planted.toml (n = 500, m = 200, 200 lambdas, 5 folds:
  // ~35 s on one core), per fit (folds + full data) and lambda, ~O(min(n, m)^3).
  // Linearised: the SVDs and about as much again along the lambda path (perf/README.md:
  // n = 2000, m = 500, 5 folds, 1000 lambdas: ~2 s), O(n m min(n, m)) per fit.
  double rough_cpu_seconds() const override {
    double s = 0;
    const double L = static_cast<double>(job_.sweep.base.lambdas.size() *
                                         std::max<std::size_t>(1, job_.sweep.base.lambda_d.size()));
    for (std::size_t di = 0; di < data_.size(); ++di) {
      const auto& X = data_[di].problem.X;
      const double n = X.rows, m = X.cols, r = std::min(n, m);
      const double fits = static_cast<double>(folds_[di].size() + 1);
      for (std::size_t mi = 0; mi < job_.sweep.models.size(); ++mi)
        s += job_.sweep.base.exact && r <= job_.sweep.base.exact_max_rank
                 ? 35.0 * (L / 200.0) * (fits / 6.0) * std::pow(r / 200.0, 3.0)
                 : fits * 7e-10 * n * m * r;
    }
    return s;
  }
  void create_data(hid_t f) override { write_sweep_data(f, data_); }
  void create_tables(hid_t f) override { io::SweepUnitTables().create(f); }
  void open_tables(hid_t f) override {
    tables_ = std::make_unique<io::SweepUnitTables>();
    tables_->open(f);
  }
  void close_tables() override { tables_.reset(); }
  io::TaskStore& store() override { return tables_->store(); }
  bool finalize_needs_data() const override { return true; }
  // Every unit is committed: assemble each task's summary from its units (recomputing
  // what depends on the best lambda) and write /sweep.
  void finalize(hid_t f) override {
    if (io::exists(f, io::SweepTables::kGroup)) return;
    std::map<std::int64_t, std::vector<cov::SweepUnitResult>> units = read_sweep_units(f);
    io::SweepTables summary;
    summary.create(f);
    for (std::int64_t id = 0; id < job_.sweep_task_count(); ++id) {
      const job::SweepTask task = job_.sweep_task(id);
      const auto di = static_cast<std::size_t>(task.data);
      cov::SweepConfig cfg = sweep_config(task.model);
      cfg.folds = folds_[di];
      if (progress_)
        std::fprintf(stderr, "covfit: assembling task %lld (%s/%s) from %zu units\n", static_cast<long long>(id),
                     data_[di].name.c_str(), job::cov_model_name(task.model).c_str(), units[id].size());
      // Stored matrices (n x n) are formed and written one lambda at a time.
      std::shared_ptr<cov::SweepData> data = shared_data(task.data);
      cov::SweepResult r = cov::assemble_sweep(*data, cfg, std::move(units[id]), stop_, true);
      if (stop_ && stop_->load()) throw Interrupted();
      append_sweep(f, summary, id, data_[di].name, job::cov_model_name(task.model), data_[di].centred_by_us,
                   job_.sweep.base.lambda_relative, r,
                   [&](const cov::StorePoint& at) { return cov::form_stored(*data, at); });
    }
    summary.flush();
  }
  std::vector<std::int64_t> copy_tasks(hid_t old_file, hid_t new_file,
                                      const std::function<bool(std::int64_t)>& accept) override {
    return copy_between<io::SweepUnitTables>(old_file, new_file, accept);
  }
  Done compute(std::int64_t id, int inner_threads, const std::atomic<bool>* stop) override {
    const job::SweepUnit unit = job_.sweep_unit(id);
    const auto di = static_cast<std::size_t>(unit.task.data);
    cov::SweepConfig cfg = sweep_config(unit.task.model);
    cfg.folds = folds_[di];
    cfg.threads = inner_threads;
    const std::string label = data_[di].name + "/" + job::cov_model_name(unit.task.model) + " " +
                              (unit.part < 0 ? std::string("full data") : "fold " + std::to_string(unit.part)) +
                              ", lambda block " + std::to_string(unit.block + 1) + "/" + std::to_string(unit.blocks);
    if (progress_) {
      // A unit can run for minutes: after 5 s, report its exact solves every 5 s.
      auto t0 = std::chrono::steady_clock::now();
      auto last = std::make_shared<double>(-1.0);
      cfg.on_progress = [t0, last, label, id](const cov::SweepProgress& p) {
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (s < 5.0 || s - *last < 5.0 || p.lambdas_total == 0) return;
        *last = s;
        std::fprintf(stderr,
                     "covfit: unit %lld (%s): exact lambda %lld/%lld solved (%d budget, %d not converged), %.1f s\n",
                     static_cast<long long>(id), label.c_str(), p.lambdas_done, p.lambdas_total, p.budget,
                     p.not_converged, s);
      };
    }
    cov::SweepUnitResult r = cov::run_sweep_unit(*shared_data(unit.task.data), cfg, unit.part, unit.block, stop);
    if (stop && stop->load()) return {};
    Done done{r.ok ? "ok" : "failed", std::nan(""), nullptr};
    done.write = [this, unit, name = data_[di].name, model = job::cov_model_name(unit.task.model),
                  res = std::move(r)] { append_sweep_unit(*tables_, unit, name, model, run_id_, res); };
    return done;
  }
  std::string score_name() const override { return "val R2"; }
  std::string item_name() const override { return "work units"; }
  bool higher_is_better() const override { return true; }
  bool parallel_inside_task() const override { return true; }
  void set_run_id(const std::string& id) override { run_id_ = id; }
  // A part's lambda blocks form a chain: a committed unit's end starts its successor.
  void resume_from(hid_t f) override {
    for (auto& [task_id, units] : read_sweep_units(f)) {
      const job::SweepTask task = job_.sweep_task(task_id);
      for (const cov::SweepUnitResult& u : units)
        shared_data(task.data)->set_warm(sweep_config(task.model).model, u.part, u.block, u.warm_end);
    }
  }
  void will_compute(const std::vector<std::int64_t>& ids) override {
    for (std::int64_t id : ids) {
      const job::SweepUnit u = job_.sweep_unit(id);
      shared_data(u.task.data)->expect(sweep_config(u.task.model).model, u.part, u.block);
    }
  }
  // blas_threads > 1 sets OpenBLAS's process-wide thread count for each full-data SVD:
  // run units one at a time so every SVD gets it (same bits whatever -t or the schedule).
  bool one_task_at_a_time() const override { return job_.sweep.base.blas_threads > 1; }

 private:
  cov::SweepConfig sweep_config(job::CovModel model) const {
    cov::SweepConfig cfg = job_.sweep.base;
    cfg.model = model == job::CovModel::free ? cov::SweepModel::free : cov::SweepModel::free_diag;
    return cfg;
  }
  std::vector<cov::Fold> make_folds(int m) const {
    const job::SweepSettings& s = job_.sweep;
    if (!s.val.empty()) return {cov::explicit_split(m, s.val, job_.path + ": sweep.val")};
    return cov::kfold_split(m, s.folds, s.fold_seed, job_.path + ": sweep.folds");
  }
  // The reductions (and warm starts) of a data set, shared by its units in this process.
  // Units are handed out in id order, data set by data set: once a unit of data set d
  // starts, every unit of data sets before d - 1 has started (and holds what it uses),
  // so those are dropped here.
  std::shared_ptr<cov::SweepData> shared_data(int d) {
    std::lock_guard lock(data_mu_);
    auto it = shared_.find(d);
    if (it == shared_.end()) {
      const int threads = std::max(1, omp_get_max_threads());
      // A chain of lambda blocks revisits every fold once per block: keep them all then.
      const bool chains = job_.sweep.base.lambdas.size() > 1 &&
                          job_.sweep_blocks(job::CovModel::free) > 1;
      const int capacity = chains ? std::max(threads + 1, job_.sweep_folds()) : threads + 1;
      it = shared_.emplace(d, std::make_shared<cov::SweepData>(data_[static_cast<std::size_t>(d)].problem,
                                                               folds_[static_cast<std::size_t>(d)],
                                                               job_.sweep.base.blas_threads, capacity))
               .first;
    }
    if (d > newest_) {
      newest_ = d;
      for (auto j = shared_.begin(); j != shared_.end();) j = j->first < d - 1 ? shared_.erase(j) : std::next(j);
    }
    return it->second;
  }
  const job::Job& job_;
  bool progress_;
  const std::atomic<bool>* stop_;
  std::vector<data::CovData> data_;
  std::vector<std::vector<cov::Fold>> folds_;
  std::unique_ptr<io::SweepUnitTables> tables_;
  std::string run_id_;
  std::mutex data_mu_;
  std::map<int, std::shared_ptr<cov::SweepData>> shared_;
  int newest_ = -1;
};

}  // namespace

std::unique_ptr<Kind> make_kind(const job::Job& job, bool progress, const std::atomic<bool>* stop) {
  if (job.kind == "sweep") return std::make_unique<SweepKind>(job, progress, stop);
  return std::make_unique<FitKind>(job);
}

}  // namespace covfit::run
