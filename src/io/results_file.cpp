#include "covfit/io/results_file.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "covfit/core/error.hpp"

namespace covfit::io {
namespace {

Handle latest_format_fapl(bool clear_status_flags) {
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
  if (clear_status_flags) {
    // A writer killed in SWMR mode leaves the superblock's "open for writing" flags set;
    // this is the property h5clear uses to reset them (HDF5 1.10).
    hbool_t clear = 1;
    H5Pset(fapl.get(), "clear_status_flags", &clear);
  }
  return fapl;
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

ResultsFile ResultsFile::open(const std::string& path, const FileMeta& meta, bool overwrite,
                              const std::function<void(hid_t)>& create_payload) {
  quiet_hdf5_errors();
  ResultsFile rf;
  rf.path_ = path;
  std::error_code ec;
  bool present = std::filesystem::exists(path, ec);
  if (present && !overwrite) {
    if (H5Fis_hdf5(path.c_str()) <= 0)
      throw InputError(path, "exists and is not an HDF5 file; refusing to touch it (use "
                             "--overwrite to replace it)");
    {  // Check the job before opening for writing, so a refused file is never modified.
      Handle probe = open_for_reading(path);
      check_meta(probe.get(), path, meta);
    }
    Handle fapl = latest_format_fapl(true);
    hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDWR, fapl.get());
    if (id < 0)
      throw RuntimeError(path + ": cannot reopen for writing (is another covfit writing it?)");
    rf.file_ = Handle(id, H5Fclose);
    // A writer killed in SWMR mode can leave the superblock's end-of-allocation behind
    // data it had already written; new allocations would then overwrite those bytes.
    // Move EOA to max(EOA, EOF), as `h5clear --increment=0` does.
    if (H5Fincrement_filesize(id, 0) < 0)
      throw RuntimeError(path + ": cannot repair the end-of-allocation after a crash");
    rf.resumed_ = true;
    return rf;
  }
  if (present && std::filesystem::is_directory(path, ec))
    throw InputError(path, "is a directory");
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty() && !std::filesystem::is_directory(parent, ec))
    throw InputError(path, "directory " + parent.string() + " does not exist");
  Handle fapl = latest_format_fapl(false);
  hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get());
  if (id < 0) throw InputError(path, "cannot create file (permissions? disk full?)");
  rf.file_ = Handle(id, H5Fclose);
  hid_t f = rf.file_.get();
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
  write_attr(f, "created", utc_now_iso());
  write_attr(f, "host", host_name());
  create_payload(f);
  rf.flush();
  return rf;
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
  // SWMR read first (works while a writer runs), plain read as fallback.
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT);
  if (id < 0) id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0) {
    Handle fapl = latest_format_fapl(false);
    id = H5Fopen(path.c_str(), H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, fapl.get());
  }
  if (id < 0) throw InputError(path, "cannot open for reading");
  return Handle(id, H5Fclose);
}

}  // namespace covfit::io
