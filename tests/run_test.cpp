// End-to-end properties of `run_job`: determinism across thread counts, resume equals an
// uninterrupted run, refusal of foreign files, no output on bad input.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "covfit/core/error.hpp"
#include "covfit/io/fit_tables.hpp"
#include "covfit/io/results_file.hpp"
#include "covfit/job/spec.hpp"
#include "covfit/run/runner.hpp"

namespace fs = std::filesystem;
using namespace covfit;

namespace {

const char* kJob = R"(name = "runtest"
seed = 11
[data]
source = "planted"
points = 300
kernels = 3
[fit]
max_steps = 60
log_every = 10
target_losses = [1e-1, 1e-3]
[grid]
param = ["full", "isotropic", "cholesky"]
K = [3, 4]
optimizer = ["adam", "varpro"]
restarts = 2
)";

// Everything covfit computes deterministically for one task (timings excluded).
struct Snapshot {
  std::string status;
  std::int64_t steps;
  double final_loss;
  std::vector<double> raw, curve_loss;
  bool operator==(const Snapshot& o) const {
    return status == o.status && steps == o.steps && final_loss == o.final_loss &&
           raw == o.raw && curve_loss == o.curve_loss;
  }
};

std::map<std::int64_t, Snapshot> snapshot(const std::string& path, int n_targets = 2) {
  io::Handle f = io::open_for_reading(path);
  io::FitTables layouts(n_targets);
  auto tasks = io::AppendTable::open(f.get(), "/fit/tasks", &layouts.tasks().layout());
  auto raw = io::AppendTable::open(f.get(), "/fit/raw", nullptr);
  io::Handle curves_ds(H5Dopen2(f.get(), "/fit/curves", H5P_DEFAULT), H5Dclose);
  auto ids = tasks.read_i64("id");
  auto status = tasks.read_str("status");
  auto steps = tasks.read_i64("steps");
  auto loss = tasks.read_f64("final_loss");
  auto roff = tasks.read_i64("raw_offset");
  auto rlen = tasks.read_i64("raw_len");
  auto coff = tasks.read_i64("curve_offset");
  auto clen = tasks.read_i64("curve_len");
  std::vector<char> all_raw = raw.read_rows(0, raw.size());
  const double* rp = reinterpret_cast<const double*>(all_raw.data());
  // curve losses via a one-member compound read
  hsize_t ncurve = 0;
  {
    io::Handle sp(H5Dget_space(curves_ds.get()), H5Sclose);
    H5Sget_simple_extent_dims(sp.get(), &ncurve, nullptr);
  }
  std::vector<double> closs(ncurve);
  io::Handle mt(H5Tcreate(H5T_COMPOUND, 8), H5Tclose);
  H5Tinsert(mt.get(), "loss", 0, H5T_NATIVE_DOUBLE);
  if (ncurve) H5Dread(curves_ds.get(), mt.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, closs.data());
  std::map<std::int64_t, Snapshot> out;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    Snapshot s{status[i], steps[i], loss[i],
               std::vector<double>(rp + roff[i], rp + roff[i] + rlen[i]),
               std::vector<double>(closs.begin() + coff[i], closs.begin() + coff[i] + clen[i])};
    EXPECT_TRUE(out.emplace(ids[i], s).second) << "duplicate task id " << ids[i];
  }
  return out;
}

std::string temp_path(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("covfit_run_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return (dir / name).string();
}

run::RunOptions options(const std::string& out, int threads) {
  run::RunOptions o;
  o.output = out;
  o.threads = threads;
  o.progress = false;
  o.overwrite = true;
  return o;
}

}  // namespace

TEST(Run, ResultsIdenticalForAnyThreadCount) {
  auto job = job::parse_job(kJob, "job.toml");
  auto a = temp_path("t1.h5"), b = temp_path("t2.h5");
  run::run_job(job, options(a, 1), nullptr);
  run::run_job(job, options(b, 2), nullptr);
  auto sa = snapshot(a), sb = snapshot(b);
  ASSERT_EQ(sa.size(), static_cast<std::size_t>(job.task_count()));
  ASSERT_EQ(sa.size(), sb.size());
  for (const auto& [id, s] : sa) EXPECT_TRUE(s == sb.at(id)) << "task " << id;
}

