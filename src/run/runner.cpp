#include "covfit/run/runner.hpp"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <mutex>
#include <unordered_set>

#include <cblas.h>

#include "covfit/data/points.hpp"
#include "covfit/io/fit_tables.hpp"
#include "covfit/io/results_file.hpp"
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
  Progress(bool enabled, std::int64_t total, std::int64_t done)
      : enabled_(enabled), tty_(isatty(2)), total_(total), done_(done), start_done_(done) {}
  void task_done(double final_loss) {
    ++done_;
    if (std::isfinite(final_loss)) best_ = std::min(best_, final_loss);
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
    std::fprintf(stderr, "%scovfit: %lld/%lld tasks (%.0f%%)  %.2f tasks/s  ETA %.0fs  best loss %.3e%s",
                 tty_ ? "\r" : "", static_cast<long long>(done_), static_cast<long long>(total_),
                 total_ ? 100.0 * static_cast<double>(done_) / static_cast<double>(total_) : 100.0,
                 rate, eta, best_, tty_ ? "" : "\n");
    std::fflush(stderr);
    printed_ = true;
  }
  bool enabled_, tty_, printed_ = false;
  std::int64_t total_, done_, start_done_;
  double best_ = std::numeric_limits<double>::infinity();
  Clock::time_point t0_ = Clock::now(), last_ = Clock::now();
};

}  // namespace

RunSummary run_job(const job::Job& job, const RunOptions& opt, const std::atomic<bool>* stop) {
  auto t0 = Clock::now();
  // Everything that can be wrong with the input is checked before the file is touched.
  std::vector<data::PointData> data;
  for (const auto& spec : job.data) data.push_back(data::load(spec));
  std::vector<double> variance;
  for (const auto& d : data) variance.push_back(d.variance());

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

  const int n_targets = static_cast<int>(job.fit.target_losses.size());
  io::OutputLock lock(opt.output);
  io::FitTables tables(n_targets);
  std::vector<std::int64_t> done_list;
  io::ResultsFile file = io::ResultsFile::open(
      opt.output, meta, opt.overwrite,
      [&](hid_t f) { io::FitTables(n_targets).create(f, data, job.fit.target_losses); },
      [&](hid_t old_file, hid_t new_file) {
        io::FitTables old(n_targets), fresh(n_targets);
        old.open(old_file);
        fresh.open(new_file);
        done_list = fresh.store().copy_tasks_from(old.store(), [&](std::int64_t id) {
          return id >= 0 && id < total && id % opt.shard.count == opt.shard.index;
        });
      });
  tables.open(file.id());
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

  Progress progress(opt.progress, summary.tasks_in_shard, summary.already_done);
  std::mutex summary_mu;
  {
    SerialWriter writer([&] { tables.flush(); file.flush(); },
                        std::chrono::milliseconds(static_cast<int>(opt.flush_seconds * 1000)));
    writer.submit([] { io::quiet_hdf5_errors(); });  // HDF5 error printing is per thread
    openblas_set_num_threads(1);  // one BLAS thread per task: tasks are the parallelism
    const int threads = opt.threads > 0 ? opt.threads : omp_get_max_threads();
    std::exception_ptr failure;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (std::size_t i = 0; i < todo.size(); ++i) {
      if ((stop && stop->load()) || failure) continue;
      try {
        job::TaskCoord task = job.task(todo[i]);
        const data::PointData& d = data[static_cast<std::size_t>(task.data)];
        rbf::FitConfig cfg = fit_config(job, task, variance[static_cast<std::size_t>(task.data)]);
        rbf::FitResult result = rbf::fit(cfg, {d.x, d.y, d.values}, stop);
        if (result.status == rbf::Status::interrupted) continue;  // recomputed on resume
        std::string status(rbf::status_name(result.status));
        double var = variance[static_cast<std::size_t>(task.data)];
        writer.submit([&, task, var, name = d.name, r = std::move(result)] {
          tables.append(task, name, var, r);
          progress.task_done(r.final_loss);
        });
        std::lock_guard lock(summary_mu);
        ++summary.computed;
        ++summary.by_status[status];
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
