// Input validation and the planted-problem generator.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "covfit/core/error.hpp"
#include "covfit/cov/problem.hpp"
#include "covfit/cov/random.hpp"

namespace cc = covfit::cov;

namespace {

cc::Problem small_problem() {
  cc::Rng rng(3);
  cc::Problem p{cc::Matrix(5, 4), cc::Matrix(4, 4)};
  for (double& v : p.X.data) v = rng.normal();
  for (int j = 0; j < 4; ++j)
    for (int i = 0; i <= j; ++i) p.S(i, j) = p.S(j, i) = rng.normal();
  return p;
}

// Runs check_and_centre expecting an InputError; returns its message.
std::string input_error(cc::Problem p) {
  try {
    cc::check_and_centre(p, "case.h5:/X");
  } catch (const covfit::InputError& e) {
    EXPECT_EQ(e.where(), "case.h5:/X");
    return e.what();
  }
  ADD_FAILURE() << "no InputError thrown";
  return "";
}

}  // namespace

TEST(CovProblem, NanInXNamesPlaceAndEntry) {
  auto p = small_problem();
  p.X(2, 3) = std::numeric_limits<double>::quiet_NaN();
  const std::string msg = input_error(p);
  EXPECT_NE(msg.find("case.h5:/X"), std::string::npos) << msg;
  EXPECT_NE(msg.find("X(2, 3)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not finite"), std::string::npos) << msg;
}

TEST(CovProblem, InfInSNamed) {
  auto p = small_problem();
  p.S(1, 0) = std::numeric_limits<double>::infinity();
  const std::string msg = input_error(p);
  EXPECT_NE(msg.find("S(1, 0)"), std::string::npos) << msg;
}

TEST(CovProblem, NonSymmetricSNamesWorstPair) {
  auto p = small_problem();
  p.S(3, 1) += 1e-3;
  p.S(0, 2) += 1e-6;
  const std::string msg = input_error(p);
  EXPECT_NE(msg.find("case.h5:/X"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not symmetric"), std::string::npos) << msg;
  EXPECT_NE(msg.find("S(3, 1)"), std::string::npos) << msg;
}

TEST(CovProblem, TinyAsymmetryIsSymmetrisedExactly) {
  auto p = small_problem();
  p.S(3, 1) += 1e-12;
  cc::check_and_centre(p, "x");
  for (int j = 0; j < 4; ++j)
    for (int i = 0; i < 4; ++i) EXPECT_EQ(p.S(i, j), p.S(j, i));
}

TEST(CovProblem, ShapeMismatchNamesShapes) {
  auto p = small_problem();
  p.S = cc::Matrix(5, 5);
  const std::string msg = input_error(p);
  EXPECT_NE(msg.find("(5, 5)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(5, 4)"), std::string::npos) << msg;
}

TEST(CovProblem, CentresColumnsOnlyWhenNeeded) {
  auto p = small_problem();
  EXPECT_TRUE(cc::check_and_centre(p, "x"));
  for (int j = 0; j < p.X.cols; ++j) {
    double s = 0.0;
    for (int i = 0; i < p.X.rows; ++i) s += p.X(i, j);
    EXPECT_NEAR(s, 0.0, 1e-13);
  }
  const cc::Matrix X1 = p.X;
  EXPECT_FALSE(cc::check_and_centre(p, "x"));
  EXPECT_EQ(p.X.data, X1.data);  // already centred: untouched, bit for bit
}

TEST(CovProblem, ConstantXIsRejected) {
  auto p = small_problem();
  for (double& v : p.X.data) v = 2.0;
  EXPECT_NE(input_error(p).find("zero after centring"), std::string::npos);
}

// X scaled by 1e200 made s_max^2 overflow (every exact solve meaningless, lambda in s_max^2
// units inf, found only after the output existed); X scaled by 1e-150 underflows it.
TEST(CovProblem, XScaleOutsideDoubleRangeIsRejected) {
  for (double scale : {1e200, 1e-150}) {
    auto p = small_problem();
    for (double& v : p.X.data) v *= scale;
    const std::string msg = input_error(p);
    EXPECT_NE(msg.find("X's scale"), std::string::npos) << msg;
    EXPECT_NE(msg.find("rescale X"), std::string::npos) << msg;
  }
  auto p = small_problem();
  for (double& v : p.X.data) v *= 1e60;  // large but fine: s_max^2 ~ 1e240
  EXPECT_NO_THROW(cc::check_and_centre(p, "x"));
  for (double& v : p.S.data) v *= 1e160;
  EXPECT_NE(input_error(p).find("S's scale"), std::string::npos);
}

TEST(CovProblem, PlantedIsDeterministicCentredSymmetric) {
  const auto a = cc::planted_problem(30, 20, 4, 0.1, 0.5, 42);
  const auto b = cc::planted_problem(30, 20, 4, 0.1, 0.5, 42);
  const auto c = cc::planted_problem(30, 20, 4, 0.1, 0.5, 43);
  EXPECT_EQ(a.problem.X.data, b.problem.X.data);
  EXPECT_EQ(a.problem.S.data, b.problem.S.data);
  EXPECT_EQ(a.W0.data, b.W0.data);
  EXPECT_NE(a.problem.X.data, c.problem.X.data);
  cc::Problem p = a.problem;
  EXPECT_FALSE(cc::check_and_centre(p, "planted"));  // centred and symmetric already
  EXPECT_EQ(p.S.data, a.problem.S.data);
  for (int j = 0; j < 30; ++j)
    for (int i = 0; i < 30; ++i) EXPECT_DOUBLE_EQ(a.W0(i, j), a.W0(j, i));
}

// The generator must not depend on the standard library's distributions: pin the stream.
TEST(CovProblem, RngStreamIsPinned) {
  cc::Rng rng(1);
  std::mt19937_64 ref(1);
  const double u = (static_cast<double>(ref() >> 11) + 0.5) * 0x1.0p-53;
  EXPECT_EQ(rng.uniform(), u);
  cc::Rng a(7), b(7);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(a.normal(), b.normal());
  const auto perm = cc::Rng(9).permutation(10);
  std::vector<int> sorted = perm;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(sorted[i], i);
}

// LAPACK with 32-bit indices: X's entries and dgesdd's workspace (~4 min(n, m)^2) must stay
// below 2^31 (checked from the shape alone, before anything is allocated).
TEST(CovProblem, ShapesBeyondLapackIndicesAreRejected) {
  EXPECT_NO_THROW(cc::check_lapack_shape(20000, 5000, "t"));
  EXPECT_NO_THROW(cc::check_lapack_shape(cc::kMaxSvdMinDim, cc::kMaxSvdMinDim, "t"));
  EXPECT_NO_THROW(cc::check_lapack_shape(92000, 23000, "t"));  // 2.116e9 entries
  try {
    cc::check_lapack_shape(100000, 22000, "data 'x'");  // 2.2e9 entries
    ADD_FAILURE() << "no error";
  } catch (const covfit::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("2200000000 entries"), std::string::npos) << e.what();
  }
  try {
    cc::check_lapack_shape(cc::kMaxSvdMinDim + 1, cc::kMaxSvdMinDim + 1, "t");
    ADD_FAILURE() << "no error";
  } catch (const covfit::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("at most 23169"), std::string::npos) << e.what();
  }
}
