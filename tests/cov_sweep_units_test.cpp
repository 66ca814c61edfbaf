// A sweep task as work units: any unit order, any thread count and any block size give
// what the definitions say; blocks change exact solutions only within their certificates.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "covfit/core/error.hpp"
#include "covfit/cov/problem.hpp"
#include "covfit/cov/sweep.hpp"

namespace cc = covfit::cov;

namespace {

cc::Problem problem(int n, int m, int rank, std::uint64_t seed) {
  cc::PlantedProblem pp = cc::planted_problem(n, m, rank, 0.3, 0.5, seed);
  cc::Problem p = pp.problem;
  cc::check_and_centre(p, "planted");
  return p;
}

cc::SweepConfig config(const cc::Problem& p, int block) {
  cc::SweepConfig cfg;
  cfg.lambdas.clear();
  for (int i = 0; i < 13; ++i) cfg.lambdas.push_back(std::pow(10.0, -5.0 + 0.5 * i));
  std::shuffle(cfg.lambdas.begin(), cfg.lambdas.end(), std::mt19937(4));  // any grid order
  cfg.lambda_relative = true;
  cfg.folds = cc::kfold_split(p.X.cols, 3, 7, "test");
  cfg.exact = true;
  cfg.lambda_block = block;
  cfg.store_lambdas = {1e-3};
  return cfg;
}

bool same_bits(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

void expect_equal(const cc::SweepResult& a, const cc::SweepResult& b) {
  ASSERT_EQ(a.rows.size(), b.rows.size());
  EXPECT_EQ(a.best, b.best);
  EXPECT_EQ(a.one_se, b.one_se);
  EXPECT_EQ(a.message, b.message);
  for (std::size_t i = 0; i < a.rows.size(); ++i) {
    const cc::SweepRow &x = a.rows[i], &y = b.rows[i];
    EXPECT_TRUE(same_bits(x.lambda, y.lambda));
    EXPECT_TRUE(same_bits(x.r2_val, y.r2_val)) << i;
    EXPECT_TRUE(same_bits(x.r2_val_exact, y.r2_val_exact)) << i;
    EXPECT_TRUE(same_bits(x.loss_exact, y.loss_exact)) << i;
    EXPECT_TRUE(same_bits(x.gap_bound, y.gap_bound)) << i;
    EXPECT_TRUE(same_bits(x.diag.dW, y.diag.dW)) << i;
  }
  ASSERT_EQ(a.stored.size(), b.stored.size());
  for (std::size_t i = 0; i < a.stored.size(); ++i) {
    EXPECT_EQ(a.stored[i].name, b.stored[i].name);
    EXPECT_TRUE(a.stored[i].data == b.stored[i].data) << a.stored[i].name;
  }
}

}  // namespace

TEST(SweepUnits, BlocksAreLargestLambdaFirstAndCoverTheGridOnce) {
  const cc::Problem p = problem(30, 20, 20, 3);
  cc::SweepConfig cfg = config(p, 4);
  const auto blocks = cc::sweep_blocks(cfg);
  ASSERT_EQ(blocks.size(), 4u);  // 13 lambdas in blocks of 4
  std::vector<int> all;
  double last = INFINITY;
  for (const auto& b : blocks)
    for (int l : b) {
      EXPECT_LT(cfg.lambdas[static_cast<std::size_t>(l)], last);
      last = cfg.lambdas[static_cast<std::size_t>(l)];
      all.push_back(l);
    }
  std::sort(all.begin(), all.end());
  for (int i = 0; i < 13; ++i) EXPECT_EQ(all[static_cast<std::size_t>(i)], i);
  cfg.lambda_block = 0;
  EXPECT_EQ(cc::sweep_lambda_block(cfg), cc::kDefaultExactBlock);
  cfg.exact = false;
  EXPECT_EQ(cc::sweep_lambda_block(cfg), 13);  // linearised: one unit per part
}

// Units computed in reverse order in another SweepData (another process), assembled:
// the same bits as run_sweep with 1 and with 2 threads.
TEST(SweepUnits, AnyOrderAndThreadCountGiveTheSameBits) {
  const cc::Problem p = problem(40, 30, 30, 5);
  cc::SweepConfig cfg = config(p, 4);
  const cc::SweepResult one = cc::run_sweep(p, cfg, nullptr);
  cfg.threads = 2;
  const cc::SweepResult two = cc::run_sweep(p, cfg, nullptr);
  expect_equal(one, two);

  cfg.threads = 1;
  const int nb = static_cast<int>(cc::sweep_blocks(cfg).size()), F = 3;
  std::vector<cc::SweepUnitResult> units;
  for (int i = (F + 1) * nb - 1; i >= 0; --i) {
    cc::SweepData fresh(p, cfg.folds, 1);  // nothing shared: as on separate workers
    units.push_back(cc::run_sweep_unit(fresh, cfg, i / nb - 1, i % nb, nullptr));
  }
  cc::SweepData data(p, cfg.folds, 1);
  expect_equal(one, cc::assemble_sweep(data, cfg, units, nullptr));
  EXPECT_EQ(one.units, (F + 1) * nb);

  units.pop_back();  // a missing unit is refused, as is a duplicate
  EXPECT_THROW(cc::assemble_sweep(data, cfg, units, nullptr), covfit::RuntimeError);
  units.push_back(units.front());
  EXPECT_THROW(cc::assemble_sweep(data, cfg, units, nullptr), covfit::RuntimeError);
}

// Blocks start cold; one block warm-starts the whole path. The exact solutions differ, but
// only within their certificates: |L_a - L_b| <= gap_a + gap_b at every certified lambda,
// up to evaluation rounding, and the linearised columns are identical.
TEST(SweepUnits, BlockSizeChangesExactSolutionsOnlyWithinTheirCertificates) {
  const cc::Problem p = problem(40, 30, 30, 9);
  const cc::SweepResult whole = cc::run_sweep(p, config(p, 13), nullptr);
  const cc::SweepResult blocks = cc::run_sweep(p, config(p, 2), nullptr);
  ASSERT_EQ(whole.rows.size(), blocks.rows.size());
  int certified = 0;
  for (std::size_t i = 0; i < whole.rows.size(); ++i) {
    const cc::SweepRow &a = whole.rows[i], &b = blocks.rows[i];
    EXPECT_TRUE(same_bits(a.r2_val, b.r2_val));
    EXPECT_TRUE(same_bits(a.loss_lin, b.loss_lin));
    if (a.exact_status != "converged" || b.exact_status != "converged") continue;
    ++certified;
    // The gap bounds are exact-arithmetic statements; the losses carry evaluation rounding
    // of a few ulps of their largest terms (L(0) scale).
    const double rounding = 32 * 2.22e-16 * whole.loss_zero;
    EXPECT_LE(std::abs(a.loss_exact - b.loss_exact), a.gap_bound + b.gap_bound + rounding)
        << "lambda " << a.lambda << " L " << a.loss_exact << " L0 " << whole.loss_zero;
  }
  EXPECT_EQ(certified, 13);
}