TEST(Run, ResumeEqualsUninterruptedRun) {
  auto job = job::parse_job(kJob, "job.toml");
  auto full = temp_path("full.h5"), part = temp_path("part.h5");
  run::run_job(job, options(full, 2), nullptr);
  auto o = options(part, 2);
  o.max_tasks = 7;
  auto s1 = run::run_job(job, o, nullptr);
  EXPECT_EQ(s1.computed, 7);
  EXPECT_EQ(snapshot(part).size(), 7u);
  o.overwrite = false;
  o.max_tasks = 5;
  auto s2 = run::run_job(job, o, nullptr);
  EXPECT_EQ(s2.already_done, 7);
  o.max_tasks = -1;
  auto s3 = run::run_job(job, o, nullptr);
  EXPECT_EQ(s3.already_done, 12);
  EXPECT_EQ(s3.computed, job.task_count() - 12);
  auto sf = snapshot(full), sp = snapshot(part);
  ASSERT_EQ(sf.size(), sp.size());
  for (const auto& [id, s] : sf) EXPECT_TRUE(s == sp.at(id)) << "task " << id;
  // A complete file: running again computes nothing.
  auto s4 = run::run_job(job, o, nullptr);
  EXPECT_EQ(s4.computed, 0);
}

TEST(Run, ShardsPartitionTheTasks) {
  auto job = job::parse_job(kJob, "job.toml");
  auto full = snapshot([&] { auto p = temp_path("all.h5"); run::run_job(job, options(p, 2), nullptr); return p; }());
  std::size_t total = 0;
  for (int i = 0; i < 3; ++i) {
    auto p = temp_path("shard" + std::to_string(i) + ".h5");
    auto o = options(p, 2);
    o.shard = {i, 3};
    run::run_job(job, o, nullptr);
    for (const auto& [id, s] : snapshot(p)) {
      EXPECT_EQ(id % 3, i);
      EXPECT_TRUE(s == full.at(id)) << "task " << id;
      ++total;
    }
  }
  EXPECT_EQ(total, full.size());
}

