#include "covfit/io/results_file.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "covfit/core/error.hpp"
#include "covfit/core/limits.hpp"

namespace covfit::io {
namespace {

namespace fs = std::filesystem;

// Metadata read attempts of a SWMR reader. HDF5's default is 100 with growing sleeps
// between them: `covfit inspect` on a file with flipped bytes slept without end (> 20 s
// measured). With 20 it fails in ~0.1 s, and a live writer's torn reads still get retried.
constexpr unsigned kSwmrReadAttempts = 20;

Handle latest_format_fapl() {
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
  return fapl;
}

void write_root_attrs(hid_t f, const FileMeta& meta, const std::string& created) {
  write_attr(f, "format", std::string(kFormatName));
  write_attr(f, "format_version", kFormatVersion);
  write_attr(f, "covfit_version", std::string(COVFIT_VERSION));
  write_attr(f, "job_name", meta.job_name);
  write_attr(f, "job_kind", meta.job_kind);
  write_attr(f, "job_toml", meta.job_toml);
  write_attr(f, "job_hash", meta.job_hash);
  write_attr(f, "shard_index", meta.shard_index);
  write_attr(f, "shard_count", meta.shard_count);
  write_attr(f, "tasks_total", meta.tasks_total);
  write_attr(f, "tasks_in_file", meta.tasks_in_file);
  write_attr(f, "created", created);
  write_attr(f, "host", host_name());
  for (const auto& [k, v] : meta.extra) write_attr(f, k, v);
  write_attr(f, "writers", meta.writers);
}

// Creates `path` with the root attributes and the payload; on any failure (disk full,
// permissions) the partly written file is removed and the error names `path`.
// `shown`: the name errors give (the output path, when `path` is its temporary twin).
Handle create_file(const std::string& path, const FileMeta& meta, const std::string& created,
                   const std::function<void(hid_t)>& create_payload, const std::string& shown = "") {
  const std::string& name = shown.empty() ? path : shown;
  Handle fapl = latest_format_fapl();
  hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get());
  if (id < 0) {
    const std::string detail = hdf5_error_detail();
    std::error_code ec;
    fs::remove(path, ec);
    throw InputError(name, "cannot create file (permissions? disk full?)" + detail);
  }
  Handle file(id, H5Fclose);
  try {
    write_root_attrs(file.get(), meta, created);
    create_payload(file.get());
    if (H5Fflush(file.get(), H5F_SCOPE_GLOBAL) < 0)
      throw RuntimeError("HDF5: flush failed" + hdf5_error_detail());
  } catch (const InputError&) {
    file.reset();
    std::error_code ec;
    fs::remove(path, ec);
    throw;
  } catch (const std::exception& e) {
    file.reset();
    std::error_code ec;
    fs::remove(path, ec);
    throw RuntimeError(name + ": cannot write the new file: " + e.what());
  }
  return file;
}

// A file is renamed to the output path only in SWMR write mode: HDF5 marks a file opened
// for writing without SWMR as open, and after a kill such a file cannot be opened again
// (not even to resume it), whereas a killed SWMR writer's file stays readable.
void start_swmr_write(hid_t file, const std::string& path) {
  if (H5Fstart_swmr_write(file) < 0)
    throw RuntimeError(path + ": cannot start SWMR write mode" + hdf5_error_detail());
}

// An existing output must be a regular file: writing "results" into a device or FIFO
// (or through /dev/null) is never what was meant, and opening a FIFO blocks.
void check_output_kind(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    require_regular_file(path, "output");
}

void check_parent(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw InputError(path, "is a directory");
  auto parent = fs::path(path).parent_path();
  if (!parent.empty() && !fs::is_directory(parent, ec))
    throw InputError(path, "directory " + parent.string() + " does not exist");
}

}  // namespace

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

std::string utc_now_iso() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

namespace {
// The lock file's name: the output's path with symlinks resolved, so two names of one
// file (a symlink, or a symlinked directory) take the same lock.
std::string lock_path_of(const std::string& path) {
  std::error_code ec;
  fs::path canon = fs::weakly_canonical(fs::absolute(path, ec), ec);
  return (ec || canon.empty() ? path : canon.string()) + ".lock";
}

// An open-file-description write lock (F_OFD_SETLK: independent of HDF5's own flock
// calls, and not dropped when another descriptor of the file is closed) on the file's
// inode: the same file under another name (a hard link) cannot be written by a second
// covfit while one holds it. Returns the descriptor, or -1 if `path` does not exist.
int lock_inode(const std::string& path, const std::string& output) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return -1;
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return -1;
  }
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EAGAIN || err == EACCES)
      throw InputError(output, "another covfit process is writing this file (under another name: "
                               "a hard link or symlink to it)");
    return -1;  // a file system without these locks (EINVAL, ENOLCK): the .lock file still holds
  }
  return fd;
}
}  // namespace

