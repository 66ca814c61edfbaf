// A dynamic OpenMP loop over independent items that stops early on a stop flag or on the
// first exception, and rethrows that exception on the calling thread. Every item runs on
// one thread, so results do not depend on the thread count.
#pragma once
#include <atomic>
#include <exception>

namespace covfit {

template <class Fn>
void parallel_items(long long n, int threads, const std::atomic<bool>* stop, Fn&& fn) {
  if (threads <= 1) {
    // No OpenMP region: an OpenMP region inside fn (a task split over threads) is then
    // top level and reuses libgomp's thread pool instead of creating threads per call.
    for (long long i = 0; i < n; ++i) {
      if (stop && stop->load()) return;
      fn(i);
    }
    return;
  }
  std::exception_ptr failure;
  std::atomic<bool> failed{false};
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads < 1 ? 1 : threads)
  for (long long i = 0; i < n; ++i) {
    if ((stop && stop->load()) || failed.load()) continue;
    try {
      fn(i);
    } catch (...) {
#pragma omp critical(covfit_parallel_items)
      if (!failure) failure = std::current_exception();
      failed.store(true);
    }
  }
  if (failure) std::rethrow_exception(failure);
}

}  // namespace covfit
