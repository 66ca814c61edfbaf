#include <filesystem>

#include "covfit/core/error.hpp"
#include "covfit/data/cov_data.hpp"
#include "covfit/io/h5.hpp"
#include "covfit/run/runner.hpp"
#include "rows.hpp"

namespace covfit::run {

void write_planted_file(const job::CovDataSpec& spec, const std::string& out, bool overwrite) {
  namespace fs = std::filesystem;
  if (fs::exists(out) && !overwrite) throw InputError(out, "exists; refusing to replace it (use --overwrite)");
  data::CovData d = data::load_cov(spec);
  const std::string tmp = out + ".tmp";
  {
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
  }
  fs::rename(tmp, out);
}

}  // namespace covfit::run