OutputLock::OutputLock(const std::string& path) : path_(lock_path_of(path)), output_(path) {
  check_parent(path);  // a clear message before the lock file's own open fails
  check_output_kind(path);
  // flock the lock file, then check that the path still names the inode we locked: a
  // previous holder unlinks it on release, and a lock on an unlinked inode protects nothing.
  for (int attempt = 0; attempt < 100; ++attempt) {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw InputError(path_, std::string("cannot create lock file: ") + std::strerror(errno));
    if (flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd_);
      fd_ = -1;
      throw InputError(path, "another covfit process is writing this file (lock " + path_ + " is held)");
    }
    struct stat held {}, named {};
    if (fstat(fd_, &held) == 0 && ::stat(path_.c_str(), &named) == 0 &&
        held.st_ino == named.st_ino && held.st_dev == named.st_dev) {
      hold_inode();
      return;
    }
    ::close(fd_);  // lost a race with a releasing holder: try the new file
    fd_ = -1;
  }
  throw RuntimeError(path_ + ": could not acquire the lock file");
}

void OutputLock::hold_inode() {
  if (inode_fd_ >= 0) {  // already held on this very inode (e.g. --overwrite truncated it)?
    struct stat held {}, named {};
    if (fstat(inode_fd_, &held) == 0 && ::stat(output_.c_str(), &named) == 0 &&
        held.st_dev == named.st_dev && held.st_ino == named.st_ino)
      return;
    ::close(inode_fd_);  // a renamed copy replaced it: lock the new inode instead
    inode_fd_ = -1;
  }
  inode_fd_ = lock_inode(output_, output_);
}

OutputLock::~OutputLock() {
  if (inode_fd_ >= 0) ::close(inode_fd_);
  if (fd_ >= 0) {
    ::unlink(path_.c_str());  // while still holding the lock (see the constructor)
    ::close(fd_);
  }
}

FileMeta read_meta(hid_t f) {
  FileMeta m;
  m.job_name = read_attr_string(f, "job_name");
  m.job_kind = read_attr_string(f, "job_kind");
  m.job_toml = read_attr_string(f, "job_toml");
  m.job_hash = read_attr_string(f, "job_hash");
  m.shard_index = read_attr_int(f, "shard_index");
  m.shard_count = read_attr_int(f, "shard_count");
  m.tasks_total = read_attr_int(f, "tasks_total");
  m.tasks_in_file = read_attr_int(f, "tasks_in_file");
  if (has_attr(f, "writers")) m.writers = read_attr_strings(f, "writers");
  return m;
}

void check_meta(hid_t file, const std::string& path, const FileMeta& meta) {
  auto refuse = [&](const std::string& why) {
    throw InputError(path, why + "; the file was left untouched (use --overwrite to start "
                               "afresh, or another -o path)");
  };
  if (!has_attr(file, "format") || read_attr_string(file, "format") != kFormatName)
    refuse("not a covfit results file");
  std::int64_t version = read_attr_int(file, "format_version");
  if (version > kFormatVersion)
    refuse("written in format version " + std::to_string(version) + ", newer than this covfit's " +
           std::to_string(kFormatVersion));
  if (version < kFormatVersion)
    refuse("written in the older format version " + std::to_string(version));
  std::string hash = read_attr_string(file, "job_hash");
  if (hash != meta.job_hash)
    refuse("holds results of a different job ('" + read_attr_string(file, "job_name") +
           "', hash " + hash + ", this job's hash is " + meta.job_hash + ")");
  std::int64_t si = read_attr_int(file, "shard_index"), sc = read_attr_int(file, "shard_count");
  if (si != meta.shard_index || sc != meta.shard_count)
    refuse("holds shard " + std::to_string(si) + "/" + std::to_string(sc) + ", not " +
           std::to_string(meta.shard_index) + "/" + std::to_string(meta.shard_count));
}

ResultsFile ResultsFile::create(const std::string& path, const FileMeta& meta, bool overwrite,
                                const std::function<void(hid_t)>& create_payload) {
  quiet_hdf5_errors();
  check_parent(path);
  check_output_kind(path);
  std::error_code ec;
  if (fs::exists(path, ec) && !overwrite)
    throw InputError(path, "exists; refusing to replace it (use --overwrite)");
  ResultsFile rf;
  rf.path_ = path;
  // Built under a temporary name and renamed in SWMR mode: a kill at any moment leaves
  // either no file at `path` (or the one it replaces) or one a resume can read.
  const std::string tmp = path + ".create-tmp";
  fs::remove(tmp, ec);
  rf.file_ = create_file(tmp, meta, utc_now_iso(), create_payload, path);
  try {
    start_swmr_write(rf.file_.get(), path);
    fs::rename(tmp, path);
  } catch (...) {
    rf.file_.reset();
    fs::remove(tmp, ec);
    throw;
  }
  rf.swmr_ = true;
  return rf;
}

