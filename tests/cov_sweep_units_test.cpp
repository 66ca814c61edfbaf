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

// Each part's chain of blocks computed in its own SweepData (as on separate workers),
// chains in reverse order, one block resumed from a preloaded warm start (as after a
// kill): the same bits as run_sweep with 1 and with 2 threads.
TEST(SweepUnits, AnyWorkerOrderAndThreadCountGiveTheSameBits) {
  const cc::Problem p = problem(40, 30, 30, 5);
  cc::SweepConfig cfg = config(p, 4);
  const cc::SweepResult one = cc::run_sweep(p, cfg, nullptr);
  cfg.threads = 2;
  const cc::SweepResult two = cc::run_sweep(p, cfg, nullptr);
  expect_equal(one, two);

  cfg.threads = 1;
  const int nb = static_cast<int>(cc::sweep_blocks(cfg).size()), F = 3;
  std::vector<cc::SweepUnitResult> units;
  for (int part = F - 1; part >= -1; --part) {
    cc::SweepData worker(p, cfg.folds, 1);
    for (int b = 0; b < nb; ++b) {
      if (b == 2) {  // a new process resuming the chain from the committed block 1
        cc::SweepData resumed(p, cfg.folds, 1);
        resumed.set_warm(cfg.model, part, 1, units.back().warm_end);
        units.push_back(cc::run_sweep_unit(resumed, cfg, part, b, nullptr));
        worker.set_warm(cfg.model, part, b, units.back().warm_end);
        EXPECT_TRUE(units.back().warm_started);
        continue;
      }
      units.push_back(cc::run_sweep_unit(worker, cfg, part, b, nullptr));
      EXPECT_EQ(units.back().warm_started, b > 0);
    }
  }
  cc::SweepData data(p, cfg.folds, 1);
  expect_equal(one, cc::assemble_sweep(data, cfg, units, nullptr));
  EXPECT_EQ(one.units, (F + 1) * nb);

  units.pop_back();  // a missing unit is refused, as is a duplicate
  EXPECT_THROW(cc::assemble_sweep(data, cfg, units, nullptr), covfit::RuntimeError);
  units.push_back(units.front());
  EXPECT_THROW(cc::assemble_sweep(data, cfg, units, nullptr), covfit::RuntimeError);
}

// A chain of blocks is the whole warm-started path cut into pieces: any block size gives
// the same bits. A block that starts cold (its predecessor's end unavailable, e.g. the
// API used without chains) differs, but only within the certificates: |L_a - L_b| <=
// gap_a + gap_b up to evaluation rounding.
TEST(SweepUnits, ChainsEqualTheWholePathAndColdBlocksDifferOnlyWithinTheirCertificates) {
  const cc::Problem p = problem(40, 30, 30, 9);
  const cc::SweepResult whole = cc::run_sweep(p, config(p, 13), nullptr);
  const cc::SweepResult blocks = cc::run_sweep(p, config(p, 2), nullptr);
  expect_equal(whole, blocks);

  cc::SweepConfig cfg = config(p, 2);
  const auto order = cc::sweep_blocks(cfg);
  int certified = 0;
  for (int b = 1; b < static_cast<int>(order.size()); ++b) {
    cc::SweepData fresh(p, cfg.folds, 1);  // nothing published: the block starts cold
    const cc::SweepUnitResult cold = cc::run_sweep_unit(fresh, cfg, -1, b, nullptr);
    EXPECT_FALSE(cold.warm_started);
    for (std::size_t k = 0; k < cold.rows.size(); ++k) {
      const cc::SweepRow& a = cold.rows[k];
      const cc::SweepRow& w = whole.rows[static_cast<std::size_t>(a.lambda_index)];
      if (a.exact_status != "converged" || w.exact_status != "converged") continue;
      ++certified;
      // The gap bounds are exact-arithmetic statements; the losses carry evaluation
      // rounding of a few ulps of their largest terms (L(0) scale).
      const double rounding = 32 * 2.22e-16 * whole.loss_zero;
      EXPECT_LE(std::abs(a.loss_exact - w.loss_exact), a.gap_bound + w.gap_bound + rounding)
          << "lambda " << a.lambda;
    }
  }
  EXPECT_EQ(certified, 11);  // 13 lambdas, block 0's two start cold in both
}
