#include "covfit/cov/validation.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <sstream>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "covfit/core/error.hpp"
#include "covfit/cov/linearized.hpp"
#include "covfit/cov/random.hpp"

namespace covfit::cov {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double upper_ss_about_mean(const Matrix& A) {
  const int m = A.rows;
  double sum = 0.0;
  long cnt = 0;
  for (int j = 0; j < m; ++j)
    for (int i = 0; i <= j; ++i) sum += A(i, j), ++cnt;
  const double mean = cnt ? sum / static_cast<double>(cnt) : 0.0;
  double ss = 0.0;
  for (int j = 0; j < m; ++j)
    for (int i = 0; i <= j; ++i) ss += (A(i, j) - mean) * (A(i, j) - mean);
  return ss;
}

double r2(double ss_res, double ss_tot) { return ss_tot > 0.0 ? 1.0 - ss_res / ss_tot : kNaN; }

std::vector<int> complement(int m, const std::vector<int>& val) {
  std::vector<char> in(m, 0);
  for (int v : val) in[v] = 1;
  std::vector<int> tr;
  for (int i = 0; i < m; ++i)
    if (!in[i]) tr.push_back(i);
  return tr;
}

}  // namespace

void check_lambdas(const std::vector<double>& lambdas, double min_value, bool allow_equal,
                   const std::string& where) {
  if (lambdas.empty()) throw InputError(where, "no lambda values given");
  for (std::size_t i = 0; i < lambdas.size(); ++i) {
    const double l = lambdas[i];
    if (!std::isfinite(l) || l < min_value || (!allow_equal && l == min_value)) {
      std::ostringstream os;
      os.precision(17);
      os << "lambda[" << i << "] = " << l << " must be finite and " << (allow_equal ? ">= " : "> ")
         << min_value;
      throw InputError(where, os.str());
    }
  }
}

std::vector<Fold> kfold_split(int m, int k, std::uint64_t seed, const std::string& where) {
  if (k < 2 || k > m)
    throw InputError(where, "k = " + std::to_string(k) + " folds over m = " + std::to_string(m) +
                                " stimuli; need 2 <= k <= m");
  const std::vector<int> perm = Rng(seed).permutation(m);
  std::vector<Fold> folds(k);
  for (int f = 0; f < k; ++f) {
    const int lo = static_cast<int>(static_cast<long>(f) * m / k);
    const int hi = static_cast<int>(static_cast<long>(f + 1) * m / k);
    folds[f].val.assign(perm.begin() + lo, perm.begin() + hi);
    std::sort(folds[f].val.begin(), folds[f].val.end());
    folds[f].train = complement(m, folds[f].val);
  }
  return folds;
}

Fold explicit_split(int m, const std::vector<int>& val, const std::string& where) {
  std::vector<char> seen(std::max(m, 0), 0);
  for (std::size_t i = 0; i < val.size(); ++i) {
    const int v = val[i];
    if (v < 0 || v >= m)
      throw InputError(where, "validation index [" + std::to_string(i) + "] = " + std::to_string(v) +
                                  " is outside 0.." + std::to_string(m - 1));
    if (seen[v])
      throw InputError(where, "validation index " + std::to_string(v) + " appears twice");
    seen[v] = 1;
  }
  if (val.empty() || static_cast<int>(val.size()) == m)
    throw InputError(where, "validation set has " + std::to_string(val.size()) + " of " +
                                std::to_string(m) + " stimuli; both train and val must be non-empty");
  Fold f;
  f.val = val;
  std::sort(f.val.begin(), f.val.end());
  f.train = complement(m, f.val);
  return f;
}

FoldData prepare_fold(const Problem& p, const Fold& fold) {
  FoldData fd;
  const Matrix X_tr = select_cols(p.X, fold.train);
  const Matrix X_va = select_cols(p.X, fold.val);
  const Matrix S_tr = select_block(p.S, fold.train, fold.train);
  fd.red = reduce(X_tr, S_tr);
  fd.P_va = matmul(fd.red.U, X_va, true, false);
  fd.K_va = gram(X_va);
  fd.S_va = select_block(p.S, fold.val, fold.val);
  fd.ss_tot_va = upper_ss_about_mean(fd.S_va);
  fd.B_tr = fd.red.V;
  for (int j = 0; j < fd.red.r; ++j)
    for (int i = 0; i < fd.B_tr.rows; ++i) fd.B_tr(i, j) *= fd.red.sigma[j];
  fd.S_tr_diag.resize(S_tr.rows);
  for (int i = 0; i < S_tr.rows; ++i) fd.S_tr_diag[i] = S_tr(i, i);
  fd.ss_tot_tr = upper_ss_about_mean(S_tr);
  return fd;
}

R2Pair r2_val(const FoldData& fd, const Matrix& M) {
  const int mv = fd.S_va.rows;
  // Y = M P_va, Z = P_va^T Y: P^T (M + M^T) P = Z + Z^T and P^T M^T M P = Y^T Y.
  const Matrix Y = matmul(M, fd.P_va);
  const Matrix Z = matmul(fd.P_va, Y, true, false);
  const Matrix YY = gram(Y);
  double ss_lin = 0.0, ss_ex = 0.0;
  for (int j = 0; j < mv; ++j)
    for (int i = 0; i <= j; ++i) {
      const double e = fd.S_va(i, j) - fd.K_va(i, j) - Z(i, j) - Z(j, i);
      ss_lin += e * e;
      const double e2 = e - YY(i, j);
      ss_ex += e2 * e2;
    }
  return {r2(ss_lin, fd.ss_tot_va), r2(ss_ex, fd.ss_tot_va)};
}

