#include "covfit/run/finalize.hpp"

#include <memory>

#include "covfit/core/error.hpp"
#include "covfit/io/results_file.hpp"
#include "kinds.hpp"
#include "provenance.hpp"

namespace covfit::run {

FinalizeSummary finalize_file(const std::string& path) {
  io::OutputLock lock(path);  // refuses while another covfit writes the file
  FinalizeSummary out;
  io::FileMeta meta;
  try {
    io::Handle f = io::open_for_reading(path);
    if (!io::has_attr(f.get(), "format") || io::read_attr_string(f.get(), "format") != io::kFormatName)
      throw InputError(path, "not a covfit results file");
    out.from_version = io::read_attr_int(f.get(), "format_version");
    if (out.from_version > io::kFormatVersion)
      throw InputError(path, "written in format version " + std::to_string(out.from_version) +
                                 ", newer than this covfit's " + std::to_string(io::kFormatVersion));
    if (out.from_version < 2)
      throw InputError(path, "written in format version " + std::to_string(out.from_version) +
                                 ", whose columns differ; re-run the job to get a format " +
                                 std::to_string(io::kFormatVersion) + " file");
    meta = io::read_meta(f.get());
    // Only fit files are brought forward: their format 3 is format 2 plus /fit/summary,
    // and format 4 (a sweep layout change) is format 3.
    if (out.from_version != io::kFormatVersion && meta.job_kind != "fit")
      throw InputError(path, "is a format " + std::to_string(out.from_version) + " " + meta.job_kind +
                                 " file; only fit files are brought to format " +
                                 std::to_string(io::kFormatVersion) + " by finalize (re-run the job)");
    const job::Job job = job::parse_job(meta.job_toml, path + ":/job_toml");
    std::unique_ptr<Kind> kind = make_kind(job);
    kind->open_tables(f.get());
    out.tasks = static_cast<std::int64_t>(kind->store().done_ids().size());
    if (out.tasks < meta.tasks_in_file)
      throw InputError(path, "is incomplete: " + std::to_string(out.tasks) + " of " +
                                 std::to_string(meta.tasks_in_file) +
                                 " tasks (resume it with the same `covfit run` command; that finalizes it)");
  } catch (const RuntimeError& e) {  // HDF5 could not read it: bad input, named
    throw InputError(path, std::string("cannot be read (damaged file?): ") + e.what());
  }  // kind's open datasets and the file close here, before the copy
  out.job_kind = meta.job_kind;
  if (meta.job_kind == "sweep" && meta.tasks_in_file < meta.tasks_total)
    throw InputError(path, "is one shard of a sweep; `covfit merge` the shards to assemble its summary");
  // The job as its run resolved it (a sweep's summary reloads the inputs to recompute what
  // depends on the best lambda); the stored text for files that predate it.
  std::string resolved;
  {
    io::Handle f = io::open_for_reading(path);
    if (io::has_attr(f.get(), "job_resolved_toml")) resolved = io::read_attr_string(f.get(), "job_resolved_toml");
  }
  const job::Job job = resolved.empty() ? job::parse_job(meta.job_toml, path + ":/job_toml")
                                        : job::parse_job(resolved, path + ":/job_resolved_toml");
  std::unique_ptr<Kind> kind = make_kind(job);
  if (kind->finalize_needs_data()) kind->load_data();
  // The file says which covfit wrote its summary: one more `writers` line (the other
  // provenance attributes stay those of the run that computed the tasks).
  const std::string line = writer_line(provenance(job, 1, "covfit finalize " + path));
  io::ResultsFile::finalize(path, [&](hid_t f) {
    kind->finalize(f);
    std::vector<std::string> writers;
    if (io::has_attr(f, "writers")) writers = io::read_attr_strings(f, "writers");
    writers.push_back(line);
    io::write_attr(f, "writers", writers);
    if (out.from_version != io::kFormatVersion) io::write_attr(f, "format_version", io::kFormatVersion);
  });
  return out;
}

}  // namespace covfit::run
