// covfit command line: a thin layer over the library. Exit codes: 0 ok, 1 runtime
// failure, 2 bad input (job file, data, paths, flags), 128+signal when interrupted.
#include <csignal>
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <omp.h>

#include "covfit/core/error.hpp"
#include "covfit/core/limits.hpp"
#include "covfit/io/results_file.hpp"
#include "covfit/io/schema.hpp"
#include "covfit/job/spec.hpp"
#include "covfit/report/report.hpp"
#include "covfit/run/finalize.hpp"
#include "covfit/run/merge.hpp"
#include "covfit/run/runner.hpp"

namespace {

std::atomic<bool> g_stop{false};
std::atomic<bool> g_writing{false};  // the run has started touching its output
volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_signal(int sig) {
  // Before the output is touched there is nothing to save: exit at once (loading a large
  // input or generating data does not poll the stop flag). Second signal: likewise.
  if (!g_writing.load() || g_stop.load()) std::_Exit(128 + sig);
  g_signal = sig;
  g_stop.store(true);
}

// argv as one shell-quoted line (for the results file's provenance).
std::string command_line(int argc, char** argv) {
  std::string out;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    const bool plain = !a.empty() && a.find_first_not_of(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == std::string::npos;
    if (!plain) {
      std::string q = "'";
      for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
      a = q + "'";
    }
    out += (i ? " " : "") + a;
  }
  return out;
}

int cmd_run(const std::string& job_path, std::string output, const std::vector<std::string>& sets,
            const std::string& shard_spec, int threads, bool overwrite, bool quiet,
            long long max_tasks, double flush_every, const std::string& command) {
  covfit::job::Job job = covfit::job::load_job(job_path, sets);
  covfit::run::RunOptions opt;
  opt.shard = covfit::job::parse_shard(shard_spec);
  if (output.empty()) {
    output = job.name;
    if (opt.shard.count > 1) output += ".shard" + std::to_string(opt.shard.index) + "of" + std::to_string(opt.shard.count);
    output += ".h5";
  }
  opt.output = output;
  opt.threads = threads;
  opt.overwrite = overwrite;
  opt.progress = !quiet;
  opt.max_tasks = max_tasks;
  opt.flush_seconds = flush_every;
  opt.command_line = command;
  opt.writing = &g_writing;
  covfit::check_threads(threads, "-t " + std::to_string(threads));
  if (!(flush_every >= 0.01 && flush_every <= 3600))
    throw covfit::InputError("--flush-every", "must be in [0.01, 3600] seconds");
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  if (!quiet) std::fprintf(stderr, "covfit: job '%s': %lld %s in shard %d/%d -> %s\n", job.name.c_str(),
               static_cast<long long>(covfit::run::shard_size(job, opt.shard.index, opt.shard.count)),
               job.kind == "sweep" ? "work units" : "tasks",
               opt.shard.index, opt.shard.count, output.c_str());
  covfit::run::RunSummary s = covfit::run::run_job(job, opt, &g_stop);
  const char* items = job.kind == "sweep" ? "work units" : "tasks";
  if (s.interrupted) {
    std::fprintf(stderr,
                 "covfit: interrupted by signal %d after %lld new %s; %s is consistent.\n"
                 "covfit: to resume, run the same command again (without --overwrite).\n",
                 static_cast<int>(g_signal), static_cast<long long>(s.computed), items, output.c_str());
    return 128 + static_cast<int>(g_signal);
  }
  if (!quiet) std::fprintf(stderr, "covfit: %lld %s computed (%lld were already done) in %.2f s\n",
               static_cast<long long>(s.computed), items, static_cast<long long>(s.already_done), s.seconds);
  if (!quiet) std::cout << covfit::report::fit_summary_table(output);
  std::cout << "results: " << output << "\n";
  return 0;
}

// Parses the job, then opens (or generates) every input and checks its datasets and
// shapes, as `run` would before creating the output file.
int cmd_validate(const std::string& job_path, const std::vector<std::string>& sets, int threads) {
  covfit::check_threads(threads, "-t " + std::to_string(threads));
  covfit::job::Job job = covfit::job::load_job(job_path, sets);
  covfit::run::JobPlan plan = covfit::run::plan_job(job);
  if (threads <= 0) threads = std::max(1, omp_get_max_threads());
  if (job.kind == "sweep")  // a sweep task (data set, model) runs as work units (part, lambda block)
    std::printf("%s: ok: job '%s' (%s), %lld tasks in %lld work units, hash %s\n", job_path.c_str(),
                job.name.c_str(), job.kind.c_str(), static_cast<long long>(job.sweep_task_count()),
                static_cast<long long>(plan.tasks), job.hash.c_str());
  else
    std::printf("%s: ok: job '%s' (%s), %lld tasks, hash %s\n", job_path.c_str(), job.name.c_str(),
                job.kind.c_str(), static_cast<long long>(plan.tasks), job.hash.c_str());
  for (const auto& d : plan.data) std::printf("  input    %s (opened and checked)\n", d.c_str());
  std::printf("  output   about %.1f MB before compression\n", plan.output_bytes / 1e6);
  std::printf("  time     roughly %.3g CPU s, ~%.3g s on %d threads (from problem sizes, not "
              "measured; Adam tasks counted to max_steps)\n",
              plan.cpu_seconds, plan.cpu_seconds / threads, threads);
  return 0;
}

int cmd_gen_planted(const covfit::job::CovDataSpec& spec, const std::string& out, bool overwrite) {
  covfit::run::write_planted_file(spec, out, overwrite);
  std::cout << out << ": X (" << spec.n << " x " << spec.m << "), S (" << spec.m << " x " << spec.m
            << "), W0 (" << spec.n << " x " << spec.n << ")\n"
            << "use it in a sweep job as: [data] source = \"hdf5\", file = \"" << out
            << "\", x_dataset = \"X\", s_dataset = \"S\"\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "covfit: batch fitting of 2D RBF models (five covariance parameterisations, Adam / "
      "Levenberg-Marquardt / variable projection) and covariance lambda-sweeps (linearised "
      "closed form, exact solutions, cross-validated R2), with results streamed to HDF5.\n"
      "Examples:\n"
      "  covfit run jobs/demo.toml -o demo.h5         fit the demo grid\n"
      "  covfit run jobs/sweep_planted.toml           200-lambda, 5-fold sweep\n"
      "  covfit gen planted --n 500 --m 200 -o case.h5  a covariance problem to share\n"
      "  covfit run job.toml --set fit.max_steps=500  override a job key\n"
      "  covfit run job.toml --shard 3/8              one shard of a cluster array\n"
      "  covfit merge -o all.h5 job.shard*of8.h5        merge a finished array\n"
      "  covfit inspect demo.h5                        progress, best tasks, summary\n"
      "  covfit finalize old.h5                        store the summary in a complete file\n"
      "Exit codes: 0 ok, 1 runtime failure, 2 bad input, 128+N interrupted by signal N."};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("covfit ") + COVFIT_VERSION);

