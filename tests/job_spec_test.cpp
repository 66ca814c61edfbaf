#include <gtest/gtest.h>

#include <set>

#include "covfit/core/error.hpp"
#include "covfit/job/spec.hpp"

using covfit::InputError;
using covfit::job::parse_job;

namespace {

const char* kJob = R"(name = "t"
seed = 7
[data]
source = "franke"
grid = 8
[fit]
max_steps = 10
target_losses = [1e-2, 1e-3]
[grid]
param = ["full", "cholesky"]
K = [4, 9, 16]
optimizer = ["adam", "lm"]
restarts = 3
)";

std::string error_of(const std::string& text, std::vector<std::string> sets = {}) {
  try {
    parse_job(text, "job.toml", sets);
  } catch (const InputError& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST(JobSpec, GridIsCartesianProductWithStableIds) {
  auto job = parse_job(kJob, "job.toml");
  ASSERT_EQ(job.task_count(), 2 * 3 * 2 * 3);
  std::set<std::tuple<int, int, int, int>> seen;
  for (std::int64_t id = 0; id < job.task_count(); ++id) {
    auto t = job.task(id);
    EXPECT_EQ(t.id, id);
    seen.insert({static_cast<int>(t.param), t.K, static_cast<int>(t.optimizer), t.restart});
  }
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(job.task_count()));
  // Restart varies fastest, param slowest (documented in FORMAT.md).
  EXPECT_EQ(job.task(1).restart, 1);
  EXPECT_EQ(job.task(3).optimizer, covfit::rbf::Optimizer::lm);
  EXPECT_EQ(job.task(18).param, covfit::rbf::Param::cholesky);
  // Seeds differ between tasks and depend on the job seed.
  EXPECT_NE(job.task(0).seed, job.task(1).seed);
  auto other = parse_job(std::string(kJob).replace(std::string(kJob).find("seed = 7"), 8, "seed = 8"), "job.toml");
  EXPECT_NE(job.task(0).seed, other.task(0).seed);
}

TEST(JobSpec, UnknownKeyNamesFileAndLine) {
  std::string text = "bogus = 1\n" + std::string(kJob);
  EXPECT_EQ(error_of(text), "job.toml:1: unknown key 'bogus' (valid here: name, kind, seed, data, fit, grid)");
  std::string in_grid = std::string(kJob) + "Kk = 1\n";
  EXPECT_EQ(error_of(in_grid).substr(0, 37), "job.toml:14: unknown key 'grid.Kk' (v");
  std::string in_fit = std::string(kJob);
  in_fit.insert(in_fit.find("max_steps"), "lr_wieght = 0.1\n");
  EXPECT_NE(error_of(in_fit).find("job.toml:7: unknown key 'fit.lr_wieght'"), std::string::npos) << error_of(in_fit);
}

TEST(JobSpec, WrongTypesAndValuesAreRejectedWithPlace) {
  std::string t1 = std::string(kJob);
  t1.replace(t1.find("max_steps = 10"), 14, "max_steps = \"ten\"");
  EXPECT_EQ(error_of(t1), "job.toml:7: 'fit.max_steps': expected an integer");
  std::string t2 = std::string(kJob);
  t2.replace(t2.find("\"cholesky\""), 10, "\"cholesky2\"");
  EXPECT_NE(error_of(t2).find("job.toml:10: 'grid.param': unknown parameterisation 'cholesky2'"), std::string::npos) << error_of(t2);
  EXPECT_NE(error_of("name = \"x\"\n").find("missing [data]"), std::string::npos);
  EXPECT_NE(error_of("name = \"x\"\n[data]\nsource = \"hdf5\"\n").find("'data.file': required"), std::string::npos);
  EXPECT_NE(error_of("name = 'x'\n[data\n").find("job.toml:2"), std::string::npos);
}

TEST(JobSpec, OverridesReplaceValuesAndChangeHash) {
  auto base = parse_job(kJob, "job.toml");
  auto job = parse_job(kJob, "job.toml", {"fit.max_steps=25", "grid.K=[2]", "grid.param=isotropic"});
  EXPECT_EQ(job.fit.base.max_steps, 25);
  EXPECT_EQ(job.task_count(), 1 * 1 * 2 * 3);
  EXPECT_EQ(job.task(0).param, covfit::rbf::Param::isotropic);
  EXPECT_NE(job.hash, base.hash);
  EXPECT_EQ(parse_job(kJob, "job.toml").hash, base.hash);  // hash is a function of the text
  EXPECT_NE(error_of(kJob, {"grid.Kk=3"}).find("unknown key 'grid.Kk'"), std::string::npos);
  EXPECT_NE(error_of(kJob, {"novalue"}).find("--set novalue"), std::string::npos);
}

TEST(JobSpec, ShardParsing) {
  auto s = covfit::job::parse_shard("2/5");
  EXPECT_EQ(s.index, 2);
  EXPECT_EQ(s.count, 5);
  EXPECT_THROW(covfit::job::parse_shard("5/5"), InputError);
  EXPECT_THROW(covfit::job::parse_shard("a/b"), InputError);
  EXPECT_THROW(covfit::job::parse_shard("1"), InputError);
}

namespace {
// Sets Slurm array variables for one scope (empty value: unset).
struct SlurmEnv {
  SlurmEnv(const char* id, const char* min, const char* max, const char* count) {
    put("SLURM_ARRAY_TASK_ID", id);
    put("SLURM_ARRAY_TASK_MIN", min);
    put("SLURM_ARRAY_TASK_MAX", max);
    put("SLURM_ARRAY_TASK_COUNT", count);
  }
  ~SlurmEnv() {
    for (const char* v : {"SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX",
                          "SLURM_ARRAY_TASK_COUNT"})
      unsetenv(v);
  }
  static void put(const char* k, const char* v) {
    if (*v) setenv(k, v, 1);
    else unsetenv(k);
  }
};
}  // namespace

// sbatch --array=1-8 (Slurm's common 1-based form): every shard 0..7 runs once. The old
// code took index = TASK_ID, so shard 0 never ran and task 8 failed on a --shard 8/8.
TEST(JobSpec, ShardFromOneBasedSlurmArray) {
  std::set<int> seen;
  for (int id = 1; id <= 8; ++id) {
    std::string ids = std::to_string(id);
    SlurmEnv env(ids.c_str(), "1", "8", "8");
    auto s = covfit::job::parse_shard("");
    EXPECT_EQ(s.count, 8);
    EXPECT_EQ(s.index, id - 1);
    seen.insert(s.index);
  }
  EXPECT_EQ(seen.size(), 8u);
  {
    SlurmEnv env("103", "100", "107", "8");  // --array=100-107
    EXPECT_EQ(covfit::job::parse_shard("").index, 3);
  }
  {
    SlurmEnv env("0", "", "", "4");  // no _MIN (old Slurm): 0-based
    EXPECT_EQ(covfit::job::parse_shard("").index, 0);
  }
  {
    SlurmEnv env("3", "1", "7", "4");  // --array=1-7:2: not contiguous
    try {
      covfit::job::parse_shard("");
      ADD_FAILURE() << "no error";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("not one contiguous range"), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find("--shard 3"), std::string::npos) << e.what();
    }
  }
  {
    SlurmEnv env("2", "1", "8", "8");  // an explicit --shard with another count
    EXPECT_THROW(covfit::job::parse_shard("1/4"), InputError);
    EXPECT_EQ(covfit::job::parse_shard("5/8").index, 5);
  }
  EXPECT_EQ(covfit::job::parse_shard("").count, 1);  // outside an array
}

