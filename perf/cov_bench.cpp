// Timing of the covariance lambda-sweep core (MATH.md costs). Run:
//   build/cov_bench --benchmark_counters_tabular=true
// BLAS uses its default thread count (OPENBLAS_NUM_THREADS) unless a benchmark says
// otherwise; the library itself is single-threaded.
#include <benchmark/benchmark.h>

#include <time.h>

#include <chrono>
#include <cmath>
#include <sys/resource.h>

#include <cstdlib>
#include <string>

#include "covfit/cov/exact.hpp"
#include "covfit/cov/lambda_path.hpp"
#include "covfit/cov/linearized.hpp"
#include "covfit/cov/problem.hpp"
#include "covfit/cov/svd.hpp"
#include "covfit/cov/validation.hpp"

namespace cc = covfit::cov;

namespace {

const cc::PlantedProblem& big() {  // n = 2000 channels, m = 500 stimuli
  static const cc::PlantedProblem p = cc::planted_problem(2000, 500, 20, 0.3, 0.5, 1);
  return p;
}
const cc::PlantedProblem& medium() {  // n = 400, m = r = 250
  static const cc::PlantedProblem p = cc::planted_problem(400, 250, 20, 0.3, 0.5, 2);
  return p;
}

void BM_Reduce_n2000_m500(benchmark::State& st) {
  const auto& p = big().problem;
  for (auto _ : st) {
    cc::Reduced red = cc::reduce(p.X, p.S);
    benchmark::DoNotOptimize(red.R.data.data());
  }
}
BENCHMARK(BM_Reduce_n2000_m500)->Unit(benchmark::kMillisecond)->Iterations(5);

// 5-fold CV, 1000 lambdas log-spaced over 1e-6..1e3 s_max^2, val R^2 (linear and exact
// prediction). Args: (train R^2 too?, OpenMP threads over lambda). Includes the five
// per-fold reductions.
void BM_CvSweep_1000lambda_5fold_n2000_m500(benchmark::State& st) {
  const auto& p = big().problem;
  const double s2 = std::pow(cc::reduce(p.X, p.S).s_max(), 2);
  std::vector<double> lambdas(1000);
  for (int i = 0; i < 1000; ++i) lambdas[i] = s2 * std::pow(10.0, -6.0 + 9.0 * i / 999.0);
  const auto folds = cc::kfold_split(p.X.cols, 5, 7, "bench");
  for (auto _ : st) {
    cc::CvSweep cv = cc::cv_sweep_linearized(p, folds, lambdas, st.range(0) != 0, "bench",
                                            static_cast<int>(st.range(1)));
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_CvSweep_1000lambda_5fold_n2000_m500)
    ->Args({0, 1})
    ->Args({0, 2})
    ->Args({1, 2})
    ->Unit(benchmark::kMillisecond)->Iterations(1);

// Exact solve from a cold start at lambda = 10^-k s_max^2 (Arg = k).
void BM_Exact_n400_m250(benchmark::State& st) {
  const auto& p = medium().problem;
  static const cc::Reduced red = cc::reduce(p.X, p.S);
  const double lambda = std::pow(10.0, -static_cast<double>(st.range(0))) * red.s_max() * red.s_max();
  cc::ExactResult res;
  for (auto _ : st) {
    res = cc::solve_exact(red, lambda);
    // Not DoNotOptimize(res.f): with Debian's libbenchmark + GCC 12 its "+m,r" asm on an
    // lvalue double left res.f = 0 here. A memory clobber keeps the call alive safely.
    benchmark::ClobberMemory();
  }
  st.counters["r"] = red.r;
  st.counters["converged"] = res.status == cc::ExactStatus::converged;
  st.counters["newton"] = res.newton_iters;
  st.counters["cg"] = res.cg_iters;
  // Benchmark's counter formatting garbles tiny and negative values: report -log10.
  st.counters["mlog10_rel_grad"] = -std::log10(res.rel_grad);
  st.counters["mlog10_gap_over_f"] = -std::log10(res.gap_bound / res.f);
  st.counters["continuation"] = res.used_continuation;
}
BENCHMARK(BM_Exact_n400_m250)->Arg(3)->Arg(1)->Unit(benchmark::kMillisecond)->Iterations(2);

// The issue-7 path: 41 lambda from 1e-8 to 1e2 s_max^2 on covfit gen planted --n 150 --m 150
// --rank 150 --noise 0.3 --seed 9 (r = 149), warm-started largest first; the full-data
// part of that sweep.
void BM_ExactPath41_n150_m150(benchmark::State& st) {
  static const cc::PlantedProblem pp = [] {
    cc::PlantedProblem q = cc::planted_problem(150, 150, 150, 0.3, 0.5, 9);
    cc::check_and_centre(q.problem, "bench");
    return q;
  }();
  static const cc::Reduced red = cc::reduce(pp.problem.X, pp.problem.S);
  std::vector<double> lambdas;
  for (int k = 0; k < 41; ++k) lambdas.push_back(std::pow(10.0, 2.0 - 10.0 * k / 40) * red.s_max() * red.s_max());
  std::vector<cc::ExactResult> path;
  for (auto _ : st) {
    path = cc::sweep_exact(red, lambdas);
    benchmark::ClobberMemory();
  }
  double newton = 0, cg = 0, certified = 0, worst_gap = 0;
  for (const auto& e : path) {
    newton += e.newton_iters;
    cg += e.cg_iters;
    certified += e.status == cc::ExactStatus::converged;
    worst_gap = std::max(worst_gap, e.gap_bound / e.f);
  }
  st.counters["r"] = red.r;
  st.counters["certified"] = certified;
  st.counters["newton"] = newton;
  st.counters["cg"] = cg;
  st.counters["mlog10_worst_gap_over_f"] = -std::log10(worst_gap);
}
BENCHMARK(BM_ExactPath41_n150_m150)->Unit(benchmark::kMillisecond)->Iterations(1);

// ---- The per-λ floor (issue 11 item 3): lambda_path.hpp vs the per-λ formulas. ----
// 1000 λ log-spaced over 1e-6..1e3 s_max^2, 5 folds (seed 7), n = 2000, m = 500.
struct CvCase {
  std::vector<double> lambdas;
  std::vector<cc::Fold> folds;
};
const CvCase& cv_case() {
  static const CvCase c = [] {
    const auto& p = big().problem;
    CvCase k;
    const double s2 = std::pow(cc::reduce(p.X, p.S).s_max(), 2);
    for (int i = 0; i < 1000; ++i) k.lambdas.push_back(s2 * std::pow(10.0, -6.0 + 9.0 * i / 999.0));
    k.folds = cc::kfold_split(p.X.cols, 5, 7, "bench");
    return k;
  }();
  return c;
}
const cc::FoldData& fold0() {
  static const cc::FoldData fd = cc::prepare_fold(big().problem, cv_case().folds[0]);
  return fd;
}

// One fold, both validation R^2, 1000 λ: the per-λ formula (old) vs r2_val_path (new).
void BM_FoldR2Val_1000lambda_PerLambda(benchmark::State& st) {
  cc::BlasThreads one(1);
  const cc::FoldData& fd = fold0();
  const auto& lam = cv_case().lambdas;
  cc::Matrix M;
  for (auto _ : st) {
    double acc = 0;
    for (double l : lam) {
      cc::linearized_M(fd.red, l, M);
      acc += cc::r2_val(fd, M).exact;
    }
    benchmark::DoNotOptimize(acc);
  }
  st.counters["r"] = fd.red.r;
  st.counters["us_per_lambda"] = benchmark::Counter(1e6 / lam.size(), benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_FoldR2Val_1000lambda_PerLambda)->Unit(benchmark::kMillisecond)->Iterations(1);

void BM_FoldR2Val_1000lambda_Path(benchmark::State& st) {
  cc::BlasThreads one(1);
  const cc::FoldData& fd = fold0();
  const auto& lam = cv_case().lambdas;
  cc::PathStats ps;
  std::vector<cc::R2Pair> v;
  for (auto _ : st) {
    v = cc::r2_val_path(fd, lam, {}, &ps);
    benchmark::DoNotOptimize(v.data());
  }
  // Untimed: the largest deviation from the per-λ formula over all 1000 λ (R^2 units).
  double dev = 0;
  for (std::size_t l = 0; l < lam.size(); ++l) {
    const cc::R2Pair r = cc::r2_val(fd, cc::linearized_M(fd.red, lam[l]));
    dev = std::max({dev, std::abs(v[l].linear - r.linear), std::abs(v[l].exact - r.exact)});
  }
  st.counters["mlog10_max_dev"] = -std::log10(std::max(dev, 1e-300));
  st.counters["r"] = fd.red.r;
  st.counters["evaluations"] = ps.evaluations;
  st.counters["degree"] = ps.max_degree;
  st.counters["mlog10_err_bound"] = -std::log10(ps.err_bound);
  st.counters["us_per_lambda"] = benchmark::Counter(1e6 / lam.size(), benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_FoldR2Val_1000lambda_Path)->Unit(benchmark::kMillisecond)->Iterations(3);

// L(W_lin) on all stimuli (n = 2000, m = 500, r = 500), 1000 λ: loss_lin_path, and
// untimed its largest relative deviation from loss_reduced(linearized_M) per λ.
void BM_FullLossLin_1000lambda_Path(benchmark::State& st) {
  cc::BlasThreads one(1);
  static const cc::Reduced red = cc::reduce(big().problem.X, big().problem.S);
  const auto& lam = cv_case().lambdas;
  cc::PathStats ps;
  std::vector<double> v;
  for (auto _ : st) {
    v = cc::loss_lin_path(red, lam, {}, &ps);
    benchmark::DoNotOptimize(v.data());
  }
  double dev = 0;
  for (std::size_t l = 0; l < lam.size(); ++l) {
    const double ref = cc::loss_reduced(red, cc::linearized_M(red, lam[l]), lam[l]);
    dev = std::max(dev, std::abs(v[l] - ref) / std::abs(ref));
  }
  st.counters["r"] = red.r;
  st.counters["evaluations"] = ps.evaluations;
  st.counters["degree"] = ps.max_degree;
  st.counters["mlog10_err_bound"] = -std::log10(ps.err_bound);
  st.counters["mlog10_max_rel_dev"] = -std::log10(std::max(dev, 1e-300));
}
BENCHMARK(BM_FullLossLin_1000lambda_Path)->Unit(benchmark::kMillisecond)->Iterations(1);

// The whole linearised CV of run_free (sweep.cpp) with default settings (losses on, train
// R^2 off), one BLAS thread: full-data reduce, per fold prepare_fold + both validation R^2
// at every λ, then L(W_lin) and L_lin(W_lin) on all stimuli at every λ. Arg 0: the per-λ
// loops of run_free; Arg 1: lambda_path; Arg 2: lambda_path with losses = false (no
// L(W_lin), SweepConfig::losses). In the same iteration the six reductions alone
// (full data + the five train blocks) are timed: ratio = sweep / SVDs.
void BM_LinearisedCvWhole_n2000_m500_1000lambda_5fold(benchmark::State& st) {
  using Clock = std::chrono::steady_clock;
  const auto secs = [](Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); };
  cc::BlasThreads one(1);
  const cc::Problem& p = big().problem;
  const CvCase& cv = cv_case();
  const bool path = st.range(0) != 0, losses = st.range(0) != 2;
  // This thread's CPU time (BLAS runs on it alone): robust to other users' load, which
  // inflates wall time on the shared machine.
  const auto cpu = [] {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
  };
  double sweep_s = 0, svd_s = 0, checksum = 0, r2_s = 0, loss_s = 0, sweep_cpu = 0, svd_cpu = 0;
  int evals = 0;
  for (auto _ : st) {
    auto t0 = Clock::now();
    double c0 = cpu();
    const cc::Reduced red = cc::reduce(p.X, p.S);
    for (const cc::Fold& fold : cv.folds) {
      const cc::FoldData fd = cc::prepare_fold(p, fold);
      const auto t_r2 = Clock::now();
      if (path) {
        cc::PathStats ps;
        const auto v = cc::r2_val_path(fd, cv.lambdas, {}, &ps);
        evals += ps.evaluations;
        checksum += v.back().exact;
      } else {
        cc::Matrix M;
        for (double l : cv.lambdas) {
          cc::linearized_M(fd.red, l, M);
          checksum += cc::r2_val(fd, M).exact;
        }
      }
      r2_s += secs(t_r2);
    }
    const auto t_loss = Clock::now();
    if (path) {
      cc::PathStats ps;
      const auto b = cc::loss_linearized_path(red, cv.lambdas);
      checksum += b.back();
      if (losses) {
        const auto a = cc::loss_lin_path(red, cv.lambdas, {}, &ps);
        evals += ps.evaluations;
        checksum += a.back();
      }
    } else {
      cc::Matrix M;
      for (double l : cv.lambdas) {
        cc::linearized_M(red, l, M);
        checksum += cc::loss_reduced(red, M, l) + cc::loss_linearized_reduced(red, M, l);
      }
    }
    loss_s = secs(t_loss);
    sweep_s = secs(t0);
    sweep_cpu = cpu() - c0;
    t0 = Clock::now();
    c0 = cpu();
    const cc::Reduced red2 = cc::reduce(p.X, p.S);
    for (const cc::Fold& fold : cv.folds) {
      const cc::Reduced rf = cc::reduce(cc::select_cols(p.X, fold.train),
                                        cc::select_block(p.S, fold.train, fold.train));
      checksum += rf.r;
    }
    svd_s = secs(t0);
    svd_cpu = cpu() - c0;
    checksum += red2.r;
  }
  benchmark::DoNotOptimize(checksum);
  st.counters["sweep_s"] = sweep_s;
  st.counters["svds_s"] = svd_s;
  st.counters["ratio"] = sweep_s / svd_s;
  st.counters["sweep_cpu_s"] = sweep_cpu;
  st.counters["svds_cpu_s"] = svd_cpu;
  st.counters["ratio_cpu"] = sweep_cpu / svd_cpu;
  st.counters["evaluations"] = evals;
  st.counters["fold_r2_s"] = r2_s;
  st.counters["full_losses_s"] = loss_s;
}
BENCHMARK(BM_LinearisedCvWhole_n2000_m500_1000lambda_5fold)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->Iterations(1);

// ---- Issue 11 item 4 (bigger problems): exact solver at r = 1000 and the big SVD ----------
// Opt-in: registered only when COVFIT_BENCH_BIG=1 (each takes tens of seconds to minutes
// and GBs of memory), e.g.
//   COVFIT_BENCH_BIG=1 OPENBLAS_NUM_THREADS=1 build/cov_bench --benchmark_filter=Big
// Problem: covfit gen planted --n 4000 --m 1000 --rank 200 --noise 0.2 --seed 11 (the
// m = 1000 row of perf/sweep_scaling.py; r = 1000).
const cc::Reduced& big_r1000() {
  static const cc::Reduced red = [] {
    cc::PlantedProblem q = cc::planted_problem(4000, 1000, 200, 0.2, 0.5, 11);
    cc::check_and_centre(q.problem, "bench");
    return cc::reduce(q.problem.X, q.problem.S);
  }();
  return red;
}

void exact_counters(benchmark::State& st, const std::vector<cc::ExactResult>& path, int r) {
  double newton = 0, cg = 0, certified = 0, worst_gap = 0, secs = 0, worst_secs = 0;
  for (const auto& e : path) {
    newton += e.newton_iters;
    cg += e.cg_iters;
    certified += e.status == cc::ExactStatus::converged;
    worst_gap = std::max(worst_gap, e.gap_bound / e.f);
    secs += e.seconds;
    worst_secs = std::max(worst_secs, e.seconds);
  }
  st.counters["r"] = r;
  st.counters["lambdas"] = static_cast<double>(path.size());
  st.counters["certified"] = certified;
  st.counters["newton"] = newton;
  st.counters["cg"] = cg;
  st.counters["s_per_lambda"] = secs / std::max<std::size_t>(1, path.size());
  st.counters["s_worst_lambda"] = worst_secs;
  st.counters["mlog10_worst_gap_over_f"] = -std::log10(worst_gap);
}

// Cold start at lambda = 10^-k s_max^2 (Arg = k), r = 1000.
void BM_BigExactCold_r1000(benchmark::State& st) {
  const cc::Reduced& red = big_r1000();
  const double lambda = std::pow(10.0, -static_cast<double>(st.range(0))) * red.s_max() * red.s_max();
  std::vector<cc::ExactResult> one(1);
  for (auto _ : st) {
    one[0] = cc::solve_exact(red, lambda);
    benchmark::ClobberMemory();
  }
  exact_counters(st, one, red.r);
}

// A warm path at r = 1000: lambda from 1e0 down to 1e-4 s_max^2, 3 per decade (13 lambda),
// largest first, each warm-started from its neighbour (what a sweep's full-data part does).
void BM_BigExactPath13_r1000(benchmark::State& st) {
  const cc::Reduced& red = big_r1000();
  std::vector<double> lambdas;
  for (int k = 0; k <= 12; ++k) lambdas.push_back(std::pow(10.0, -k / 3.0) * red.s_max() * red.s_max());
  std::vector<cc::ExactResult> path;
  for (auto _ : st) {
    path = cc::sweep_exact(red, lambdas);
    benchmark::ClobberMemory();
  }
  exact_counters(st, path, red.r);
}

// The full-data thin SVD + R of n = 4m planted problems (Arg = m; the problems of
// perf/sweep_scaling.py), BLAS threads as set by OPENBLAS_NUM_THREADS. peak_GB: the
// process's peak RSS so far (includes generating the problem: at m = 5000 the planted
// generator's n x n W0, 3.2 GB, dominates it; reduce itself needs X, S and ~3.4 GB).
void BM_BigReduce_n4m(benchmark::State& st) {
  const int m = static_cast<int>(st.range(0));
  cc::Problem p;
  {
    cc::PlantedProblem q = cc::planted_problem(4 * m, m, m / 5, 0.2, 0.5, 11);
    p = std::move(q.problem);
  }
  cc::check_and_centre(p, "bench");
  for (auto _ : st) {
    cc::Reduced red = cc::reduce(p.X, p.S);
    st.counters["r"] = red.r;
    benchmark::ClobberMemory();
  }
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  st.counters["peak_GB"] = static_cast<double>(ru.ru_maxrss) * 1024.0 / 1e9;
}

[[maybe_unused]] const bool big_registered = [] {
  const char* v = std::getenv("COVFIT_BENCH_BIG");
  if (!v || std::string(v) != "1") return false;
  benchmark::RegisterBenchmark("BM_BigExactCold_r1000", BM_BigExactCold_r1000)
      ->Arg(0)->Arg(1)->Arg(2)->Arg(3)->Unit(benchmark::kSecond)->Iterations(1);
  benchmark::RegisterBenchmark("BM_BigExactPath13_r1000", BM_BigExactPath13_r1000)
      ->Unit(benchmark::kSecond)->Iterations(1);
  benchmark::RegisterBenchmark("BM_BigReduce_n4m", BM_BigReduce_n4m)
      ->Arg(1000)->Arg(2000)->Unit(benchmark::kSecond)->Iterations(1);
  return true;
}();
// COVFIT_BENCH_BIG_REDUCE_M=5000: BM_BigReduce_n4m at that m alone (n = 20000: about 5 GB).
[[maybe_unused]] const bool big_reduce_registered = [] {
  const char* v = std::getenv("COVFIT_BENCH_BIG_REDUCE_M");
  if (!v || std::atoi(v) < 10) return false;
  benchmark::RegisterBenchmark("BM_BigReduce_n4m", BM_BigReduce_n4m)
      ->Arg(std::atoi(v))->Unit(benchmark::kSecond)->Iterations(1);
  return true;
}();
// ---- end of the issue 11 item 4 block -------------------------------------------------------

}  // namespace

BENCHMARK_MAIN();
