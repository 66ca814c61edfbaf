#include "covfit/run/runner.hpp"

#include <omp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <unordered_set>

#include <cblas.h>

#include "covfit/core/error.hpp"
#include "covfit/core/limits.hpp"
#include "covfit/core/parallel.hpp"
#include "covfit/io/results_file.hpp"
#include "covfit/run/writer.hpp"
#include "kinds.hpp"
#include "provenance.hpp"

namespace covfit::run {
namespace {

using Clock = std::chrono::steady_clock;

// Progress on stderr: a rewritten line on a terminal, a line every few seconds otherwise.
class Progress {
 public:
  Progress(bool enabled, std::int64_t total, std::int64_t done, std::string score_name,
           bool higher_is_better, std::string items)
      : enabled_(enabled), tty_(isatty(2)), total_(total), done_(done), start_done_(done),
        score_name_(std::move(score_name)), items_(std::move(items)), sign_(higher_is_better ? -1.0 : 1.0) {}
  // `score`: the task's headline number (fits: final loss; sweeps: best R2); NaN: none.
  void task_done(double score) {
    ++done_;
    if (std::isfinite(score)) best_ = std::min(best_, sign_ * score);
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
    std::fprintf(stderr, "%scovfit: %lld/%lld %s (%.0f%%)  %.2f/s  ETA %.0fs",
                 tty_ ? "\r" : "", static_cast<long long>(done_), static_cast<long long>(total_),
                 items_.c_str(),
                 total_ ? 100.0 * static_cast<double>(done_) / static_cast<double>(total_) : 100.0,
                 rate, eta);
    if (std::isfinite(best_)) std::fprintf(stderr, "  best %s %.4g", score_name_.c_str(), sign_ * best_);
    std::fputs(tty_ ? "" : "\n", stderr);
    std::fflush(stderr);
    printed_ = true;
  }
  bool enabled_, tty_, printed_ = false;
  std::int64_t total_, done_, start_done_;
  std::string score_name_, items_;
  double sign_;  // -1: higher is better (best_ holds the negated score)
  double best_ = std::numeric_limits<double>::infinity();
  Clock::time_point t0_ = Clock::now(), last_ = Clock::now();
};

// Same file (device + inode), whatever the names: `-o JOB.toml` or `-o INPUT.h5` through
// any path, symlink or hard link.
bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {}, sb {};
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

// Everything about the output that can be wrong, before it is created or touched.
void check_output(const job::Job& job, const Kind& kind, const RunOptions& opt, bool resume) {
  std::vector<std::pair<std::string, std::string>> inputs = {{job.path, "the job file"}};
  for (const auto& d : job.data)
    if (d.source == "hdf5") inputs.push_back({d.file, "input file of data set '" + d.name + "'"});
  for (const auto& d : job.cov_data)
    if (d.source == "hdf5") inputs.push_back({d.file, "input file of data set '" + d.name + "'"});
  for (const auto& [path, role] : inputs)
    if (same_file(opt.output, path))
      throw InputError(opt.output, "is " + role + " (" + path + "); refusing to write results over it");
  // The estimate is before compression, so it errs on the large side.
  namespace fs = std::filesystem;
  const fs::path parent = fs::path(opt.output).parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  const double need = kind.expected_bytes() * (resume ? 2.0 : 1.0);
  const double have = free_disk_bytes(dir);
  if (need > have)
    throw InputError(opt.output, "the results need about " + human_bytes(need) +
                                     " (before compression" + (resume ? ", twice for the resume copy" : "") +
                                     "); only " + human_bytes(have) + " is free in " + dir);
}

}  // namespace

std::int64_t shard_size(const job::Job& job, std::int64_t index, std::int64_t count) {
  std::int64_t n = 0;
  for (std::int64_t id = 0; id < job.task_count(); ++id) n += job.shard_key(id) % count == index;
  return n;
}

JobPlan plan_job(const job::Job& job) {
  std::unique_ptr<Kind> kind = make_kind(job, false);
  kind->load_data();
  JobPlan p;
  p.tasks = job.task_count();
  p.data = kind->describe_data();
  p.output_bytes = kind->expected_bytes();
  p.cpu_seconds = kind->rough_cpu_seconds();
  return p;
}

RunSummary run_job(const job::Job& job, const RunOptions& opt, const std::atomic<bool>* stop) {
  auto t0 = Clock::now();
  check_threads(opt.threads, "-t " + std::to_string(opt.threads));
  if (opt.threads == 0)  // the default comes from OpenMP, i.e. OMP_NUM_THREADS if set
    check_threads(omp_get_max_threads(), "OMP_NUM_THREADS=" + std::to_string(omp_get_max_threads()));
  // Everything that can be wrong with the input is checked before the file is touched.
  std::unique_ptr<Kind> kind = make_kind(job, opt.progress, stop);
  kind->load_data();
  {
    std::error_code ec;
    check_output(job, *kind, opt, !opt.overwrite && std::filesystem::exists(opt.output, ec));
  }
  if (stop && stop->load()) {  // a signal while the data were loaded: nothing written yet
    RunSummary s;
    s.interrupted = true;
    return s;
  }

  const std::int64_t total = job.task_count();
  std::vector<std::int64_t> mine;
  for (std::int64_t id = 0; id < total; ++id)
    if (job.shard_key(id) % opt.shard.count == opt.shard.index) mine.push_back(id);

  io::FileMeta meta;
  meta.job_name = job.name;
  meta.job_kind = job.kind;
  meta.job_toml = job.text;
  meta.job_hash = job.hash;
  meta.shard_index = opt.shard.index;
  meta.shard_count = opt.shard.count;
  meta.tasks_total = total;
  meta.tasks_in_file = static_cast<std::int64_t>(mine.size());
  const int threads = opt.threads > 0 ? opt.threads : omp_get_max_threads();
  meta.extra = provenance(job, threads, opt.command_line);
  meta.writers = {writer_line(meta.extra)};

  if (opt.writing) opt.writing->store(true);  // from here a signal must end the run cleanly
  io::OutputLock lock(opt.output);
  std::vector<std::int64_t> done_list;
  io::ResultsFile file = io::ResultsFile::open(
      opt.output, meta, opt.overwrite,
      [&](hid_t f) {
        kind->create_data(f);
        kind->create_tables(f);
      },
      [&](hid_t old_file, hid_t new_file) {
        done_list = kind->copy_tasks(old_file, new_file, [&](std::int64_t id) {
          return id >= 0 && id < total && job.shard_key(id) % opt.shard.count == opt.shard.index;
        });
      });
  lock.hold_inode();  // the file now at opt.output (new, or the resumed copy)
  kind->open_tables(file.id());
  kind->set_run_id(io::host_name() + ":" + std::to_string(::getpid()) + ":" + io::utc_now_iso());
  std::unordered_set<std::int64_t> done(done_list.begin(), done_list.end());
  kind->resume_from(file.id());
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
  kind->will_compute(todo);
  if (opt.progress && summary.already_done > 0)
    std::fprintf(stderr, "covfit: resuming %s: %lld of %lld %s already done\n",
                 opt.output.c_str(), static_cast<long long>(summary.already_done),
                 static_cast<long long>(summary.tasks_in_shard), kind->item_name().c_str());

  Progress progress(opt.progress, summary.tasks_in_shard, summary.already_done,
                    kind->score_name(), kind->higher_is_better(), kind->item_name());
  // Many tasks: side by side, one thread each. Fewer tasks than threads, and a kind that
  // can use threads inside a task (sweeps: folds; large fits: points): the threads are
  // shared out among the remaining tasks. Some kinds need one task at a time.
  const int n_todo = static_cast<int>(std::max<std::size_t>(todo.size(), 1));
  int outer_threads = std::min(threads, n_todo), inner_threads = 1;
  if (kind->one_task_at_a_time()) {
    outer_threads = 1;
    inner_threads = threads;
  } else if (n_todo < threads && kind->parallel_inside_task()) {
    inner_threads = std::max(1, threads / n_todo);
  }
  std::mutex summary_mu;
  try {
    SerialWriter writer([&] { kind->store().flush(); file.flush(); },
                        std::chrono::milliseconds(static_cast<int>(opt.flush_seconds * 1000)));
    writer.submit([] { io::quiet_hdf5_errors(); });  // HDF5 error printing is per thread
    // BLAS on one thread: tasks (or folds) are the parallelism, and results must not
    // depend on the thread count. (A sweep with blas_threads > 1 raises it inside its units, run one at a time.)
    openblas_set_num_threads(1);
    parallel_items(static_cast<long long>(todo.size()), outer_threads, stop, [&](long long i) {
      Kind::Done done = kind->compute(todo[static_cast<std::size_t>(i)], inner_threads, stop);
      if (!done.write) return;  // interrupted: recomputed on resume
      writer.submit([&, write = std::move(done.write), score = done.score] {
        write();
        progress.task_done(score);
      });
      std::lock_guard guard(summary_mu);
      ++summary.computed;
      ++summary.by_status[done.status];
    });
    writer.close();
  } catch (const InputError&) {
    throw;
  } catch (const std::exception& e) {  // disk full, I/O error: name the file
    throw RuntimeError(opt.output + ": " + e.what());
  }
  progress.finish();
  // Its open datasets would keep the file open (SWMR flags set) past close; a kind whose
  // finalize needs the data keeps them.
  const bool keep_kind = kind->finalize_needs_data();
  if (keep_kind) kind->close_tables();
  else kind.reset();
  file.close();
  summary.interrupted = stop && stop->load();
  if (!summary.interrupted && summary.already_done + summary.computed == summary.tasks_in_shard) {
    // Complete: add what SWMR did not allow (sweeps: the summary assembled from the work
    // units; matrices as datasets), on a copy renamed over the file. A failure leaves the
    // units as they are; re-running the same command retries this.
    try {
      if (summary.tasks_in_shard == job.task_count() || !keep_kind)
        io::ResultsFile::finalize(opt.output, [&](hid_t f) {
          if (keep_kind) kind->finalize(f);
          else make_kind(job)->finalize(f);
        });
    } catch (const Interrupted&) {
      summary.interrupted = true;
    } catch (const InputError&) {
      throw;
    } catch (const std::exception& e) {
      throw RuntimeError(opt.output + ": every task is done but finalizing the file failed (" + e.what() +
                         "); the results are safe: re-run the same command to retry");
    }
  }
  summary.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return summary;
}

}  // namespace covfit::run
