// Deterministic random numbers: identical streams on every platform and library version
// (std::*_distribution are implementation-defined, so we do our own transforms).
#pragma once
#include <cmath>
#include <cstdint>
#include <random>

namespace covfit {

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : gen_(seed) {}
  // Uniform in [0, 1).
  double uniform() { return static_cast<double>(gen_() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Standard normal by Box-Muller (one value per call; the pair's twin is kept).
  double normal() {
    if (have_spare_) {
      have_spare_ = false;
      return spare_;
    }
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    double rad = std::sqrt(-2.0 * std::log(u1)), ang = 6.283185307179586 * u2;
    spare_ = rad * std::sin(ang);
    have_spare_ = true;
    return rad * std::cos(ang);
  }
  std::uint64_t bits() { return gen_(); }

 private:
  std::mt19937_64 gen_;
  double spare_ = 0;
  bool have_spare_ = false;
};

}  // namespace covfit
