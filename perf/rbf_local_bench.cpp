// One Adam step on a real grid at growing K: dense SIMD kernel vs local evaluation (culled,
// with and without the grid recurrence), pairs evaluated per point, the error against the
// stated bound, and the time of the greedy initialisation. Plain program (not Google
// Benchmark): every figure is one run's min over repetitions, on one thread unless -t.
//
//   build/rbf_local_bench FILE DATASET [--K 25,100,400,1600,6400] [--reps 5] [--f32]
//                         [--tol 1e-10] [--threads 1] [--dense-max-K 100000]
//                         [--save-kernels out.h5] [--init greedy|lattice] [--fit-steps S]
//                         [--scattered]
//
// --scattered drops the grid: the same points go through TiledPoints::from_points (bins in
// Morton order, no recurrence), as for point data from `points_dataset`.
//
// --fit-steps S also runs a whole Adam fit of S steps (rbf::fit, rel_tol 0, local
// evaluation, `threads` threads) per K and prints its seconds (initialisation included),
// the share of the initialisation in it, and the final loss relative to the variance.
//
// FILE:DATASET is a 2-D HDF5 dataset (see perf/make_real_data.py), loaded like
// `[data] source = "hdf5", grid_dataset = DATASET, standardize = true` (default extent).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "covfit/data/points.hpp"
#include "covfit/io/h5.hpp"
#include "covfit/rbf/fit.hpp"
#include "covfit/rbf/kernels.hpp"
#include "covfit/rbf/local.hpp"

using namespace covfit;
using Clock = std::chrono::steady_clock;

