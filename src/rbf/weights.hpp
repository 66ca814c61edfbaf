// Least-squares helpers shared by initialisation and Levenberg-Marquardt. Internal header.
#pragma once
#include <cstddef>
#include <span>
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

// Gauss-Newton normal equations of the fit at `raw` over the raw slots `cols`:
// A = J^T J (P x P, lower triangle, column-major), g = J^T r, r_i = f(x_i) - y_i (so the
// gradient of the sum of squares is 2 g). With `varpro`, J is Kaufman's projected Jacobian
// (I - Phi Phi^+) J of the residual at the least-squares weights; `raw` must then hold
// those weights, and g is the gradient of half the reduced sum of squares. Returns false if
// Phi^T Phi is not positive definite. With `tiles` (the same points, tiled for local
// evaluation), Jacobian blocks are built per tile from the kernels the cull rule keeps
// there (when that drops at least 20 % of all pairs), so A and g drop the contributions
// the local loss drops. (fit.cpp; declared here for tests.)
bool normal_equations(const FitConfig& cfg, const Points& pts, const TiledPoints<double>* tiles,
                      std::span<const double> raw, const std::vector<int>& cols, bool varpro,
                      std::vector<double>& A, std::vector<double>& g);

}  // namespace covfit::rbf::detail
