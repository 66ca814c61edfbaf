#include "covfit/cov/lambda_path.hpp"

#include <algorithm>
#include <cmath>
#include <complex>
#include <limits>
#include <numeric>

#include "covfit/cov/linearized.hpp"

namespace covfit::cov {

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kEps = std::numeric_limits<double>::epsilon();
// A piece with this few λ (or fewer than its nodes) is evaluated per λ.
constexpr int kMinLambdas = 16;
constexpr int kMaxDegree = 512;
constexpr int kMaxDepth = 8;
// Internal target = stated tolerance x kSafety.
constexpr double kSafety = 0.5;

// The Kosloff–Tal-Ezer map u = mid + half · asin(α x) / asin(α) from the Chebyshev variable
// x to u = log λ: it spreads the Lobatto nodes (Chebyshev clustering at the ends wastes
// them on a function analytic in a strip) and shrinks the ellipse less than the strip
// allows. ρ(α): the largest Bernstein ellipse E_ρ in x whose image stays in |Im u| < π
// (and inside the map's branch points ±1/α); α maximises it (golden section). On a strip
// of half-width π around an interval of half-length 10.4 this is ρ = e^0.385 against
// e^0.298 for plain Chebyshev in u: 23% fewer nodes for the same tail.
struct LogMap {
  double mid = 0.0, half = 1.0, alpha = 0.5, asa = std::asin(0.5);
  double u(double x) const { return mid + half * std::asin(alpha * x) / asa; }
  double x(double u) const {
    const double t = std::clamp((u - mid) / half, -1.0, 1.0);
    return std::clamp(std::sin(asa * t) / alpha, -1.0, 1.0);
  }
};

// log ρ for map parameter alpha on a strip of half-width beta (in units of half).
double map_log_rho(double alpha, double beta) {
  const double asa = std::asin(alpha);
  const double rb = 1.0 / alpha + std::sqrt(1.0 / (alpha * alpha) - 1.0);
  double lo = 1.0, hi = std::min(rb, 50.0);
  for (int it = 0; it < 40; ++it) {
    const double r = 0.5 * (lo + hi);
    double im = 0.0;
    for (int k = 0; k <= 48; ++k) {
      const double th = 0.5 * kPi * k / 48;
      const std::complex<double> e(std::cos(th), std::sin(th));
      const std::complex<double> z = 0.5 * (r * e + std::conj(e) / r);
      im = std::max(im, std::abs(std::asin(alpha * z).imag()) / asa);
    }
    (im < beta ? lo : hi) = r;
  }
  return std::log(lo);
}

LogMap best_map(double mid, double half) {
  const double beta = kPi / half;
  double a = 0.3, b = 0.999;
  const double g = 0.5 * (std::sqrt(5.0) - 1.0);
  double c = b - g * (b - a), d = a + g * (b - a);
  double fc = map_log_rho(c, beta), fd = map_log_rho(d, beta);
  for (int it = 0; it < 24; ++it) {
    if (fc > fd) {
      b = d, d = c, fd = fc;
      c = b - g * (b - a);
      fc = map_log_rho(c, beta);
    } else {
      a = c, c = d, fc = fd;
      d = a + g * (b - a);
      fd = map_log_rho(d, beta);
    }
  }
  LogMap m;
  m.mid = mid;
  m.half = half;
  m.alpha = 0.5 * (a + b);
  m.asa = std::asin(m.alpha);
  return m;
}

class Engine {
 public:
  Engine(const std::vector<double>& lam, int nf, const PathEval& eval, const PathTol& abs_tol,
         double unit, double ulps, PathStats& st, std::vector<double>& out)
      : lam_(lam), nf_(nf), eval_(eval), abs_tol_(abs_tol), unit_(unit), ulps_(ulps), st_(st), out_(out),
        done_(lam.size(), 0), undone_(static_cast<int>(lam.size())),
        budget_(2 * static_cast<int>(lam.size())) {}

  // Work cap: an attempt that costs `extra` evaluations is made only if, should it fail and
  // every λ not yet done fall back to the per-λ formula, the total stays <= 2 L.
  bool affordable(int extra) const { return st_.evaluations + extra + undone_ <= budget_; }

  void exact(int i) {
    if (done_[i]) return;
    eval_(lam_[i], &out_[static_cast<std::size_t>(i) * nf_]);
    ++st_.evaluations;
    done_[i] = 1;
    --undone_;
  }
  // All of idx per λ, one evaluation per distinct value.
  void exact_all(const std::vector<int>& idx) {
    for (std::size_t k = 0; k < idx.size(); ++k) {
      const int i = idx[k];
      if (k > 0 && lam_[idx[k - 1]] == lam_[i] && done_[idx[k - 1]]) {
        std::copy_n(&out_[static_cast<std::size_t>(idx[k - 1]) * nf_], nf_,
                    &out_[static_cast<std::size_t>(i) * nf_]);
        done_[i] = 1;
        --undone_;
      } else {
        exact(i);
      }
    }
  }

