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

namespace covfit::io {
namespace {

namespace fs = std::filesystem;

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

Handle create_file(const std::string& path, const FileMeta& meta, const std::string& created,
                   const std::function<void(hid_t)>& create_payload) {
  Handle fapl = latest_format_fapl();
  hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get());
  if (id < 0) throw InputError(path, "cannot create file (permissions? disk full?)");
  Handle file(id, H5Fclose);
  write_root_attrs(file.get(), meta, created);
  create_payload(file.get());
  return file;
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

OutputLock::OutputLock(const std::string& path) : path_(path + ".lock") {
  check_parent(path);  // a clear message before the lock file's own open fails
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
        held.st_ino == named.st_ino && held.st_dev == named.st_dev)
      return;
    ::close(fd_);  // lost a race with a releasing holder: try the new file
    fd_ = -1;
  }
  throw RuntimeError(path_ + ": could not acquire the lock file");
}

OutputLock::~OutputLock() {
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
  std::error_code ec;
  if (fs::exists(path, ec) && !overwrite)
    throw InputError(path, "exists; refusing to replace it (use --overwrite)");
  ResultsFile rf;
  rf.path_ = path;
  rf.file_ = create_file(path, meta, utc_now_iso(), create_payload);
  rf.flush();
  return rf;
}

ResultsFile ResultsFile::open(const std::string& path, const FileMeta& meta, bool overwrite,
                              const std::function<void(hid_t)>& create_payload,
                              const std::function<void(hid_t, hid_t)>& salvage) {
  quiet_hdf5_errors();
  check_parent(path);
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
    check_meta(old.get(), path, meta);
    std::string created = has_attr(old.get(), "created") ? read_attr_string(old.get(), "created")
                                                         : utc_now_iso();
    FileMeta resumed = meta;  // the earlier runs' writer lines first
    if (has_attr(old.get(), "writers")) {
      resumed.writers = read_attr_strings(old.get(), "writers");
      resumed.writers.insert(resumed.writers.end(), meta.writers.begin(), meta.writers.end());
    }
    Handle fresh = create_file(tmp, resumed, created, create_payload);
    try {
      salvage(old.get(), fresh.get());
      if (H5Fflush(fresh.get(), H5F_SCOPE_GLOBAL) < 0) throw RuntimeError(tmp + ": flush failed");
    } catch (...) {
      fresh.reset();
      fs::remove(tmp, ec);
      throw;
    }
    fresh.reset();
  }
  // Atomic replace: readers see either the old file or the complete copy.
  fs::rename(tmp, path);
  Handle fapl = latest_format_fapl();
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDWR, fapl.get());
  if (id < 0) throw RuntimeError(path + ": cannot reopen the resumed file for writing");
  rf.file_ = Handle(id, H5Fclose);
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
  if (H5Fstart_swmr_write(file_.get()) < 0)
    throw RuntimeError(path_ + ": cannot start SWMR write mode");
}

void ResultsFile::flush() {
  if (H5Fflush(file_.get(), H5F_SCOPE_GLOBAL) < 0) throw RuntimeError(path_ + ": flush failed");
}

Handle open_for_reading(const std::string& path) {
  quiet_hdf5_errors();
  if (H5Fis_hdf5(path.c_str()) <= 0) throw InputError(path, "not a readable HDF5 file");
  // SWMR read first (works while a writer runs, and after a writer was killed: it
  // tolerates a stale end-of-allocation), plain read as fallback.
  Handle fapl = latest_format_fapl();
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, fapl.get());
  if (id < 0) id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0) throw InputError(path, "cannot open for reading");
  return Handle(id, H5Fclose);
}

}  // namespace covfit::io
