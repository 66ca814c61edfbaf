#include "covfit/run/merge.hpp"

#include <filesystem>
#include <map>

#include "covfit/core/error.hpp"
#include "covfit/io/results_file.hpp"
#include "kinds.hpp"
#include "provenance.hpp"

namespace covfit::run {

MergeSummary merge_shards(const std::vector<std::string>& inputs, const std::string& output,
                          bool overwrite) {
  if (inputs.empty()) throw InputError("merge", "no shard files given");
  if (std::filesystem::exists(output) && !overwrite)
    throw InputError(output, "exists; refusing to replace it (use --overwrite)");
  std::vector<io::Handle> files;
  std::vector<io::FileMeta> metas;
  std::map<std::int64_t, std::size_t> by_index;
  for (const auto& path : inputs) {
    std::error_code ec;
    if (std::filesystem::equivalent(path, output, ec)) throw InputError(path, "is also the output file");
    files.push_back(io::open_for_reading(path));
    io::FileMeta m;
    try {
      m = io::read_meta(files.back().get());
    } catch (const std::exception&) {
      throw InputError(path, "not a covfit results file");
    }
    io::FileMeta want = metas.empty() ? m : metas.front();
    want.shard_index = m.shard_index;  // check_meta compares format, hash and shard
    io::check_meta(files.back().get(), path, want);
    if (!metas.empty() && m.shard_count != metas.front().shard_count)
      throw InputError(path, "has shard count " + std::to_string(m.shard_count) + ", " +
                                 inputs.front() + " has " + std::to_string(metas.front().shard_count));
    if (by_index.count(m.shard_index))
      throw InputError(path, "holds shard " + std::to_string(m.shard_index) + ", as does " +
                                 inputs[by_index[m.shard_index]]);
    by_index[m.shard_index] = metas.size();
    metas.push_back(m);
  }
  const io::FileMeta& first = metas.front();
  std::string missing;
  for (std::int64_t i = 0; i < first.shard_count; ++i)
    if (!by_index.count(i)) missing += (missing.empty() ? "" : ", ") + std::to_string(i);
  if (!missing.empty())
    throw InputError("merge", "shards " + missing + " of " + std::to_string(first.shard_count) +
                                  " are missing");

  // The job as the shards resolved it (input paths resolved where they ran, so a sweep's
  // summary can reload its inputs here); the stored text for files that predate it.
  const bool resolved = io::has_attr(files.front().get(), "job_resolved_toml");
  job::Job job = job::parse_job(resolved ? io::read_attr_string(files.front().get(), "job_resolved_toml")
                                         : first.job_toml,
                                inputs.front() + (resolved ? ":/job_resolved_toml" : ":/job_toml"));
  std::unique_ptr<Kind> kind = make_kind(job);
  // Completeness: every shard must hold all its tasks.
  for (std::size_t f = 0; f < files.size(); ++f) {
    kind->open_tables(files[f].get());
    std::int64_t rows = static_cast<std::int64_t>(kind->store().done_ids().size());
    if (rows < metas[f].tasks_in_file)
      throw InputError(inputs[f], "is incomplete: " + std::to_string(rows) + " of " +
                                      std::to_string(metas[f].tasks_in_file) +
                                      " tasks (resume that shard first)");
  }

  io::FileMeta meta = first;
  std::string command = "covfit merge -o " + output;
  for (const auto& p : inputs) command += " " + p;
  meta.extra = provenance(job, 1, command);
  // The shards' resolved job (their input paths were resolved where they ran; the job
  // text re-parsed here has no job file to resolve against).
  for (auto& [k, v] : meta.extra)
    if (k == "job_resolved_toml" && io::has_attr(files.front().get(), k))
      v = io::read_attr_string(files.front().get(), k);
  meta.writers.clear();  // every shard's runs, then this merge
  for (const auto& m : metas) meta.writers.insert(meta.writers.end(), m.writers.begin(), m.writers.end());
  meta.writers.push_back(writer_line(meta.extra));
  meta.shard_index = 0;
  meta.shard_count = 1;
  meta.tasks_in_file = first.tasks_total;
  io::OutputLock lock(output);
  std::string tmp = output + ".merge-tmp";
  MergeSummary summary;
  summary.shards = static_cast<std::int64_t>(files.size());
  try {
    io::ResultsFile out = io::ResultsFile::create(tmp, meta, true, [&](hid_t f) {
      // Inputs as the shards stored them (generated data is identical in every shard).
      if (io::exists(files.front().get(), "/data")) io::copy_object(files.front().get(), "/data", f);
      kind->create_tables(f);
    });
    for (std::int64_t i = 0; i < first.shard_count; ++i) {
      const std::size_t f = by_index[i];
      const std::int64_t n = metas[f].shard_count;
      auto ids = kind->copy_tasks(files[f].get(), out.id(),
                                  [&](std::int64_t id) { return job.shard_key(id) % n == i; });
      summary.tasks += static_cast<std::int64_t>(ids.size());
    }
    out.flush();
    out.close();
    kind->close_tables();
    // A sweep's summary recomputes what depends on the best lambda: it needs the inputs.
    if (kind->finalize_needs_data()) kind->load_data();
    io::ResultsFile::finalize(tmp, [&](hid_t f) { kind->finalize(f); });
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw;
  }
  if (summary.tasks != first.tasks_total) {
    std::filesystem::remove(tmp);
    throw RuntimeError("merged " + std::to_string(summary.tasks) + " tasks, expected " +
                       std::to_string(first.tasks_total));
  }
  std::filesystem::rename(tmp, output);
  return summary;
}

}  // namespace covfit::run
