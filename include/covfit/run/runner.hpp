// Running a job: select this shard's unfinished tasks, compute them in parallel (OpenMP
// over tasks, each single-threaded), stream results through one writer thread.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "covfit/job/spec.hpp"

namespace covfit::run {

struct RunOptions {
  std::string output;            // results file
  bool overwrite = false;
  int threads = 0;               // 0: OpenMP default (all cores)
  job::Shard shard;
  bool progress = true;          // progress lines on stderr
  double flush_seconds = 2.0;
  std::int64_t max_tasks = -1;   // compute at most this many (tests: simulate a partial run)
  std::string command_line;      // as typed, for the file's provenance
  // Set to true just before the output (or its lock file) is first touched: until then a
  // signal handler can exit at once, as nothing needs cleaning up; after it, it should
  // set the stop flag so the run ends with a consistent file.
  std::atomic<bool>* writing = nullptr;
};

struct RunSummary {
  std::int64_t tasks_in_shard = 0, already_done = 0, computed = 0;
  std::map<std::string, std::int64_t> by_status;  // of tasks computed in this run
  bool interrupted = false;
  double seconds = 0;
};

// What a job will do, with its inputs opened and checked (covfit validate). Throws
// InputError naming the file / dataset / value on bad input.
struct JobPlan {
  std::int64_t tasks = 0;
  std::vector<std::string> data;     // one line per data set: name, sizes
  double output_bytes = 0;           // expected output size before compression
  double cpu_seconds = 0;            // rough upper bound, one core
};
JobPlan plan_job(const job::Job& job);

// `covfit gen planted`: the planted covariance problem of `spec` as an HDF5 file with X,
// S and W0 (row-major) and the generator's settings as attributes. Written to a
// temporary name and renamed; refuses to replace `out` unless `overwrite`.
void write_planted_file(const job::CovDataSpec& spec, const std::string& out, bool overwrite);

// `stop` is set by the SIGINT/SIGTERM handler; running tasks end at their next step and
// are not written (a resume recomputes them).
RunSummary run_job(const job::Job& job, const RunOptions& opt, const std::atomic<bool>* stop);

// Tasks (sweeps: work units) of shard `index` of `count` (job.shard_key).
std::int64_t shard_size(const job::Job& job, std::int64_t index, std::int64_t count);

}  // namespace covfit::run
