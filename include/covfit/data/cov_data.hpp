// Covariance data sets (kind = "sweep"): the planted generator or X and S from HDF5,
// validated and centred (cov::check_and_centre).
#pragma once
#include <string>

#include "covfit/cov/problem.hpp"
#include "covfit/job/spec.hpp"

namespace covfit::data {

struct CovData {
  std::string name;
  cov::Problem problem;   // checked: shapes, finite, S symmetric, X centred
  bool centred_by_us = false;
  cov::Matrix W0;         // planted W0 (empty for HDF5 input)
};

// Throws InputError naming file:dataset and the offending value or shape.
CovData load_cov(const job::CovDataSpec& spec);

// Row-major HDF5 (h5py/numpy order) <-> column-major cov::Matrix.

}  // namespace covfit::data
