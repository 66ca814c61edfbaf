// Loss/gradient kernels: scalar reference vs finite differences, SIMD vs scalar, exp.
#include "covfit/rbf/kernels.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace covfit::rbf {
namespace {

// f64 SIMD differs from the scalar reference only by summation order and the custom
// exp (~2e-16): 1e-12 relative. f32: inputs rounded to float (~6e-8) amplified by the
// residual's cancellation (f - t), and float exp/sums: 1e-4 relative.
constexpr double kF64Tol = 1e-12;
constexpr double kF32Tol = 1e-4;

struct Problem {
  std::vector<double> x, y, t;
  std::vector<Canonical> kernels;
};

// K anisotropic kernels spread over [-2, 2]^2; targets = smooth function + noise so the
// residual is neither zero nor dominated by one kernel.
Problem make_problem(std::size_t n, std::size_t K, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  Problem p;
  p.x.resize(n);
  p.y.resize(n);
  p.t.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    p.x[i] = 2 * u(rng);
    p.y[i] = 2 * u(rng);
    p.t[i] = std::sin(1.3 * p.x[i]) * std::cos(0.7 * p.y[i]) + 0.05 * u(rng);
  }
  for (std::size_t k = 0; k < K; ++k) {
    const double a = 1.5 + u(rng), c = 1.5 + u(rng);
    p.kernels.push_back({1.8 * u(rng), 1.8 * u(rng), a, 0.5 * u(rng) * std::sqrt(a * c), c,
                         u(rng)});
  }
  return p;
}

double grad_max_abs(const std::vector<Canonical>& g) {
  double m = 0;
  for (const auto& c : g)
    for (double v : {c.mx, c.my, c.p11, c.p12, c.p22, c.w}) m = std::max(m, std::abs(v));
  return m;
}

// Every component within tol * max|g_ref| (components can be ~0 individually).
void expect_grad_near(const std::vector<Canonical>& g, const std::vector<Canonical>& ref,
                      double tol, const std::string& what) {
  ASSERT_EQ(g.size(), ref.size());
  const double scale = grad_max_abs(ref);
  ASSERT_GT(scale, 0) << what;
  for (std::size_t k = 0; k < g.size(); ++k) {
    EXPECT_NEAR(g[k].mx, ref[k].mx, tol * scale) << what << " k=" << k << " mx";
    EXPECT_NEAR(g[k].my, ref[k].my, tol * scale) << what << " k=" << k << " my";
    EXPECT_NEAR(g[k].p11, ref[k].p11, tol * scale) << what << " k=" << k << " p11";
    EXPECT_NEAR(g[k].p12, ref[k].p12, tol * scale) << what << " k=" << k << " p12";
    EXPECT_NEAR(g[k].p22, ref[k].p22, tol * scale) << what << " k=" << k << " p22";
    EXPECT_NEAR(g[k].w, ref[k].w, tol * scale) << what << " k=" << k << " w";
  }
}

TEST(RbfKernels, ScalarCanonicalGradientMatchesFiniteDifferences) {
  const auto prob = make_problem(53, 4, 11);
  const auto pts = PointSet<double>::from(prob.x, prob.y, prob.t);
  std::vector<Canonical> g(prob.kernels.size());
  loss_grad_scalar(pts, prob.kernels, g);
  const double h = 1e-5;
  const double scale = grad_max_abs(g);
  for (std::size_t k = 0; k < prob.kernels.size(); ++k) {
    for (int j = 0; j < 6; ++j) {
      auto kp = prob.kernels, km = prob.kernels;
      reinterpret_cast<double*>(&kp[k])[j] += h;
      reinterpret_cast<double*>(&km[k])[j] -= h;
      const double fd =
          (loss_grad_scalar(pts, kp, {}) - loss_grad_scalar(pts, km, {})) / (2 * h);
      const double an = reinterpret_cast<const double*>(&g[k])[j];
      EXPECT_NEAR(an, fd, 1e-6 * scale) << "kernel " << k << " component " << j;
    }
  }
}

