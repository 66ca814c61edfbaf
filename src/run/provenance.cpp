#include "provenance.hpp"

#include <cblas.h>
#include <hdf5.h>

#include <fstream>
#include <sstream>
#include <xsimd/xsimd.hpp>

#include "covfit/io/results_file.hpp"
#include "covfit_build_info.hpp"

namespace covfit::run {
namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(colon + 2);
    }
  return "unknown";
}

// What the CPU running this offers (the build may use less: see simd_arch).
std::string cpu_simd() {
  std::string out;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
#define COVFIT_CPU(f)           \
  if (__builtin_cpu_supports(f)) { \
    if (!out.empty()) out += ' ';  \
    out += f;                      \
  }
  COVFIT_CPU("sse4.2") COVFIT_CPU("avx") COVFIT_CPU("avx2") COVFIT_CPU("fma")
  COVFIT_CPU("avx512f") COVFIT_CPU("avx512bw") COVFIT_CPU("avx512dq") COVFIT_CPU("avx512vl")
#undef COVFIT_CPU
#endif
  return out.empty() ? "unknown" : out;
}

std::string get(const Attrs& a, const std::string& k) {
  for (const auto& [key, v] : a)
    if (key == k) return v;
  return "";
}

}  // namespace

Attrs provenance(const job::Job& job, int threads, const std::string& command_line) {
  unsigned maj = 0, min = 0, rel = 0;
  H5get_libversion(&maj, &min, &rel);
  return {
      {"git_commit", COVFIT_GIT_COMMIT},
      {"git_dirty", COVFIT_GIT_DIRTY},
      {"compiler", COVFIT_COMPILER},
      {"cxx_flags", COVFIT_CXX_FLAGS},
      {"build_type", COVFIT_BUILD_TYPE},
      {"march", std::string(COVFIT_MARCH) + " (" + COVFIT_MARCH_RESOLVED + ")"},
      {"simd_arch", xsimd::default_arch::name()},
      {"cpu_model", cpu_model()},
      {"cpu_simd", cpu_simd()},
      {"blas", openblas_get_config()},
      {"blas_core", openblas_get_corename()},
      {"blas_threads", job.sweep.base.blas_threads > 1
                           ? "sweep.blas_threads = " + std::to_string(job.sweep.base.blas_threads) +
                                 ": work units one at a time, each BLAS call on that many threads"
                           : std::string("1 inside tasks")},
      {"threads", std::to_string(threads)},
      {"hdf5_version", std::to_string(maj) + "." + std::to_string(min) + "." + std::to_string(rel)},
      {"host", io::host_name()},
      {"command_line", command_line},
      {"job_resolved_toml", job.resolved_text},
  };
}

std::string writer_line(const Attrs& p) {
  std::ostringstream os;
  os << io::utc_now_iso() << ' ' << get(p, "host") << " covfit " << COVFIT_VERSION << ' '
     << get(p, "git_commit").substr(0, 12) << (get(p, "git_dirty") == "1" ? "+dirty" : "") << ' '
     << get(p, "simd_arch") << ' ' << get(p, "threads") << " threads: " << get(p, "command_line");
  return os.str();
}

}  // namespace covfit::run