TEST(JobSpec, InputPathsResolveAgainstTheJobFile) {
  const std::string sweep = "name = \"s\"\nkind = \"sweep\"\n[data]\nsource = \"hdf5\"\nfile = \"case.h5\"\n[sweep]\nlambda = [1.0]\n";
  EXPECT_EQ(parse_job(sweep, "/some/dir/job.toml").cov_data[0].file, "/some/dir/case.h5");
  EXPECT_EQ(parse_job(sweep, "rel/jobs/job.toml").cov_data[0].file, "rel/jobs/case.h5");
  EXPECT_EQ(parse_job(sweep, "job.toml").cov_data[0].file, "case.h5");
  std::string up = sweep;
  up.replace(up.find("case.h5"), 7, "../data/case.h5");
  EXPECT_EQ(parse_job(up, "/some/dir/job.toml").cov_data[0].file, "/some/data/case.h5");
  std::string abs = sweep;
  abs.replace(abs.find("case.h5"), 7, "/abs/case.h5");
  EXPECT_EQ(parse_job(abs, "/some/dir/job.toml").cov_data[0].file, "/abs/case.h5");
  // Given on the command line: relative to the current directory, as typed.
  EXPECT_EQ(parse_job(sweep, "/some/dir/job.toml", {"data.file=other.h5"}).cov_data[0].file, "other.h5");
  const std::string fit = "name = \"f\"\n[data]\nsource = \"hdf5\"\nfile = \"pts.h5\"\n";
  EXPECT_EQ(parse_job(fit, "/jobs/x/job.toml").data[0].file, "/jobs/x/pts.h5");
}

