// 2D point data sets for RBF fitting: built-in generators and the HDF5 reader.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "covfit/job/spec.hpp"
#include "covfit/rbf/local.hpp"
#include "covfit/rbf/model.hpp"

namespace covfit::data {

struct PointData {
  std::string name;
  std::vector<double> x, y, values;  // N each (for a grid: its unmasked cells, row-major)
  std::optional<rbf::Grid> grid;     // set when the data is a regular grid (hdf5 grid_dataset)
  std::vector<rbf::Canonical> planted;  // planted kernels (empty unless source = planted)
  double variance() const;              // population variance of values
};

// Franke's test function on [0,1]^2.
double franke(double x, double y);
PointData franke_grid(const std::string& name, int grid);

// Random anisotropic mixture: `kernels` rotated Gaussians, centres in [0.12, 0.88]^2 at
// least 0.6/sqrt(kernels) apart, minor-axis sigma in [0.03, 0.07], major/minor ratio up to
// `anisotropy` (major <= 0.15), weights +-[0.5, 1.5]; points uniform in [0,1]^2, plus
// N(0, noise^2). Deterministic in `seed`.
PointData planted_mixture(const std::string& name, int points, int kernels, double anisotropy,
                          double noise, std::uint64_t seed);

// Build a data set from its spec (reads the HDF5 file for source = "hdf5"). Throws
// InputError naming file/dataset on bad input (shape, non-finite values, too few points).
// A grid dataset (grid_dataset) loads as the points of its unmasked (non-NaN) cells plus
// `grid`; +-inf cells are an error. With standardize, values (and the grid) become
// (v - mean) / std over the unmasked values.
PointData load(const job::DataSpec& spec);

}  // namespace covfit::data
