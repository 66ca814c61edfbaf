#include "covfit/cov/random.hpp"

#include <cmath>
#include <numbers>

namespace covfit::cov {

double Rng::normal() {
  if (has_cached_) {
    has_cached_ = false;
    return cached_;
  }
  const double u1 = uniform(), u2 = uniform();
  const double rad = std::sqrt(-2.0 * std::log(u1));
  const double ang = 2.0 * std::numbers::pi * u2;
  cached_ = rad * std::sin(ang);
  has_cached_ = true;
  return rad * std::cos(ang);
}

std::uint64_t Rng::below(std::uint64_t n) {
  if (n <= 1) return 0;
  const std::uint64_t limit = UINT64_MAX - UINT64_MAX % n;  // accept [0, limit)
  std::uint64_t x;
  do x = eng_();
  while (x >= limit);
  return x % n;
}

std::vector<int> Rng::permutation(int n) {
  std::vector<int> p(n);
  for (int i = 0; i < n; ++i) p[i] = i;
  for (int i = n - 1; i > 0; --i) std::swap(p[i], p[below(static_cast<std::uint64_t>(i) + 1)]);
  return p;
}

}  // namespace covfit::cov
