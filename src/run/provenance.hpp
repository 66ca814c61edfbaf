// What produced a results file: build (git commit and dirty flag, compiler, flags, -march
// and the SIMD architecture xsimd compiled for), machine (host, CPU, BLAS), run (threads,
// command line) and the resolved job. Enough to explain why two files differ bitwise
// (e.g. AVX2 against AVX-512 builds). Written as root attributes (docs/FORMAT.md).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "covfit/job/spec.hpp"

namespace covfit::run {

using Attrs = std::vector<std::pair<std::string, std::string>>;

// `threads`: worker threads of this run; `command_line`: argv as typed (may be empty).
Attrs provenance(const job::Job& job, int threads, const std::string& command_line);

// One line for the `writers` attribute: when, where, which build, threads, command.
std::string writer_line(const Attrs& provenance);

}  // namespace covfit::run
