// Least-squares helpers shared by initialisation and Levenberg-Marquardt. Internal header.
#pragma once
#include <cstddef>
#include <vector>

#include "covfit/rbf/fit.hpp"

namespace covfit::rbf::detail {

// Solve the symmetric positive definite system A x = b in place (A: n x n, column-major).
// A relative ridge keeps rank-deficient systems (duplicate kernels) solvable.
bool solve_spd(std::vector<double> A, std::vector<double>& b, int n, double ridge_rel);

// Rows (points) per chunk when normal equations are accumulated chunk by chunk, so that
// no N x K (or N x P) matrix is ever held.
inline constexpr std::size_t kRowChunk = 4096;

// Least-squares weights for fixed shapes: (Phi^T Phi + ridge) w = Phi^T y, accumulated
// over row chunks (O(N K^2) time, O(kRowChunk K + K^2) memory).
bool solve_weights(const std::vector<Canonical>& kernels, const Points& pts,
                   std::vector<double>& w);

// The raw slot holding the weight.
int weight_slot(Param p);

}  // namespace covfit::rbf::detail
