#include "covfit/data/cov_data.hpp"

#include "covfit/core/error.hpp"
#include "covfit/core/limits.hpp"
#include "covfit/io/h5.hpp"

namespace covfit::data {
namespace {

cov::Matrix matrix_from_hdf5(hid_t file, const std::string& file_name, const std::string& dataset) {
  const std::string where = file_name + ":" + dataset;
  if (!io::exists(file, dataset)) throw InputError(where, "no such dataset");
  io::DoubleArray a = io::read_array(file, dataset, where);
  if (a.dims.size() != 2) throw InputError(where, "expected a 2-D dataset, got " + std::to_string(a.dims.size()) + "-D");
  for (hsize_t d : a.dims)
    if (d < 1 || d > static_cast<hsize_t>(kMaxCovDim))
      throw InputError(where, "dimension " + std::to_string(d) + " outside [1, " + std::to_string(kMaxCovDim) + "]");
  cov::Matrix M(static_cast<int>(a.dims[0]), static_cast<int>(a.dims[1]));
  for (int i = 0; i < M.rows; ++i)
    for (int j = 0; j < M.cols; ++j) M(i, j) = a.data[static_cast<std::size_t>(i) * a.dims[1] + j];
  return M;
}

}  // namespace

CovData load_cov(const job::CovDataSpec& spec) {
  CovData d;
  d.name = spec.name;
  std::string where = "data '" + spec.name + "'";
  if (spec.source == "planted") {
    if (spec.rank > std::min(spec.n, spec.m))
      throw InputError(where, "rank " + std::to_string(spec.rank) + " exceeds min(n, m)");
    // X, S, W0 and the generator's work matrices, before allocating them.
    const double n = spec.n, m = spec.m;
    check_memory(8.0 * 4.0 * (n * m + m * m + n * n), where, "the planted problem (n = " +
                     std::to_string(spec.n) + ", m = " + std::to_string(spec.m) + ")");
    cov::PlantedProblem pp = cov::planted_problem(spec.n, spec.m, spec.rank, spec.noise,
                                                  spec.w0_scale, spec.seed);
    d.problem = std::move(pp.problem);
    d.W0 = std::move(pp.W0);
  } else {
    io::Handle f = io::open_input_file(spec.file, "data set '" + spec.name + "'");
    d.problem.X = matrix_from_hdf5(f.get(), spec.file, spec.x_dataset);
    d.problem.S = matrix_from_hdf5(f.get(), spec.file, spec.s_dataset);
    where = spec.file + ":" + spec.x_dataset + "," + spec.s_dataset;
  }
  d.centred_by_us = cov::check_and_centre(d.problem, where);
  return d;
}

}  // namespace covfit::data