  // idx: indices of λ > 0, sorted ascending by λ.
  void piece(const std::vector<int>& idx, int depth) {
    const int n = static_cast<int>(idx.size());
    if (n == 0) return;
    const double ua = std::log(lam_[idx.front()]), ub = std::log(lam_[idx.back()]);
    if (n <= kMinLambdas || !(ub > ua)) return exact_all(idx);
    const double mid = 0.5 * (ua + ub), half = 0.5 * (ub - ua);
    // Chebyshev coefficients of a function analytic in |Im u| < π decay like ρ^-k,
    // ρ = a + sqrt(a² + 1), a = π / half. A coarse first pass (ρ^-Nc ~ e^-7) measures the
    // tail; the degree is then the multiple of Nc predicted to pass (nested nodes: the
    // Lobatto nodes of N are every k-th node of kN), then doubled if it does not.
    const LogMap map = best_map(mid, half);
    const double lrho = map_log_rho(map.alpha, kPi / half);
    const double rho = std::exp(lrho);
    const int Nc = std::max(8, static_cast<int>(std::ceil(7.0 / lrho)));
    int N = Nc, Nprev = 0;
    double prev_tail = kInf;
    // A piece that would likely need more nodes than it has λ: per λ at once.
    if (4 * Nc + 3 >= n || !affordable(Nc + 1)) return exact_all(idx);
    const int evals0 = st_.evaluations;
    std::vector<double> F;  // (N + 1) x nf node values, node j at x_j = cos(π j / N)
    for (;;) {
      if (N + 3 >= n) return exact_all(idx);
      std::vector<double> G(static_cast<std::size_t>(N + 1) * nf_);
      const int k = Nprev > 0 ? N / Nprev : 0;
      for (int j = 0; j <= N; ++j) {
        double* g = &G[static_cast<std::size_t>(j) * nf_];
        if (k > 0 && j % k == 0) {
          std::copy_n(&F[static_cast<std::size_t>(j / k) * nf_], nf_, g);
        } else {
          eval_(std::exp(map.u(node(j, N))), g);
          ++st_.evaluations;
        }
      }
      F.swap(G);
      // Chebyshev coefficients (DCT-I) and the error estimate per function, in units of
      // its tolerance: the tail part (shrinks like ρ^-N) and the rounding part (does not).
      double tail_ratio = 0.0, round_ratio = 0.0;
      std::vector<double> tol(nf_), vals(N + 1), node_lam(N + 1);
      double split_u = mid;  // where to split if rounding keeps this piece from passing
      for (int j = 0; j <= N; ++j) node_lam[j] = std::exp(map.u(node(j, N)));
      for (int f = 0; f < nf_; ++f) {
        for (int j = 0; j <= N; ++j) vals[j] = F[static_cast<std::size_t>(j) * nf_ + f];
        tol[f] = abs_tol_(f, node_lam, vals);
        bool finite = std::isfinite(tol[f]) && tol[f] > 0.0;
        for (int j = 0; j <= N; ++j) finite = finite && std::isfinite(vals[j]);
        if (!finite) {
          tail_ratio = round_ratio = kInf;
          continue;
        }
        // Tail: the last four coefficients extrapolated to k = N at the strip's rate ρ,
        // then the interpolation error bound 2 Σ_{k>N} |c_k| of a geometric tail.
        double tail = 0.0;
        for (int k = N - 3; k <= N; ++k) {
          double c = 0.0;
          for (int j = 0; j <= N; ++j) {
            const double w = (j == 0 || j == N) ? 0.5 : 1.0;
            c += w * vals[j] * std::cos(kPi * static_cast<double>((static_cast<long>(j) * k) % (2 * N)) / N);
          }
          c *= (k == N ? 1.0 : 2.0) / N;
          tail = std::max(tail, std::abs(c) * std::pow(rho, k - N));
        }
        // Rounding: the node values carry the per-λ formula's rounding (a few ulps of the
        // largest value), amplified by at most the Lebesgue constant (2/π) log(N+1) + 1,
        // and the per-λ formula at the target λ carries its own.
        double vmax = 0.0;
        for (int j = 0; j <= N; ++j) vmax = std::max(vmax, std::abs(vals[j]));
        const double lebesgue = 2.0 / kPi * std::log(N + 1.0) + 1.0;
        tail_ratio = std::max(tail_ratio, 2.0 * tail / (1.0 - 1.0 / rho) / tol[f]);
        const double rr = ulps_ * (lebesgue + 1.0) * kEps * vmax / tol[f];
        if (rr > round_ratio) split_u = magnitude_split(node_lam, vals, vmax * std::min(0.5, 0.25 / rr), mid);
        round_ratio = std::max(round_ratio, rr);
      }
      double ratio = tail_ratio + round_ratio;
      if (ratio <= 1.0) {
        // Two exact check points: the λ farthest (in the angle θ = acos x) from any node.
        std::vector<std::pair<double, int>> far;
        for (int i : idx) {
          const double t = std::acos(map.x(std::log(lam_[i]))) * N / kPi;
          far.push_back({std::abs(t - std::round(t)), i});
        }
        std::partial_sort(far.begin(), far.begin() + 2, far.end(),
                          [](const auto& a, const auto& b) { return a.first > b.first; });
        std::vector<double> interp(nf_);
        for (int c = 0; c < 2; ++c) {
          const int i = far[c].second;
          exact(i);
          interpolate(lam_[i], map, N, F, interp.data());
          for (int f = 0; f < nf_; ++f) {
            const double dev = std::abs(interp[f] - out_[static_cast<std::size_t>(i) * nf_ + f]);
            ratio = std::max(ratio, std::isfinite(dev) ? dev / tol[f] : kInf);
          }
        }
      }
      if (ratio <= 1.0) {
        for (int i : idx) {
          if (done_[i]) continue;
          interpolate(lam_[i], map, N, F, &out_[static_cast<std::size_t>(i) * nf_]);
          done_[i] = 1;
          --undone_;
          ++st_.interpolated;
        }
        ++st_.pieces;
        st_.max_degree = std::max(st_.max_degree, N);
        st_.err_bound = std::max(st_.err_bound, ratio * unit_);
        return;
      }
      // Not yet. Double the degree (nested nodes) if the tail, shrunk by ρ^-N, would then
      // pass and the doubling still costs less than per λ; split the interval where rounding
      // dominates (large values in part of it) or the tail does not decay as predicted;
      // else per λ. Work: at most 2 L evaluations in all (affordable()).
      const int spent = st_.evaluations - evals0;
      if (!std::isfinite(ratio)) return exact_all(idx);  // NaN/Inf values or tolerance 0
      // Next degree: after the coarse pass the predicted multiple of Nc, else 2N.
      int mult = 2;
      if (N == Nc && tail_ratio > 0.25)
        mult = std::max(2, static_cast<int>(std::ceil(
                               (N + std::log(tail_ratio / 0.25) / lrho) / static_cast<double>(N))));
      const int Nnext = mult * N;
      // A tail that did not shrink 10x since the last degree is rounding noise (a plateau):
      // more nodes do not help there.
      const bool plateau = Nprev > 0 && tail_ratio > 0.1 * prev_tail;
      prev_tail = tail_ratio;
      const bool next_passes =
          !plateau &&
          tail_ratio * std::pow(rho, -static_cast<double>(Nnext - N)) + 1.2 * round_ratio < 0.5;
      if (next_passes && Nnext <= kMaxDegree && Nnext + 3 < n && affordable(Nnext - N + 2)) {
        Nprev = N;
        N = Nnext;
        continue;
      }
      if (depth >= kMaxDepth || 2 * spent > n) return exact_all(idx);
      // Rounding-bound pieces split where the values' magnitude is the largest that would
      // pass (round ratio 1/4), so that the values on each side span less (R^2 from ~0 to
      // -500 on real data); otherwise in the middle.
      const double at = round_ratio > 0.25 ? split_u : mid;
      std::vector<int> lo, hi;
      for (int i : idx) (std::log(lam_[i]) <= at ? lo : hi).push_back(i);
      if (lo.empty() || hi.empty()) return exact_all(idx);
      piece(lo, depth + 1);
      piece(hi, depth + 1);
      return;
    }
  }

