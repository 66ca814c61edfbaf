// Whole-λ-path evaluation of the per-λ scalars of the linearised model (MATH.md "The per-λ
// floor"): validation / train R^2 of M(λ) = linearized_M(red, λ), the exact loss L(W_lin(λ))
// and the linearised loss, for many λ at the cost of a few dozen per-λ evaluations.
//
// Method: every one of these scalars is a real-analytic function of u = log λ in the strip
// |Im u| < π (its only singularities are the poles λ = -4 s_i s_j), so it is interpolated in
// u at Chebyshev-Lobatto nodes on [log λ_min, log λ_max]; the node values are the per-λ
// formulas themselves (r2_val, r2_train; for L(W_lin) its quartic part). The degree comes
// from the strip width and a coarse pass, grows on nested nodes until the Chebyshev tail
// and two exact check points agree to the tolerance, and where that fails (rounding floor,
// too few λ) the interval is split or the per-λ formula is used (at most 2 L evaluations).
// The linearised loss has the closed form 1/2 Σ_ij T_ij² λ/(4 s_i s_j + λ) + const
// (T = R - diag(s)) and is evaluated exactly.
//
// Tolerances (PathOptions::tol, default 1e-12): R^2 absolute where |R^2| <= 1, else relative
// to |R^2| (= SS_res error relative to max(SS_tot, SS_res)); losses relative to the value.
// Each call's error estimate is reported in PathStats::err_bound (in those units).
// Lambdas: any order, duplicates allowed, > 0 (λ = 0 is evaluated by the per-λ formula;
// it needs all s_i > 0 like linearized_M). Single-threaded and deterministic.
#pragma once
#include <functional>
#include <vector>

#include "covfit/cov/svd.hpp"
#include "covfit/cov/validation.hpp"

namespace covfit::cov {

struct PathOptions {
  double tol = 1e-12;      // stated accuracy (see above)
  bool force_exact = false;  // per-λ formula everywhere (reference / debugging)
};

struct PathStats {
  int evaluations = 0;    // per-λ formula calls (nodes + check points + exact fallbacks)
  int interpolated = 0;   // λ values returned from an interpolant
  int pieces = 0;         // interpolation intervals used
  int max_degree = 0;     // largest Chebyshev degree used
  // Largest error estimate over pieces and functions, in the units of PathOptions::tol
  // (R^2: absolute, relative to |R^2| where |R^2| > 1; losses relative): the Chebyshev
  // tail (last coefficients extrapolated at the strip's rate, summed geometrically) plus a
  // rounding term, or the deviation at the two exact check points if larger (MATH.md).
  // 0 when nothing was interpolated (every value is then the per-λ formula's).
  double err_bound = 0.0;
};

// Same as r2_val(fd, linearized_M(fd.red, λ)) at every λ, within opt.tol (absolute in R^2).
std::vector<R2Pair> r2_val_path(const FoldData& fd, const std::vector<double>& lambdas,
                                const PathOptions& opt = {}, PathStats* stats = nullptr);
// Same as r2_train(fd, linearized_M(fd.red, λ)), within opt.tol (absolute in R^2).
std::vector<R2Pair> r2_train_path(const FoldData& fd, const std::vector<double>& lambdas,
                                  const PathOptions& opt = {}, PathStats* stats = nullptr);
// Exact loss of the linearised solution, loss_reduced(red, linearized_M(red, λ), λ), within
// opt.tol relative: L_lin(W_lin) from its closed form plus the interpolated quartic part
// L - L_lin = -<N, F> + 1/2 ||F||^2, F = Σ M² Σ, N = T λ/(4 s_i s_j + λ) (MATH.md).
std::vector<double> loss_lin_path(const Reduced& red, const std::vector<double>& lambdas,
                                  const PathOptions& opt = {}, PathStats* stats = nullptr);
// Linearised loss of the linearised solution, loss_linearized_reduced(red, linearized_M(red,
// λ), λ), from its closed form: O(r^2) per λ, equal to rounding (no interpolation).
std::vector<double> loss_linearized_path(const Reduced& red, const std::vector<double>& lambdas);

// The engine, exposed for tests: values[l * nf + f] of nf scalar functions at every λ.
// eval(λ, out) writes the nf exact values at λ; abs_tol(f, node_lambdas, node_values) gives
// function f's absolute tolerance on a piece from its nodes and its values there.
// stats->err_bound is then the largest (error estimate / abs_tol) times `unit`. The error
// estimate adds rounding_ulps x (Lebesgue constant + 1) x eps x the largest node value for
// the rounding of the node values (and of the per-λ formula compared against).
using PathEval = std::function<void(double lambda, double* out)>;
using PathTol = std::function<double(int f, const std::vector<double>& node_lambdas,
                                     const std::vector<double>& node_values)>;
std::vector<double> chebyshev_log_path(const std::vector<double>& lambdas, int nf,
                                       const PathEval& eval, const PathTol& abs_tol,
                                       double unit, bool force_exact = false,
                                       PathStats* stats = nullptr, double rounding_ulps = 8.0);

}  // namespace covfit::cov
