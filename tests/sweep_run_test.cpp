// The sweep job kind end to end: job file -> tasks -> HDF5 tables; HDF5 input equals the
// planted generator; resume equals an uninterrupted run; bad input is refused by name.
#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <filesystem>
#include <tuple>

#include "covfit/core/error.hpp"
#include "covfit/cov/linearized.hpp"
#include "covfit/cov/svd.hpp"
#include "covfit/data/cov_data.hpp"
#include "covfit/io/results_file.hpp"
#include "covfit/io/sweep_tables.hpp"
#include "covfit/job/spec.hpp"
#include "covfit/run/runner.hpp"
#include "run/rows.hpp"

namespace fs = std::filesystem;
using namespace covfit;

namespace {

std::string job_text(const std::string& data, const std::string& extra = "") {
  return "name = \"sw\"\nkind = \"sweep\"\nseed = 3\n" + data +
         "[sweep]\nmodels = [\"free\", \"free_diag\"]\nlambda_from = 1e-3\nlambda_to = 10.0\n"
         "lambda_count = 12\nlambda_units = \"s_max2\"\nlambda_d = [1e-2, 1.0]\nfolds = 4\n"
         "store_lambdas = [0.1]\n" + extra;
}
const char* kPlanted = "[data]\nname = \"p\"\nsource = \"planted\"\nn = 40\nm = 24\nrank = 6\nnoise = 0.1\nseed = 9\n";

std::string temp_path(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("covfit_sweep_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return (dir / name).string();
}

run::RunOptions options(const std::string& out) {
  run::RunOptions o;
  o.output = out;
  o.progress = false;
  o.overwrite = true;
  o.threads = 2;
  return o;
}

struct Rows {
  std::vector<double> lambda, lambda_d, r2_val, r2_val_exact, loss_lin, loss_exact;
  std::vector<std::string> model;
  std::vector<std::int64_t> task_ids;
};

Rows read_lambda_rows(const std::string& path) {
  io::Handle f = io::open_for_reading(path);
  io::SweepTables t;
  t.open(f.get());
  Rows r;
  r.task_ids = t.store().done_ids();
  io::Handle ds(H5Dopen2(f.get(), "/sweep/lambda", H5P_DEFAULT), H5Dclose);
  auto read = [&](const char* col) {
    hsize_t n = 0;
    io::Handle sp(H5Dget_space(ds.get()), H5Sclose);
    H5Sget_simple_extent_dims(sp.get(), &n, nullptr);
    std::vector<double> v(n);
    io::Handle mt(H5Tcreate(H5T_COMPOUND, 8), H5Tclose);
    H5Tinsert(mt.get(), col, 0, H5T_NATIVE_DOUBLE);
    if (n) H5Dread(ds.get(), mt.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
    return v;
  };
  r.lambda = read("lambda");
  r.lambda_d = read("lambda_d");
  r.r2_val = read("r2_val");
  r.r2_val_exact = read("r2_val_exact");
  r.loss_lin = read("loss_lin");
  r.loss_exact = read("loss_exact");
  return r;
}

}  // namespace

TEST(SweepRun, TablesHoldTheWholeGridAndAgreeWithTheSolver) {
  auto job = job::parse_job(job_text(kPlanted), "sw.toml");
  // Work units: free with exact solutions cuts its 12 lambdas into blocks of 10 (2 blocks),
  // free_diag keeps one; each over the full data and 4 folds.
  ASSERT_EQ(job.sweep_task_count(), 2);
  ASSERT_EQ(job.task_count(), 2 * 5 + 1 * 5);
  auto out = temp_path("a.h5");
  auto s = run::run_job(job, options(out), nullptr);
  EXPECT_EQ(s.computed, 15);
  EXPECT_EQ(s.by_status["ok"], 15);
  Rows r = read_lambda_rows(out);
  ASSERT_EQ(r.lambda.size(), 12u + 12u * 2u);  // free: 12 lambdas; free_diag: 12 x 2
  // Tasks finish in any order: free rows are the ones without lambda_d.
  std::vector<std::size_t> free_rows, diag_rows;
  for (std::size_t i = 0; i < r.lambda.size(); ++i)
    (std::isnan(r.lambda_d[i]) ? free_rows : diag_rows).push_back(i);
  ASSERT_EQ(free_rows.size(), 12u);
  ASSERT_EQ(diag_rows.size(), 24u);
  // Cross-check the free rows against the library: loss of the linearised W on all data.
  data::CovData d = data::load_cov(job.cov_data[0]);
  cov::Reduced red = cov::reduce(d.problem.X, d.problem.S);
  for (std::size_t i : free_rows) {
    double expect = cov::loss_reduced(red, cov::linearized_M(red, r.lambda[i]), r.lambda[i]);
    EXPECT_NEAR(r.loss_lin[i], expect, 1e-10 * std::abs(expect));
    EXPECT_LE(r.loss_exact[i], r.loss_lin[i] * (1 + 1e-12));  // exact is the minimum
    EXPECT_GT(r.r2_val[i], -1.0);
    EXPECT_LE(r.r2_val[i], 1.0);
  }
  EXPECT_NEAR(r.lambda[free_rows[0]], 1e-3 * red.s_max() * red.s_max(), 1e-9 * r.lambda[free_rows[0]]);
}

TEST(SweepRun, HdfInputEqualsPlantedGeneratorAndResumeEqualsFullRun) {
  auto job = job::parse_job(job_text(kPlanted), "sw.toml");
  data::CovData d = data::load_cov(job.cov_data[0]);
  auto in = temp_path("case.h5");
  {
    io::Handle f(H5Fcreate(in.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
    run::write_matrix(f.get(), "X", d.problem.X);
    run::write_matrix(f.get(), "S", d.problem.S);
  }
  auto job_h5 = job::parse_job(job_text("[data]\nname = \"p\"\nsource = \"hdf5\"\nfile = \"" + in + "\"\n"), "sw.toml");
  auto a = temp_path("planted.h5"), b = temp_path("hdf.h5");
  run::run_job(job, options(a), nullptr);
  auto o = options(b);
  o.max_tasks = 1;  // half, then resume
  run::run_job(job_h5, o, nullptr);
  o.overwrite = false;
  o.max_tasks = -1;
  auto s = run::run_job(job_h5, o, nullptr);
  EXPECT_EQ(s.already_done, 1);
  Rows ra = read_lambda_rows(a), rb = read_lambda_rows(b);
  ASSERT_EQ(ra.lambda.size(), rb.lambda.size());
  EXPECT_EQ(rb.task_ids, (std::vector<std::int64_t>{0, 1}));
  // Completion order may differ: compare as sorted (lambda_d, lambda, values) tuples.
  auto tuples = [](const Rows& r) {
    std::vector<std::tuple<double, double, double, double>> t;
    for (std::size_t i = 0; i < r.lambda.size(); ++i)
      t.emplace_back(std::isnan(r.lambda_d[i]) ? -1.0 : r.lambda_d[i], r.lambda[i], r.r2_val[i], r.loss_lin[i]);
    std::sort(t.begin(), t.end());
    return t;
  };
  EXPECT_EQ(tuples(ra), tuples(rb));
}

TEST(SweepRun, BadInputIsRefusedNamingThePlaceAndWritesNothing) {
  auto in = temp_path("bad.h5");
  {
    io::Handle f(H5Fcreate(in.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
    cov::Matrix X(6, 5, 1.0), S(5, 5, 0.0);
    for (int i = 0; i < 6; ++i) X(i, i % 5) = 2.0 + i;
    S(0, 1) = 1.0;  // not symmetric
    run::write_matrix(f.get(), "X", X);
    run::write_matrix(f.get(), "S", S);
    run::write_matrix(f.get(), "S3", cov::Matrix(4, 4));
  }
  auto out = temp_path("never.h5");
  fs::remove(out);
  auto expect_error = [&](const std::string& data, const std::string& fragment) {
    auto job = job::parse_job(job_text(data), "sw.toml");
    try {
      run::run_job(job, options(out), nullptr);
      ADD_FAILURE() << "no error for " << fragment;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(out));
  };
  std::string base = "[data]\nname = \"p\"\nsource = \"hdf5\"\nfile = \"" + in + "\"\n";
  expect_error(base, "not symmetric");
  expect_error(base + "s_dataset = \"S3\"\n", "S has shape");
  expect_error(base + "s_dataset = \"nope\"\n", in + ":nope: no such dataset");
  auto bad_folds = job::parse_job(job_text(kPlanted, "val = [0, 99]\n"), "sw.toml");
  try {
    run::run_job(bad_folds, options(out), nullptr);
    ADD_FAILURE() << "no error for val index 99";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("sweep.val"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(out));
}
