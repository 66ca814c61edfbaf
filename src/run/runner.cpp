#include "covfit/run/runner.hpp"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <mutex>
#include <unordered_set>

#include <cblas.h>

#include "covfit/core/error.hpp"
#include "covfit/cov/sweep.hpp"
#include "covfit/data/cov_data.hpp"
#include "covfit/data/points.hpp"
#include "covfit/io/fit_tables.hpp"
#include "covfit/io/results_file.hpp"
#include "covfit/io/sweep_tables.hpp"
#include "covfit/run/writer.hpp"

namespace covfit::run {
namespace {

using Clock = std::chrono::steady_clock;

rbf::FitConfig fit_config(const job::Job& job, const job::TaskCoord& t, double variance) {
  const job::FitSettings& f = job.fit;
  rbf::FitConfig c;
  c.param = t.param;
  c.K = t.K;
  c.optimizer = t.optimizer;
  c.lr[0] = t.lr_weight;
  c.lr[1] = t.lr_centre;
  c.lr[2] = t.lr_shape;
  c.beta1 = f.beta1;
  c.beta2 = f.beta2;
  c.eps = f.eps;
  c.clip_grad = f.clip_grad;
  c.max_steps = f.max_steps;
  c.rel_tol = f.rel_tol;
  c.patience = f.patience;
  c.target_loss = f.target_loss;
  if (f.target_rel_variance > 0) {
    double t_rel = f.target_rel_variance * variance;
    c.target_loss = c.target_loss > 0 ? std::max(c.target_loss, t_rel) : t_rel;
  }
  c.target_losses = f.target_losses;
  c.log_every = f.log_every;
  c.f32 = f.f32;
  c.width_scale = f.width_scale;
  c.init = f.init;
  c.lr_final_ratio = f.lr_final_ratio;
  c.lm_mu0 = f.lm_mu0;
  c.bounds = f.bounds;
  c.seed = t.seed;
  return c;
}

// Progress on stderr: a rewritten line on a terminal, a line every few seconds otherwise.
class Progress {
 public:
  Progress(bool enabled, std::int64_t total, std::int64_t done, std::string score_name)
      : enabled_(enabled), tty_(isatty(2)), total_(total), done_(done), start_done_(done),
        score_name_(std::move(score_name)) {}
  // `score`: smaller is better (fits: final loss); NaN: not shown.
  void task_done(double score) {
    ++done_;
    if (std::isfinite(score)) best_ = std::min(best_, score);
    auto now = Clock::now();
    double since = std::chrono::duration<double>(now - last_).count();
    if (since >= (tty_ ? 0.5 : 5.0) || done_ == total_) print(now);
  }
  void finish() {
    if (enabled_ && tty_ && printed_) std::fputc('\n', stderr);
  }

 private:
  void print(Clock::time_point now) {
    last_ = now;
    if (!enabled_) return;
    double el = std::chrono::duration<double>(now - t0_).count();
    double rate = el > 0 ? static_cast<double>(done_ - start_done_) / el : 0;
    double eta = rate > 0 ? static_cast<double>(total_ - done_) / rate : 0;
    std::fprintf(stderr, "%scovfit: %lld/%lld tasks (%.0f%%)  %.2f tasks/s  ETA %.0fs",
                 tty_ ? "\r" : "", static_cast<long long>(done_), static_cast<long long>(total_),
                 total_ ? 100.0 * static_cast<double>(done_) / static_cast<double>(total_) : 100.0,
                 rate, eta);
    if (std::isfinite(best_)) std::fprintf(stderr, "  best %s %.3e", score_name_.c_str(), best_);
    std::fputs(tty_ ? "" : "\n", stderr);
    std::fflush(stderr);
    printed_ = true;
  }
  bool enabled_, tty_, printed_ = false;
  std::int64_t total_, done_, start_done_;
  std::string score_name_;
  double best_ = std::numeric_limits<double>::infinity();
  Clock::time_point t0_ = Clock::now(), last_ = Clock::now();
};

// What differs between job kinds: tables, and how one task is computed. Everything else
// (file, resume, lock, writer thread, progress, parallel loop) is shared.
class Kind {
 public:
  virtual ~Kind() = default;
  virtual void create_tables(hid_t file) = 0;           // in a new file
  virtual void open_tables(hid_t file) = 0;             // the live tables
  virtual io::TaskStore& store() = 0;
  // Copy finished tasks of an old file into a new one; returns their ids.
  virtual std::vector<std::int64_t> salvage(hid_t old_file, hid_t new_file,
                                            const std::function<bool(std::int64_t)>& accept) = 0;
  struct Done {
    std::string status;
    double score = std::nan("");
    std::function<void()> write;  // runs on the writer thread
  };
  // Empty `write`: interrupted, not written.
  virtual Done compute(std::int64_t id, int inner_threads, const std::atomic<bool>* stop) = 0;
  virtual std::string score_name() const = 0;
};

class FitKind : public Kind {
 public:
  explicit FitKind(const job::Job& job) : job_(job), n_targets_(static_cast<int>(job.fit.target_losses.size())), tables_(n_targets_) {
    for (const auto& spec : job.data) data_.push_back(data::load(spec));
    for (const auto& d : data_) variance_.push_back(d.variance());
  }
  void create_tables(hid_t f) override { io::FitTables(n_targets_).create(f, data_, job_.fit.target_losses); }
  void open_tables(hid_t f) override { tables_.open(f); }
  io::TaskStore& store() override { return tables_.store(); }
  std::vector<std::int64_t> salvage(hid_t old_file, hid_t new_file,
                                    const std::function<bool(std::int64_t)>& accept) override {
    io::FitTables old(n_targets_), fresh(n_targets_);
    old.open(old_file);
    fresh.open(new_file);
    return fresh.store().copy_tasks_from(old.store(), accept);
  }
  Done compute(std::int64_t id, int, const std::atomic<bool>* stop) override {
    job::TaskCoord task = job_.task(id);
    const auto di = static_cast<std::size_t>(task.data);
    const data::PointData& d = data_[di];
    rbf::FitResult result = rbf::fit(fit_config(job_, task, variance_[di]), {d.x, d.y, d.values}, stop);
    if (result.status == rbf::Status::interrupted) return {};
    Done done{std::string(rbf::status_name(result.status)), result.final_loss, nullptr};
    done.write = [this, task, var = variance_[di], name = d.name, r = std::move(result)] {
      tables_.append(task, name, var, r);
    };
    return done;
  }
  std::string score_name() const override { return "loss"; }