 private:
  static double node(int j, int N) { return std::sin(kPi * (N - 2.0 * j) / (2.0 * N)); }

  // The u = log λ at which |value| is closest to `level`, among interior nodes.
  static double magnitude_split(const std::vector<double>& node_lam, const std::vector<double>& vals,
                                double level_value, double fallback) {
    if (!(level_value > 0.0)) return fallback;
    const double level = std::log(level_value);
    double best = kInf, u = fallback;
    const int N = static_cast<int>(vals.size()) - 1;
    for (int j = 1; j < N; ++j) {
      const double dist = std::abs(std::log(std::max(std::abs(vals[j]), 1e-300)) - level);
      if (dist < best) best = dist, u = std::log(node_lam[j]);
    }
    return u;
  }

  // Barycentric formula (second kind) at Chebyshev-Lobatto nodes.
  void interpolate(double lambda, const LogMap& map, int N, const std::vector<double>& F,
                   double* out) const {
    const double x = map.x(std::log(lambda));
    std::fill_n(out, nf_, 0.0);
    double den = 0.0;
    for (int j = 0; j <= N; ++j) {
      const double d = x - node(j, N);
      if (d == 0.0) {
        std::copy_n(&F[static_cast<std::size_t>(j) * nf_], nf_, out);
        return;
      }
      double w = (j % 2 == 0 ? 1.0 : -1.0) / d;
      if (j == 0 || j == N) w *= 0.5;
      den += w;
      for (int f = 0; f < nf_; ++f) out[f] += w * F[static_cast<std::size_t>(j) * nf_ + f];
    }
    for (int f = 0; f < nf_; ++f) out[f] /= den;
  }

