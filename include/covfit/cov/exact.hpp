// Exact minimiser of L(W) with a certificate (MATH.md "Exact problem: reduced, convex,
// certified").
//
// Every global minimiser is W* = U M* U^T with P* = I + M* symmetric positive definite,
// minimising f(P) = 1/2 ||R - Sigma P^2 Sigma||^2 + lambda/2 ||P - I||^2. f is not convex in P
// but h(G) (G = P^2) is, so a stationary P > 0 is the global optimum, and h's strong
// convexity turns the gradient into a bound on the optimality gap.
//
// Algorithm (the one that reached the global optimum on 600/600 random problems): line-search
// Newton-CG on symmetric P in units s_max = 1, Hessian-vector products O(r^3), Jacobi
// preconditioner s_i s_j (P_ii + P_jj)^2 + lambda, Armijo backtracking. Starts, in order:
// the caller's warm start (sweeps), I + M_lin projected onto P >= 1e-3 I, then
// lambda-continuation from 400 s_max^2 down by factors of 10 with warm starts. A start is
// accepted when it ends stationary with P > 0.
//
// Never throws for numerical trouble: the result carries a status and a message.
#pragma once
#include <atomic>
#include <string>
#include <vector>

#include "covfit/cov/matrix.hpp"
#include "covfit/cov/svd.hpp"

namespace covfit::cov {

struct ExactOptions {
  double rel_grad_tol = 1e-10;        // stop when ||grad_P f(P)|| <= tol * ||grad_P f(I)||
  int max_newton = 200;               // Newton steps per start / continuation stage
  int max_cg = 1000;                  // CG iterations per Newton step
  double start_floor = 1e-3;          // eigenvalue floor of the projected I + M_lin start
  double continuation_from = 400.0;   // first continuation lambda, in units of s_max^2
  double continuation_factor = 10.0;  // lambda divided by this per stage
  bool direct_start = true;           // false: skip the I + M_lin start (tests the fallback)
  const std::atomic<bool>* stop = nullptr;  // sweep_exact: leave the remaining lambdas
                                            // unsolved once set (SIGTERM / SIGINT)
};

enum class ExactStatus { converged, not_converged };

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
  bool used_continuation = false;
  double seconds = 0.0;
};

// lambda > 0. `warm_P` (r, r), if given, is tried first (e.g. I + M* of a neighbouring
// lambda). Throws InputError only for lambda <= 0 or not finite.
ExactResult solve_exact(const Reduced& red, double lambda, const ExactOptions& opt = {},
                        const Matrix* warm_P = nullptr);

// Solves every lambda, largest first, warm-starting each from its larger neighbour's
// solution. Results are returned in the order of `lambdas`.
std::vector<ExactResult> sweep_exact(const Reduced& red, const std::vector<double>& lambdas,
                                     const ExactOptions& opt = {});

}  // namespace covfit::cov