 private:
  const job::Job& job_;
  int n_targets_;
  std::vector<data::PointData> data_;
  std::vector<double> variance_;
  io::FitTables tables_;
};

class SweepKind : public Kind {
 public:
  explicit SweepKind(const job::Job& job) : job_(job) {
    for (const auto& spec : job.cov_data) data_.push_back(data::load_cov(spec));
    // Folds depend only on m: validate them now, before any file is touched.
    for (const auto& d : data_) folds_.push_back(make_folds(d.problem.X.cols));
  }
  void create_tables(hid_t f) override { io::SweepTables().create(f, data_); }
  void open_tables(hid_t f) override { tables_.open(f); }
  io::TaskStore& store() override { return tables_.store(); }
  std::vector<std::int64_t> salvage(hid_t old_file, hid_t new_file,
                                    const std::function<bool(std::int64_t)>& accept) override {
    io::SweepTables old, fresh;
    old.open(old_file);
    fresh.open(new_file);
    return fresh.store().copy_tasks_from(old.store(), accept);
  }
  Done compute(std::int64_t id, int inner_threads, const std::atomic<bool>* stop) override {
    job::SweepTask task = job_.sweep_task(id);
    const auto di = static_cast<std::size_t>(task.data);
    const job::SweepSettings& s = job_.sweep;
    cov::SweepConfig cfg;
    cfg.model = task.model == job::CovModel::free ? cov::SweepModel::free : cov::SweepModel::free_diag;
    cfg.lambdas = s.lambdas;
    cfg.lambda_relative = s.lambda_relative;
    cfg.lambda_d = s.lambda_d;
    cfg.folds = folds_[di];
    cfg.exact = s.exact;
    cfg.exact_max_rank = s.exact_max_rank;
    cfg.train_r2 = s.train_r2;
    cfg.store_lambdas = s.store_lambdas;
    cfg.store_all = s.store_all;
    cfg.threads = inner_threads;
    cfg.blas_threads = s.blas_threads;
    cov::SweepResult r = cov::run_sweep(data_[di].problem, cfg, stop);
    if (stop && stop->load()) return {};
    double score = r.best >= 0 ? -(r.best_exact >= 0 ? r.rows[static_cast<std::size_t>(r.best_exact)].r2_val_exact
                                                      : r.rows[static_cast<std::size_t>(r.best)].r2_val)
                               : std::nan("");
    Done done{r.ok ? "ok" : "failed", score, nullptr};
    done.write = [this, id, name = data_[di].name, model = job::cov_model_name(task.model),
                  centred = data_[di].centred_by_us, res = std::move(r)] {
      tables_.append(id, name, model, centred, res);
    };
    return done;
  }
  std::string score_name() const override { return "-R2"; }

