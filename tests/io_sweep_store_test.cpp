// Stored sweep matrices (issue 11): written row-major from their own column-major buffers
// in bounded pieces, by a unit into /sweep_units/values and by the summary into
// /sweep/matrices/<task>/<name> (from memory, or copied from a unit's values). Matrices
// larger than one piece (4 MB) and not symmetric, so a transposition or piece boundary
// error shows.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <vector>

#include "covfit/io/h5.hpp"
#include "covfit/io/results_file.hpp"
#include "covfit/io/sweep_tables.hpp"

using namespace covfit;
namespace fs = std::filesystem;

namespace {

std::string temp_path(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("covfit_io_sweep_store_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return (dir / name).string();
}

// A (rows x cols) column-major matrix whose entry (i, j) is i * 10000 + j + 0.5.
std::vector<double> column_major(int rows, int cols) {
  std::vector<double> a(static_cast<std::size_t>(rows) * cols);
  for (int j = 0; j < cols; ++j)
    for (int i = 0; i < rows; ++i) a[static_cast<std::size_t>(j) * rows + i] = i * 10000.0 + j + 0.5;
  return a;
}

// Every entry of a row-major block equals column_major's (i, j).
void expect_row_major(const double* p, int rows, int cols, const char* what) {
  int bad = 0;
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j)
      bad += p[static_cast<std::size_t>(i) * cols + j] != i * 10000.0 + j + 0.5;
  EXPECT_EQ(bad, 0) << what;
}

constexpr int kRows = 1100, kCols = 700;  // 6 MB: two pieces, the last one partial

}  // namespace

TEST(SweepStore, MatricesAreWrittenRowMajorOnceFromTheirBuffers) {
  const std::string path = temp_path("store.h5");
  const std::vector<double> a = column_major(kRows, kCols);
  const std::vector<double> v = {1.0, 2.0, 3.0};
  {
    io::Handle f = io::create_file(path);
    // A unit stores the matrix and a vector.
    io::SweepUnitTables units;
    units.create(f.get());
    io::SweepUnitRow u;
    u.id = 3;
    u.status = "ok";
    io::SweepMatrixRow m;
    m.task_id = 3;
    m.name = "W";
    m.rows = kRows;
    m.cols = kCols;
    io::SweepMatrixRow d = m;
    d.name = "d";
    d.rows = 3;
    d.cols = 1;
    d.offset = static_cast<std::int64_t>(a.size());
    units.append(u, {}, {}, {m, d}, {{a.data(), kRows, kCols}, {v.data(), 3, 1}});
    units.flush();
    // The summary: slab 0 from memory, slab 1 from the unit's values.
    io::SweepTables summary;
    summary.create(f.get());
    io::SweepTaskRow t;
    t.id = 0;
    t.status = "ok";
    t.lambda_units = "absolute";
    io::MatrixStack s;
    s.name = "W";
    s.rows = kRows;
    s.cols = kCols;
    s.lambda = s.lambda_d = s.lambda_job = s.lambda_d_job = {1.0, 2.0};
    s.best_index = 1;
    s.slabs.resize(2);
    s.slabs[0].memory = {a.data(), kRows, kCols};
    s.slabs[1].unit_offset = 0;  // the unit's W starts its values
    io::SweepTables::write_matrices(f.get(), t, {s});
  }
  io::Handle f = io::open_for_reading(path);
  const std::vector<double> values = io::SweepUnitTables::read_values(f.get(), 0, static_cast<std::int64_t>(a.size()) + 3);
  expect_row_major(values.data(), kRows, kCols, "/sweep_units/values");
  EXPECT_EQ(values[a.size()], 1.0);
  EXPECT_EQ(values[a.size() + 2], 3.0);
  const io::DoubleArray w = io::read_array(f.get(), "/sweep/matrices/0/W");
  ASSERT_EQ(w.dims, (std::vector<hsize_t>{2, kRows, kCols}));
  expect_row_major(w.data.data(), kRows, kCols, "slab 0 (from memory)");
  expect_row_major(w.data.data() + a.size(), kRows, kCols, "slab 1 (from the unit's values)");
  io::Handle ds = io::open_dataset(f.get(), "/sweep/matrices/0/W");
  EXPECT_EQ(io::read_attr_int(ds.get(), "best_index"), 1);
  EXPECT_FALSE(io::exists(f.get(), "/sweep/values"));
  fs::remove_all(fs::path(path).parent_path());
}
