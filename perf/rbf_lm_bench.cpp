// Second-order vs first-order fits on a real grid (issue 8): Adam, LM and VarPro (and the
// hybrids) from the same initialisation, same bounds, one after another in one process, so
// their relative loss vs wall time is comparable in one run.
//
// Usage: rbf_lm_bench FILE DATASET [--K 25] [--opt adam,varpro,lm] [--adam-steps 20000]
//                     [--lm-steps 300] [--threads 1] [--rel-tol 1e-4] [--patience 10]
//                     [--curve]
//        rbf_lm_bench FILE DATASET --normal-equations 100,400   (culled vs dense J^T J)
// The data set is loaded like `[data] source = "hdf5", grid_dataset = DATASET,
// standardize = true` (so loss = relative loss), `full` parameterisation, greedy
// initialisation from seed 8 (task 0 of jobs/real_grid_lm.toml), the job's Adam learning
// rates (0.01 / 0.001 / 0.001, decay to 0.1). Prints one row per optimiser: final relative
// loss, steps, seconds (initialisation excluded: it is shared), seconds to each level.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include <cblas.h>
#include <xsimd/xsimd.hpp>

#include "covfit/data/points.hpp"
#include "covfit/job/spec.hpp"
#include "covfit/rbf/fit.hpp"
#include "rbf/weights.hpp"

using namespace covfit;

