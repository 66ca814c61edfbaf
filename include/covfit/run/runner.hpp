// Running a job: select this shard's unfinished tasks, compute them in parallel (OpenMP
// over tasks, each single-threaded), stream results through one writer thread.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <string>

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
};

struct RunSummary {
  std::int64_t tasks_in_shard = 0, already_done = 0, computed = 0;
  std::map<std::string, std::int64_t> by_status;  // of tasks computed in this run
  bool interrupted = false;
  double seconds = 0;
};

// `stop` is set by the SIGINT/SIGTERM handler; running tasks end at their next step and
// are not written (a resume recomputes them).
RunSummary run_job(const job::Job& job, const RunOptions& opt, const std::atomic<bool>* stop);

}  // namespace covfit::run
