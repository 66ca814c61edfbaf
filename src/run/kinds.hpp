// Job kinds: what differs between `fit` and `sweep` (tables, data, one task's
// computation). Internal to run/: the runner and the merge drive them the same way.
#pragma once
#include <atomic>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <hdf5.h>

#include "covfit/io/task_store.hpp"
#include "covfit/job/spec.hpp"

namespace covfit::run {

class Kind {
 public:
  virtual ~Kind() = default;
  // Reads or generates the input data (not needed by merge). Throws InputError.
  virtual void load_data() = 0;
  // After load_data: one line per data set ("name: 4096 points"), the expected size of
  // the output file before compression, and a rough upper bound on the CPU seconds.
  virtual std::vector<std::string> describe_data() const = 0;
  virtual double expected_bytes() const = 0;
  virtual double rough_cpu_seconds() const = 0;
  // New file: the data groups (needs load_data) and the empty tables.
  virtual void create_data(hid_t file) = 0;
  virtual void create_tables(hid_t file) = 0;
  virtual void open_tables(hid_t file) = 0;             // the live tables
  // Releases the live tables' datasets (they would keep the file open past its close)
  // while keeping the data, for a finalize that needs them.
  virtual void close_tables() {}
  virtual io::TaskStore& store() = 0;
  // A complete file, reopened read-write without SWMR: datasets that cannot be created
  // while SWMR readers follow the run (sweeps: the tasks' summaries assembled from their
  // work units, and every stored matrix as its own dataset). Throws Interrupted on a stop.
  virtual void finalize(hid_t /*file*/) {}
  // finalize needs load_data (sweeps recompute what depends on the best lambda).
  virtual bool finalize_needs_data() const { return false; }
  // Copy finished tasks of another file of this job into `new_file`; returns their ids.
  virtual std::vector<std::int64_t> copy_tasks(hid_t from_file, hid_t new_file,
                                               const std::function<bool(std::int64_t)>& accept) = 0;
  struct Done {
    std::string status;
    double score = std::nan("");  // shown on the progress line; see higher_is_better
    std::function<void()> write;  // runs on the writer thread; empty: interrupted
  };
  // inner_threads > 1 only when the kind can use threads inside one task (see below) and
  // fewer tasks than threads remain; then tasks run one at a time.
  virtual Done compute(std::int64_t id, int inner_threads, const std::atomic<bool>* stop) = 0;
  virtual bool parallel_inside_task() const = 0;
  // Before computing: what the file already holds (resumed tasks) and the ids this run
  // will compute, in order (sweeps: warm starts along each part's lambda blocks).
  virtual void resume_from(hid_t /*file*/) {}
  virtual void will_compute(const std::vector<std::int64_t>& /*ids*/) {}
  // Names this run in what it writes (sweep units record which run computed them).
  virtual void set_run_id(const std::string& /*id*/) {}
  // Tasks must not run side by side (e.g. they change the process-wide BLAS thread count).
  virtual bool one_task_at_a_time() const { return false; }
  virtual std::string score_name() const = 0;  // "loss", "R2"
  virtual std::string item_name() const { return "tasks"; }  // what progress lines count
  virtual bool higher_is_better() const = 0;
};

// `progress`: a long task may print its own progress lines on stderr. `stop` is polled
// by finalize.
std::unique_ptr<Kind> make_kind(const job::Job& job, bool progress = false,
                                const std::atomic<bool>* stop = nullptr);

}  // namespace covfit::run