namespace {
std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string t; std::getline(ss, t, ',');) out.push_back(t);
  return out;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s FILE DATASET [options]\n", argv[0]);
    return 2;
  }
  int K = 25, adam_steps = 20000, lm_steps = 300, threads = 1, patience = 10;
  double rel_tol = 1e-4;
  bool curve = false;
  std::vector<int> ne_K;  // --normal-equations K1,K2,...: time one VarPro normal-equations build
  std::vector<std::string> opts = {"adam", "varpro", "lm"};
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) { std::fprintf(stderr, "%s needs a value\n", a.c_str()); std::exit(2); }
      return argv[++i];
    };
    if (a == "--K") K = std::stoi(next());
    else if (a == "--opt") opts = split(next());
    else if (a == "--adam-steps") adam_steps = std::stoi(next());
    else if (a == "--lm-steps") lm_steps = std::stoi(next());
    else if (a == "--threads") threads = std::stoi(next());
    else if (a == "--rel-tol") rel_tol = std::stod(next());
    else if (a == "--patience") patience = std::stoi(next());
    else if (a == "--curve") curve = true;
    else if (a == "--normal-equations")
      for (const auto& k : split(next())) ne_K.push_back(std::stoi(k));
    else { std::fprintf(stderr, "unknown option %s\n", a.c_str()); return 2; }
  }
  openblas_set_num_threads(1);  // as covfit run inside tasks
  job::DataSpec spec;
  spec.name = "bench";
  spec.source = "hdf5";
  spec.file = argv[1];
  spec.grid_dataset = argv[2];
  spec.standardize = true;
  const data::PointData d = data::load(spec);
  rbf::Points pts{d.x, d.y, d.values, d.grid ? &*d.grid : nullptr};
  if (!ne_K.empty()) {
    // One VarPro normal-equations build (J^T J of the projected Jacobian, P = 5K columns)
    // at the greedy start, dense row chunks vs culled tiles (cull_tol 1e-10), min of 3.
    const auto tiles = rbf::TiledPoints<double>::from_grid(*d.grid);
    std::printf("# %s:%s N = %zu, full, VarPro normal equations at the greedy start, xsimd %s, 1 thread, min of 3\n",
                argv[1], argv[2], d.values.size(), xsimd::default_arch::name());
    std::printf("%6s %6s %10s %10s %8s %12s %12s\n", "K", "P", "dense_s", "culled_s", "speedup", "pairs_frac", "max|dA|/|A|");
    for (int k : ne_K) {
      rbf::FitConfig c;
      c.param = rbf::Param::full;
      c.K = k;
      c.seed = job::mix_seed(8, 0);
      c.cull_tol = 1e-10;
      std::vector<double> raw = rbf::initial_raw(c, pts);
      std::vector<int> cols;
      const int width = rbf::raw_width(c.param), ws = rbf::detail::weight_slot(c.param);
      for (int j = 0; j < k; ++j)
        for (int s = 0; s < width; ++s)
          if (s != ws) cols.push_back(j * width + s);
      std::vector<rbf::Canonical> can(static_cast<std::size_t>(k));
      rbf::raw_to_canonical(c.param, raw, can);
      std::vector<std::size_t> begin;
      std::vector<std::uint32_t> ks;
      rbf::tile_kernel_pairs(tiles, can, c.cull_tol, begin, ks);
      std::vector<double> Ad, gd, At, gt;
      auto time = [&](const rbf::TiledPoints<double>* t, std::vector<double>& A, std::vector<double>& g) {
        double best = 1e300;
        for (int rep = 0; rep < 3; ++rep) {
          auto t0 = std::chrono::steady_clock::now();
          rbf::detail::normal_equations(c, pts, t, raw, cols, true, A, g);
          best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
        return best;
      };
      const double td = time(nullptr, Ad, gd), tt = time(&tiles, At, gt);
      double amax = 0, dmax = 0;
      for (std::size_t i = 0; i < Ad.size(); ++i) {
        amax = std::max(amax, std::abs(Ad[i]));
        dmax = std::max(dmax, std::abs(Ad[i] - At[i]));
      }
      std::printf("%6d %6zu %10.3f %10.3f %8.1f %12.3f %12.2e\n", k, cols.size(), td, tt, td / tt,
                  static_cast<double>(ks.size()) / (static_cast<double>(tiles.tiles()) * k), dmax / amax);
      std::fflush(stdout);
    }
    return 0;
  }
  const std::vector<double> levels = {0.26, 0.25, 0.24, 0.23, 0.225, 0.22, 0.215, 0.21};

  rbf::FitConfig base;
  base.param = rbf::Param::full;
  base.K = K;
  base.seed = job::mix_seed(8, 0);  // task 0 of jobs/real_grid_lm.toml (job seed 8)
  base.init = rbf::Init::greedy;
  base.lr[0] = 0.01;
  base.lr[1] = 0.001;
  base.lr[2] = 0.001;
  base.lr_final_ratio = 0.1;
  base.rel_tol = rel_tol;
  base.patience = patience;
  base.log_every = 10;
  base.threads = threads;
  base.target_losses = levels;
  const auto t_init = std::chrono::steady_clock::now();
  const std::vector<double> raw0 = rbf::initial_raw(base, pts);
  const double init_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_init).count();
  std::printf("# %s:%s N = %zu, full, K = %d, f64, xsimd arch %s, threads %d, greedy init %.2f s (shared, not counted)\n",
              argv[1], argv[2], d.values.size(), K, xsimd::default_arch::name(), threads, init_s);
  std::printf("%-12s %10s %7s %9s %-10s", "optimizer", "rel_loss", "steps", "seconds", "status");
  for (double l : levels) std::printf(" %7g", l);
  std::printf("\n");
  for (const auto& name : opts) {
    rbf::FitConfig cfg = base;
    if (name == "adam") { cfg.optimizer = rbf::Optimizer::adam; cfg.max_steps = adam_steps; }
    else if (name == "lm") { cfg.optimizer = rbf::Optimizer::lm; cfg.max_steps = lm_steps; }
    else if (name == "varpro") { cfg.optimizer = rbf::Optimizer::varpro; cfg.max_steps = lm_steps; }
    else { std::fprintf(stderr, "unknown optimizer %s\n", name.c_str()); return 2; }
    const rbf::FitResult r = rbf::fit_from(cfg, pts, raw0);
    std::printf("%-12s %10.5f %7d %9.2f %-10s", name.c_str(), r.final_loss, r.steps, r.seconds,
                std::string(rbf::status_name(r.status)).c_str());
    for (double s : r.seconds_to_target) {
      if (std::isnan(s)) std::printf(" %7s", "-");
      else std::printf(" %7.1f", s);
    }
    std::printf("\n");
    if (curve)
      for (const auto& c : r.curve) std::printf("#   %s step %d  %.2f s  loss %.6f\n", name.c_str(), c.step, c.seconds, c.loss);
    std::fflush(stdout);
  }
  return 0;
}
