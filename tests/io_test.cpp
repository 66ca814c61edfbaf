// The typed tables: rows round-trip through HDF5, older layouts decode with defaults,
// a misspelt column name is an exception (never undefined behaviour), every column is
// described.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <stdexcept>

#include "covfit/io/fit_tables.hpp"
#include "covfit/io/h5.hpp"
#include "covfit/io/results_file.hpp"
#include "covfit/io/schema.hpp"
#include "covfit/io/sweep_tables.hpp"

using namespace covfit;
namespace fs = std::filesystem;

namespace {

std::string temp_path(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("covfit_io_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return (dir / name).string();
}

io::Column col(const char* name, io::Column::Type type, int count = 1) {
  io::Column c;
  c.name = name;
  c.type = type;
  c.count = count;
  return c;
}

io::FitTaskRow sample_task(std::int64_t id) {
  io::FitTaskRow t;
  t.id = id;
  t.data = "franke";
  t.param = "cholesky";
  t.K = 9;
  t.optimizer = "adam";
  t.status = "reached_target";
  t.final_loss = 1.5e-5 * static_cast<double>(id + 1);
  t.message = std::string(100, 'x');  // longer than its 64 bytes: truncated, not overflowed
  t.stop_loss = 2e-5;
  t.steps_to_target = {10, -1};
  t.seconds_to_target = {0.25, NAN};
  return t;
}

}  // namespace

TEST(IoRow, UnknownColumnIsAClearErrorForEveryOverload) {
  io::TableLayout layout({col("id", io::Column::i64), col("name", io::Column::str, 8), col("x", io::Column::f64)});
  io::Row row(layout);
  for (auto set : {+[](io::Row& r) { r.set("nmae", std::string("a")); },
                   +[](io::Row& r) { r.set("xx", 1.0); },
                   +[](io::Row& r) { r.set("idd", std::int64_t{1}); }}) {
    try {
      set(row);
      ADD_FAILURE() << "no exception";
    } catch (const std::logic_error& e) {
      EXPECT_NE(std::string(e.what()).find("table has no column"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(row.set("x", std::string("text")), std::logic_error);  // not a string column
  EXPECT_THROW(row.get_i64("nope"), std::logic_error);
}

TEST(IoTable, RowsRoundTripThroughHdf5) {
  const std::string path = temp_path("roundtrip.h5");
  {
    io::Handle f = io::create_file(path);
    io::FitTables t(2);
    t.create(f.get(), {1e-3, 1e-5});
    std::vector<io::FitCurveRow> curve = {{0, 0, 0.0, 1.0}, {0, 50, 0.1, 0.5}};
    t.append(sample_task(0), curve, {{0, 0, 0.5, 0.5, 10, 1, 12, 0.3}}, {1, 2, 3, 4, 5, 6});
    t.append(sample_task(1), {}, {}, {});
    t.flush();
  }
  io::Handle f = io::open_for_reading(path);
  io::FitTables t(2);
  auto rows = io::read_all(f.get(), "/fit/tasks", t.tasks());
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].id, 0);
  EXPECT_EQ(rows[0].param, "cholesky");
  EXPECT_EQ(rows[0].message, std::string(64, 'x'));
  EXPECT_EQ(rows[1].final_loss, 3e-5);
  EXPECT_EQ(rows[0].stop_loss, 2e-5);
  EXPECT_EQ(rows[0].steps_to_target, (std::vector<std::int32_t>{10, -1}));
  EXPECT_EQ(rows[0].seconds_to_target[0], 0.25);
  EXPECT_TRUE(std::isnan(rows[0].seconds_to_target[1]));
  // The task store filled in the offsets.
  EXPECT_EQ(rows[0].curve_len, 2);
  EXPECT_EQ(rows[0].raw_len, 6);
  EXPECT_EQ(rows[1].curve_offset, 2);
  EXPECT_EQ(rows[1].raw_offset, 6);
  auto curves = io::read_all(f.get(), "/fit/curves", t.curves());
  ASSERT_EQ(curves.size(), 2u);
  EXPECT_EQ(curves[1].step, 50);
  EXPECT_EQ(curves[1].loss, 0.5);
  // Units and descriptions on the dataset, in column order.
  io::Handle ds = io::open_dataset(f.get(), "/fit/tasks");
  auto names = io::read_attr_strings(ds.get(), "column_names");
  auto units = io::read_attr_strings(ds.get(), "column_units");
  ASSERT_EQ(names.size(), t.tasks().layout().columns().size());
  EXPECT_EQ(names[0], "id");
  EXPECT_EQ(units[static_cast<std::size_t>(t.tasks().layout().index("final_loss"))], "values^2");
}

TEST(IoTable, OlderLayoutDecodesWithDefaults) {
  io::FitTables t(0);
  // An older file: no stop_loss column, no target arrays, `K` as int64.
  io::TableLayout old({col("id", io::Column::i64), col("K", io::Column::i64),
                       col("param", io::Column::str, 16), col("final_loss", io::Column::f64)});
  io::Row r(old);
  r.set("id", std::int64_t{7}).set("K", std::int64_t{4}).set("param", std::string("full")).set("final_loss", 0.125);
  auto rows = t.tasks().decode(old, r.bytes());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].id, 7);
  EXPECT_EQ(rows[0].param, "full");
  EXPECT_EQ(rows[0].final_loss, 0.125);
  EXPECT_EQ(rows[0].K, 0);  // another type: left at its default, not misread
  EXPECT_EQ(rows[0].stop_loss, 0.0);
  EXPECT_TRUE(rows[0].seconds_to_target.empty());
}

TEST(IoSchema, EveryColumnHasADescriptionAndTheDumpHasEveryTable) {
  io::FitTables fit(1);
  io::SweepTables sweep;
  for (const auto* L : {&fit.tasks().layout(), &fit.curves().layout(), &fit.kernels().layout(),
                        &sweep.tasks().layout(), &sweep.lambdas().layout(), &sweep.folds().layout(),
                        &sweep.matrices().layout()})
    for (const auto& c : L->columns()) EXPECT_FALSE(c.description.empty()) << c.name;
  const std::string dump = io::schema_json();
  for (const char* p : {"/fit/tasks", "/fit/curves", "/fit/kernels", "/sweep/tasks", "/sweep/lambda",
                        "/sweep/folds", "/sweep/matrix_index"})
    EXPECT_NE(dump.find(std::string("\"") + p + "\""), std::string::npos) << p;
  EXPECT_NE(dump.find("\"format_version\": " + std::to_string(io::kFormatVersion)), std::string::npos);
}
