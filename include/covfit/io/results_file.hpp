// The results file: one HDF5 file per run or shard, written by one thread.
//
// New file: attributes and every dataset are created first (SWMR forbids new objects
// later), then `start_swmr` lets readers follow the run
// (h5py: File(path, "r", libver="latest", swmr=True)).
//
// Resume: HDF5 does not promise that a file whose writer was killed can be written
// again (chunk index and end-of-allocation can point past data that never reached the
// disk), although SWMR readers can still read it. So a resume never writes into the old
// file: it copies every task that is complete and consistent into a fresh file next to
// it, then renames that over the old one. A crash during the copy leaves the old file
// as it was. The same copy is how shards are merged.
//
// A lock file (<path>.lock, flock) keeps two covfit processes off one output.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "covfit/io/h5.hpp"

namespace covfit::io {

inline constexpr const char* kFormatName = "covfit-results";
inline constexpr std::int64_t kFormatVersion = 4;

struct FileMeta {
  std::string job_name, job_kind, job_toml, job_hash;
  std::int64_t shard_index = 0, shard_count = 1;
  std::int64_t tasks_total = 0;     // in the whole job
  std::int64_t tasks_in_file = 0;   // in this shard
  // Further string root attributes (provenance: build, machine, run). Not compared.
  std::vector<std::pair<std::string, std::string>> extra;
  // One line per run that wrote tasks into the file (a resume keeps the earlier lines).
  std::vector<std::string> writers;
};

// Holds an exclusive advisory lock on <path>.lock while alive (the path with symlinks
// resolved) and removes it on release; also a write lock on the output file's inode
// (device + inode: a hard link is the same file), taken again by `hold_inode` after the
// file was created or replaced. Refuses (InputError) when another process holds either,
// and an existing output that is not a regular file.
class OutputLock {
 public:
  explicit OutputLock(const std::string& path);
  ~OutputLock();
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;
  OutputLock(OutputLock&& o) noexcept
      : fd_(o.fd_), inode_fd_(o.inode_fd_), path_(std::move(o.path_)), output_(std::move(o.output_)) {
    o.fd_ = -1;
    o.inode_fd_ = -1;
  }
  // Lock the inode `path` names now (after creating it, or renaming a copy over it).
  void hold_inode();

 private:
  int fd_ = -1, inode_fd_ = -1;
  std::string path_, output_;
};

class ResultsFile {
 public:
  // `create_payload(new_file)` makes the kind's groups and datasets.
  // `salvage(old_file, new_file)` copies finished tasks when resuming.
  static ResultsFile open(const std::string& path, const FileMeta& meta, bool overwrite,
                          const std::function<void(hid_t)>& create_payload,
                          const std::function<void(hid_t, hid_t)>& salvage);
  // A fresh file at `path` (merge output); refuses to replace an existing file unless
  // `overwrite`.
  static ResultsFile create(const std::string& path, const FileMeta& meta, bool overwrite,
                            const std::function<void(hid_t)>& create_payload);
  hid_t id() const { return file_.get(); }
  bool resumed() const { return resumed_; }
  const std::string& path() const { return path_; }
  void start_swmr();  // no-op when already in SWMR write mode
  void flush();
  void close() { file_.reset(); }
  // After close: on a copy of `path` opened read-write without SWMR, run `fn` and set the
  // root attribute `complete` = 1, then rename the copy over `path`. On any failure the
  // copy is removed and `path` is untouched.
  static void finalize(const std::string& path, const std::function<void(hid_t)>& fn);

 private:
  Handle file_;
  std::string path_;
  bool resumed_ = false;
  bool swmr_ = false;  // in SWMR write mode (create and open return files already in it)
};

// Check that an existing file holds this job and shard in this format version; throws
// InputError (file untouched) otherwise.
void check_meta(hid_t file, const std::string& path, const FileMeta& meta);
FileMeta read_meta(hid_t file);

// Read-only open that works on a file being written in SWMR mode, on a closed file and
// on a file left by a killed writer.
Handle open_for_reading(const std::string& path);

std::string host_name();
std::string utc_now_iso();

}  // namespace covfit::io
