// The six weighted moment sums per kernel from which the dense (kernels.cpp) and the local
// (local.cpp) kernels form the canonical gradient. Internal header.
//
// For a kernel with centre (mx, my), s = r e the residual times the kernel's value at a point
// and (dx, dy) = (x - mx, y - my):
//   S_w = sum s, S_x = sum s dx, S_y = sum s dy, S_xx = sum s dx^2, S_xy = sum s dx dy,
//   S_yy = sum s dy^2,
// and with L = 1/N sum r^2 (w is constant per kernel, so it is applied once at the end):
//   dL/dw   = 2/N S_w
//   dL/dmx  = 2/N w (p11 S_x + p12 S_y),   dL/dmy = 2/N w (p12 S_x + p22 S_y)
//   dL/dp11 = -1/N w S_xx,  dL/dp12 = -2/N w S_xy,  dL/dp22 = -1/N w S_yy.
#pragma once
#include "covfit/rbf/model.hpp"
#include "rbf/fast_exp.hpp"  // COVFIT_ALWAYS_INLINE

namespace covfit::rbf::detail {

// The sums per kernel, in this order.
enum Acc { kSw = 0, kSx, kSy, kSxx, kSxy, kSyy, kNumAcc };

// Adds one batch of points' terms (s, dx, dy as above) to the six lane-wise sums.
template <class B>
COVFIT_ALWAYS_INLINE void add_moments(const B& s, const B& dx, const B& dy, B& sw, B& sx, B& sy,
                                      B& sxx, B& sxy, B& syy) {
  const B sdx = s * dx, sdy = s * dy;
  sw += s;
  sx += sdx;
  sy += sdy;
  sxx = xsimd::fma(sdx, dx, sxx);
  sxy = xsimd::fma(sdx, dy, sxy);
  syy = xsimd::fma(sdy, dy, syy);
}

// Kernel c's canonical gradient from its sums s[kNumAcc] over n points.
inline void gradient_from_moments(const Canonical& c, const double* s, double n, Canonical& g) {
  g.w = 2.0 / n * s[kSw];
  g.mx = 2.0 / n * c.w * (c.p11 * s[kSx] + c.p12 * s[kSy]);
  g.my = 2.0 / n * c.w * (c.p12 * s[kSx] + c.p22 * s[kSy]);
  g.p11 = -1.0 / n * c.w * s[kSxx];
  g.p12 = -2.0 / n * c.w * s[kSxy];
  g.p22 = -1.0 / n * c.w * s[kSyy];
}

}  // namespace covfit::rbf::detail