ResultsFile ResultsFile::open(const std::string& path, const FileMeta& meta, bool overwrite,
                              const std::function<void(hid_t)>& create_payload,
                              const std::function<void(hid_t, hid_t)>& salvage) {
  quiet_hdf5_errors();
  check_parent(path);
  check_output_kind(path);
  std::error_code ec;
  if (!fs::exists(path, ec) || overwrite) return create(path, meta, true, create_payload);

  if (H5Fis_hdf5(path.c_str()) <= 0)
    throw InputError(path, "exists and is not an HDF5 file; refusing to touch it (use "
                           "--overwrite to replace it)");
  ResultsFile rf;
  rf.path_ = path;
  rf.resumed_ = true;
  const std::string tmp = path + ".resume-tmp";
  {
    Handle old = open_for_reading(path);
    std::string created;
    FileMeta resumed = meta;  // the earlier runs' writer lines first
    try {
      check_meta(old.get(), path, meta);
      created = has_attr(old.get(), "created") ? read_attr_string(old.get(), "created") : utc_now_iso();
      if (has_attr(old.get(), "writers")) {
        resumed.writers = read_attr_strings(old.get(), "writers");
        resumed.writers.insert(resumed.writers.end(), meta.writers.begin(), meta.writers.end());
      }
    } catch (const RuntimeError& e) {  // HDF5 could not read it: damaged
      throw InputError(path, std::string("cannot be read (damaged file?): ") + e.what() +
                                 "; the file was left untouched (use --overwrite to start "
                                 "afresh, or another -o path)");
    }
    // create_file removes a partly written copy itself (disk full: no 0-byte leftover).
    Handle fresh = create_file(tmp, resumed, created, create_payload);
    try {
      salvage(old.get(), fresh.get());
      if (H5Fflush(fresh.get(), H5F_SCOPE_GLOBAL) < 0)
        throw RuntimeError(tmp + ": flush failed" + hdf5_error_detail());
    } catch (const RuntimeError& e) {
      fresh.reset();
      fs::remove(tmp, ec);
      // A system error (HDF5 reports errno: disk full, I/O) is about the copy; anything
      // else HDF5 could not read (bad checksums, truncation) is a damaged old file.
      const std::string what = e.what();
      if (what.find("errno") != std::string::npos)
        throw RuntimeError(path + ": resume copy to " + tmp + " failed: " + what);
      throw InputError(path, "cannot be read (damaged file?): " + what +
                                 "; the file was left untouched (use --overwrite to start "
                                 "afresh, or another -o path)");
    } catch (...) {
      fresh.reset();
      fs::remove(tmp, ec);
      throw;
    }
    // Atomic replace, in SWMR mode (see start_swmr_write): readers see either the old file
    // or the complete copy, and a kill leaves a file the next resume can read.
    start_swmr_write(fresh.get(), tmp);
    fs::rename(tmp, path);
    rf.file_ = std::move(fresh);
  }
  rf.swmr_ = true;
  return rf;
}

void ResultsFile::finalize(const std::string& path, const std::function<void(hid_t)>& fn) {
  quiet_hdf5_errors();
  // On a copy, renamed over `path` only when everything succeeded: a failure inside HDF5
  // (which can leave a file unreadable) never touches the results.
  const std::string tmp = path + ".finalize-tmp";
  std::error_code ec;
  try {
    fs::copy_file(path, tmp, fs::copy_options::overwrite_existing);
    {
      Handle fapl = latest_format_fapl();
      hid_t id = H5Fopen(tmp.c_str(), H5F_ACC_RDWR, fapl.get());
      if (id < 0) throw RuntimeError(path + ": cannot reopen to finalize");
      Handle f(id, H5Fclose);
      fn(f.get());
      write_attr(f.get(), "complete", std::int64_t{1});
      if (H5Fflush(f.get(), H5F_SCOPE_GLOBAL) < 0) throw RuntimeError(path + ": flush failed");
      f.reset();
    }
    fs::rename(tmp, path);
  } catch (...) {
    fs::remove(tmp, ec);
    throw;
  }
}

void ResultsFile::start_swmr() {
  if (swmr_) return;
  start_swmr_write(file_.get(), path_);
  swmr_ = true;
}

void ResultsFile::flush() {
  if (H5Fflush(file_.get(), H5F_SCOPE_GLOBAL) < 0) throw RuntimeError(path_ + ": flush failed");
}

Handle open_for_reading(const std::string& path) {
  quiet_hdf5_errors();
  require_regular_file(path, "results file");  // a FIFO would block in open()
  if (H5Fis_hdf5(path.c_str()) <= 0) throw InputError(path, "not a readable HDF5 file");
  // SWMR read first (works while a writer runs, and after a writer was killed: it
  // tolerates a stale end-of-allocation), plain read as fallback. A SWMR reader retries
  // a metadata read whose checksum fails (the writer may be mid-update), by default 100
  // times with growing sleeps, for every object: on a damaged file that is a hang. A
  // few attempts are enough for a live writer's torn reads (kSwmrReadAttempts).
  Handle fapl = latest_format_fapl();
  H5Pset_metadata_read_attempts(fapl.get(), kSwmrReadAttempts);
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, fapl.get());
  if (id < 0) id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0)
    throw InputError(path, "cannot open for reading (damaged file?)" + hdf5_error_detail());
  return Handle(id, H5Fclose);
}

}  // namespace covfit::io
