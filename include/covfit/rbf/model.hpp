// The RBF model and its five covariance parameterisations.
//
//   f(x) = sum_k w_k exp(-1/2 (x - mu_k)^T P_k (x - mu_k)),  x in R^2
//
// Every parameterisation maps its raw parameters (kernel-major: raw[k * width + j]) to
// the canonical per-kernel form (mu_x, mu_y, P11, P12, P22, w). The SIMD kernels work
// on the canonical form only, so one kernel serves all parameterisations; gradients
// flow back to raw parameters through `canonical_to_raw_grad` (O(K), chain rule).
#pragma once
#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace covfit::rbf {

enum class Param { full, isotropic, scaled_diag, direct_inverse, cholesky };
inline constexpr std::array<Param, 5> kAllParams = {Param::full, Param::isotropic,
                                                   Param::scaled_diag, Param::direct_inverse,
                                                   Param::cholesky};

std::string_view param_name(Param p);
// Throws std::invalid_argument listing the valid names.
Param param_from_name(std::string_view name);

// Parameter groups, each with its own learning rate.
enum class Group { weight = 0, centre = 1, shape = 2 };
inline constexpr int kGroups = 3;

// Raw parameters per kernel (4 for isotropic, 6 otherwise).
int raw_width(Param p);
// Group of raw slot j (0 <= j < raw_width(p)).
Group raw_group(Param p, int j);
// Human name of raw slot j ("mu_x", "log_s", "p12", ...).
std::string_view raw_slot_name(Param p, int j);

// Canonical kernel: centre, symmetric precision P = [[p11, p12], [p12, p22]], weight.
struct Canonical {
  double mx, my, p11, p12, p22, w;
};

// Bounds and validity constraints applied after every optimiser step.
struct Bounds {
  double log_sigma_min = -6.907755278982137;  // log(1e-3)
  double log_sigma_max = 2.302585092994046;   // log(10)
  double scale_min = 1e-6;                    // scaled_diag: scale_x, scale_y >= this
  double eig_min = 1e-6;                      // direct_inverse: eigenvalues of P >= this
};

// raw (K * raw_width) -> canonical (K).
void raw_to_canonical(Param p, std::span<const double> raw, std::span<Canonical> out);

// Chain rule: given dL/d(canonical) per kernel (same layout as Canonical, as 6 doubles),
// write dL/d(raw) (K * raw_width).
void canonical_to_raw_grad(Param p, std::span<const double> raw,
                           std::span<const Canonical> grad_canonical,
                           std::span<double> grad_raw);

// Keep raw parameters valid (see Bounds): clip log sigmas, keep scales positive, project
// direct_inverse P onto {P : eig(P) >= eig_min}. Idempotent. Per parameterisation:
//   full:           log_sx, log_sy clipped to [log_sigma_min, log_sigma_max]; a free.
//   isotropic:      log_s clipped likewise.
//   scaled_diag:    log_s clipped likewise; scale_x, scale_y raised to >= scale_min.
//   direct_inverse: eigen-clip: P = V diag(l) V^T with l_i -> max(l_i, eig_min),
//                   eigenvectors kept (the nearest such P in Frobenius norm); a P that
//                   already satisfies the bound is left bit-for-bit unchanged.
//   cholesky:       a and c clipped to [-log_sigma_max, -log_sigma_min] (e^a and e^c are
//                   inverse sigmas: p11 = e^2a = 1/sx^2); b free. This bounds the
//                   diagonal of L, not the eigenvalues of P (b adds to p22).
// NaN log sigmas / scales / cholesky a, c are replaced by their lower bound; a non-finite
// direct_inverse P by max(eig_min, 1) I.
void project(Param p, std::span<double> raw, const Bounds& b);

// Raw parameters for a kernel with the given centre, isotropic width sigma and weight
// (used by initialisation; every parameterisation can represent an isotropic kernel).
void raw_from_isotropic(Param p, double mx, double my, double sigma, double w,
                        std::span<double> raw_kernel);

// Eigenvalues (ascending) of a 2x2 symmetric matrix.
std::array<double, 2> eig_sym2(double a, double b, double c);

}  // namespace covfit::rbf
