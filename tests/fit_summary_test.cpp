// io::summarise_fit, the one implementation of the per-group fit summary (/fit/summary,
// covfit inspect, the Python reader's summary_table), and its round trip through a file.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "covfit/io/fit_tables.hpp"
#include "covfit/io/h5.hpp"
#include "covfit/io/results_file.hpp"

using namespace covfit;
namespace fs = std::filesystem;

namespace {

io::FitTaskRow task(std::int64_t id, const std::string& data, const std::string& param,
                    const std::string& opt, int K, const std::string& status, double loss,
                    double stop, std::vector<double> seconds_to) {
  io::FitTaskRow t;
  t.id = id;
  t.data = data;
  t.param = param;
  t.optimizer = opt;
  t.K = K;
  t.status = status;
  t.final_loss = loss;
  t.final_rel_loss = loss / 2;
  t.steps = static_cast<std::int32_t>(10 * (id + 1));
  t.wall_seconds = 0.5 * static_cast<double>(id + 1);
  t.stop_loss = stop;
  for (double s : seconds_to) t.steps_to_target.push_back(std::isfinite(s) ? 1 : -1);
  t.seconds_to_target = std::move(seconds_to);
  return t;
}

}  // namespace

TEST(FitSummary, GroupsLevelsCountsAndMedians) {
  const std::vector<double> levels = {1e-3, 1e-4, 1e-5};
  std::vector<io::FitTaskRow> t = {
      // (b, full, lm, 3): stop 2e-5 -> level 1e-4 (1e-5 cannot be reached by a task that
      // stops at 2e-5); one on target, one diverged (NaN loss: left out of the medians).
      task(0, "b", "full", "lm", 3, "reached_target", 1.9e-5, 2e-5, {0.1, 0.2, NAN}),
      task(1, "b", "full", "lm", 3, "diverged", NAN, 2e-5, {NAN, NAN, NAN}),
      task(2, "b", "full", "lm", 3, "converged", 3e-5, 2e-5, {0.3, 0.6, NAN}),
      // (a, full, lm, 3): no stop target -> the tightest level; even count -> mean of the middle two
      task(3, "a", "full", "lm", 3, "max_steps", 4e-6, 0, {0.1, 0.2, 0.4}),
      task(4, "a", "full", "lm", 3, "max_steps", 2e-6, 0, {0.1, 0.2, 0.8}),
      // (a, full, adam, 3): a stop above every level -> no level
      task(5, "a", "full", "adam", 3, "failed", 1.0, 0.5, {NAN, NAN, NAN}),
      // a row without status (a killed writer's leftover) is not a task
      task(6, "a", "full", "adam", 3, "", 1.0, 0, {NAN, NAN, NAN}),
      // (a, cholesky, adam, 5)
      task(7, "a", "cholesky", "adam", 5, "converged", 5e-4, 0, {0.7, NAN, NAN}),
  };
  const auto s = io::summarise_fit(t, levels);
  ASSERT_EQ(s.size(), 4u);
  // Ordered by (param, optimizer, data, K).
  EXPECT_EQ(s[0].param, "cholesky");
  EXPECT_EQ(s[1].optimizer, "adam");
  EXPECT_EQ(s[2].data, "a");
  EXPECT_EQ(s[3].data, "b");

  const io::FitSummaryRow& b = s[3];
  EXPECT_EQ(b.tasks, 3);
  EXPECT_EQ(b.failed, 1);
  EXPECT_EQ(b.on_target, 1);
  EXPECT_EQ(b.level, 1e-4);
  EXPECT_EQ(b.reached, 2);
  EXPECT_EQ(b.frac_reached, 2.0 / 3.0);
  EXPECT_EQ(b.best_loss, 1.9e-5);
  EXPECT_EQ(b.median_final_loss, 0.5 * (1.9e-5 + 3e-5));  // the NaN is left out
  EXPECT_EQ(b.median_steps, 20.0);                          // steps 10, 20, 30
  EXPECT_EQ(b.median_seconds_to_level, 0.5 * (0.2 + 0.6));

  const io::FitSummaryRow& a = s[2];
  EXPECT_EQ(a.level, 1e-5);
  EXPECT_EQ(a.reached, 2);
  EXPECT_EQ(a.median_final_loss, 0.5 * (4e-6 + 2e-6));
  EXPECT_EQ(a.median_wall_seconds, 0.5 * (2.0 + 2.5));
  EXPECT_EQ(a.on_target, 0);

  const io::FitSummaryRow& none = s[1];
  EXPECT_EQ(none.tasks, 1);  // the status-less row is not counted
  EXPECT_EQ(none.failed, 1);
  EXPECT_TRUE(std::isnan(none.level));
  EXPECT_EQ(none.reached, 0);
  EXPECT_TRUE(std::isnan(none.frac_reached));
  EXPECT_TRUE(std::isnan(none.median_seconds_to_level));

  EXPECT_EQ(s[0].K, 5);
  EXPECT_EQ(s[0].level, 1e-5);
  EXPECT_EQ(s[0].reached, 0);
  // No target levels at all: no level anywhere.
  for (const auto& r : io::summarise_fit(t, {})) EXPECT_TRUE(std::isnan(r.level));
}

TEST(FitSummary, WrittenFromTheTaskTableAndReadBack) {
  auto dir = fs::temp_directory_path() / ("covfit_fit_summary_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "s.h5").string();
  const std::vector<double> levels = {1e-2, 1e-3};
  std::vector<io::FitTaskRow> rows = {task(0, "d", "full", "adam", 3, "converged", 5e-3, 0, {0.1, NAN}),
                                      task(1, "d", "full", "adam", 3, "converged", 5e-4, 0, {0.1, 0.3}),
                                      task(2, "d", "isotropic", "adam", 3, "max_steps", 2e-2, 0, {NAN, NAN})};
  {
    io::Handle f = io::create_file(path);
    io::FitTables t(2);
    t.create(f.get(), levels);
    for (const auto& r : rows) t.append(r, {}, {}, {});
    t.flush();
    EXPECT_TRUE(io::FitTables::read_summary(f.get()).empty());  // not finalised: none
    io::FitTables::write_summary(f.get());
    io::FitTables::write_summary(f.get());  // a second finalize replaces it
  }
  io::Handle f = io::open_for_reading(path);
  const auto stored = io::FitTables::read_summary(f.get());
  const auto want = io::summarise_fit(rows, levels);
  ASSERT_EQ(stored.size(), 2u);
  ASSERT_EQ(stored.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(stored[i].param, want[i].param);
    EXPECT_EQ(stored[i].tasks, want[i].tasks);
    EXPECT_EQ(stored[i].reached, want[i].reached);
    EXPECT_EQ(stored[i].median_final_loss, want[i].median_final_loss);
    EXPECT_EQ(std::isnan(stored[i].level), std::isnan(want[i].level));
    if (!std::isnan(want[i].level)) {
      EXPECT_EQ(stored[i].level, want[i].level);
    }
  }
  EXPECT_EQ(stored[0].reached, 1);
  EXPECT_EQ(stored[0].level, 1e-3);
  io::Handle ds = io::open_dataset(f.get(), "/fit/summary");
  auto names = io::read_attr_strings(ds.get(), "column_names");
  auto units = io::read_attr_strings(ds.get(), "column_units");
  ASSERT_EQ(names.size(), 16u);
  EXPECT_EQ(names[7], "level");
  EXPECT_EQ(units[7], "values^2");
  f.reset();
  fs::remove_all(dir);
}