TEST(RbfKernels, PointSetPadsWithMaskZero) {
  for (std::size_t n : {0, 1, 7, 8, 16, 17, 100}) {
    const auto prob = make_problem(n, 1, 3);
    const auto pf = PointSet<float>::from(prob.x, prob.y, prob.t);
    const auto pd = PointSet<double>::from(prob.x, prob.y, prob.t);
    EXPECT_EQ(pf.n, n);
    EXPECT_EQ(pf.x.size() % 16, 0u);  // 64 bytes of float
    EXPECT_EQ(pd.x.size() % 8, 0u);   // 64 bytes of double
    EXPECT_EQ(pf.x.size() % xsimd::batch<float>::size, 0u);
    EXPECT_EQ(pd.x.size() % xsimd::batch<double>::size, 0u);
    EXPECT_LT(pd.x.size(), n + 8 + (n == 0 ? 1 : 0));
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(pf.x.data()) % 64, 0u);
    for (std::size_t i = 0; i < pd.mask.size(); ++i) {
      EXPECT_EQ(pd.mask[i], i < n ? 1.0 : 0.0);
      if (i < n) {
        EXPECT_EQ(pd.x[i], prob.x[i]);
      }
      EXPECT_TRUE(std::isfinite(pd.x[i]) && std::isfinite(pd.y[i]));
    }
  }
  std::vector<double> a(3), b(2);
  EXPECT_THROW(PointSet<double>::from(a, a, b), std::invalid_argument);
}

struct SimdCase {
  std::size_t n, K;
};

class RbfSimdTest : public ::testing::TestWithParam<SimdCase> {};

TEST_P(RbfSimdTest, MatchesScalarReference) {
  const auto [n, K] = GetParam();
  const auto prob = make_problem(n, K, static_cast<unsigned>(n * 31 + K));
  const auto pd = PointSet<double>::from(prob.x, prob.y, prob.t);
  const auto pf = PointSet<float>::from(prob.x, prob.y, prob.t);
  std::vector<Canonical> gref(K), g64(K), g32(K);
  const double lref = loss_grad_scalar(pd, prob.kernels, gref);
  const double l64 = loss_grad_simd<double>(pd, prob.kernels, g64);
  const double l32 = loss_grad_simd<float>(pf, prob.kernels, g32);
  ASSERT_GT(lref, 0);
  EXPECT_NEAR(l64, lref, kF64Tol * lref);
  EXPECT_NEAR(l32, lref, kF32Tol * lref);
  expect_grad_near(g64, gref, kF64Tol, "f64");
  expect_grad_near(g32, gref, kF32Tol, "f32");
  // Forward-only gives the same loss, bit for bit; repeated calls are deterministic.
  EXPECT_EQ(loss_grad_simd<double>(pd, prob.kernels, {}), l64);
  EXPECT_EQ(loss_grad_simd<float>(pf, prob.kernels, {}), l32);
  EXPECT_EQ(loss_grad_scalar(pd, prob.kernels, {}), lref);
  std::vector<Canonical> again(K);
  EXPECT_EQ(loss_grad_simd<float>(pf, prob.kernels, again), l32);
  EXPECT_EQ(0, std::memcmp(again.data(), g32.data(), K * sizeof(Canonical)));
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, RbfSimdTest,
    ::testing::Values(SimdCase{1, 1}, SimdCase{5, 3}, SimdCase{8, 1}, SimdCase{13, 25},
                      SimdCase{16, 2}, SimdCase{17, 1}, SimdCase{40, 5}, SimdCase{100, 9},
                      SimdCase{1000, 25}, SimdCase{4099, 7}),
    [](const auto& info) {
      return "N" + std::to_string(info.param.n) + "_K" + std::to_string(info.param.K);
    });