  std::string job_path, output, shard, file;
  std::vector<std::string> sets;
  int threads = 0, best = 5;
  bool overwrite = false, quiet = false, json = false;
  long long max_tasks = -1;
  double flush_every = 2.0;

  CLI::App* run = app.add_subcommand("run", "run a job (resumes an existing output file of the same job)");
  run->add_option("job", job_path, "job file (TOML)")->required();
  run->add_option("-o,--output", output, "results file (default: <job name>.h5)");
  run->add_option("--set", sets, "override a job key: dotted.key=value (repeatable)");
  run->add_option("--shard", shard, "run shard i/N of the tasks (default: from SLURM_ARRAY_TASK_ID/COUNT)");
  run->add_option("-t,--threads", threads, "worker threads (default: all cores)")->check(CLI::NonNegativeNumber);
  run->add_flag("--overwrite", overwrite, "replace an existing output file instead of resuming it");
  run->add_flag("-q,--quiet", quiet, "no progress or summary table");
  run->add_option("--max-tasks", max_tasks, "stop after computing this many tasks (testing; resume later)");
  run->add_option("--flush-every", flush_every, "seconds between flushes; SWMR readers see new rows after each (default 2)")
      ->check(CLI::Range(0.01, 3600.0));

  CLI::App* validate = app.add_subcommand(
      "validate", "check a job file and open its inputs; print tasks, output size, rough time");
  validate->add_option("job", job_path, "job file (TOML)")->required();
  validate->add_option("-t,--threads", threads, "threads for the time estimate (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  validate->add_option("--set", sets, "override a job key: dotted.key=value (repeatable)");

  CLI::App* inspect = app.add_subcommand("inspect", "show a results file: job, progress, best tasks");
  inspect->add_option("file", file, "results file (.h5)")->required();
  inspect->add_flag("--json", json, "machine-readable output");
  inspect->add_option("--best", best, "how many best tasks to list")->check(CLI::PositiveNumber);

  CLI::App* schema = app.add_subcommand(
      "schema", "print the results file schema (tables, columns, dtypes, units) as JSON");

  CLI::App* merge = app.add_subcommand(
      "merge", "merge the complete shard files of one job into one file (e.g. after a Slurm array)");
  std::vector<std::string> shard_files;
  merge->add_option("-o,--output", output, "merged results file")->required();
  merge->add_option("shards", shard_files, "shard files (every shard 0..N-1 exactly once)")->required();
  merge->add_flag("--overwrite", overwrite, "replace an existing output file");

  CLI::App* finalize = app.add_subcommand(
      "finalize", "write what a complete file gets when its run ends (the fit summary /fit/summary); "
                  "brings a complete format-2 file to the current format");
  finalize->add_option("file", file, "results file (.h5)")->required();

  CLI::App* gen = app.add_subcommand("gen", "write a generated data set to HDF5");
  gen->require_subcommand(1);
  CLI::App* gen_planted = gen->add_subcommand(
      "planted", "planted covariance problem: X (n x m), S (m x m), planted W0 (n x n)");
  covfit::job::CovDataSpec planted;
  std::string gen_out;
  gen_planted->add_option("--n", planted.n, "input channels (rows of X)")->capture_default_str()->check(CLI::Range(2, 1000000));
  gen_planted->add_option("--m", planted.m, "stimuli (columns of X)")->capture_default_str()->check(CLI::Range(3, 1000000));
  gen_planted->add_option("--rank", planted.rank, "signal rank of X")->capture_default_str()->check(CLI::PositiveNumber);
  gen_planted->add_option("--noise", planted.noise, "relative noise on S")->capture_default_str()->check(CLI::NonNegativeNumber);
  gen_planted->add_option("--w0-scale", planted.w0_scale, "spectral size of W0")->capture_default_str();
  gen_planted->add_option("--seed", planted.seed, "generator seed")->capture_default_str();
  gen_planted->add_option("-o,--output", gen_out, "output file")->required();
  gen_planted->add_flag("--overwrite", overwrite, "replace an existing file");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  try {
    if (*run) return cmd_run(job_path, output, sets, shard, threads, overwrite, quiet, max_tasks, flush_every,
                             command_line(argc, argv));
    if (*validate) return cmd_validate(job_path, sets, threads);
    if (*gen_planted) return cmd_gen_planted(planted, gen_out, overwrite);
    if (*schema) {
      std::cout << covfit::io::schema_json();
      return 0;
    }
    if (*merge) {
      auto m = covfit::run::merge_shards(shard_files, output, overwrite);
      std::cout << output << ": merged " << m.tasks << " tasks from " << m.shards << " shards\n";
      return 0;
    }
    if (*finalize) {
      auto r = covfit::run::finalize_file(file);
      std::cout << file << ": finalized (" << r.job_kind << ", " << r.tasks << " tasks"
                << (r.from_version != covfit::io::kFormatVersion
                        ? ", format " + std::to_string(r.from_version) + " -> " +
                              std::to_string(covfit::io::kFormatVersion)
                        : std::string())
                << ")\n";
      return 0;
    }
    if (*inspect) {
      std::cout << (json ? covfit::report::inspect_json(file, best)
                         : covfit::report::inspect_text(file, best));
      return 0;
    }
  } catch (const covfit::InputError& e) {
    std::fprintf(stderr, "covfit: error: %s\n", covfit::InputError::one_line(e.what()).c_str());
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "covfit: failed: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "covfit: failed: %s\n", covfit::InputError::one_line(e.what()).c_str());
    // After a failed write (disk full) HDF5 may still hold a half-closed file, and its
    // atexit clean-up would retry the write and crash: leave without it.
    std::fflush(nullptr);
    std::_Exit(1);
  }
  return 0;
}
