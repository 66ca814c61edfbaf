// Error types shared by every module.
//
// InputError: the user gave us something we cannot use (job file, data, path,
// flag). It carries the place (file:line, dataset name, key) so main() can print one
// line and exit 2. Numerical failure of a single task is never an exception: it is a
// status in that task's result.
#pragma once
#include <stdexcept>
#include <string>

namespace covfit {

class InputError : public std::runtime_error {
 public:
  // `where` names the place: "jobs/demo.toml:12", "case.h5:/X", "--shard".
  InputError(const std::string& where, const std::string& what)
      : std::runtime_error(one_line(where.empty() ? what : where + ": " + what)), where_(where) {}
  // Control characters (a NUL from a TOML "\u0000" would cut the message short, a
  // newline would break it) shown as \xNN.
  static std::string one_line(const std::string& s) {
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned char c : s) {
      if (c < 0x20 || c == 0x7f) {
        out += "\\x";
        out += hex[c >> 4];
        out += hex[c & 15];
      } else {
        out += static_cast<char>(c);
      }
    }
    return out;
  }
  const std::string& where() const noexcept { return where_; }

 private:
  std::string where_;
};

// Something outside the user's control failed (disk full, HDF5 library error).
class RuntimeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A stop signal arrived during a step that cannot leave partial results (e.g. assembling
// a finished sweep's summary); the caller reports the run as interrupted.
class Interrupted : public std::runtime_error {
 public:
  Interrupted() : std::runtime_error("interrupted") {}
};

}  // namespace covfit