TEST(RbfKernels, FloatAccurateForLargeN) {
  // Float partial sums are flushed to double every few blocks, so the error does not
  // grow with N: measured ~5e-8 (loss and gradient) at N = 1e6, against ~4e-6 (loss) and
  // ~2e-5 (gradient) when the sums run in float over all N.
  constexpr std::size_t kN = 1000000;
  constexpr double kTol = 1e-6;
  const auto prob = make_problem(kN, 9, 5);
  const auto pd = PointSet<double>::from(prob.x, prob.y, prob.t);
  const auto pf = PointSet<float>::from(prob.x, prob.y, prob.t);
  std::vector<Canonical> gref(9), g32(9);
  const double lref = loss_grad_scalar(pd, prob.kernels, gref);
  const double l32 = loss_grad_simd<float>(pf, prob.kernels, g32);
  EXPECT_NEAR(l32, lref, kTol * lref);
  expect_grad_near(g32, gref, kTol, "f32 N=1e6");
}

TEST(RbfKernels, EmptyInputs) {
  const auto prob = make_problem(0, 2, 1);
  const auto pf = PointSet<float>::from(prob.x, prob.y, prob.t);
  std::vector<Canonical> g(2, Canonical{1, 1, 1, 1, 1, 1});
  EXPECT_EQ(loss_grad_simd<float>(pf, prob.kernels, g), 0.0);
  EXPECT_EQ(g[0].w, 0.0);
  // K = 0: f = 0, loss = mean(t^2), nothing to differentiate.
  const auto p2 = make_problem(20, 0, 2);
  const auto pd = PointSet<double>::from(p2.x, p2.y, p2.t);
  double want = 0;
  for (double t : p2.t) want += t * t / 20;
  EXPECT_NEAR(loss_grad_simd<double>(pd, {}, {}), want, 1e-14);
  std::vector<Canonical> wrong(3);
  EXPECT_THROW(loss_grad_simd<double>(pd, p2.kernels, wrong), std::invalid_argument);
}

template <class T>
void check_exp(double lo, double hi, double tol, bool in_ulps) {
  std::mt19937_64 rng(17);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<T> x(100003), y(x.size());
  for (auto& v : x) v = static_cast<T>(u(rng));
  x[0] = T(0);
  x[1] = T(-0.5 * std::log(2.0));
  exp_simd<T>(x, y);
  double worst = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const long double ref = std::exp(static_cast<long double>(x[i]));
    const double err = in_ulps ? static_cast<double>(std::abs(y[i] - ref) /
                                                     (std::nextafter(static_cast<T>(ref),
                                                                     std::numeric_limits<T>::infinity()) -
                                                      static_cast<T>(ref)))
                               : static_cast<double>(std::abs(y[i] - ref) / ref);
    worst = std::max(worst, err);
  }
  EXPECT_LE(worst, tol) << "range [" << lo << ", " << hi << "]";
}

TEST(RbfKernels, ExpFloatWithinTwoUlps) {
  check_exp<float>(-87.3, 0, 2.0, true);
  check_exp<float>(-1, 1, 2.0, true);
  check_exp<float>(0, 88.7, 2.0, true);
}

TEST(RbfKernels, ExpDoubleRelativeError) {
  check_exp<double>(-708, 0, 1e-15, false);
  check_exp<double>(-1, 1, 1e-15, false);
  check_exp<double>(0, 709, 1e-15, false);
}

TEST(RbfKernels, ExpUnderflowOverflow) {
  std::vector<float> xf = {-88.f, -100.f, -1e30f, 89.f, -std::numeric_limits<float>::infinity(),
                           std::numeric_limits<float>::infinity(), 0.f};
  std::vector<float> yf(xf.size());
  exp_simd<float>(xf, yf);
  EXPECT_EQ(yf[0], 0.f);
  EXPECT_EQ(yf[1], 0.f);
  EXPECT_EQ(yf[2], 0.f);
  EXPECT_EQ(yf[3], std::numeric_limits<float>::infinity());
  EXPECT_EQ(yf[4], 0.f);
  EXPECT_EQ(yf[5], std::numeric_limits<float>::infinity());
  EXPECT_EQ(yf[6], 1.f);
  std::vector<double> xd = {-709., -745., -1e300, 710., std::nan(""), 0.};
  std::vector<double> yd(xd.size());
  exp_simd<double>(xd, yd);
  EXPECT_EQ(yd[0], 0.0);
  EXPECT_EQ(yd[1], 0.0);
  EXPECT_EQ(yd[2], 0.0);
  EXPECT_EQ(yd[3], std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(yd[4]));
  EXPECT_EQ(yd[5], 1.0);
}