  const std::vector<double>& lam_;
  int nf_;
  const PathEval& eval_;
  const PathTol& abs_tol_;
  double unit_;
  double ulps_;
  PathStats& st_;
  std::vector<double>& out_;
  std::vector<char> done_;
  int undone_;
  int budget_;
};

// R^2: absolute tol where |R^2| <= 1, else relative to |R^2| (i.e. SS_res error relative
// to max(SS_tot, SS_res): where the model is far worse than the mean, the per-λ formula
// itself has no more digits); the smallest |R^2| at the nodes, halved, sets the piece's tol.
PathTol r2_tol(double tol) {
  return [tol](int, const std::vector<double>&, const std::vector<double>& v) {
    double mn = kInf;
    for (double x : v) mn = std::min(mn, std::abs(x));
    return tol * std::max(1.0, 0.5 * mn);
  };
}

}  // namespace

std::vector<double> chebyshev_log_path(const std::vector<double>& lambdas, int nf,
                                       const PathEval& eval, const PathTol& abs_tol,
                                       double unit, bool force_exact, PathStats* stats,
                                       double rounding_ulps) {
  PathStats local;
  PathStats& st = stats ? *stats : local;
  st = PathStats{};
  std::vector<double> out(lambdas.size() * static_cast<std::size_t>(nf), kNaN);
  Engine eng(lambdas, nf, eval, abs_tol, unit, rounding_ulps, st, out);
  std::vector<int> pos, rest;
  for (int i = 0; i < static_cast<int>(lambdas.size()); ++i)
    (lambdas[i] > 0.0 && std::isfinite(lambdas[i]) && !force_exact ? pos : rest).push_back(i);
  std::stable_sort(pos.begin(), pos.end(), [&](int a, int b) { return lambdas[a] < lambdas[b]; });
  eng.piece(pos, 0);
  for (int i : rest) eng.exact(i);
  return out;
}

namespace {

// Both predictions' R^2 (`r2`: r2_val or r2_train of linearized_M) along the path; NaN at
// every λ when the block has no variance (ss_tot = 0).
template <class R2Fn>
std::vector<R2Pair> r2_path(const FoldData& fd, double ss_tot, R2Fn r2, const std::vector<double>& lambdas,
                            const PathOptions& opt, PathStats* stats) {
  if (!(ss_tot > 0.0)) {
    if (stats) *stats = PathStats{};
    return std::vector<R2Pair>(lambdas.size(), R2Pair{kNaN, kNaN});
  }
  const double tol = kSafety * opt.tol;
  Matrix M;
  const PathEval eval = [&](double l, double* out) {
    linearized_M(fd.red, l, M);
    const R2Pair v = r2(fd, M);
    out[0] = v.linear;
    out[1] = v.exact;
  };
  const std::vector<double> v =
      chebyshev_log_path(lambdas, 2, eval, r2_tol(tol), tol, opt.force_exact, stats);
  std::vector<R2Pair> out(lambdas.size());
  for (std::size_t l = 0; l < out.size(); ++l) out[l] = {v[2 * l], v[2 * l + 1]};
  return out;
}

}  // namespace

std::vector<R2Pair> r2_val_path(const FoldData& fd, const std::vector<double>& lambdas,
                                const PathOptions& opt, PathStats* stats) {
  return r2_path(fd, fd.ss_tot_va, r2_val, lambdas, opt, stats);
}

