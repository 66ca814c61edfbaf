// Hard limits and machine resources checked before any work starts (bad input -> exit 2
// with a message naming the place, before an output file exists).
#pragma once
#include <cstdint>
#include <string>

namespace covfit {

// Upper bounds on what a job may ask for. Larger values are almost certainly typos (or
// hostile) and would exhaust memory or run for years.
inline constexpr std::int64_t kMaxTasks = 10'000'000;     // tasks in one job
inline constexpr int kMaxPoints = 100'000'000;            // planted points per data set
inline constexpr int kMaxKernels = 4096;                  // planted kernels, grid K
inline constexpr int kMaxRestarts = 1'000'000;
inline constexpr int kMaxCovDim = 100'000;                // n, m of a covariance problem
inline constexpr int kThreadsPerCore = 4;                 // -t at most cores x this
inline constexpr std::int64_t kMaxJobFileBytes = 16 << 20;

int machine_cores();                       // online processors (>= 1)
int max_threads();                         // machine_cores() * kThreadsPerCore
// Throws InputError(where) unless 0 <= threads <= max_threads() (0: all cores).
void check_threads(int threads, const std::string& where);

// MemAvailable from /proc/meminfo (bytes); a large number if it cannot be read.
double available_memory_bytes();
// Free bytes for an unprivileged writer on the file system holding `dir`; a large
// number if it cannot be determined.
double free_disk_bytes(const std::string& dir);
// Throws InputError(where) if `bytes` exceeds the available memory.
void check_memory(double bytes, const std::string& where, const std::string& what);

// Throws InputError(path) unless `path` names an existing regular file (not a FIFO,
// device, directory or socket: reading those can block forever or never end).
// `role` says what the file is for ("job file", "input data").
void require_regular_file(const std::string& path, const std::string& role);

// "12.3 GB" style sizes for messages.
std::string human_bytes(double bytes);

}  // namespace covfit
