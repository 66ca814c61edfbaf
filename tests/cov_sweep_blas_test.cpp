// sweep.blas_threads > 1: units run one at a time and every BLAS call of a unit runs on
// that many threads. The OpenBLAS count is process-wide, so the results must not depend on
// the -t thread count or on the run (they may differ from blas_threads = 1 in the last bits:
// a threaded reduction sums in another order).
#include <gtest/gtest.h>

#include <cmath>

#include "covfit/cov/problem.hpp"
#include "covfit/cov/sweep.hpp"

namespace cc = covfit::cov;

namespace {

cc::Problem problem() {
  // Big enough that OpenBLAS splits its products and the SVD over two threads.
  cc::PlantedProblem pp = cc::planted_problem(360, 240, 240, 0.3, 0.5, 17);
  cc::Problem p = pp.problem;
  cc::check_and_centre(p, "planted");
  return p;
}

cc::SweepConfig config(const cc::Problem& p, int blas_threads, int threads) {
  cc::SweepConfig cfg;
  cfg.lambdas.clear();
  for (int i = 0; i < 6; ++i) cfg.lambdas.push_back(std::pow(10.0, -3.0 + 0.6 * i));
  cfg.lambda_relative = true;
  cfg.folds = cc::kfold_split(p.X.cols, 3, 7, "test");
  cfg.exact = true;
  cfg.lambda_block = 3;
  cfg.blas_threads = blas_threads;
  cfg.threads = threads;
  return cfg;
}

bool same_bits(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

}  // namespace

TEST(SweepBlasThreads, TwoBlasThreadsGiveTheSameBitsWhateverTheThreadCountAndRun) {
  const cc::Problem p = problem();
  const cc::SweepResult a = cc::run_sweep(p, config(p, 2, 1), nullptr);
  const cc::SweepResult b = cc::run_sweep(p, config(p, 2, 2), nullptr);
  const cc::SweepResult c = cc::run_sweep(p, config(p, 2, 2), nullptr);
  const cc::SweepResult one = cc::run_sweep(p, config(p, 1, 2), nullptr);
  ASSERT_EQ(a.rows.size(), 6u);
  ASSERT_EQ(b.rows.size(), a.rows.size());
  ASSERT_EQ(c.rows.size(), a.rows.size());
  ASSERT_EQ(one.rows.size(), a.rows.size());
  for (std::size_t i = 0; i < a.rows.size(); ++i) {
    for (const cc::SweepResult* o : {&b, &c}) {
      const cc::SweepRow &x = a.rows[i], &y = o->rows[i];
      EXPECT_TRUE(same_bits(x.r2_val, y.r2_val)) << i;
      EXPECT_TRUE(same_bits(x.r2_val_fwd, y.r2_val_fwd)) << i;
      EXPECT_TRUE(same_bits(x.r2_val_exact, y.r2_val_exact)) << i;
      EXPECT_TRUE(same_bits(x.loss_lin, y.loss_lin)) << i;
      EXPECT_TRUE(same_bits(x.loss_exact, y.loss_exact)) << i;
      EXPECT_TRUE(same_bits(x.gap_bound, y.gap_bound)) << i;
      EXPECT_TRUE(same_bits(x.diag.dW, y.diag.dW)) << i;
    }
    // Against one BLAS thread: the same problem solved with other rounding. R² and the
    // linearised losses to rounding, the exact losses within their certificates.
    const cc::SweepRow &x = a.rows[i], &y = one.rows[i];
    EXPECT_EQ(x.exact_status, "converged") << i;
    EXPECT_EQ(y.exact_status, "converged") << i;
    EXPECT_NEAR(x.r2_val, y.r2_val, 1e-10) << i;
    EXPECT_NEAR(x.r2_val_fwd, y.r2_val_fwd, 1e-10) << i;
    EXPECT_NEAR(x.loss_lin, y.loss_lin, 1e-10 * std::abs(y.loss_lin)) << i;
    EXPECT_LE(std::abs(x.loss_exact - y.loss_exact), x.gap_bound + y.gap_bound + 1e-12 * std::abs(y.loss_exact)) << i;
  }
  EXPECT_EQ(a.best, one.best);
}