std::vector<R2Pair> r2_train_path(const FoldData& fd, const std::vector<double>& lambdas,
                                  const PathOptions& opt, PathStats* stats) {
  return r2_path(fd, fd.ss_tot_tr, r2_train, lambdas, opt, stats);
}

namespace {
// The closed form of the linearised loss at one λ from the packed upper triangle.
struct LinLoss {
  std::vector<double> w, d;
  double c = 0.0;
  explicit LinLoss(const Reduced& red) : c(red.loss_const()) {
    const int r = red.r;
    w.reserve(static_cast<std::size_t>(r) * (r + 1) / 2);
    d.reserve(w.capacity());
    for (int j = 0; j < r; ++j)
      for (int i = 0; i <= j; ++i) {
        const double t = red.R(i, j) - (i == j ? red.s[i] : 0.0);
        w.push_back((i == j ? 0.5 : 1.0) * t * t);
        d.push_back(4.0 * red.s[i] * red.s[j]);
      }
  }
  double operator()(double lam) const {
    const double* wp = w.data();
    const double* dp = d.data();
    const long K = static_cast<long>(w.size());
    double acc = 0.0;
#pragma omp simd reduction(+ : acc)
    for (long k = 0; k < K; ++k) acc += wp[k] * lam / (dp[k] + lam);
    return acc + c;
  }
};
}  // namespace

std::vector<double> loss_lin_path(const Reduced& red, const std::vector<double>& lambdas,
                                  const PathOptions& opt, PathStats* stats) {
  // B's node values carry GEMM rounding (M² from |M|², ~1e-13 of L at r = 500) close to a
  // 5e-13 target: use the stated tolerance itself.
  const double tol = opt.tol;
  const int r = red.r;
  const LinLoss lin(red);
  if (opt.force_exact) {
    std::vector<double> out(lambdas.size());
    Matrix M;
    for (std::size_t l = 0; l < lambdas.size(); ++l) {
      linearized_M(red, lambdas[l], M);
      out[l] = loss_reduced(red, M, lambdas[l]);
    }
    if (stats) *stats = PathStats{static_cast<int>(lambdas.size()), 0, 0, 0, 0.0};
    return out;
  }
  // L(W_lin) = L_lin(W_lin) + B with B = -<N, F> + 1/2 ||F||^2 (R - Σ(I+M)²Σ = N - F):
  // only B is interpolated, and it is computed at the nodes without the cancellation of
  // R against Σ(I+M)²Σ that limits loss_reduced to ~1e-13 relative.
  Matrix M;
  const PathEval eval = [&](double l, double* out) {
    linearized_M(red, l, M);
    const Matrix M2 = gram(M);  // M^T M = M² (M symmetric)
    double b = 0.0;
    for (int j = 0; j < r; ++j)
      for (int i = 0; i < r; ++i) {
        const double dij = 4.0 * red.s[i] * red.s[j];
        const double t = red.R(i, j) - (i == j ? red.s[i] : 0.0);
        const double n = t * (l / (dij + l));
        const double f = red.sigma[i] * red.sigma[j] * M2(i, j);
        b += f * (0.5 * f - n);
      }
    out[0] = b;
  };
  // Relative to L: the smallest L = L_lin + B at the nodes (x 0.8, for the minimum between
  // nodes) sets the absolute tolerance of B.
  const PathTol abs_tol = [&](int, const std::vector<double>& nl, const std::vector<double>& v) {
    double mn = kInf;
    for (std::size_t j = 0; j < v.size(); ++j) mn = std::min(mn, std::abs(lin(nl[j]) + v[j]));
    return 0.8 * tol * mn;
  };
  // Per-λ fallbacks and check points evaluate B exactly too, so every λ gets L_lin + B.
  // B is a sum without cancellation against R: a few ulps of its largest value.
  std::vector<double> out = chebyshev_log_path(lambdas, 1, eval, abs_tol, tol, false, stats, 2.0);
  for (std::size_t l = 0; l < lambdas.size(); ++l) out[l] += lin(lambdas[l]);
  return out;
}

std::vector<double> loss_linearized_path(const Reduced& red, const std::vector<double>& lambdas) {
  // L_lin(W_lin(λ)) = 1/2 Σ_ij T_ij² λ / (d_ij + λ) + const, T = R - diag(s), d = 4 s_i s_j
  // (MATH.md): the residual entry is T λ/(d+λ) and the penalty adds λ d T²/(d+λ)².
  // Upper triangle with weight 2 off the diagonal.
  const LinLoss lin(red);
  std::vector<double> out(lambdas.size());
  for (std::size_t l = 0; l < lambdas.size(); ++l) out[l] = lin(lambdas[l]);
  return out;
}

}  // namespace covfit::cov