TEST(RbfKernels, PredictAndBasisMatrixAgree) {
  const auto prob = make_problem(37, 5, 9);
  const std::size_t n = prob.x.size(), K = prob.kernels.size();
  std::vector<double> f(n), phi(n * K);
  predict(prob.kernels, prob.x, prob.y, f);
  basis_matrix(prob.kernels, prob.x, prob.y, phi);
  double loss = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double fi = 0;
    for (std::size_t k = 0; k < K; ++k) {
      const Canonical& c = prob.kernels[k];
      const double dx = prob.x[i] - c.mx, dy = prob.y[i] - c.my;
      const double e =
          std::exp(-0.5 * (c.p11 * dx * dx + 2 * c.p12 * dx * dy + c.p22 * dy * dy));
      EXPECT_NEAR(phi[k * n + i], e, 1e-15);  // column-major N x K
      fi += c.w * e;
    }
    EXPECT_NEAR(f[i], fi, 1e-14);
    loss += (fi - prob.t[i]) * (fi - prob.t[i]) / static_cast<double>(n);
  }
  const auto pd = PointSet<double>::from(prob.x, prob.y, prob.t);
  EXPECT_NEAR(loss_grad_scalar(pd, prob.kernels, {}), loss, 1e-14);
}

}  // namespace
}  // namespace covfit::rbf

// Splitting the points over threads must not change a single bit: fixed windows, summed
// in window order (the runner relies on this for thread-count independence).
TEST(RbfKernels, ThreadedSumsAreBitwiseEqualForAnyThreadCount) {
  for (std::size_t n : {1u, 17u, 511u, 512u, 513u, 20000u, 100003u}) {
    std::vector<double> x(n), y(n), t(n);
    for (std::size_t i = 0; i < n; ++i) {
      x[i] = std::sin(0.37 * static_cast<double>(i));
      y[i] = std::cos(0.11 * static_cast<double>(i));
      t[i] = std::sin(3.0 * x[i] + y[i]);
    }
    std::vector<covfit::rbf::Canonical> k = {{0.1, -0.2, 3.0, 0.5, 2.0, 0.7},
                                             {-0.4, 0.3, 8.0, -1.0, 5.0, -0.3},
                                             {0.5, 0.5, 1.0, 0.2, 4.0, 1.1}};
    auto p64 = covfit::rbf::PointSet<double>::from(x, y, t);
    auto p32 = covfit::rbf::PointSet<float>::from(x, y, t);
    std::vector<covfit::rbf::Canonical> g1(3), g2(3);
    for (int threads : {2, 3}) {
      double l1 = covfit::rbf::loss_grad_simd<double>(p64, k, g1, 1);
      double l2 = covfit::rbf::loss_grad_simd<double>(p64, k, g2, threads);
      EXPECT_EQ(l1, l2) << n;
      EXPECT_EQ(std::memcmp(g1.data(), g2.data(), sizeof(covfit::rbf::Canonical) * 3), 0) << n;
      l1 = covfit::rbf::loss_grad_simd<float>(p32, k, g1, 1);
      l2 = covfit::rbf::loss_grad_simd<float>(p32, k, g2, threads);
      EXPECT_EQ(l1, l2) << n;
      EXPECT_EQ(std::memcmp(g1.data(), g2.data(), sizeof(covfit::rbf::Canonical) * 3), 0) << n;
      EXPECT_EQ(covfit::rbf::loss_grad_simd<double>(p64, k, {}, 1),
                covfit::rbf::loss_grad_simd<double>(p64, k, {}, threads)) << n;
    }
  }
}