TEST(Run, DifferentJobIsRefusedAndFileUntouched) {
  auto job = job::parse_job(kJob, "job.toml", {"grid.K=3", "grid.restarts=1"});
  auto p = temp_path("refuse.h5");
  run::run_job(job, options(p, 2), nullptr);
  auto before = fs::last_write_time(p);
  auto size = fs::file_size(p);
  auto other = job::parse_job(kJob, "job.toml", {"grid.K=4", "grid.restarts=1"});
  auto o = options(p, 2);
  o.overwrite = false;
  try {
    run::run_job(other, o, nullptr);
    FAIL() << "expected refusal";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("different job"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
  EXPECT_EQ(fs::last_write_time(p), before);
  EXPECT_EQ(fs::file_size(p), size);
  o.overwrite = true;
  EXPECT_NO_THROW(run::run_job(other, o, nullptr));
}

TEST(Run, BadInputDataWritesNoFile) {
  auto p = temp_path("never.h5");
  fs::remove(p);
  auto job = job::parse_job(
      "name = \"bad\"\n[data]\nsource = \"hdf5\"\nfile = \"/nonexistent/in.h5\"\n", "bad.toml");
  try {
    run::run_job(job, options(p, 1), nullptr);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/in.h5"), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(p));
}

TEST(Run, HdfInputWithWrongShapeIsRejectedNamingTheDataset) {
  auto in = temp_path("in.h5");
  {
    io::Handle f(H5Fcreate(in.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
    std::vector<double> pts(30, 0.5), vals(10, 1.0);
    io::write_array(f.get(), "pts", {10, 3}, pts.data());
    io::write_array(f.get(), "vals", {10}, vals.data());
  }
  auto job = job::parse_job("name = \"bad\"\n[data]\nsource = \"hdf5\"\nfile = \"" + in +
                                "\"\npoints_dataset = \"pts\"\nvalues_dataset = \"vals\"\n",
                            "bad.toml");
  try {
    run::run_job(job, options(temp_path("never2.h5"), 1), nullptr);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()), in + ":pts: expected shape (N, 2)");
  }
}

TEST(Run, NewerFormatVersionIsRefusedAndFileUntouched) {
  auto job = job::parse_job(kJob, "job.toml", {"grid.K=3", "grid.restarts=1"});
  auto p = temp_path("newer.h5");
  auto o = options(p, 1);
  o.max_tasks = 2;
  run::run_job(job, o, nullptr);
  {
    io::Handle f(H5Fopen(p.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose);
    io::write_attr(f.get(), "format_version", std::int64_t{io::kFormatVersion + 1});
  }
  auto size = fs::file_size(p);
  auto before = fs::last_write_time(p);
  o.overwrite = false;
  o.max_tasks = -1;
  try {
    run::run_job(job, o, nullptr);
    FAIL() << "expected refusal";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("newer than this covfit's"), std::string::npos) << e.what();
  }
  EXPECT_EQ(fs::file_size(p), size);
  EXPECT_EQ(fs::last_write_time(p), before);
}

TEST(Run, GroupInsteadOfDatasetIsAnInputErrorNamingFileAndPath) {
  auto in = temp_path("groups.h5");
  {
    io::Handle f(H5Fcreate(in.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
    io::create_group(f.get(), "points");
    std::vector<double> vals(10, 1.0);
    io::write_array(f.get(), "values", {10}, vals.data());
  }
  auto job = job::parse_job("name = \"bad\"\n[data]\nsource = \"hdf5\"\nfile = \"" + in + "\"\n", "bad.toml");
  try {
    run::run_job(job, options(temp_path("never3.h5"), 1), nullptr);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()), in + ":points: is a group, not a dataset");
  }
}

TEST(Run, SecondWriterIsRefusedWhileTheLockIsHeld) {
  auto p = temp_path("locked.h5");
  io::OutputLock held(p);
  auto job = job::parse_job(kJob, "job.toml", {"grid.K=3", "grid.restarts=1"});
  try {
    run::run_job(job, options(p, 1), nullptr);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("another covfit process is writing this file"), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(p));
}

TEST(Run, OneLargeFitSplitOverThreadsGivesIdenticalResults) {
  // One task on 40,000 points: with 2 threads the runner splits its evaluations.
  auto job = job::parse_job(
      "name = \"big\"\nseed = 2\n[data]\nsource = \"planted\"\npoints = 40000\nkernels = 4\n"
      "[fit]\nmax_steps = 30\nlog_every = 10\ntarget_losses = [1e-1, 1e-3]\n"
      "[grid]\nparam = [\"full\"]\nK = [4]\n",
      "big.toml");
  auto a = temp_path("big1.h5"), b = temp_path("big2.h5");
  run::run_job(job, options(a, 1), nullptr);
  run::run_job(job, options(b, 2), nullptr);
  auto sa = snapshot(a), sb = snapshot(b);
  ASSERT_EQ(sa.size(), 1u);
  EXPECT_TRUE(sa.at(0) == sb.at(0));
}

// Hardening (issue 10): the lock is keyed on the file, not the name.
TEST(Run, SecondWriterThroughAHardLinkOrSymlinkIsRefused) {
  auto p = temp_path("linked.h5");
  { std::ofstream(p) << "x"; }
  const std::string hard = p + ".hard", sym = p + ".sym";
  fs::remove(hard);
  fs::remove(sym);
  fs::create_hard_link(p, hard);
  fs::create_symlink(fs::absolute(p), sym);
  io::OutputLock held(p);
  for (const auto& other : {hard, sym}) {
    try {
      io::OutputLock second(other);
      ADD_FAILURE() << other << " was not refused";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("another covfit process is writing this file"), std::string::npos)
          << e.what();
    }
  }
  fs::remove(hard);
  fs::remove(sym);
  fs::remove(p);
}

TEST(Run, OutputThatIsTheJobFileOrAnInputIsRefusedAndUntouched) {
  auto dir = temp_path("outin");
  fs::create_directories(dir);
  const std::string job_path = dir + "/job.toml";
  { std::ofstream(job_path) << kJob; }
  auto job = job::load_job(job_path, {"grid.K=3", "grid.restarts=1"});
  auto opt = options(dir + "/./job.toml", 1);
  opt.overwrite = true;
  EXPECT_THROW(run::run_job(job, opt, nullptr), InputError);
  std::ifstream in(job_path);
  std::string first;
  std::getline(in, first);
  EXPECT_EQ(first, "name = \"runtest\"");
}

TEST(Run, ThreadCountAboveTheMachineLimitIsRefusedBeforeAnyFile) {
  auto p = temp_path("threads.h5");
  auto job = job::parse_job(kJob, "job.toml", {"grid.K=3", "grid.restarts=1"});
  auto opt = options(p, 100000);
  try {
    run::run_job(job, opt, nullptr);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("-t 100000: threads must be in 0.."), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(p));
}
