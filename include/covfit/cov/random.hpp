// Portable random numbers for the cov module.
//
// std::normal_distribution and std::shuffle are implementation-defined, so the same seed
// gives different streams on different standard libraries. Everything here is built on
// std::mt19937_64, whose output sequence is fixed by the standard, so planted problems and
// fold splits are bit-identical everywhere.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace covfit::cov {

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : eng_(seed) {}
  // Uniform on (0, 1): 53 random bits, never exactly 0 (Box-Muller takes a log).
  double uniform() { return (static_cast<double>(eng_() >> 11) + 0.5) * 0x1.0p-53; }
  // Standard normal by Box-Muller; the second variate is cached.
  double normal();
  // Uniform integer in [0, n) by rejection (no modulo bias).
  std::uint64_t below(std::uint64_t n);
  // Fisher-Yates permutation of 0..n-1.
  std::vector<int> permutation(int n);

 private:
  std::mt19937_64 eng_;
  bool has_cached_ = false;
  double cached_ = 0.0;
};

}  // namespace covfit::cov
