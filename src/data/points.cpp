#include "covfit/data/points.hpp"

#include <algorithm>
#include <cmath>

#include "covfit/core/error.hpp"
#include "covfit/core/limits.hpp"
#include "covfit/core/random.hpp"
#include "covfit/io/h5.hpp"

namespace covfit::data {

double PointData::variance() const {
  if (values.empty()) return 0;
  double mean = 0;
  for (double v : values) mean += v;
  mean /= static_cast<double>(values.size());
  double ss = 0;
  for (double v : values) ss += (v - mean) * (v - mean);
  return ss / static_cast<double>(values.size());
}

double franke(double x, double y) {
  return 0.75 * std::exp(-(9 * x - 2) * (9 * x - 2) / 4 - (9 * y - 2) * (9 * y - 2) / 4) +
         0.75 * std::exp(-(9 * x + 1) * (9 * x + 1) / 49 - (9 * y + 1) / 10) +
         0.5 * std::exp(-(9 * x - 7) * (9 * x - 7) / 4 - (9 * y - 3) * (9 * y - 3) / 4) -
         0.2 * std::exp(-(9 * x - 4) * (9 * x - 4) - (9 * y - 7) * (9 * y - 7));
}

PointData franke_grid(const std::string& name, int grid) {
  PointData d;
  d.name = name;
  for (int i = 0; i < grid; ++i)
    for (int j = 0; j < grid; ++j) {
      double x = static_cast<double>(j) / (grid - 1), y = static_cast<double>(i) / (grid - 1);
      d.x.push_back(x);
      d.y.push_back(y);
      d.values.push_back(franke(x, y));
    }
  rbf::Grid g;  // the same points as a grid (row i at y = i / (grid - 1))
  g.nx = g.ny = static_cast<std::size_t>(grid);
  g.dx = g.dy = 1.0 / (grid - 1);
  g.values = d.values;
  d.grid = std::move(g);
  return d;
}

PointData planted_mixture(const std::string& name, int points, int kernels, double anisotropy,
                          double noise, std::uint64_t seed) {
  PointData d;
  d.name = name;
  Rng rng(seed);
  // Centres by rejection sampling with a minimum separation (relaxed if it cannot be met),
  // so the planted kernels are identifiable; widths 0.03-0.07 along the minor axis.
  double min_sep = 0.6 / std::sqrt(static_cast<double>(kernels));
  for (int k = 0; k < kernels; ++k) {
    double mx = 0, my = 0;
    for (int attempt = 0;; ++attempt) {
      mx = rng.uniform(0.12, 0.88);
      my = rng.uniform(0.12, 0.88);
      bool ok = true;
      for (const auto& q : d.planted)
        if (std::hypot(q.mx - mx, q.my - my) < min_sep) ok = false;
      if (ok) break;
      if (attempt % 200 == 199) min_sep *= 0.9;
    }
    double s1 = rng.uniform(0.03, 0.07);
    double s2 = std::min(s1 * rng.uniform(1.0, anisotropy), 0.15);
    double t = rng.uniform(0, 3.141592653589793);
    double c = std::cos(t), s = std::sin(t);
    double a = 1 / (s1 * s1), b = 1 / (s2 * s2);
    rbf::Canonical ker;
    ker.mx = mx;
    ker.my = my;
    ker.p11 = c * c * a + s * s * b;
    ker.p12 = c * s * (a - b);
    ker.p22 = s * s * a + c * c * b;
    ker.w = (rng.uniform() < 0.5 ? -1 : 1) * rng.uniform(0.5, 1.5);
    d.planted.push_back(ker);
  }
  for (int i = 0; i < points; ++i) {
    double x = rng.uniform(), y = rng.uniform(), f = 0;
    for (const auto& k : d.planted) {
      double dx = x - k.mx, dy = y - k.my;
      f += k.w * std::exp(-0.5 * (k.p11 * dx * dx + 2 * k.p12 * dx * dy + k.p22 * dy * dy));
    }
    d.x.push_back(x);
    d.y.push_back(y);
    d.values.push_back(f + (noise > 0 ? noise * rng.normal() : 0.0));
  }
  return d;
}

static PointData load_hdf5(const job::DataSpec& spec) {
  io::Handle file = io::open_input_file(spec.file, "data set '" + spec.name + "'");
  auto where = [&](const std::string& ds) { return spec.file + ":" + ds; };
  for (const auto& ds : {spec.points_dataset, spec.values_dataset})
    if (!io::exists(file.get(), ds)) throw InputError(where(ds), "no such dataset");
  io::DoubleArray pts = io::read_array(file.get(), spec.points_dataset, where(spec.points_dataset));
  io::DoubleArray vals = io::read_array(file.get(), spec.values_dataset, where(spec.values_dataset));
  if (pts.dims.size() != 2 || pts.dims[1] != 2)
    throw InputError(where(spec.points_dataset), "expected shape (N, 2)");
  if (vals.dims.size() != 1 || vals.dims[0] != pts.dims[0])
    throw InputError(where(spec.values_dataset),
                     "expected shape (" + std::to_string(pts.dims[0]) + ",) to match " +
                         spec.points_dataset);
  if (pts.dims[0] < 1) throw InputError(where(spec.points_dataset), "no points");
  PointData d;
  d.name = spec.name;
  for (std::size_t i = 0; i < pts.dims[0]; ++i) {
    double x = pts.data[2 * i], y = pts.data[2 * i + 1], v = vals.data[i];
    if (!std::isfinite(x) || !std::isfinite(y))
      throw InputError(where(spec.points_dataset), "non-finite value in row " + std::to_string(i));
    if (!std::isfinite(v))
      throw InputError(where(spec.values_dataset), "non-finite value at index " + std::to_string(i));
    d.x.push_back(x);
    d.y.push_back(y);
    d.values.push_back(v);
  }
  // Finite but huge inputs overflow every loss to inf: refuse them here, by name.
  if (!std::isfinite(d.variance()))
    throw InputError(where(spec.values_dataset), "values too large (their variance overflows a double)");
  for (const auto* c : {&d.x, &d.y}) {
    auto [lo, hi] = std::minmax_element(c->begin(), c->end());
    const double span = *hi - *lo;
    if (!std::isfinite(span * span))
      throw InputError(where(spec.points_dataset), "coordinates too large (squared distances overflow a double)");
  }
  return d;
}

// A 2-D dataset as a regular grid; NaN cells masked.
static PointData load_hdf5_grid(const job::DataSpec& spec) {
  // Same checks as any input: a regular file, HDF5, opens (a truncated file is named).
  io::Handle file = io::open_input_file(spec.file, "data set '" + spec.name + "'");
  const std::string where = spec.file + ":" + spec.grid_dataset;
  if (!io::exists(file.get(), spec.grid_dataset)) throw InputError(where, "no such dataset");
  io::DoubleArray a = io::read_array(file.get(), spec.grid_dataset, where);
  if (a.dims.size() != 2 || a.dims[0] < 2 || a.dims[1] < 2)
    throw InputError(where, "expected a 2-D dataset (rows, columns) with at least 2 of each");
  rbf::Grid g;
  g.ny = a.dims[0];
  g.nx = a.dims[1];
  if (spec.extent.size() == 4) {
    g.x0 = spec.extent[0];
    g.y0 = spec.extent[2];
    g.dx = (spec.extent[1] - spec.extent[0]) / static_cast<double>(g.nx - 1);
    g.dy = (spec.extent[3] - spec.extent[2]) / static_cast<double>(g.ny - 1);
  } else {  // square cells, longer side spanning [0, 1]
    g.dx = g.dy = 1.0 / static_cast<double>(std::max(g.nx, g.ny) - 1);
  }
  g.values = std::move(a.data);
  PointData d;
  d.name = spec.name;
  for (std::size_t i = 0; i < g.ny; ++i)
    for (std::size_t j = 0; j < g.nx; ++j) {
      const double v = g.values[i * g.nx + j];
      if (std::isnan(v)) continue;  // masked cell
      if (!std::isfinite(v))
        throw InputError(where, "infinite value at row " + std::to_string(i) + ", column " +
                                    std::to_string(j) + " (NaN marks a masked cell)");
      d.x.push_back(g.x0 + static_cast<double>(j) * g.dx);
      d.y.push_back(g.y0 + static_cast<double>(i) * g.dy);
      d.values.push_back(v);
    }
  if (d.values.empty()) throw InputError(where, "every cell is NaN (masked): no data");
  d.grid = std::move(g);
  return d;
}

// (v - mean) / std over the data values (and the unmasked grid cells).
static void standardize(PointData& d, const std::string& where) {
  const double n = static_cast<double>(d.values.size());
  double mean = 0;
  for (double v : d.values) mean += v;
  mean /= n;
  const double sd = std::sqrt(d.variance());
  if (!(sd > 0)) throw InputError(where, "standardize: the values are constant (std = 0)");
  for (double& v : d.values) v = (v - mean) / sd;
  if (d.grid)
    for (double& v : d.grid->values) v = (v - mean) / sd;  // NaN stays NaN
}

PointData load(const job::DataSpec& spec) {
  PointData d;
  if (spec.source == "franke") d = franke_grid(spec.name, spec.grid);
  else if (spec.source == "planted") {
    check_memory(8.0 * 4.0 * spec.points, "data '" + spec.name + "'",
                 std::to_string(spec.points) + " planted points");
    d = planted_mixture(spec.name, spec.points, spec.kernels, spec.anisotropy, spec.noise, spec.seed);
  } else if (!spec.grid_dataset.empty()) d = load_hdf5_grid(spec);
  else d = load_hdf5(spec);
  if (spec.standardize)
    standardize(d, spec.file.empty() ? "data set '" + spec.name + "'" : spec.file);
  return d;
}

}  // namespace covfit::data
