// Least-squares helpers shared by initialisation and Levenberg-Marquardt. Internal header.
#pragma once
#include <vector>

#include "covfit/rbf/fit.hpp"

namespace covfit::rbf::detail {

// Solve the symmetric positive definite system A x = b in place (A: n x n, column-major).
// A relative ridge keeps rank-deficient systems (duplicate kernels) solvable.
bool solve_spd(std::vector<double> A, std::vector<double>& b, int n, double ridge_rel);

// Least-squares weights for fixed shapes: (Phi^T Phi + ridge) w = Phi^T y. Dense: needs
// N x K doubles of memory and O(N K^2) time.
bool solve_weights(const std::vector<Canonical>& kernels, const Points& pts,
                   std::vector<double>& w);

// The raw slot holding the weight.
int weight_slot(Param p);

}  // namespace covfit::rbf::detail
