#include "covfit/core/limits.hpp"

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "covfit/core/error.hpp"

namespace covfit {

int machine_cores() {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n >= 1 ? static_cast<int>(n) : 1;
}

int max_threads() { return machine_cores() * kThreadsPerCore; }

void check_threads(int threads, const std::string& where) {
  if (threads < 0 || threads > max_threads())
    throw InputError(where, "threads must be in 0.." + std::to_string(max_threads()) + " (" +
                                std::to_string(kThreadsPerCore) + " x the " +
                                std::to_string(machine_cores()) + " cores; 0: all cores), got " +
                                std::to_string(threads));
}

double available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  double kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024.0;
  return 1e18;
}

double free_disk_bytes(const std::string& dir) {
  struct statvfs s {};
  if (statvfs(dir.empty() ? "." : dir.c_str(), &s) != 0) return 1e18;
  return static_cast<double>(s.f_bavail) * static_cast<double>(s.f_frsize);
}

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
  int u = 0;
  while (bytes >= 1000 && u < 6) {
    bytes /= 1000;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3g %s", bytes, units[u]);
  return buf;
}

void check_memory(double bytes, const std::string& where, const std::string& what) {
  const double avail = available_memory_bytes();
  if (!(bytes <= avail))
    throw InputError(where, what + " needs about " + human_bytes(bytes) + " of memory; " +
                                human_bytes(avail) + " is available");
}

void require_regular_file(const std::string& path, const std::string& role) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw InputError(path, "cannot open " + role + ": " + std::strerror(errno));
  if (S_ISREG(st.st_mode)) return;
  const char* kind = S_ISDIR(st.st_mode)    ? "a directory"
                     : S_ISFIFO(st.st_mode) ? "a FIFO (named pipe)"
                     : S_ISCHR(st.st_mode)  ? "a character device"
                     : S_ISBLK(st.st_mode)  ? "a block device"
                     : S_ISSOCK(st.st_mode) ? "a socket"
                                            : "not a regular file";
  throw InputError(path, role + " is " + std::string(kind) + ", not a regular file");
}

}  // namespace covfit
