#include <cmath>
#include <filesystem>

#include "covfit/core/error.hpp"
#include "covfit/core/limits.hpp"
#include "covfit/data/cov_data.hpp"
#include "covfit/io/h5.hpp"
#include "covfit/run/runner.hpp"
#include "rows.hpp"

namespace covfit::run {

void write_planted_file(const job::CovDataSpec& spec, const std::string& out, bool overwrite) {
  namespace fs = std::filesystem;
  // The flags, checked as a job's [data] would be (gen takes no job file).
  auto bad = [](const std::string& flag, const std::string& why) { throw InputError(flag, why); };
  if (spec.n < 2 || spec.n > kMaxCovDim) bad("--n " + std::to_string(spec.n), "must be in [2, " + std::to_string(kMaxCovDim) + "]");
  if (spec.m < 3 || spec.m > kMaxCovDim) bad("--m " + std::to_string(spec.m), "must be in [3, " + std::to_string(kMaxCovDim) + "]");
  if (spec.rank < 1) bad("--rank " + std::to_string(spec.rank), "must be >= 1");
  if (!(spec.noise >= 0) || !std::isfinite(spec.noise)) bad("--noise", "must be finite and >= 0");
  if (!(spec.w0_scale >= 0) || !std::isfinite(spec.w0_scale)) bad("--w0-scale", "must be finite and >= 0");
  std::error_code ec;
  const fs::path parent = fs::path(out).parent_path();
  if (!parent.empty() && !fs::is_directory(parent, ec))
    throw InputError(out, "directory " + parent.string() + " does not exist");
  if (fs::exists(out, ec)) {
    require_regular_file(out, "output");
    if (!overwrite) throw InputError(out, "exists; refusing to replace it (use --overwrite)");
  }
  data::CovData d = data::load_cov(spec);
  const double bytes = 8.0 * (2.0 * spec.n * spec.m + 1.0 * spec.m * spec.m + 1.0 * spec.n * spec.n);
  const std::string dir = parent.empty() ? "." : parent.string();
  if (bytes > free_disk_bytes(dir))
    throw InputError(out, "needs about " + human_bytes(bytes) + "; only " +
                              human_bytes(free_disk_bytes(dir)) + " is free in " + dir);
  const std::string tmp = out + ".tmp";
  try {
    io::Handle f = io::create_file(tmp);
    write_matrix(f.get(), "X", d.problem.X);
    write_matrix(f.get(), "S", d.problem.S);
    write_matrix(f.get(), "W0", d.W0);
    io::write_attr(f.get(), "generator", std::string("covfit gen planted"));
    io::write_attr(f.get(), "n", std::int64_t{spec.n});
    io::write_attr(f.get(), "m", std::int64_t{spec.m});
    io::write_attr(f.get(), "rank", std::int64_t{spec.rank});
    io::write_attr(f.get(), "noise", spec.noise);
    io::write_attr(f.get(), "w0_scale", spec.w0_scale);
    io::write_attr(f.get(), "seed", static_cast<std::int64_t>(spec.seed));
    if (H5Fflush(f.get(), H5F_SCOPE_GLOBAL) < 0)
      throw RuntimeError("HDF5: flush failed" + io::hdf5_error_detail());
  } catch (const std::exception& e) {
    fs::remove(tmp, ec);  // no half-written file left behind (disk full)
    if (dynamic_cast<const InputError*>(&e)) throw;
    throw RuntimeError(out + ": " + e.what());
  }
  fs::rename(tmp, out);
}

}  // namespace covfit::run
