// The free_diag model W = diag(d) + F, penalty lambda/2 ||F||^2 + lambda_d/2 ||d||^2,
// linearised (MATH.md "The diagonal component").
//
// For fixed d, F = U M U^T has the closed form of linearized.hpp with target
// T - 2 Sigma (U^T diag(d) U) Sigma; eliminating F leaves the ridge system
//   (N + lambda_d I) d = b,  N = Z Z^T,  Z_k,(i<=j) = U_ki U_kj sqrt(c_ij Gamma_ij)  (n, p),
//   Gamma = 4 a^2 w, w = lambda / (4 a^2 + lambda), a_ij = sqrt(s_i s_j), c = 1 (i = j) or 2,
//   b = diag(U (2 a w T) U^T),  T = R - diag(s),  p = r (r + 1) / 2.
// Solved directly (n x n, O(n^2 p + n^3)) or by Woodbury through Z (O(n p^2 + p^3)); the
// automatic choice takes the cheaper one.
//
// Exact (non-linearised) model: F = B U^T with 1^T B = 0, unknowns (d, B); not convex, so
// L-BFGS from the linearised solution with a stationarity certificate (MATH.md).
#pragma once
#include <string>
#include <vector>

#include "covfit/cov/exact.hpp"
#include "covfit/cov/matrix.hpp"
#include "covfit/cov/svd.hpp"

namespace covfit::cov {

enum class DiagSolver { automatic, direct, woodbury };

struct DiagLinearized {
  std::vector<double> d;  // (n) diagonal part
  Matrix M;               // (r, r) symmetric, F = U M U^T
  DiagSolver used = DiagSolver::automatic;
  bool ok = true;         // false if the linear solve failed (then d = 0)
};

// The method `automatic` resolves to for this (n, r).
DiagSolver diag_choose_solver(int n, int r);

// lambda > 0 and lambda_d > 0 (InputError otherwise).
DiagLinearized diag_linearized(const Reduced& red, double lambda, double lambda_d,
                               DiagSolver solver = DiagSolver::automatic);

// F's coefficients for a given d: M = 2a / (4a^2 + lambda) o (T - 2 a o (U^T diag(d) U)).
Matrix diag_M_from_d(const Reduced& red, double lambda, const std::vector<double>& d);

// A path over lambda_d at fixed lambda: one eigendecomposition (of N, or of Z^T Z for
// Woodbury), then O(n^2) or O(n p) per lambda_d.
class DiagPath {
 public:
  // Keeps a pointer to `red`, which must outlive the path.
  DiagPath(const Reduced& red, double lambda, DiagSolver solver = DiagSolver::automatic);
  DiagLinearized solve(double lambda_d) const;
  DiagSolver solver() const { return used_; }

 private:
  const Reduced* red_;
  double lambda_;
  DiagSolver used_;
  bool ok_ = true;
  std::vector<double> b_;    // (n)
  std::vector<double> ev_;   // eigenvalues of N (direct) or Z^T Z (Woodbury)
  Matrix Q_;                 // direct: (n, n) eigenvectors of N; Woodbury: (n, p) Z Q
  std::vector<double> qb_;   // Q^T b (direct) or Q^T Z^T b (Woodbury)
};

// Exact loss of W = diag(d) + B U^T with penalties lambda/2 ||B||^2 + lambda_d/2 ||d||^2,
// including the constant 1/2(||S||^2 - ||R||^2), in O(n r^2):
//   H = U + J diag(d) U + B,  L = 1/2 ||R - Sigma H^T H Sigma||^2 + penalties + const.
// B must have centred columns. Gradients (optional outputs), with G_H = -2 H Sigma E Sigma:
//   dL/dB = J G_H + lambda B,  dL/dd_k = sum_j (J G_H)_kj U_kj + lambda_d d_k.
double diag_loss(const Reduced& red, double lambda, double lambda_d, const std::vector<double>& d,
                 const Matrix& B, std::vector<double>* grad_d = nullptr, Matrix* grad_B = nullptr);

struct DiagExactOptions {
  double rel_grad_tol = 1e-9;  // ||grad|| / ||grad at (d, B) = 0||
  int max_iter = 20000;
  int memory = 10;             // L-BFGS pairs kept
};

struct DiagExactResult {
  ExactStatus status = ExactStatus::not_converged;
  std::string message;
  std::vector<double> d;       // (n)
  Matrix B;                    // (n, r), centred columns; F = B U^T
  double loss = 0.0;           // L(diag(d) + B U^T) including the constant
  double loss_start = 0.0;     // same at the linearised start
  double rel_grad = 0.0;       // certificate of stationarity (not of global optimality)
  int iters = 0;
  double seconds = 0.0;
};
DiagExactResult diag_exact(const Reduced& red, double lambda, double lambda_d,
                           const DiagExactOptions& opt = {});

}  // namespace covfit::cov
