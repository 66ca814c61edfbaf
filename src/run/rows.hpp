// The one place where computed results become file rows: FitResult -> /fit rows,
// SweepResult -> /sweep rows, input data -> /data groups. Internal to run/.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <hdf5.h>

#include "covfit/cov/sweep.hpp"
#include "covfit/data/cov_data.hpp"
#include "covfit/data/points.hpp"
#include "covfit/io/fit_tables.hpp"
#include "covfit/io/sweep_tables.hpp"
#include "covfit/job/spec.hpp"
#include "covfit/rbf/fit.hpp"

namespace covfit::run {

void write_fit_data(hid_t file, const std::vector<data::PointData>& data);
void append_fit(io::FitTables& tables, const job::TaskCoord& task, const std::string& data_name,
                double data_variance, double stop_loss, const rbf::FitResult& result);

void write_sweep_data(hid_t file, const std::vector<data::CovData>& data);
void write_matrix(hid_t loc, const std::string& name, const cov::Matrix& A);  // row-major (numpy)
// A work unit's rows into /sweep_units, and every committed unit read back, by task id.
void append_sweep_unit(io::SweepUnitTables& tables, const job::SweepUnit& unit, const std::string& data_name,
                       const std::string& model, const std::string& run, const cov::SweepUnitResult& result);
// `stored` = false skips the exact solutions units stored at store_lambdas (store = "all":
// one per lambda), keeping their rows and path ends: what a resume needs.
std::map<std::int64_t, std::vector<cov::SweepUnitResult>> read_sweep_units(hid_t file, bool stored = true);
// A task's assembled result into the /sweep summary: its stored matrices as
// /sweep/matrices/<id>/<name> (result.stored, then result.store_points, each formed by
// `form` and written before the next is formed), then its rows.
using FormStored = std::function<std::vector<cov::StoredMatrix>(const cov::StorePoint&)>;
void append_sweep(hid_t file, io::SweepTables& tables, std::int64_t id, const std::string& data_name,
                  const std::string& model, bool centred, bool lambda_relative, const cov::SweepResult& result,
                  const FormStored& form);

}  // namespace covfit::run
