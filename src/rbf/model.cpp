// Parameterisations of the RBF kernel precision: raw <-> canonical, chain rule, bounds.
// See include/covfit/rbf/model.hpp for the raw layouts and the bounds contract.
#include "covfit/rbf/model.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <stdexcept>
#include <string>

namespace covfit::rbf {
namespace {

// isotropic: P = I / (s^2 + kIsoEps); keeps P finite as s -> 0 (seed's epsilon).
constexpr double kIsoEps = 1e-6;
constexpr double kTwoPi = 2.0 * std::numbers::pi;

constexpr std::array<std::string_view, 5> kNames = {"full", "isotropic", "scaled_diag",
                                                    "direct_inverse", "cholesky"};

// Slot names per parameterisation (width 6, isotropic uses the first 4).
constexpr std::array<std::array<std::string_view, 6>, 5> kSlots = {{
    {"mu_x", "mu_y", "log_sx", "log_sy", "a", "w"},
    {"mu_x", "mu_y", "log_s", "w", "", ""},
    {"mu_x", "mu_y", "log_s", "scale_x", "scale_y", "w"},
    {"mu_x", "mu_y", "p11", "p12", "p22", "w"},
    {"mu_x", "mu_y", "a", "b", "c", "w"},
}};

int index_of(Param p) { return static_cast<int>(p); }

double sigmoid(double a) {
  // Branches keep exp() from overflowing for large |a|.
  if (a >= 0) return 1.0 / (1.0 + std::exp(-a));
  const double e = std::exp(a);
  return e / (1.0 + e);
}

void check_sizes(Param p, std::size_t raw_size, std::size_t k, const char* what) {
  if (raw_size != k * static_cast<std::size_t>(raw_width(p)))
    throw std::invalid_argument(std::string(what) + ": raw size " + std::to_string(raw_size) +
                                " != K * raw_width(" + std::string(param_name(p)) + ") = " +
                                std::to_string(k) + " * " + std::to_string(raw_width(p)));
}

// a*c - b*b with one rounding error less (Kahan's difference of products).
double det_sym2(double a, double b, double c) {
  const double bb = b * b;
  const double err = std::fma(-b, b, bb);  // bb - exact(b*b)
  return std::fma(a, c, -bb) + err;
}

// P = l1 v v^T + l2 u u^T with u = v rotated by 90 degrees; v unit.
void compose_sym2(double l1, double l2, double vx, double vy, double& a, double& b,
                  double& c) {
  a = l1 * vx * vx + l2 * vy * vy;
  b = (l1 - l2) * vx * vy;
  c = l1 * vy * vy + l2 * vx * vx;
}

// Unit eigenvector of [[a,b],[b,c]] for eigenvalue lmax (the larger one).
void eigvec_max(double a, double b, double c, double lmax, double& vx, double& vy) {
  // Use the better-conditioned of the two rows of (P - lmax I) v = 0.
  if (a >= c) {
    vx = lmax - c;
    vy = b;
  } else {
    vx = b;
    vy = lmax - a;
  }
  const double n = std::hypot(vx, vy);
  if (!(n > 0)) {  // multiple of the identity: any vector
    vx = 1;
    vy = 0;
    return;
  }
  vx /= n;
  vy /= n;
}

// direct_inverse projection: eigenvalues of P clipped to >= eig_min, eigenvectors kept.
// Leaves P untouched when it already satisfies the bound (so project is idempotent);
// otherwise nudges the clipped eigenvalue up until eig_sym2 of the rounded result
// reports >= eig_min, so a second call also sees a valid P.
void project_precision(double& p11, double& p12, double& p22, double eig_min) {
  if (!std::isfinite(p11) || !std::isfinite(p12) || !std::isfinite(p22)) {
    p11 = p22 = std::max(eig_min, 1.0);
    p12 = 0;
    return;
  }
  const auto ev = eig_sym2(p11, p12, p22);
  if (ev[0] >= eig_min) return;
  double vx, vy;
  eigvec_max(p11, p12, p22, ev[1], vx, vy);
  double margin = 0;
  for (int it = 0; it < 60; ++it) {
    const double lbig = std::max(ev[1], eig_min) + (ev[1] < eig_min ? margin : 0.0);
    const double lsmall = eig_min + margin;
    double a, b, c;
    compose_sym2(lbig, lsmall, vx, vy, a, b, c);
    if (eig_sym2(a, b, c)[0] >= eig_min) {
      p11 = a;
      p12 = b;
      p22 = c;
      return;
    }
    // Rounding in the reconstruction scales with the largest eigenvalue.
    margin = margin == 0 ? 4 * std::numeric_limits<double>::epsilon() * lbig
                         : 2 * margin;
  }
  // Unreachable in practice; fall back to a safe isotropic precision.
  p11 = p22 = std::max(ev[1], eig_min) * 2;
  p12 = 0;
}

}  // namespace

std::string_view param_name(Param p) { return kNames.at(static_cast<std::size_t>(p)); }

Param param_from_name(std::string_view name) {
  for (Param p : kAllParams)
    if (param_name(p) == name) return p;
  std::string valid;
  for (std::size_t i = 0; i < kNames.size(); ++i) {
    if (i) valid += ", ";
    valid += kNames[i];
  }
  throw std::invalid_argument("unknown parameterisation '" + std::string(name) +
                              "' (valid: " + valid + ")");
}

int raw_width(Param p) { return p == Param::isotropic ? 4 : 6; }

Group raw_group(Param p, int j) {
  const int w = raw_width(p);
  if (j < 0 || j >= w) throw std::out_of_range("raw_group: slot out of range");
  if (j == w - 1) return Group::weight;
  if (j < 2) return Group::centre;
  return Group::shape;
}

std::string_view raw_slot_name(Param p, int j) {
  if (j < 0 || j >= raw_width(p)) throw std::out_of_range("raw_slot_name: slot out of range");
  return kSlots[static_cast<std::size_t>(index_of(p))][static_cast<std::size_t>(j)];
}

std::array<double, 2> eig_sym2(double a, double b, double c) {
  const double m = 0.5 * (a + c);
  const double d = std::hypot(0.5 * (a - c), b);
  // The eigenvalue of larger magnitude is computed directly; the other from det / it,
  // which avoids cancellation for nearly singular P.
  double big = m >= 0 ? m + d : m - d;
  double other = big != 0 ? det_sym2(a, b, c) / big : 0.0;
  if (m >= 0) return {other, big};
  return {big, other};
}

void raw_to_canonical(Param p, std::span<const double> raw, std::span<Canonical> out) {
  const std::size_t k_count = out.size();
  check_sizes(p, raw.size(), k_count, "raw_to_canonical");
  const std::size_t W = static_cast<std::size_t>(raw_width(p));
  for (std::size_t k = 0; k < k_count; ++k) {
    const double* r = raw.data() + k * W;
    Canonical& c = out[k];
    c.mx = r[0];
    c.my = r[1];
    c.w = r[W - 1];
    switch (p) {
      case Param::full: {
        const double u = std::exp(-2 * r[2]), v = std::exp(-2 * r[3]);  // 1/sx^2, 1/sy^2
        const double t = sigmoid(r[4]) * kTwoPi;
        const double ct = std::cos(t), st = std::sin(t);
        c.p11 = ct * ct * u + st * st * v;
        c.p12 = ct * st * (u - v);
        c.p22 = st * st * u + ct * ct * v;
        break;
      }
      case Param::isotropic: {
        const double s2 = std::exp(2 * r[2]);
        c.p11 = c.p22 = 1.0 / (s2 + kIsoEps);
        c.p12 = 0;
        break;
      }
      case Param::scaled_diag: {
        const double inv_s2 = std::exp(-2 * r[2]);
        c.p11 = r[3] * inv_s2;
        c.p12 = 0;
        c.p22 = r[4] * inv_s2;
        break;
      }
      case Param::direct_inverse:
        c.p11 = r[2];
        c.p12 = r[3];
        c.p22 = r[4];
        break;
      case Param::cholesky: {
        const double ea = std::exp(r[2]), b = r[3], ec = std::exp(r[4]);
        c.p11 = ea * ea;
        c.p12 = b * ea;
        c.p22 = b * b + ec * ec;
        break;
      }
    }
  }
}

void canonical_to_raw_grad(Param p, std::span<const double> raw,
                           std::span<const Canonical> grad_canonical,
                           std::span<double> grad_raw) {
  const std::size_t k_count = grad_canonical.size();
  check_sizes(p, raw.size(), k_count, "canonical_to_raw_grad");
  check_sizes(p, grad_raw.size(), k_count, "canonical_to_raw_grad (grad_raw)");
  const std::size_t W = static_cast<std::size_t>(raw_width(p));
  for (std::size_t k = 0; k < k_count; ++k) {
    const double* r = raw.data() + k * W;
    double* g = grad_raw.data() + k * W;
    const Canonical& gc = grad_canonical[k];
    g[0] = gc.mx;
    g[1] = gc.my;
    g[W - 1] = gc.w;
    switch (p) {
      case Param::full: {
        const double u = std::exp(-2 * r[2]), v = std::exp(-2 * r[3]);
        const double sg = sigmoid(r[4]);
        const double t = sg * kTwoPi;
        const double ct = std::cos(t), st = std::sin(t);
        // dP/du = (c^2, cs, s^2), dP/dv = (s^2, -cs, c^2), du/dlog_sx = -2u, dv/dlog_sy = -2v.
        const double gu = gc.p11 * ct * ct + gc.p12 * ct * st + gc.p22 * st * st;
        const double gv = gc.p11 * st * st - gc.p12 * ct * st + gc.p22 * ct * ct;
        g[2] = -2 * u * gu;
        g[3] = -2 * v * gv;
        // dP/dt = (u - v) (-sin 2t, cos 2t, sin 2t), dt/da = 2 pi sg (1 - sg).
        const double s2t = 2 * st * ct, c2t = ct * ct - st * st;
        const double gt = (u - v) * (-gc.p11 * s2t + gc.p12 * c2t + gc.p22 * s2t);
        g[4] = gt * kTwoPi * sg * (1 - sg);
        break;
      }
      case Param::isotropic: {
        const double s2 = std::exp(2 * r[2]);
        const double d = s2 + kIsoEps;
        // dp/dlog_s = -2 s^2 / (s^2 + eps)^2
        g[2] = (gc.p11 + gc.p22) * (-2 * s2 / (d * d));
        break;
      }
      case Param::scaled_diag: {
        const double inv_s2 = std::exp(-2 * r[2]);
        const double p11 = r[3] * inv_s2, p22 = r[4] * inv_s2;
        g[2] = -2 * (gc.p11 * p11 + gc.p22 * p22);
        g[3] = gc.p11 * inv_s2;
        g[4] = gc.p22 * inv_s2;
        break;
      }
      case Param::direct_inverse:
        g[2] = gc.p11;
        g[3] = gc.p12;
        g[4] = gc.p22;
        break;
      case Param::cholesky: {
        const double ea = std::exp(r[2]), b = r[3], ec = std::exp(r[4]);
        // p11 = e^2a, p12 = b e^a, p22 = b^2 + e^2c
        g[2] = gc.p11 * 2 * ea * ea + gc.p12 * b * ea;
        g[3] = gc.p12 * ea + gc.p22 * 2 * b;
        g[4] = gc.p22 * 2 * ec * ec;
        break;
      }
    }
  }
}

void project(Param p, std::span<double> raw, const Bounds& b) {
  const std::size_t W = static_cast<std::size_t>(raw_width(p));
  if (raw.size() % W != 0)
    throw std::invalid_argument("project: raw size " + std::to_string(raw.size()) +
                                " is not a multiple of raw_width(" +
                                std::string(param_name(p)) + ")");
  const std::size_t k_count = raw.size() / W;
  auto clip = [](double x, double lo, double hi) {
    // NaN goes to lo: a NaN parameter must not survive a projection.
    return x >= lo ? (x <= hi ? x : hi) : lo;
  };
  for (std::size_t k = 0; k < k_count; ++k) {
    double* r = raw.data() + k * W;
    switch (p) {
      case Param::full:
        r[2] = clip(r[2], b.log_sigma_min, b.log_sigma_max);
        r[3] = clip(r[3], b.log_sigma_min, b.log_sigma_max);
        break;
      case Param::isotropic:
        r[2] = clip(r[2], b.log_sigma_min, b.log_sigma_max);
        break;
      case Param::scaled_diag:
        r[2] = clip(r[2], b.log_sigma_min, b.log_sigma_max);
        r[3] = r[3] >= b.scale_min ? r[3] : b.scale_min;
        r[4] = r[4] >= b.scale_min ? r[4] : b.scale_min;
        break;
      case Param::direct_inverse:
        project_precision(r[2], r[3], r[4], b.eig_min);
        break;
      case Param::cholesky:
        r[2] = clip(r[2], -b.log_sigma_max, -b.log_sigma_min);
        r[4] = clip(r[4], -b.log_sigma_max, -b.log_sigma_min);
        break;
    }
  }
}

void raw_from_isotropic(Param p, double mx, double my, double sigma, double w,
                        std::span<double> raw_kernel) {
  const std::size_t W = static_cast<std::size_t>(raw_width(p));
  if (raw_kernel.size() != W)
    throw std::invalid_argument("raw_from_isotropic: raw_kernel size != raw_width");
  if (!(sigma > 0)) throw std::invalid_argument("raw_from_isotropic: sigma must be > 0");
  const double ls = std::log(sigma);
  double* r = raw_kernel.data();
  r[0] = mx;
  r[1] = my;
  r[W - 1] = w;
  switch (p) {
    case Param::full:
      r[2] = r[3] = ls;
      r[4] = 0;
      break;
    case Param::isotropic:
      r[2] = ls;
      break;
    case Param::scaled_diag:
      r[2] = ls;
      r[3] = r[4] = 1;
      break;
    case Param::direct_inverse:
      r[2] = r[4] = 1 / (sigma * sigma);
      r[3] = 0;
      break;
    case Param::cholesky:
      r[2] = r[4] = -ls;
      r[3] = 0;
      break;
  }
}

}  // namespace covfit::rbf
