// Parameterisations: chain-rule gradients vs finite differences, bounds, initialisation.
#include "covfit/rbf/model.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "covfit/rbf/kernels.hpp"

namespace covfit::rbf {
namespace {

// Central differences with step h have truncation error O(h^2 L''') ~ 1e-10 and rounding
// error O(eps L / h) ~ 1e-11 here, so 1e-6 relative to the gradient's size leaves a wide
// margin while any wrong chain-rule factor (errors of O(1)) fails.
constexpr double kFdStep = 1e-5;
constexpr double kFdRelTol = 1e-6;

// Random non-degenerate raw parameters for K kernels (widths ~0.3..1.5, moderate
// anisotropy, weights of either sign).
std::vector<double> random_raw(Param p, int K, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(-1, 1);
  const int W = raw_width(p);
  std::vector<double> raw(static_cast<std::size_t>(K * W));
  for (int k = 0; k < K; ++k) {
    double* r = raw.data() + k * W;
    r[0] = u(rng);
    r[1] = u(rng);
    r[W - 1] = 0.5 + 0.5 * u(rng) * (k % 2 ? -1 : 1);
    switch (p) {
      case Param::full:
        r[2] = -0.4 + 0.5 * u(rng);
        r[3] = -0.4 + 0.5 * u(rng);
        r[4] = 1.5 * u(rng);
        break;
      case Param::isotropic:
        r[2] = -0.4 + 0.5 * u(rng);
        break;
      case Param::scaled_diag:
        r[2] = -0.4 + 0.5 * u(rng);
        r[3] = 1.2 + 0.7 * u(rng);
        r[4] = 1.2 + 0.7 * u(rng);
        break;
      case Param::direct_inverse: {
        const double a = 2 + 1.5 * u(rng), c = 2 + 1.5 * u(rng);
        r[2] = a;
        r[3] = 0.6 * u(rng) * std::sqrt(a * c);
        r[4] = c;
        break;
      }
      case Param::cholesky:
        r[2] = 0.4 + 0.5 * u(rng);
        r[3] = 0.8 * u(rng);
        r[4] = 0.4 + 0.5 * u(rng);
        break;
    }
  }
  return raw;
}

PointSet<double> random_points(std::size_t n, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(-2, 2);
  std::vector<double> x(n), y(n), t(n);
  for (std::size_t i = 0; i < n; ++i) {
    x[i] = u(rng);
    y[i] = u(rng);
    t[i] = std::sin(x[i]) * std::cos(y[i]);
  }
  return PointSet<double>::from(x, y, t);
}

double raw_loss(Param p, const PointSet<double>& pts, const std::vector<double>& raw) {
  std::vector<Canonical> c(raw.size() / static_cast<std::size_t>(raw_width(p)));
  raw_to_canonical(p, raw, c);
  return loss_grad_scalar(pts, c, {});
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

class RbfParamTest : public ::testing::TestWithParam<Param> {};

TEST_P(RbfParamTest, RawGradientMatchesFiniteDifferences) {
  const Param p = GetParam();
  std::mt19937_64 rng(1234 + static_cast<int>(p));
  const int K = 3;
  const auto pts = random_points(41, rng);
  for (int trial = 0; trial < 3; ++trial) {
    auto raw = random_raw(p, K, rng);
    std::vector<Canonical> c(K), gc(K);
    raw_to_canonical(p, raw, c);
    loss_grad_scalar(pts, c, gc);
    std::vector<double> g(raw.size());
    canonical_to_raw_grad(p, raw, gc, g);

    std::vector<double> fd(raw.size());
    for (std::size_t j = 0; j < raw.size(); ++j) {
      auto rp = raw, rm = raw;
      rp[j] += kFdStep;
      rm[j] -= kFdStep;
      fd[j] = (raw_loss(p, pts, rp) - raw_loss(p, pts, rm)) / (2 * kFdStep);
    }
    const double scale = max_abs(fd);
    ASSERT_GT(scale, 1e-3) << "degenerate test problem";
    for (std::size_t j = 0; j < raw.size(); ++j)
      EXPECT_NEAR(g[j], fd[j], kFdRelTol * scale)
          << param_name(p) << " kernel " << j / raw_width(p) << " slot "
          << raw_slot_name(p, static_cast<int>(j % raw_width(p)));
  }
}

TEST_P(RbfParamTest, ProjectIsIdempotentAndRespectsBounds) {
  const Param p = GetParam();
  const Bounds b;
  std::mt19937_64 rng(99 + static_cast<int>(p));
  std::uniform_real_distribution<double> wild(-12, 12);
  const int K = 50, W = raw_width(p);
  std::vector<double> raw(static_cast<std::size_t>(K * W));
  for (auto& v : raw) v = wild(rng);
  if (p == Param::direct_inverse) {  // include a few special matrices
    const double special[][3] = {{1, 2, 1}, {-1, 0, -2}, {0, 0, 0}, {1e-9, 0, 1e-9},
                                 {1e6, 999.9, 1e-6}, {5, 0, 5}};
    for (std::size_t s = 0; s < std::size(special); ++s)
      for (int j = 0; j < 3; ++j) raw[s * W + 2 + j] = special[s][j];
  }
  raw[static_cast<std::size_t>((K - 1) * W + 2)] = std::numeric_limits<double>::quiet_NaN();
  auto once = raw;
  project(p, once, b);
  auto twice = once;
  project(p, twice, b);
  EXPECT_EQ(0, std::memcmp(once.data(), twice.data(), once.size() * sizeof(double)))
      << "project is not idempotent for " << param_name(p);

  for (int k = 0; k < K; ++k) {
    const double* r = once.data() + k * W;
    const double* r0 = raw.data() + k * W;
    EXPECT_EQ(r[0], r0[0]);  // centres and weights are never touched
    EXPECT_EQ(r[1], r0[1]);
    EXPECT_EQ(r[W - 1], r0[W - 1]);
    auto in = [&](double v, double lo, double hi) {
      EXPECT_GE(v, lo);
      EXPECT_LE(v, hi);
    };
    switch (p) {
      case Param::full:
        in(r[2], b.log_sigma_min, b.log_sigma_max);
        in(r[3], b.log_sigma_min, b.log_sigma_max);
        EXPECT_EQ(r[4], r0[4]);
        break;
      case Param::isotropic:
        in(r[2], b.log_sigma_min, b.log_sigma_max);
        break;
      case Param::scaled_diag:
        in(r[2], b.log_sigma_min, b.log_sigma_max);
        EXPECT_GE(r[3], b.scale_min);
        EXPECT_GE(r[4], b.scale_min);
        break;
      case Param::direct_inverse: {
        const auto ev = eig_sym2(r[2], r[3], r[4]);
        EXPECT_GE(ev[0], b.eig_min) << "kernel " << k;
        const auto ev0 = eig_sym2(r0[2], r0[3], r0[4]);
        if (ev0[0] >= b.eig_min) {  // valid input: untouched
          EXPECT_EQ(r[2], r0[2]);
          EXPECT_EQ(r[3], r0[3]);
          EXPECT_EQ(r[4], r0[4]);
        } else if (ev0[1] > b.eig_min) {  // the large eigenvalue is kept
          EXPECT_NEAR(ev[1], ev0[1], 1e-12 * std::abs(ev0[1]) + 1e-12);
        }
        break;
      }
      case Param::cholesky:
        in(r[2], -b.log_sigma_max, -b.log_sigma_min);
        in(r[4], -b.log_sigma_max, -b.log_sigma_min);
        EXPECT_EQ(r[3], r0[3]);
        break;
    }
  }
  // Values inside the bounds are left alone.
  auto ok = random_raw(p, 4, rng);
  auto ok2 = ok;
  project(p, ok2, b);
  EXPECT_EQ(ok, ok2);
}

TEST_P(RbfParamTest, RawFromIsotropicGivesScaledIdentity) {
  const Param p = GetParam();
  const int W = raw_width(p);
  // +1e-6 in the isotropic denominator: relative deviation 1e-6 / sigma^2.
  for (double sigma : {0.05, 0.3, 1.0, 4.0}) {
    std::vector<double> raw(static_cast<std::size_t>(W));
    raw_from_isotropic(p, 0.25, -0.5, sigma, 1.5, raw);
    std::vector<Canonical> c(1);
    raw_to_canonical(p, raw, c);
    const double want = 1 / (sigma * sigma);
    const double rel = p == Param::isotropic ? 1e-6 / (sigma * sigma) * 1.01 + 1e-14 : 1e-13;
    EXPECT_EQ(c[0].mx, 0.25);
    EXPECT_EQ(c[0].my, -0.5);
    EXPECT_EQ(c[0].w, 1.5);
    EXPECT_NEAR(c[0].p11, want, rel * want) << param_name(p) << " sigma " << sigma;
    EXPECT_NEAR(c[0].p22, want, rel * want) << param_name(p) << " sigma " << sigma;
    EXPECT_NEAR(c[0].p12, 0, 1e-13 * want) << param_name(p) << " sigma " << sigma;
    // Within default bounds, projecting an initial kernel changes nothing.
    auto projected = raw;
    project(p, projected, Bounds{});
    EXPECT_EQ(projected, raw);
  }
}

TEST_P(RbfParamTest, LayoutIsConsistent) {
  const Param p = GetParam();
  const int W = raw_width(p);
  EXPECT_EQ(W, p == Param::isotropic ? 4 : 6);
  EXPECT_EQ(raw_group(p, 0), Group::centre);
  EXPECT_EQ(raw_group(p, 1), Group::centre);
  EXPECT_EQ(raw_group(p, W - 1), Group::weight);
  EXPECT_EQ(raw_slot_name(p, 0), "mu_x");
  EXPECT_EQ(raw_slot_name(p, W - 1), "w");
  for (int j = 2; j < W - 1; ++j) {
    EXPECT_EQ(raw_group(p, j), Group::shape);
    EXPECT_FALSE(raw_slot_name(p, j).empty());
  }
  EXPECT_EQ(param_from_name(param_name(p)), p);
}

INSTANTIATE_TEST_SUITE_P(AllParams, RbfParamTest, ::testing::ValuesIn(kAllParams),
                         [](const auto& info) { return std::string(param_name(info.param)); });

TEST(RbfModel, ParamFromNameRejectsTypoListingValidNames) {
  try {
    param_from_name("fulll");
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("fulll"), std::string::npos) << msg;
    for (Param p : kAllParams)
      EXPECT_NE(msg.find(std::string(param_name(p))), std::string::npos) << msg;
  }
  EXPECT_THROW(param_from_name(""), std::invalid_argument);
  EXPECT_THROW(param_from_name("Full"), std::invalid_argument);
}

TEST(RbfModel, EigSym2) {
  auto ev = eig_sym2(2, 1, 2);
  EXPECT_NEAR(ev[0], 1, 1e-15);
  EXPECT_NEAR(ev[1], 3, 1e-15);
  ev = eig_sym2(-1, 0, -3);
  EXPECT_DOUBLE_EQ(ev[0], -3);
  EXPECT_DOUBLE_EQ(ev[1], -1);
  ev = eig_sym2(1, 2, 1);
  EXPECT_NEAR(ev[0], -1, 1e-15);
  EXPECT_NEAR(ev[1], 3, 1e-15);
  // Nearly singular: the small eigenvalue keeps its relative accuracy (det / big).
  const double eps = 1e-10;
  ev = eig_sym2(1, 1, 1 + eps);  // eigenvalues ~ eps/2 and 2 + eps/2
  EXPECT_NEAR(ev[0], eps / 2, 1e-6 * eps);
  EXPECT_NEAR(ev[1], 2 + eps / 2, 1e-14);
  // b^2 is not exact in double: the determinant needs the fma-corrected product.
  {
    const double b = 1.1, a = 1.21, c = 1 + 1e-9;
    const long double det = static_cast<long double>(a) * c - static_cast<long double>(b) * b;
    ev = eig_sym2(a, b, c);
    const long double want = det / ev[1];
    EXPECT_NEAR(ev[0], static_cast<double>(want), 1e-10 * static_cast<double>(want));
  }
  // Random: trace and determinant are reproduced.
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(-5, 5);
  for (int i = 0; i < 100; ++i) {
    const double a = u(rng), b = u(rng), c = u(rng);
    ev = eig_sym2(a, b, c);
    EXPECT_LE(ev[0], ev[1]);
    EXPECT_NEAR(ev[0] + ev[1], a + c, 1e-12);
    EXPECT_NEAR(ev[0] * ev[1], a * c - b * b, 1e-11);
  }
}

TEST(RbfModel, RejectsMismatchedSizes) {
  std::vector<double> raw(7);
  std::vector<Canonical> c(1);
  EXPECT_THROW(raw_to_canonical(Param::full, raw, c), std::invalid_argument);
  EXPECT_THROW(project(Param::full, raw, Bounds{}), std::invalid_argument);
  std::vector<double> one(6);
  EXPECT_THROW(raw_from_isotropic(Param::isotropic, 0, 0, 1, 1, one), std::invalid_argument);
}

}  // namespace
}  // namespace covfit::rbf
