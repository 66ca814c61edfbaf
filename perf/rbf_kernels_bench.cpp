// Throughput of the RBF loss + gradient kernels, in kernel-point evaluations per second
// (kpe/s = K * N per call, forward + gradient).
//
//   build-rbf/rbf_kernels_bench --benchmark_filter='K:25/N:4096'
//
// Issue target (`full`, K=25, N=4096, one core): >= 1.0e9 kpe/s f32, >= 0.4e9 f64.
// Two cores are used by running independent fits side by side (BM_TwoTasks_*), never by
// splitting one evaluation, so the aggregate there is what a 2-worker batch gets.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cmath>
#include <random>
#include <vector>

#include "covfit/rbf/kernels.hpp"
#include "covfit/rbf/model.hpp"

namespace {

using namespace covfit::rbf;

struct Problem {
  std::vector<double> x, y, t;
  std::vector<Canonical> kernels;
};

// `full` kernels with random widths/orientations on [-1, 1]^2, a smooth target.
Problem make_problem(std::size_t n, std::size_t K, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  Problem p;
  for (std::size_t i = 0; i < n; ++i) {
    p.x.push_back(u(rng));
    p.y.push_back(u(rng));
    p.t.push_back(std::sin(3 * p.x.back()) * std::cos(2 * p.y.back()));
  }
  std::vector<double> raw(K * static_cast<std::size_t>(raw_width(Param::full)));
  for (std::size_t k = 0; k < K; ++k) {
    double* r = raw.data() + k * 6;
    r[0] = u(rng);
    r[1] = u(rng);
    r[2] = std::log(0.3) + 0.5 * u(rng);
    r[3] = std::log(0.3) + 0.5 * u(rng);
    r[4] = 2 * u(rng);
    r[5] = u(rng);
  }
  p.kernels.resize(K);
  raw_to_canonical(Param::full, raw, p.kernels);
  return p;
}

void set_rate(benchmark::State& state, double evals_per_iter) {
  state.counters["kpe/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * evals_per_iter, benchmark::Counter::kIsRate);
}

template <class T>
void BM_LossGradSimd(benchmark::State& state) {
  const auto K = static_cast<std::size_t>(state.range(0));
  const auto N = static_cast<std::size_t>(state.range(1));
  const auto prob = make_problem(N, K, 1);
  const auto pts = PointSet<T>::from(prob.x, prob.y, prob.t);
  std::vector<Canonical> grad(K);
  for (auto _ : state) {
    double loss = loss_grad_simd<T>(pts, prob.kernels, grad);
    benchmark::DoNotOptimize(loss);
    benchmark::DoNotOptimize(grad.data());
  }
  set_rate(state, static_cast<double>(K * N));
}

// One large evaluation split over state.range(2) threads (a single big fit); kpe/s is
// real-time aggregate throughput.
template <class T>
void BM_LossGradSimdThreads(benchmark::State& state) {
  const auto K = static_cast<std::size_t>(state.range(0));
  const auto N = static_cast<std::size_t>(state.range(1));
  const int threads = static_cast<int>(state.range(2));
  const auto prob = make_problem(N, K, 1);
  const auto pts = PointSet<T>::from(prob.x, prob.y, prob.t);
  std::vector<Canonical> grad(K);
  for (auto _ : state) {
    double loss = loss_grad_simd<T>(pts, prob.kernels, grad, threads);
    benchmark::DoNotOptimize(loss);
    benchmark::DoNotOptimize(grad.data());
  }
  set_rate(state, static_cast<double>(K * N));
}

void BM_LossGradScalar(benchmark::State& state) {
  const auto K = static_cast<std::size_t>(state.range(0));
  const auto N = static_cast<std::size_t>(state.range(1));
  const auto prob = make_problem(N, K, 1);
  const auto pts = PointSet<double>::from(prob.x, prob.y, prob.t);
  std::vector<Canonical> grad(K);
  for (auto _ : state) {
    double loss = loss_grad_scalar(pts, prob.kernels, grad);
    benchmark::DoNotOptimize(loss);
    benchmark::DoNotOptimize(grad.data());
  }
  set_rate(state, static_cast<double>(K * N));
}

template <class T>
void BM_ForwardOnlySimd(benchmark::State& state) {
  const auto K = static_cast<std::size_t>(state.range(0));
  const auto N = static_cast<std::size_t>(state.range(1));
  const auto prob = make_problem(N, K, 1);
  const auto pts = PointSet<T>::from(prob.x, prob.y, prob.t);
  for (auto _ : state) {
    double loss = loss_grad_simd<T>(pts, prob.kernels, {});
    benchmark::DoNotOptimize(loss);
  }
  set_rate(state, static_cast<double>(K * N));
}

// Two independent evaluations (two fit tasks) on two OpenMP threads; aggregate rate.
template <class T>
void BM_TwoTasks(benchmark::State& state) {
  const auto K = static_cast<std::size_t>(state.range(0));
  const auto N = static_cast<std::size_t>(state.range(1));
  constexpr int kTasks = 2;
  std::vector<Problem> probs;
  std::vector<PointSet<T>> pts;
  std::vector<std::vector<Canonical>> grads(kTasks, std::vector<Canonical>(K));
  for (int i = 0; i < kTasks; ++i) {
    probs.push_back(make_problem(N, K, 10 + static_cast<unsigned>(i)));
    pts.push_back(PointSet<T>::from(probs[i].x, probs[i].y, probs[i].t));
  }
  double sink[kTasks] = {};
  for (auto _ : state) {
#pragma omp parallel for num_threads(kTasks) schedule(static, 1)
    for (int i = 0; i < kTasks; ++i) sink[i] += loss_grad_simd<T>(pts[i], probs[i].kernels, grads[i]);
    benchmark::DoNotOptimize(sink);
  }
  set_rate(state, static_cast<double>(kTasks * K * N));
}

void Shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"K", "N"});
  b->Args({25, 4096});
  b->Args({9, 4096});
  b->Args({25, 65536});
}

BENCHMARK(BM_LossGradSimd<float>)->Apply(Shapes);
BENCHMARK(BM_LossGradSimd<double>)->Apply(Shapes);
BENCHMARK(BM_LossGradScalar)->Apply(Shapes);
BENCHMARK(BM_ForwardOnlySimd<float>)->ArgNames({"K", "N"})->Args({25, 4096});
BENCHMARK(BM_ForwardOnlySimd<double>)->ArgNames({"K", "N"})->Args({25, 4096});
BENCHMARK(BM_TwoTasks<float>)->ArgNames({"K", "N"})->Args({25, 4096})->UseRealTime();
BENCHMARK(BM_TwoTasks<double>)->ArgNames({"K", "N"})->Args({25, 4096})->UseRealTime();
BENCHMARK(BM_LossGradSimdThreads<float>)->ArgNames({"K", "N", "threads"})
    ->Args({25, 262144, 1})->Args({25, 262144, 2})->UseRealTime();
BENCHMARK(BM_LossGradSimdThreads<double>)->ArgNames({"K", "N", "threads"})
    ->Args({25, 262144, 1})->Args({25, 262144, 2})->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
