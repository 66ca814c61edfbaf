// Stored sweep matrices (issue 11): the summary's written row-major from their own
// column-major buffers in bounded pieces into /sweep/matrices/<task>/<name> (a matrix
// larger than one piece (4 MB) and not symmetric, so a transposition or piece boundary
// error shows); units' r x r matrices stored as they are.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <vector>

#include "covfit/io/h5.hpp"
#include "covfit/io/results_file.hpp"
#include "covfit/io/sweep_tables.hpp"

using namespace covfit;
namespace fs = std::filesystem;

namespace {

std::string temp_file(const char* name) {  // removed by the test
  return (fs::temp_directory_path() / ("covfit_sweep_store_" + std::to_string(::getpid()) + "_" + name)).string();
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

TEST(SweepStore, SummaryMatricesAreWrittenRowMajorFromTheirBuffers) {
  const std::string path = temp_file("summary.h5");
  const std::vector<double> a = column_major(kRows, kCols);
  std::vector<double> b(a.size());
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = -a[i];
  {
    io::Handle f = io::create_file(path);
    io::SweepTables summary;
    summary.create(f.get());
    io::SweepTaskRow t;
    t.id = 4;
    t.data = "planted";
    t.model = "free";
    t.lambda_units = "absolute";
    io::MatrixStacks out(f.get(), t);
    out.stack("W", 2, kRows, kCols);
    out.write("W", 1, {a.data(), kRows, kCols});  // slabs in any order
    out.write("W", 0, {b.data(), kRows, kCols});
    out.finish("W", {1.0, 2.0}, {NAN, NAN}, {1.0, 2.0}, {NAN, NAN}, 1);
  }
  io::Handle f = io::open_for_reading(path);
  const io::DoubleArray w = io::read_array(f.get(), "/sweep/matrices/4/W");
  ASSERT_EQ(w.dims, (std::vector<hsize_t>{2, kRows, kCols}));
  expect_row_major(w.data.data() + a.size(), kRows, kCols, "slab 1");
  EXPECT_EQ(w.data[0], -0.5);
  EXPECT_EQ(w.data[static_cast<std::size_t>(kCols) + 1], -10001.5);  // slab 0, entry (1, 1)
  io::Handle ds = io::open_dataset(f.get(), "/sweep/matrices/4/W");
  EXPECT_EQ(io::read_attr_int(ds.get(), "best_index"), 1);
  EXPECT_EQ(io::read_attr_doubles(ds.get(), "lambda"), (std::vector<double>{1.0, 2.0}));
  io::Handle g = io::open_dataset(f.get(), "/sweep/tasks");  // the tables, and no /sweep/values
  EXPECT_FALSE(io::exists(f.get(), "/sweep/values"));
  fs::remove(path);
}

// Units store their r x r matrices as they hold them (column-major): read back, the same
// entries in the same places, so a chain's next block starts from the same bits.
TEST(SweepStore, UnitMatricesAreStoredAsTheyAre) {
  const std::string path = temp_file("units.h5");
  const std::vector<double> m = column_major(5, 5), v = {1.0, 2.0, 3.0};
  // An exact solution (5 x 5) and a path end (its first 3 entries stand for it here).
  const io::SweepMatrixRow solution{3, "M", 0.5, NAN, 5, 5, 0, 0}, end{3, "P_end", 0.5, NAN, 3, 1, 25, 0};
  io::SweepUnitRow u;
  u.id = 3;
  u.status = "ok";
  {
    io::SweepUnitTables units;
    io::Handle f = io::create_file(path);
    units.create(f.get());
    units.append(u, {}, {}, {solution, end}, {{m.data(), 25, 1}, {v.data(), 3, 1}});
    units.flush();
  }
  io::Handle f = io::open_for_reading(path);
  const std::vector<double> values = io::SweepUnitTables::read_values(f.get(), 0, 28);
  EXPECT_TRUE(std::equal(m.begin(), m.end(), values.begin()));
  EXPECT_EQ(values[25], 1.0);
  EXPECT_EQ(values[27], 3.0);
  fs::remove(path);
}