R2Pair r2_train(const FoldData& fd, const Matrix& M) {
  const Reduced& red = fd.red;
  const int r = red.r, mt = fd.B_tr.rows;
  // S_hat = V Sigma (I + Q) Sigma V^T = B (I + Q) B^T with Q = M + M^T (linear) or
  // M + M^T + M^T M (exact). Upper-triangle SS = (||E||_F^2 + sum_a E_aa^2) / 2, with
  // ||E||_F^2 = ||S_tr||^2 - ||R||^2 + ||R - Sigma (I + Q) Sigma||^2 (E's part outside span V).
  const Matrix MtM = matmul(M, M, true, false);
  double fro_l = red.outside_sq, fro_e = fro_l;
  for (int j = 0; j < r; ++j)
    for (int i = 0; i < r; ++i) {
      const double a = red.sigma[i] * red.sigma[j];
      const double q = (i == j ? 1.0 : 0.0) + M(i, j) + M(j, i);
      const double el = red.R(i, j) - a * q;
      const double ee = el - a * MtM(i, j);
      fro_l += el * el;
      fro_e += ee * ee;
    }
  // Diagonals from one gemm C = B M^T: (B M B^T)_aa = sum_i B_ai C_ai and
  // (B M^T M B^T)_aa = sum_i C_ai^2. O(m_tr r^2).
  const Matrix C = matmul(fd.B_tr, M, false, true);
  double dsq_l = 0.0, dsq_e = 0.0;
  for (int a = 0; a < mt; ++a) {
    double bb = 0.0, bc = 0.0, cc = 0.0;
    for (int k = 0; k < r; ++k) {
      const double b = fd.B_tr(a, k), c = C(a, k);
      bb += b * b, bc += b * c, cc += c * c;
    }
    const double el = fd.S_tr_diag[a] - bb - 2.0 * bc;
    const double ee = el - cc;
    dsq_l += el * el;
    dsq_e += ee * ee;
  }
  return {r2(0.5 * (std::max(fro_l, 0.0) + dsq_l), fd.ss_tot_tr),
          r2(0.5 * (std::max(fro_e, 0.0) + dsq_e), fd.ss_tot_tr)};
}

CvSummary summarise(const std::vector<double>& lambdas,
                    const std::vector<std::vector<double>>& per_fold) {
  CvSummary s;
  const std::size_t L = lambdas.size(), k = per_fold.size();
  s.mean.assign(L, kNaN);
  s.sd.assign(L, kNaN);
  for (std::size_t l = 0; l < L; ++l) {
    double sum = 0.0;
    int cnt = 0;
    for (std::size_t f = 0; f < k; ++f)
      if (std::isfinite(per_fold[f][l])) sum += per_fold[f][l], ++cnt;
    if (cnt == 0) continue;
    const double mean = sum / cnt;
    double ss = 0.0;
    for (std::size_t f = 0; f < k; ++f)
      if (std::isfinite(per_fold[f][l])) ss += (per_fold[f][l] - mean) * (per_fold[f][l] - mean);
    s.mean[l] = mean;
    s.sd[l] = cnt > 1 ? std::sqrt(ss / (cnt - 1)) : 0.0;
  }
  for (std::size_t l = 0; l < L; ++l)
    if (std::isfinite(s.mean[l]) &&
        (s.best < 0 || s.mean[l] > s.mean[s.best] ||
         (s.mean[l] == s.mean[s.best] && lambdas[l] > lambdas[s.best])))
      s.best = static_cast<int>(l);
  if (s.best < 0) return s;
  const double se = s.sd[s.best] / std::sqrt(static_cast<double>(std::max<std::size_t>(k, 1)));
  const double threshold = s.mean[s.best] - se;
  s.one_se = s.best;
  for (std::size_t l = 0; l < L; ++l)
    if (std::isfinite(s.mean[l]) && s.mean[l] >= threshold && lambdas[l] > lambdas[s.one_se])
      s.one_se = static_cast<int>(l);
  s.best_lambda = lambdas[s.best];
  s.one_se_lambda = lambdas[s.one_se];
  return s;
}

CvSweep cv_sweep_linearized(const Problem& p, const std::vector<Fold>& folds,
                            const std::vector<double>& lambdas, bool with_train,
                            const std::string& where, int threads) {
  check_lambdas(lambdas, 0.0, true, where);
  CvSweep out;
  out.lambdas = lambdas;
  const std::size_t k = folds.size();
  const long L = static_cast<long>(lambdas.size());
  out.val_linear.assign(k, std::vector<double>(L, kNaN));
  out.val_exact = out.val_linear;
  if (with_train) out.train_linear = out.train_exact = out.val_linear;
  bool parallel = threads > 1;
#ifdef _OPENMP
  parallel = parallel && !omp_in_parallel();
#else
  parallel = false;
#endif
  for (std::size_t f = 0; f < k; ++f) {
    const FoldData fd = prepare_fold(p, folds[f]);
    std::optional<BlasThreads> one_blas_thread;
    if (parallel) one_blas_thread.emplace(1);
#pragma omp parallel for num_threads(threads) schedule(dynamic, 8) if (parallel)
    for (long l = 0; l < L; ++l) {
      const Matrix M = linearized_M(fd.red, lambdas[l]);
      const R2Pair v = r2_val(fd, M);
      out.val_linear[f][l] = v.linear;
      out.val_exact[f][l] = v.exact;
      if (with_train) {
        const R2Pair t = r2_train(fd, M);
        out.train_linear[f][l] = t.linear;
        out.train_exact[f][l] = t.exact;
      }
    }
  }
  out.summary_linear = summarise(lambdas, out.val_linear);
  out.summary_exact = summarise(lambdas, out.val_exact);
  return out;
}

}  // namespace covfit::cov
