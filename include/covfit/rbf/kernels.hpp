// Forward + gradient of the mean squared error over points, in one pass.
//
//   L = 1/N sum_i (f(x_i) - y_i)^2
//
// Points are structure-of-arrays (x, y, target), padded to a multiple of the SIMD width
// by `PointSet`. The gradient is with respect to the canonical parameters (see model.hpp).
// Reductions run in a fixed order, so results do not depend on thread count.
#pragma once
#include <cstddef>
#include <span>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "covfit/rbf/model.hpp"

namespace covfit::rbf {

template <class T>
using aligned_vector = std::vector<T, xsimd::aligned_allocator<T, 64>>;

// Points and targets in SoA layout, in precision T (float or double). Padding points have
// weight 0 (mask) so they do not contribute.
template <class T>
struct PointSet {
  std::size_t n = 0;       // real points
  aligned_vector<T> x, y, t, mask;  // size = padded n

  static PointSet from(std::span<const double> x, std::span<const double> y,
                       std::span<const double> t);
};

// Loss and canonical gradient (in double). `grad` may be empty (forward only).
// Scalar reference: straightforward double loop, for tests.
double loss_grad_scalar(const PointSet<double>& pts, std::span<const Canonical> kernels,
                        std::span<Canonical> grad);

// SIMD implementation (xsimd batches over points), T = float or double. `threads` > 1
// splits the points over OpenMP threads; the result is bitwise the same for any thread
// count (fixed windows of points, summed in window order). Worth it only for large N.
template <class T>
double loss_grad_simd(const PointSet<T>& pts, std::span<const Canonical> kernels,
                      std::span<Canonical> grad, int threads = 1);

// The vectorised exp used by loss_grad_simd, exposed for accuracy tests: out[i] = exp(x[i]).
// Cody-Waite range reduction + polynomial, 2^n by integer add to the exponent field.
// Accuracy where the result is a normal number: ~1 ulp (float), ~2e-16 relative (double).
// Results below the smallest normal flush to 0; above the largest finite value give inf.
// T = float or double; out.size() must equal x.size() (any length, any alignment).
template <class T>
void exp_simd(std::span<const T> x, std::span<T> out);

// Model values f(x_i) at the real points (for output / plotting), double.
void predict(std::span<const Canonical> kernels, std::span<const double> x,
             std::span<const double> y, std::span<double> out);

// Design matrix column k = exp(-1/2 q_ik) (N x K, column-major), for weights by least
// squares and variable projection. Also used by Levenberg-Marquardt's Jacobian.
void basis_matrix(std::span<const Canonical> kernels, std::span<const double> x,
                  std::span<const double> y, std::span<double> phi);

}  // namespace covfit::rbf
