// Grids as data (issue 8): `[data] source = "hdf5"` with `grid_dataset`, extent, NaN cells
// masked, standardize; the job keys for local evaluation; errors naming file/dataset/key;
// fits on grid data with and without culling / the recurrence.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <unistd.h>
#include <vector>

#include "covfit/core/error.hpp"
#include "covfit/data/points.hpp"
#include "covfit/io/h5.hpp"
#include "covfit/job/spec.hpp"
#include "covfit/rbf/fit.hpp"

namespace fs = std::filesystem;
using namespace covfit;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string temp_path(const std::string& name) {
  std::string leaf = "covfit_grid_test_";  // (not "..." + to_string: GCC 12 -Wrestrict false positive)
  leaf += std::to_string(::getpid());
  auto dir = fs::temp_directory_path() / leaf;
  fs::create_directories(dir);
  return (dir / name).string();
}

// A 5 x 7 grid (rows x columns) with two NaN cells, as "z"; also a 1-D "line".
std::string write_grid_file(const std::string& name, double special = kNaN) {
  const std::string path = temp_path(name);
  io::Handle f(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
  std::vector<double> z(35);
  for (std::size_t i = 0; i < 35; ++i) z[i] = static_cast<double>(i);
  z[8] = special;   // row 1, column 1
  z[20] = kNaN;     // row 2, column 6
  io::write_array(f.get(), "z", {5, 7}, z.data());
  io::write_array(f.get(), "line", {35}, z.data());
  return path;
}

job::DataSpec grid_spec(const std::string& file, const std::string& ds = "z") {
  job::DataSpec s;
  s.name = "grid";
  s.source = "hdf5";
  s.file = file;
  s.grid_dataset = ds;
  return s;
}

std::string load_error(const job::DataSpec& s) {
  try {
    data::load(s);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

std::string parse_error(const std::string& text) {
  try {
    job::parse_job(text, "j.toml");
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(DataGrid, LoadsCellsMasksNaNAndMapsExtent) {
  const std::string file = write_grid_file("ok.h5");
  auto s = grid_spec(file);
  s.extent = {10, 22, 5, -3};  // x over 7 columns: step 2; y over 5 rows: step -2
  const auto d = data::load(s);
  ASSERT_TRUE(d.grid.has_value());
  EXPECT_EQ(d.grid->nx, 7u);
  EXPECT_EQ(d.grid->ny, 5u);
  EXPECT_EQ(d.values.size(), 33u);  // 35 cells, 2 masked
  EXPECT_TRUE(std::isnan(d.grid->values[8]));
  // The first points: row 0 at y = 5, columns at x = 10, 12, ...; row 1 skips column 1.
  EXPECT_DOUBLE_EQ(d.x[1], 12.0);
  EXPECT_DOUBLE_EQ(d.y[1], 5.0);
  EXPECT_DOUBLE_EQ(d.x[8], 14.0);  // row 1: columns 0, 2, ...
  EXPECT_DOUBLE_EQ(d.y[8], 3.0);
  EXPECT_DOUBLE_EQ(d.values[8], 9.0);
  EXPECT_DOUBLE_EQ(d.grid->dy, -2.0);
}

TEST(DataGrid, DefaultExtentIsSquareCellsOnTheUnitLongSide) {
  const auto d = data::load(grid_spec(write_grid_file("default.h5")));
  EXPECT_DOUBLE_EQ(d.grid->dx, 1.0 / 6);
  EXPECT_DOUBLE_EQ(d.grid->dy, 1.0 / 6);
  EXPECT_DOUBLE_EQ(*std::max_element(d.x.begin(), d.x.end()), 1.0);
}

TEST(DataGrid, StandardizeUsesUnmaskedValues) {
  auto s = grid_spec(write_grid_file("std.h5"));
  s.standardize = true;
  const auto d = data::load(s);
  double mean = 0;
  for (double v : d.values) mean += v;
  mean /= static_cast<double>(d.values.size());
  EXPECT_NEAR(mean, 0.0, 1e-12);
  EXPECT_NEAR(d.variance(), 1.0, 1e-12);
  EXPECT_TRUE(std::isnan(d.grid->values[20]));
  EXPECT_DOUBLE_EQ(d.grid->values[0], d.values[0]);
}

TEST(DataGrid, BadInputsNameFileAndDataset) {
  const std::string file = write_grid_file("bad.h5");
  EXPECT_EQ(load_error(grid_spec(file, "nope")), file + ":nope: no such dataset");
  EXPECT_NE(load_error(grid_spec(file, "line")).find(file + ":line: expected a 2-D dataset"), std::string::npos);
  const std::string inf = write_grid_file("inf.h5", std::numeric_limits<double>::infinity());
  EXPECT_NE(load_error(grid_spec(inf)).find(inf + ":z: infinite value at row 1, column 1"), std::string::npos);
  const std::string nan_path = temp_path("allnan.h5");
  {
    io::Handle f(H5Fcreate(nan_path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
    std::vector<double> z(6, kNaN);
    io::write_array(f.get(), "z", {2, 3}, z.data());
  }
  EXPECT_NE(load_error(grid_spec(nan_path)).find("every cell is NaN"), std::string::npos);
  EXPECT_NE(load_error(grid_spec("/nonexistent/g.h5")).find("/nonexistent/g.h5"), std::string::npos);
  // A truncated file is named (it used to end as exit 1 "HDF5: invalid handle").
  const std::string trunc = temp_path("trunc.h5");
  {
    std::ifstream in(file, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(trunc, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 3));
  }
  EXPECT_NE(load_error(grid_spec(trunc)).find(trunc + ": cannot open as HDF5"), std::string::npos)
      << load_error(grid_spec(trunc));
}

TEST(DataGrid, JobKeysAreValidated) {
  const std::string head = "name = \"x\"\n[data]\nsource = \"hdf5\"\nfile = \"a.h5\"\n";
  EXPECT_NE(parse_error(head + "grid_dataset = \"z\"\nextent = [0, 1, 2]\n").find("'data.extent': expected [x_first"), std::string::npos);
  EXPECT_NE(parse_error(head + "grid_dataset = \"z\"\nextent = [0, 0, 0, 1]\n").find("'data.extent'"), std::string::npos);
  EXPECT_NE(parse_error(head + "extent = [0, 1, 0, 1]\n").find("only with grid_dataset"), std::string::npos);
  EXPECT_NE(parse_error(head + "grid_dataset = \"z\"\npoints_dataset = \"p\"\n").find("not both"), std::string::npos);
  EXPECT_NE(parse_error("name = \"x\"\n[data]\ngrid_dataset = \"z\"\n").find("only for source = \"hdf5\""), std::string::npos);
  const std::string franke = "name = \"x\"\n[data]\nsource = \"franke\"\n[fit]\n";
  EXPECT_NE(parse_error(franke + "cull_tol = -1\n").find("j.toml:5: 'fit.cull_tol': must be in [0, 1)"), std::string::npos);
  EXPECT_NE(parse_error(franke + "cull_tol = 1\n").find("'fit.cull_tol'"), std::string::npos);
  EXPECT_NE(parse_error(franke + "grid_recurrence = 1\n").find("'fit.grid_recurrence': expected true or false"), std::string::npos);
  const auto job = job::parse_job(franke + "cull_tol = 0\ngrid_recurrence = false\n", "j.toml");
  EXPECT_EQ(job.fit.base.cull_tol, 0.0);
  EXPECT_FALSE(job.fit.base.grid_recurrence);
  const auto def = job::parse_job(franke, "j.toml");
  EXPECT_EQ(rbf::effective_cull_tol(def.fit.base), rbf::kDefaultCullTolF64);
}

// A fit on grid data: local evaluation (default), dense (cull_tol = 0) and local without
// the recurrence start from the same parameters and stay close (the culled error is far
// below what moves an optimiser in 100 steps); masked cells are simply absent.
TEST(DataGrid, FitOnGridDataAgreesAcrossEvaluationModes) {
  auto d = data::franke_grid("f", 64);
  for (std::size_t i = 0; i < d.grid->values.size(); i += 13) d.grid->values[i] = kNaN;
  // Rebuild the point lists from the masked grid (what the loader does).
  data::PointData m;
  m.grid = d.grid;
  for (std::size_t i = 0; i < d.grid->ny; ++i)
    for (std::size_t j = 0; j < d.grid->nx; ++j) {
      const double v = d.grid->values[i * d.grid->nx + j];
      if (std::isnan(v)) continue;
      m.x.push_back(static_cast<double>(j) * d.grid->dx);
      m.y.push_back(static_cast<double>(i) * d.grid->dy);
      m.values.push_back(v);
    }
  rbf::FitConfig c;
  c.K = 16;
  c.max_steps = 100;
  c.seed = 4;
  const rbf::Points pts{m.x, m.y, m.values, &*m.grid};
  const auto local = rbf::fit(c, pts);
  c.grid_recurrence = false;
  const auto norec = rbf::fit(c, pts);
  c.cull_tol = 0;
  const auto dense = rbf::fit(c, pts);
  EXPECT_NEAR(local.initial_loss, dense.initial_loss, 1e-9 * dense.initial_loss);
  EXPECT_NEAR(local.final_loss, dense.final_loss, 1e-6 * dense.final_loss);
  EXPECT_NEAR(norec.final_loss, dense.final_loss, 1e-6 * dense.final_loss);
  EXPECT_LT(local.final_loss, local.initial_loss);
}

}  // namespace

namespace {

// A fit on grid data split over threads gives bitwise the same result (local evaluation
// with the recurrence; pair sums reduced in tile order).
TEST(DataGrid, GridFitIsBitwiseEqualForAnyThreadCount) {
  const auto d = data::franke_grid("f", 200);  // 40,000 points: evaluations are split
  rbf::FitConfig c;
  c.K = 24;
  c.max_steps = 15;
  c.log_every = 5;
  c.seed = 3;
  const rbf::Points pts{d.x, d.y, d.values, &*d.grid};
  const auto one = rbf::fit(c, pts);
  c.threads = 2;
  const auto two = rbf::fit(c, pts);
  EXPECT_EQ(one.raw, two.raw);
  EXPECT_EQ(one.final_loss, two.final_loss);
  ASSERT_EQ(one.curve.size(), two.curve.size());
  for (std::size_t i = 0; i < one.curve.size(); ++i) EXPECT_EQ(one.curve[i].loss, two.curve[i].loss);
}

}  // namespace
