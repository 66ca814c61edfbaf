// Fitting one RBF model to 2D points: initialisation, optimisers, monitors, stopping.
//
// Optimisers:
//  - adam:   Adam with one learning rate per group (weight, centre, shape), bounds applied
//            by projection after every step, optional global-norm gradient clipping.
//  - lm:     Levenberg-Marquardt on all raw parameters as a trust-region method (Moré's
//            scaling D = max over iterations of diag(J^T J); Nielsen's damping update on
//            the gain ratio, as Ceres' LevenbergMarquardtStrategy), each raw slot's step
//            capped (centres 0.1 x data extent, shape slots 0.5 x max(1, |slot|)) and
//            columns held by a bound fixed for the step. One step = one Jacobian;
//            rejected trials re-solve with more damping and do not count. J^T J is
//            accumulated by BLAS syrk over 4096-point chunks, or, with local evaluation
//            at large K, over the tiles with only the kernels kept there (culled
//            blocks), so memory is O(P^2), not O(N P).
//  - varpro: variable projection (Golub-Pereyra with Kaufman's Jacobian): the weights are
//            linear, so they are solved exactly by (tiny-ridge) least squares for every
//            trial shape; the LM above then runs only on centres and shapes.
//            lm_max_steps (if > 0) replaces max_steps for lm and varpro.
// A task never throws for numerical trouble: it returns a status.
#pragma once
#include <atomic>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "covfit/rbf/local.hpp"
#include "covfit/rbf/model.hpp"

namespace covfit::rbf {

enum class Optimizer { adam, lm, varpro };
// Initial centres: `lattice` = a jittered grid over the bounding box; `greedy` = one at a
// time where the current residual is largest (matching pursuit), weights refitted after
// each; restarts pick among the largest residuals at random.
enum class Init { lattice, greedy };
std::string_view optimizer_name(Optimizer o);

struct FitConfig {
  Param param = Param::full;
  int K = 9;
  Optimizer optimizer = Optimizer::adam;
  double lr[kGroups] = {0.01, 0.001, 0.001};  // by Group: weight, centre, shape
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double clip_grad = 0.0;     // max global gradient norm (0: no clipping)
  int max_steps = 2000;
  double rel_tol = 1e-7;      // converged when relative improvement over `patience`
  int patience = 5;           //   checkpoints falls below rel_tol
  double target_loss = 0.0;   // stop when loss <= target_loss (0: off)
  std::vector<double> target_losses;  // record steps / seconds to reach each
  int log_every = 50;         // checkpoint period (steps)
  bool f32 = false;           // SIMD kernels in float (parameters stay double)
  double width_scale = 1.0;   // initial sigma relative to centre spacing
  Init init = Init::greedy;
  double lr_final_ratio = 1.0;  // Adam: learning rates decay exponentially to this
                                // fraction of their start value at max_steps
  double lm_mu0 = 1e-3;       // LM / VarPro initial damping (relative to D)
  int lm_max_steps = 0;       // LM / VarPro iteration limit (0: max_steps)
  Bounds bounds;
  std::uint64_t seed = 0;
  int threads = 1;            // split each evaluation's points over threads (results are
                              // bitwise the same for any count; pays off for large N only)
  double cull_tol = -1;       // local evaluation (local.hpp): drop kernel k where
                              // |w_k| exp(-q/2) < cull_tol * rms(values); 0: dense, exact;
                              // < 0: the default for the precision (kDefaultCullTol*)
  bool grid_recurrence = true;  // on gridded data, exp(-q/2) by recurrence (local only)
};

inline constexpr double kDefaultCullTolF64 = 1e-10;
inline constexpr double kDefaultCullTolF32 = 1e-6;
// cfg.cull_tol with the precision default applied.
inline double effective_cull_tol(const FitConfig& cfg) {
  return cfg.cull_tol >= 0 ? cfg.cull_tol : (cfg.f32 ? kDefaultCullTolF32 : kDefaultCullTolF64);
}

// Splitting one fit's evaluations over threads pays off from about this many points, and
// this many kernel-point pairs per evaluation (measured on 2 cores: 2x at N = 32768, K = 9).
inline constexpr std::size_t kParallelPointsMin = 32768;
inline constexpr std::size_t kParallelWorkMin = 32768 * 4;

// One monitor row.
struct Checkpoint {
  int step = 0;
  double seconds = 0, loss = 0;
  double grad_norm[kGroups] = {0, 0, 0};
  double sigma_min = 0, sigma_max = 0;  // over kernels, from the eigenvalues of P
  double cond_max = 0;                  // largest condition number of P
};

enum class Status { converged, reached_target, max_steps, diverged, failed, interrupted };
std::string_view status_name(Status s);

struct FitResult {
  Status status = Status::failed;
  std::string message;
  int steps = 0;
  double initial_loss = 0, final_loss = 0, seconds = 0;
  std::vector<int> steps_to_target;        // -1: never reached
  std::vector<double> seconds_to_target;   // NaN: never reached
  std::vector<Checkpoint> curve;           // every log_every steps, and the last step
  Checkpoint final;                        // monitors at the returned parameters (Adam
                                           // returns its best iterate, not the last)
  std::vector<double> raw;                 // final raw parameters (K * raw_width)
  std::vector<Canonical> kernels;          // final canonical kernels
};

// The data. When `grid` is set it describes the same points as a regular grid (x, y,
// values are then its unmasked cells in row-major order); local evaluation tiles the grid
// and may use the recurrence.
struct Points {
  std::span<const double> x, y, values;
  const Grid* grid = nullptr;
};

// Deterministic start from cfg.seed (see Init): isotropic widths from the lattice
// spacing of K centres over the bounding box, weights by least squares.
std::vector<double> initial_raw(const FitConfig& cfg, const Points& pts);

// Fit; `stop` (may be null) is polled every step (SIGTERM / SIGINT).
FitResult fit(const FitConfig& cfg, const Points& pts, const std::atomic<bool>* stop = nullptr);
// Fit from given raw parameters (K * raw_width; e.g. another fit's result) instead of
// initial_raw. Seconds count from the call (the initialisation is not included).
FitResult fit_from(const FitConfig& cfg, const Points& pts, std::vector<double> raw,
                   const std::atomic<bool>* stop = nullptr);

// Monitor values for a parameter vector (exposed for tests).
void shape_monitors(std::span<const Canonical> kernels, double& sigma_min, double& sigma_max,
                    double& cond_max);

}  // namespace covfit::rbf
