// Job specification: what a TOML job file says, validated, plus the grid of tasks.
//
// A job names its data sets, the task kind, fit (or sweep) settings and a grid. The
// grid is the Cartesian product of its axes x restarts; every task has a stable id =
// its index in that product (restart varies fastest), so a task's result depends only
// on (job, id) — never on threads, shards or schedule.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "covfit/cov/sweep.hpp"
#include "covfit/rbf/fit.hpp"
#include "covfit/rbf/model.hpp"

namespace covfit::job {

// A 2D point data set for RBF fitting.
struct DataSpec {
  std::string name;              // unique within the job
  std::string source = "franke";  // franke | planted | hdf5
  int grid = 64;                 // franke: points on a grid x grid lattice in [0,1]^2
  int points = 4096;             // planted: number of points (uniform in [0,1]^2)
  int kernels = 9;               // planted: number of planted anisotropic kernels
  double noise = 0.0;            // planted: std of additive Gaussian noise
  double anisotropy = 4.0;       // planted: max ratio of the two sigmas
  std::uint64_t seed = 1;        // planted: generator seed
  std::string file;              // hdf5: input file
  std::string points_dataset = "points";  // hdf5: (N, 2) float dataset
  std::string values_dataset = "values";  // hdf5: (N,) float dataset
  // hdf5 grid (issue 8): a 2-D (ny, nx) dataset of values on a regular grid; NaN cells are
  // masked. extent = {x of column 0, x of column nx-1, y of row 0, y of row ny-1}; empty:
  // square cells with the longer side spanning [0, 1].
  std::string grid_dataset;               // non-empty: load a grid instead of points/values
  std::vector<double> extent;
  bool standardize = false;               // values -> (v - mean) / std (over unmasked)
};

using rbf::Optimizer;

// [fit]: the optimisation settings all tasks share. `base` holds them with their
// defaults (rbf::FitConfig is the one place defaults live); each task then sets its own
// param, K, optimizer, learning rates and seed from the grid.
struct FitSettings {
  rbf::FitConfig base;
  double target_rel_variance = 0.0;  // stop when loss <= this * var(values) (0: off)
};

// Coordinates of one task in the grid.
struct TaskCoord {
  std::int64_t id = 0;
  int data = 0;                  // index into Job::data
  rbf::Param param = rbf::Param::full;
  int K = 1;
  Optimizer optimizer = Optimizer::adam;
  double lr_weight = 0, lr_centre = 0, lr_shape = 0;
  int restart = 0;
  std::uint64_t seed = 0;        // derived from (job seed, id)
};

struct FitGrid {
  std::vector<int> data;         // indices into Job::data (default: all)
  std::vector<rbf::Param> param;
  std::vector<int> K;
  std::vector<Optimizer> optimizer;
  std::vector<double> lr_weight, lr_centre, lr_shape;
  int restarts = 1;
  bool same_start = false;  // tasks differing only in optimizer / learning rates share a seed
};

// A covariance data set (kind = "sweep"): X (n x m) and S (m x m).
struct CovDataSpec {
  std::string name;
  std::string source = "planted";  // planted | hdf5
  int n = 500, m = 200, rank = 40;  // planted sizes; rank of the signal in X
  double noise = 0.1;              // planted: relative noise on S (and on X)
  double w0_scale = 0.5;           // planted: spectral size of the planted W0
  std::uint64_t seed = 1;
  std::string file;                // hdf5 input
  std::string x_dataset = "X", s_dataset = "S";
};

// [sweep]: models and folds here; everything else every task shares lives in `base`
// (cov::SweepConfig is the one place its defaults live; per task the runner sets the
// model, folds and threads).
using CovModel = cov::SweepModel;
std::string cov_model_name(CovModel m);

struct SweepSettings {
  std::vector<CovModel> models = {CovModel::free};
  int folds = 5;                    // k-fold over stimuli (ignored when val is given)
  std::vector<int> val;             // explicit validation stimuli (one fold)
  std::uint64_t fold_seed = 0;
  cov::SweepConfig base;            // lambdas (as given, before units), lambda_d, exact, ...
};

// One sweep task: a (data set, model) pair.
struct SweepTask {
  std::int64_t id = 0;
  int data = 0;
  CovModel model = CovModel::free;
};

// One work unit of a sweep task: one part (the full data, or one fold) over one block of
// the lambda grid (cov::sweep_blocks). Units commit separately; the task's summary is
// assembled from them when the file is complete.
struct SweepUnit {
  std::int64_t id = 0;
  SweepTask task;
  int part = -1;   // -1: the full data; 0..folds-1: that fold
  int block = 0, blocks = 1;
};

struct Job {
  std::string path;              // job file as given (for messages)
  std::string name;
  std::string kind = "fit";      // fit | sweep
  std::uint64_t seed = 0;
  std::string text;              // effective TOML text (after --set overrides)
  std::string hash;              // hex FNV-1a 64 of `text`
  std::string resolved_text;     // `text` plus every key's value as used: defaults, input
                                 // paths resolved against the job file (provenance only)
  std::vector<DataSpec> data;    // kind = fit
  FitSettings fit;
  FitGrid grid;
  std::vector<CovDataSpec> cov_data;  // kind = sweep
  SweepSettings sweep;

  std::int64_t task_count() const;
  // Shards take ids whose key % count == index: the id for fits; for sweeps the unit's
  // chain (task, part), so a shard computes a part's lambda blocks in order, each from
  // the end of the one before.
  std::int64_t shard_key(std::int64_t id) const;
  TaskCoord task(std::int64_t id) const;          // kind = fit
  // kind = sweep: task_count() counts work units (what the runner, shards and resume
  // handle); a task is a (data set, model) pair, ids data slowest, model fastest.
  SweepTask sweep_task(std::int64_t id) const;
  std::int64_t sweep_task_count() const;
  SweepUnit sweep_unit(std::int64_t id) const;
  int sweep_folds() const;                         // folds per task (1 with explicit val)
  int sweep_blocks(CovModel model) const;          // lambda blocks per part
  std::int64_t sweep_units_per_data() const;
};

// Parse and validate. `overrides` are "dotted.key=value" strings (--set); the value is
// parsed as a TOML value, or taken as a string if it is not one. Throws InputError
// naming file:line (or the override) on any problem, including unknown keys.
Job load_job(const std::string& path, const std::vector<std::string>& overrides = {});
Job parse_job(const std::string& text, const std::string& path,
              const std::vector<std::string>& overrides = {});

// Shard selection: task ids with id % count == index.
struct Shard {
  int index = 0, count = 1;
};
// Parses "i/N"; empty -> from a Slurm array (index = SLURM_ARRAY_TASK_ID - _MIN, count =
// SLURM_ARRAY_TASK_COUNT; any contiguous --array range) or 0/1 outside one. Throws
// InputError for a non-contiguous array or a --shard count that disagrees with the array.
Shard parse_shard(const std::string& spec);

std::uint64_t mix_seed(std::uint64_t job_seed, std::uint64_t id);  // splitmix64-based

}  // namespace covfit::job