TEST(JobSpec, OutOfRangeAndNonPositiveValuesAreRejected) {
  EXPECT_NE(error_of(kJob, {"fit.max_steps=4294967297"}).find("'fit.max_steps': integer 4294967297 is out of range"),
            std::string::npos) << error_of(kJob, {"fit.max_steps=4294967297"});
  EXPECT_NE(error_of(kJob, {"grid.K=[4294967305]"}).find("out of range"), std::string::npos);
  EXPECT_NE(error_of(kJob, {"grid.lr_weight=[0.01, 0.0]"}).find("'grid.lr_weight': learning rates must be > 0"),
            std::string::npos) << error_of(kJob, {"grid.lr_weight=[0.01, 0.0]"});
  EXPECT_NE(error_of(kJob, {"fit.sigma_min=0.0"}).find("'fit.sigma_min': must be > 0"), std::string::npos);
  EXPECT_NE(error_of(kJob, {"fit.clip_grad=-1.0"}).find("clip_grad"), std::string::npos);
  EXPECT_NE(error_of(kJob, {"fit.eps=0.0"}).find("'fit.eps'"), std::string::npos);
}

// Hardening (issue 10): every one of these is an InputError naming the key, before any
// work starts.
TEST(JobSpecHostile, NonFiniteNumbersAreRejectedNamingTheKey) {
  for (const char* set : {"fit.lr_weight=inf", "fit.width_scale=inf", "fit.target_loss=nan",
                          "data.noise=inf", "grid.lr_shape=[1e-3, -inf]"}) {
    const std::string err = error_of(kJob, {set});
    const std::string key = std::string(set).substr(0, std::string(set).find('='));
    EXPECT_NE(err.find("'" + key + "': expected a finite number"), std::string::npos) << set << ": " << err;
  }
}

TEST(JobSpecHostile, UpperBoundsOnPointsKernelsRestartsAndTasks) {
  EXPECT_NE(error_of(kJob, {"data.source=\"planted\"", "data.points=2000000000"}).find("'data.points': must be in [1, 100000000]"), std::string::npos);
  EXPECT_NE(error_of(kJob, {"data.source=\"planted\"", "data.kernels=1000000"}).find("'data.kernels': must be in [1, 4096]"), std::string::npos);
  EXPECT_NE(error_of(kJob, {"grid.restarts=2147483647"}).find("'grid.restarts': must be in"), std::string::npos);
  // 3 x 2 x 2 x 1e6 restarts = 1.2e7 tasks > 1e7
  EXPECT_NE(error_of(kJob, {"grid.restarts=1000000"}).find("job.toml: the grid has 1.2e+07 tasks; at most 10000000"),
            std::string::npos);
}

TEST(JobSpecHostile, ExplicitEmptyDefaultListIsAccepted) {
  auto job = parse_job(kJob, "job.toml", {"fit.target_losses=[]"});
  EXPECT_TRUE(job.fit.base.target_losses.empty());
  EXPECT_NE(error_of(kJob, {"grid.K=[]"}).find("'grid.K': must not be empty"), std::string::npos);
}

TEST(JobSpecHostile, ControlCharacterInANameIsNamedNotCutShort) {
  const std::string err = error_of("name = \"a\\u0000b\"\n[data]\nsource = \"franke\"\n");
  EXPECT_EQ(err, "job.toml:1: 'name': contains the control character U+0000 (names must be printable)");
  // Any other message echoing such a value shows it escaped, on one line.
  const std::string kind = error_of(kJob, {"kind=\"a\\u0000b\\n\""});
  EXPECT_NE(kind.find("'a\\x00b\\x0a' is not a known job kind"), std::string::npos) << kind;
}

TEST(JobSpecHostile, ShardCountBeyondIntIsRefusedNotWrapped) {
  for (const char* spec : {"1/4294967298", "4294967297/4", "1/", "/4", "-1/4", "0/0", "1/99999999999"}) {
    try {
      covfit::job::parse_shard(spec);
      ADD_FAILURE() << spec << " was accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("--shard ") + spec), std::string::npos) << e.what();
    }
  }
  auto s = covfit::job::parse_shard("3/8");
  EXPECT_EQ(s.index, 3);
  EXPECT_EQ(s.count, 8);
}
