// covfit finalize: (re)write what a complete results file gets when its run ends.
#pragma once
#include <cstdint>
#include <string>

namespace covfit::run {

struct FinalizeSummary {
  std::string job_kind;
  std::int64_t tasks = 0;
  std::int64_t from_version = 0;  // the file's format version before (kFormatVersion if current)
};

// On a copy renamed over `path` (io::ResultsFile::finalize): the job kind's finalize step
// (fit: /fit/summary; sweep: the /sweep/matrices datasets, if absent) and `complete` = 1.
// A complete fit file of format 2 is brought to the current version: for fit files
// format 3 is format 2 plus /fit/summary, so that step is all it lacks. Refuses
// (InputError, file untouched) an incomplete file (resume it with `covfit run`), format 1,
// an older sweep file or a newer format, and a file another covfit process is writing.
FinalizeSummary finalize_file(const std::string& path);

}  // namespace covfit::run
