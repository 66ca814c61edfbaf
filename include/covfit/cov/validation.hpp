// Cross-validated R^2 over a lambda sweep (MATH.md "Validation R^2 for a sweep").
//
// Stimuli (columns of X, rows/cols of S) are split into train and validation sets. Each fold
// is reduced once on its train block; then for every lambda the val x val block is
// predicted as  S_va_hat = X_va^T X_va + P_va^T Q P_va,  P_va = U^T X_va (r, m_va), with
// Q = M + M^T (the linearised model's own prediction) or Q = M + M^T + M^T M (the exact
// model's prediction, i.e. L's forward map, for the same M). No n x n matrix is formed;
// cost per lambda and fold O(r^2 m_va + r m_va^2).
//
// R^2 = 1 - SS_res / SS_tot over the upper triangle (diagonal included) of the block;
// NaN when SS_tot = 0 (e.g. a one-stimulus block).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "covfit/cov/matrix.hpp"
#include "covfit/cov/problem.hpp"
#include "covfit/cov/svd.hpp"

namespace covfit::cov {

struct Fold {
  std::vector<int> train;  // ascending stimulus indices
  std::vector<int> val;    // ascending, disjoint from train, train U val = 0..m-1
};

// k folds over m stimuli from a seeded permutation (deterministic everywhere, random.hpp);
// fold sizes differ by at most one. Throws InputError(where) unless 2 <= k <= m.
std::vector<Fold> kfold_split(int m, int k, std::uint64_t seed, const std::string& where);
// One fold with the given validation stimuli. Throws InputError(where) for an index out of
// range, a duplicate, or an empty train/val set.
Fold explicit_split(int m, const std::vector<int>& val, const std::string& where);

// Everything about one fold that does not depend on lambda.
struct FoldData {
  Reduced red;        // reduction of (X_tr, S_tr)
  Matrix P_va;        // (r, m_va)  U^T X_va
  Matrix K_va;        // (m_va, m_va)  X_va^T X_va, the W = 0 prediction
  Matrix S_va;        // (m_va, m_va)
  double ss_tot_va;   // upper-triangle total sum of squares of S_va about its mean
  Matrix B_tr;        // (m_tr, r)  V Sigma, for train-block diagonals
  std::vector<double> S_tr_diag;
  double ss_tot_tr;
};
// p must have passed check_and_centre (column subsets of a centred X stay centred).
FoldData prepare_fold(const Problem& p, const Fold& fold);

struct R2Pair {
  double linear = 0.0;  // prediction with Q = M + M^T
  double exact = 0.0;   // prediction with Q = M + M^T + M^T M
};
// Validation R^2 of W = U M U^T for any (r, r) M.
R2Pair r2_val(const FoldData& fd, const Matrix& M);
// Train-block R^2 (upper triangle) of the same predictions. O(m_tr r^2): costlier than
// r2_val when m_tr >> m_va, hence optional in the sweep.
R2Pair r2_train(const FoldData& fd, const Matrix& M);

struct CvSummary {
  std::vector<double> mean, sd;  // per lambda over folds (sd with k-1; 0 for one fold)
  int best = -1;                 // index of the largest mean R^2 (NaN means ignored)
  int one_se = -1;               // index of the largest lambda with mean >= best - SE(best)
  double best_lambda = 0.0, one_se_lambda = 0.0;
};
// per_fold[f][l]: R^2 of fold f at lambdas[l]. Lambdas may be in any order.
CvSummary summarise(const std::vector<double>& lambdas,
                    const std::vector<std::vector<double>>& per_fold);

struct CvSweep {
  std::vector<double> lambdas;
  // [fold][lambda], linearised M at each lambda
  std::vector<std::vector<double>> val_linear, val_exact, train_linear, train_exact;
  CvSummary summary_linear;  // of val_linear: the linearised model's own CV curve
  CvSummary summary_exact;   // of val_exact
};
// Linearised closed form at every lambda on every fold. Lambdas must be finite and >= 0
// (InputError(where) otherwise). train R^2 only if `with_train`.
// threads > 1: OpenMP over lambdas, each lambda on one BLAS thread (the OpenBLAS thread
// count is set to 1 for the duration and restored; ignored when already inside a parallel
// region). Every (fold, lambda) result is computed by the same single-threaded code, so the
// output is bit-identical for any `threads`.
CvSweep cv_sweep_linearized(const Problem& p, const std::vector<Fold>& folds,
                            const std::vector<double>& lambdas, bool with_train,
                            const std::string& where = "lambda", int threads = 1);

// Throws InputError(where) unless every lambda is finite and >= min_value (inclusive when
// allow_equal).
void check_lambdas(const std::vector<double>& lambdas, double min_value, bool allow_equal,
                   const std::string& where);

}  // namespace covfit::cov