 private:
  std::vector<cov::Fold> make_folds(int m) const {
    const job::SweepSettings& s = job_.sweep;
    if (!s.val.empty()) return {cov::explicit_split(m, s.val, job_.path + ": sweep.val")};
    return cov::kfold_split(m, s.folds, s.fold_seed, job_.path + ": sweep.folds");
  }
  const job::Job& job_;
  std::vector<data::CovData> data_;
  std::vector<std::vector<cov::Fold>> folds_;
  io::SweepTables tables_;
};

}  // namespace

RunSummary run_job(const job::Job& job, const RunOptions& opt, const std::atomic<bool>* stop) {
  auto t0 = Clock::now();
  // Everything that can be wrong with the input is checked before the file is touched.
  std::unique_ptr<Kind> kind;
  if (job.kind == "sweep") kind = std::make_unique<SweepKind>(job);
  else kind = std::make_unique<FitKind>(job);

  const std::int64_t total = job.task_count();
  std::vector<std::int64_t> mine;
  for (std::int64_t id = opt.shard.index; id < total; id += opt.shard.count) mine.push_back(id);

  io::FileMeta meta;
  meta.job_name = job.name;
  meta.job_kind = job.kind;
  meta.job_toml = job.text;
  meta.job_hash = job.hash;
  meta.shard_index = opt.shard.index;
  meta.shard_count = opt.shard.count;
  meta.tasks_total = total;
  meta.tasks_in_file = static_cast<std::int64_t>(mine.size());

  io::OutputLock lock(opt.output);
  std::vector<std::int64_t> done_list;
  io::ResultsFile file = io::ResultsFile::open(
      opt.output, meta, opt.overwrite, [&](hid_t f) { kind->create_tables(f); },
      [&](hid_t old_file, hid_t new_file) {
        done_list = kind->salvage(old_file, new_file, [&](std::int64_t id) {
          return id >= 0 && id < total && id % opt.shard.count == opt.shard.index;
        });
      });
  kind->open_tables(file.id());
  std::unordered_set<std::int64_t> done(done_list.begin(), done_list.end());
  file.flush();
  file.start_swmr();

  RunSummary summary;
  summary.tasks_in_shard = static_cast<std::int64_t>(mine.size());
  summary.already_done = static_cast<std::int64_t>(done.size());
  std::vector<std::int64_t> todo;
  for (std::int64_t id : mine)
    if (!done.count(id)) todo.push_back(id);
  if (opt.max_tasks >= 0 && static_cast<std::int64_t>(todo.size()) > opt.max_tasks)
    todo.resize(static_cast<std::size_t>(opt.max_tasks));
  if (opt.progress && summary.already_done > 0)
    std::fprintf(stderr, "covfit: resuming %s: %lld of %lld tasks already done\n",
                 opt.output.c_str(), static_cast<long long>(summary.already_done),
                 static_cast<long long>(summary.tasks_in_shard));

  Progress progress(opt.progress, summary.tasks_in_shard, summary.already_done, kind->score_name());
  const int threads = opt.threads > 0 ? opt.threads : omp_get_max_threads();
  // Many tasks: parallel over tasks, each single-threaded. Fewer tasks than threads
  // (a few big sweeps): one task at a time, parallel inside it.
  const bool outer = static_cast<int>(todo.size()) >= threads;
  const int outer_threads = outer ? threads : 1, inner_threads = outer ? 1 : threads;
  std::mutex summary_mu;
  {
    SerialWriter writer([&] { kind->store().flush(); file.flush(); },
                        std::chrono::milliseconds(static_cast<int>(opt.flush_seconds * 1000)));
    writer.submit([] { io::quiet_hdf5_errors(); });  // HDF5 error printing is per thread
    if (outer) openblas_set_num_threads(1);  // tasks are the parallelism
    std::exception_ptr failure;
#pragma omp parallel for schedule(dynamic, 1) num_threads(outer_threads)
    for (std::size_t i = 0; i < todo.size(); ++i) {
      if ((stop && stop->load()) || failure) continue;
      try {
        Kind::Done done = kind->compute(todo[i], inner_threads, stop);
        if (!done.write) continue;  // interrupted: recomputed on resume
        writer.submit([&, write = std::move(done.write), score = done.score] {
          write();
          progress.task_done(score);
        });
        std::lock_guard guard(summary_mu);
        ++summary.computed;
        ++summary.by_status[done.status];
      } catch (...) {
#pragma omp critical(covfit_failure)
        if (!failure) failure = std::current_exception();
      }
    }
    writer.close();
    if (failure) std::rethrow_exception(failure);
  }
  progress.finish();
  file.close();
  summary.interrupted = stop && stop->load();
  summary.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return summary;
}

}  // namespace covfit::run
