// A covariance-fitting problem (X, S), its validation, and a planted-problem generator.
//
// Loss (MATH.md): L(W) = 1/2 ||S - X^T (I+W)^T J (I+W) X||_F^2 + lambda/2 ||W||_F^2,
// J = I - 11^T/n. Everything in the cov module assumes J X = X (centred columns).
#pragma once
#include <cstdint>
#include <string>

#include "covfit/cov/matrix.hpp"

namespace covfit::cov {

struct Problem {
  Matrix X;  // (n, m): n input channels, m stimuli
  Matrix S;  // (m, m): target similarity across stimuli, symmetric
};

// Relative asymmetry of S tolerated before it is an input error (then S is symmetrised).
inline constexpr double kSymmetryTol = 1e-8;
// Below this, s_max^2 is too close to underflow for lambda / s_max^2 to mean anything.
inline constexpr double kMinScale = 1e-280;
// A column of X counts as centred when |mean| <= kCentreTol * max|entry| of that column.
inline constexpr double kCentreTol = 1e-10;

// The SVD runs in LAPACK with 32-bit indices (Debian's OpenBLAS): X may have at most
// 2^31 - 1 entries, and dgesdd's workspace (4 min(n, m)^2 + 7 min(n, m) doubles for a tall
// or wide X, 3 min(n, m)^2 + ... for a square one) must stay below 2^31 as well, so
// min(n, m) <= 23169. Throws InputError(where) otherwise.
inline constexpr long long kMaxLapackIndex = 2147483647LL;
inline constexpr int kMaxSvdMinDim = 23169;
void check_lapack_shape(int n, int m, const std::string& where);

// Validates `p` and brings it into canonical form:
//  - shapes: S is (m, m) where X is (n, m), n >= 2, m >= 1; n m and min(n, m) within
//    check_lapack_shape's limits;
//  - every entry of X and S finite;
//  - S symmetric within kSymmetryTol relative to max|S|; then symmetrised exactly;
//  - X's columns centred over the n channels (done here if needed);
//  - X not zero after centring, and its scale such that s_max^2 (the unit of lambda) is a
//    normal double; ||S||_F^2 finite.
// Throws covfit::InputError(where, message naming the offending entry/shape). Returns true
// when it centred X (the caller records that in the output).
bool check_and_centre(Problem& p, const std::string& where);

struct PlantedProblem {
  Problem problem;
  Matrix W0;  // (n, n) planted symmetric W, W0 = U_k M0 U_k^T in X's top-k signal subspace
};
// X = (A B^T / sqrt(rank) + noise * N) with A (n, rank), B (m, rank), N standard normal,
// then centred; W0 = U_k M0 U_k^T with U_k the top `rank` left singular vectors of X and
// M0 symmetric Gaussian scaled so ||W0||_2 ~ w0_scale; S = X^T (I+W0)^T J (I+W0) X plus
// symmetric Gaussian noise of relative size `noise` (times the rms entry of the clean S).
// Deterministic in `seed` on every platform (see random.hpp).
PlantedProblem planted_problem(int n, int m, int rank, double noise, double w0_scale,
                               std::uint64_t seed);

}  // namespace covfit::cov