namespace {

double secs(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  std::size_t p = 0;
  while (p < s.size()) {
    std::size_t q = s.find(',', p);
    out.push_back(std::stoi(s.substr(p, q - p)));
    p = q == std::string::npos ? s.size() : q + 1;
  }
  return out;
}

// One Adam step around an evaluation: raw -> canonical, loss + gradient, chain rule,
// the moment updates, projection (what fit_adam does per step).
struct AdamState {
  std::vector<double> m, v, grad;
};
template <class Eval>
double adam_step(const rbf::FitConfig& cfg, std::vector<double>& raw, std::vector<rbf::Canonical>& can,
                 std::vector<rbf::Canonical>& gcan, AdamState& s, Eval&& eval) {
  rbf::raw_to_canonical(cfg.param, raw, can);
  const double loss = eval(can, gcan);
  rbf::canonical_to_raw_grad(cfg.param, raw, gcan, s.grad);
  const int width = rbf::raw_width(cfg.param);
  for (std::size_t i = 0; i < raw.size(); ++i) {
    const double lr = cfg.lr[static_cast<int>(rbf::raw_group(cfg.param, static_cast<int>(i % width)))];
    s.m[i] = cfg.beta1 * s.m[i] + (1 - cfg.beta1) * s.grad[i];
    s.v[i] = cfg.beta2 * s.v[i] + (1 - cfg.beta2) * s.grad[i] * s.grad[i];
    raw[i] -= lr * (s.m[i] / (1 - cfg.beta1)) / (std::sqrt(s.v[i] / (1 - cfg.beta2)) + cfg.eps);
  }
  rbf::project(cfg.param, raw, cfg.bounds);
  return loss;
}

// Min seconds over reps of one step from the same start.
template <class Eval>
double time_step(const rbf::FitConfig& cfg, const std::vector<double>& raw0, int reps, Eval&& eval,
                 double& loss) {
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    std::vector<double> raw = raw0;
    std::vector<rbf::Canonical> can(static_cast<std::size_t>(cfg.K)), gcan(can.size());
    AdamState s{std::vector<double>(raw.size()), std::vector<double>(raw.size()), std::vector<double>(raw.size())};
    auto t0 = Clock::now();
    loss = adam_step(cfg, raw, can, gcan, s, eval);
    best = std::min(best, secs(t0));
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s FILE DATASET [--K list] [--reps n] [--f32] [--tol t] [--threads n] "
                         "[--dense-max-K k] [--save-kernels out.h5] [--init greedy|lattice]\n", argv[0]);
    return 2;
  }
  std::vector<int> Ks = {25, 100, 400, 1600, 6400};
  int reps = 5, threads = 1, dense_max_K = 100000, fit_steps = 0;
  bool f32 = false, scattered = false;
  double tol = -1;
  std::string save, init = "greedy";
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return std::string(i + 1 < argc ? argv[++i] : ""); };
    if (a == "--K") Ks = parse_list(next());
    else if (a == "--reps") reps = std::stoi(next());
    else if (a == "--f32") f32 = true;
    else if (a == "--tol") tol = std::stod(next());
    else if (a == "--threads") threads = std::stoi(next());
    else if (a == "--dense-max-K") dense_max_K = std::stoi(next());
    else if (a == "--save-kernels") save = next();
    else if (a == "--init") init = next();
    else if (a == "--fit-steps") fit_steps = std::stoi(next());
    else if (a == "--scattered") scattered = true;
    else { std::fprintf(stderr, "unknown option %s\n", a.c_str()); return 2; }
  }
  job::DataSpec spec;
  spec.name = "bench";
  spec.source = "hdf5";
  spec.file = argv[1];
  spec.grid_dataset = argv[2];
  spec.standardize = true;
  const data::PointData d = data::load(spec);
  const rbf::Grid& g = *d.grid;
  const std::size_t N = d.values.size();
  std::printf("# %s:%s  %zu x %zu grid, N = %zu unmasked points, %s, xsimd arch %s (batch %zu), threads %d\n",
              argv[1], argv[2], g.ny, g.nx, N, f32 ? "f32" : "f64", xsimd::default_arch::name(),
              f32 ? xsimd::batch<float>::size : xsimd::batch<double>::size, threads);
  std::printf("# one Adam step (param full): seconds, min of %d reps\n", reps);
  std::printf("%6s %10s %10s %10s %8s %8s %10s %9s %10s %10s %8s\n", "K", "dense_s", "local_s",
              "local_norec_s", "x_dense", "x_norec", "pairs/pt", "rec_frac", "dloss", "bound", "init_s");
  rbf::Points pts{d.x, d.y, d.values, scattered ? nullptr : &g};
  const auto P64 = scattered ? rbf::TiledPoints<double>::from_points(d.x, d.y, d.values)
                             : rbf::TiledPoints<double>::from_grid(g);
  const auto P32 = scattered ? rbf::TiledPoints<float>::from_points(d.x, d.y, d.values)
                             : rbf::TiledPoints<float>::from_grid(g);
  if (scattered) std::printf("# as scattered points (no grid, no recurrence)\n");
  const auto dense64 = rbf::PointSet<double>::from(d.x, d.y, d.values);
  const auto dense32 = rbf::PointSet<float>::from(d.x, d.y, d.values);
  io::Handle out;
  if (!save.empty()) out = io::Handle(H5Fcreate(save.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
  for (int K : Ks) {
    rbf::FitConfig cfg;
    cfg.param = rbf::Param::full;
    cfg.K = K;
    cfg.f32 = f32;
    cfg.seed = 1;
    cfg.init = init == "lattice" ? rbf::Init::lattice : rbf::Init::greedy;
    cfg.lr[0] = 0.01;
    cfg.lr[1] = cfg.lr[2] = 0.001;
    auto t0 = Clock::now();
    const std::vector<double> raw0 = rbf::initial_raw(cfg, pts);
    const double init_s = secs(t0);
    rbf::LocalOptions on, off;
    on.cull_tol = off.cull_tol = tol >= 0 ? tol : rbf::effective_cull_tol(cfg);
    off.recurrence = false;
    on.threads = off.threads = threads;
    rbf::LocalStats st;
    auto local = [&](const rbf::LocalOptions& o) {
      return [&, o](std::vector<rbf::Canonical>& can, std::vector<rbf::Canonical>& gcan) {
        return f32 ? rbf::loss_grad_local<float>(P32, can, gcan, o, &st)
                   : rbf::loss_grad_local<double>(P64, can, gcan, o, &st);
      };
    };
    auto dense = [&](std::vector<rbf::Canonical>& can, std::vector<rbf::Canonical>& gcan) {
      return f32 ? rbf::loss_grad_simd<float>(dense32, can, gcan, threads)
                 : rbf::loss_grad_simd<double>(dense64, can, gcan, threads);
    };
    double l_dense = NAN, l_on = 0, l_off = 0;
    const double t_on = time_step(cfg, raw0, reps, local(on), l_on);
    const rbf::LocalStats st_on = st;
    const double t_off = time_step(cfg, raw0, reps, local(off), l_off);
    const double t_dense = K <= dense_max_K ? time_step(cfg, raw0, std::max(1, K >= 1600 ? 2 : reps), dense, l_dense) : NAN;
    std::vector<rbf::Canonical> can(static_cast<std::size_t>(K));
    rbf::raw_to_canonical(cfg.param, raw0, can);
    const rbf::CullBound b = rbf::cull_error_bound(can, on.cull_tol, f32 ? P32.rms : P64.rms, l_on);
    std::printf("%6d %10.4g %10.4g %10.4g %8.1f %8.2f %10.1f %9.3f %10.2e %10.2e %8.3f\n", K, t_dense,
                t_on, t_off, t_dense / t_on, t_off / t_on,
                static_cast<double>(st_on.point_pairs) / static_cast<double>(N),
                static_cast<double>(st_on.recurrent) / std::max<double>(1.0, static_cast<double>(st_on.point_pairs)),
                std::abs(l_on - l_dense), b.loss, init_s);
    if (fit_steps > 0) {
      rbf::FitConfig fc = cfg;
      fc.max_steps = fit_steps;
      fc.rel_tol = 0;
      fc.log_every = std::max(1, fit_steps / 10);
      fc.threads = threads;
      if (tol >= 0) fc.cull_tol = tol;
      const rbf::FitResult r = rbf::fit(fc, pts);
      std::printf("       fit: %d Adam steps in %.3f s (init %.3f s = %.1f%% of it), rel loss %.4g -> %.4g\n",
                  r.steps, r.seconds, init_s, 100 * init_s / r.seconds, r.initial_loss / d.variance(),
                  r.final_loss / d.variance());
    }
    std::fflush(stdout);
    if (out) {
      std::vector<double> flat;
      for (const auto& c : can) flat.insert(flat.end(), {c.mx, c.my, c.p11, c.p12, c.p22, c.w});
      std::string name = "K";  // (not "K" + to_string: GCC 12 -Wrestrict false positive)
      name += std::to_string(K);
      io::write_array(out.get(), name, {static_cast<hsize_t>(K), 6}, flat.data());
      io::write_attr(out.get(), "dense_loss_" + name, l_dense);
    }
  }
  return 0;
}
