// The results file: one HDF5 file per run or shard, written by one thread.
//
// Life cycle: `open` either creates the file (all datasets are created before SWMR
// mode starts, because SWMR forbids new objects) or reopens a file of the same job to
// resume it (refusing a different job or a newer format). Then `start_swmr` lets
// readers follow the run (h5py: File(path, "r", libver="latest", swmr=True)).
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "covfit/io/h5.hpp"

namespace covfit::io {

inline constexpr const char* kFormatName = "covfit-results";
inline constexpr std::int64_t kFormatVersion = 1;

struct FileMeta {
  std::string job_name, job_kind, job_toml, job_hash;
  std::int64_t shard_index = 0, shard_count = 1;
  std::int64_t tasks_total = 0;     // in the whole job
  std::int64_t tasks_in_file = 0;   // in this shard
};

class ResultsFile {
 public:
  // overwrite: delete an existing file first. Otherwise an existing file must hold the
  // same job (hash) and shard, else InputError. `create_payload` makes the kind's
  // groups and datasets in a new file.
  static ResultsFile open(const std::string& path, const FileMeta& meta, bool overwrite,
                          const std::function<void(hid_t)>& create_payload);
  hid_t id() const { return file_.get(); }
  bool resumed() const { return resumed_; }
  const std::string& path() const { return path_; }
  void start_swmr();
  void flush();
  void close() { file_.reset(); }

 private:
  Handle file_;
  std::string path_;
  bool resumed_ = false;
};

// Read-only open that works on a file being written in SWMR mode, on a closed file and
// on a file left by a killed writer.
Handle open_for_reading(const std::string& path);

std::string host_name();
std::string utc_now_iso();

}  // namespace covfit::io
