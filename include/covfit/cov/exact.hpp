// Exact minimiser of L(W) with a certificate (MATH.md "Exact problem: reduced, convex,
// certified").
//
// Every global minimiser is W* = U M* U^T with P* = I + M* symmetric positive definite,
// minimising f(P) = 1/2 ||R - Sigma P^2 Sigma||^2 + lambda/2 ||P - I||^2. f is not convex in P
// but h(G) (G = P^2) is, so a stationary P > 0 is the global optimum, and h's strong
// convexity turns the gradient into a bound on the optimality gap.
//
// Algorithm (docs/MATH.md "Exact solver"): Newton steps taken in G = P^2, where h is convex
// and its Hessian H_G = C^2 + Delta is positive definite everywhere (C^2: D -> S D S,
// Delta: diagonal in P's eigenbasis, lambda / (2 p_k p_l (p_k + p_l))), while the iterate is
// stored as P (G's small eigenvalues ~ lambda^2 would drown in rounding). The step in P is
// dP = T^{-1} dG, T: D -> P D + D P; it is always a descent direction for f. H_G dG = -grad
// is solved by CG preconditioned with the exact inverse of S (x) S + lambda/4 B (x) B,
// B = P^{-3/2} (a generalised eigendecomposition, O(r^3) per Newton step; 4 GEMMs per CG
// iteration). Armijo backtracking keeps P > 0. The loop stops on the Newton decrement
// (predicted decrease below f's rounding) or the relative gradient, and always applies one
// last Newton correction after either test passes.
// Starts, in order: the caller's warm start (sweeps), I + M_lin projected onto P >= 1e-3 I,
// then lambda-continuation from 400 s_max^2 down by factors of 10 with warm starts. A start
// is accepted when it ends stationary with P > 0.
//
// Budgets (Newton steps and seconds per lambda, CG iterations per Newton step) bound every
// solve; when one runs out the result has status `budget` with the best iterate and its
// certificate figures. The stop flag is polled inside the CG loop.
//
// Never throws for numerical trouble: the result carries a status and a message.
#pragma once
#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "covfit/cov/matrix.hpp"
#include "covfit/cov/svd.hpp"

namespace covfit::cov {

struct ExactOptions {
  double rel_grad_tol = 1e-10;        // stop when ||grad_P f(P)|| <= tol * ||grad_P f(I)||
  int max_newton = 200;               // Newton steps per lambda, all starts and stages together
  int max_cg = 500;                   // CG iterations per Newton step
  double max_seconds = 120.0;         // wall time per lambda (0: no limit). A row stopped by
                                      // it depends on the machine's speed: its status says so.
  double start_floor = 1e-3;          // eigenvalue floor of the projected I + M_lin start
  double continuation_from = 400.0;   // first continuation lambda, in units of s_max^2
  double continuation_factor = 10.0;  // lambda divided by this per stage
  bool direct_start = true;           // false: skip the I + M_lin start (tests the fallback)
  const std::atomic<bool>* stop = nullptr;  // polled in every CG iteration; once set the
                                            // solve returns at once (status interrupted)
};

// converged: stationary with P > 0 (certified). budget: a Newton/CG/time budget ran out
// (best iterate returned, certificate figures describe it). not_converged: every start ended
// without reaching stationarity (line search failed). interrupted: the stop flag was set.
enum class ExactStatus { converged, not_converged, budget, interrupted };
const char* exact_status_name(ExactStatus s);

struct ExactResult {
  double lambda = 0.0;
  ExactStatus status = ExactStatus::not_converged;
  std::string message;      // how it converged, or why not
  Matrix M;                 // (r, r) symmetric; W* = U M U^T
  double loss = 0.0;        // L(W*) including 1/2(||S||^2 - ||R||^2)
  double f = 0.0;           // f(P*) (original units, without that constant)
  double rel_grad = 0.0;    // ||grad_P f(P*)||_F / ||grad_P f(I)||_F (0 if the latter is 0)
  double gap_bound = 0.0;   // f(P*) - f* <= gap_bound (original units); inf unless P* > 0
  double G_dist_bound = 0.0;  // ||P*^2 - G*||_F <= this; inf unless P* > 0
  double min_eig_P = 0.0;   // smallest eigenvalue of P* = I + M*
  int newton_iters = 0;     // summed over all starts/stages tried
  int cg_iters = 0;
  int max_cg_per_newton = 0;  // the most CG iterations any one Newton step took
  bool used_continuation = false;
  double seconds = 0.0;
};

// lambda > 0. `warm_P` (r, r), if given, is tried first (e.g. I + M* of a neighbouring
// lambda); when its `warm_lambda` is more than continuation_factor above lambda, the warm
// start walks down to lambda in continuation stages. Throws InputError only for lambda <= 0
// or not finite.
ExactResult solve_exact(const Reduced& red, double lambda, const ExactOptions& opt = {},
                        const Matrix* warm_P = nullptr, double warm_lambda = 0.0);

// What sweep_exact carries from one lambda to the next: the last solution on the path
// (P = I + M, the next warm start) and, for its predictor, the logs of the last two
// certified ones. Passing the state one call ended with into the next call continues the
// path with the same bits as one call over both lambda lists.
struct ExactPathState {
  bool have_warm = false;           // warm, warm_lambda valid
  bool have_logs_for_warm = false;  // log_warm = log(warm) valid (warm was certified)
  bool have_logs = false;           // log_prev, prev_lambda valid too (predictor armed)
  double warm_lambda = 0.0, prev_lambda = 0.0;
  Matrix warm, log_warm, log_prev;
};

// Solves every lambda, largest first, warm-starting each from its larger neighbour's
// solution (converged or budget-limited). Results are returned in the order of `lambdas`.
// `each`, if given, sees every result as it is made (progress). `state`, if given, is
// where the path starts (e.g. the end of the previous lambda block) and is left at its end.
std::vector<ExactResult> sweep_exact(const Reduced& red, const std::vector<double>& lambdas,
                                     const ExactOptions& opt = {},
                                     const std::function<void(const ExactResult&)>& each = {},
                                     ExactPathState* state = nullptr);

}  // namespace covfit::cov
