// The one place where computed results become file rows: FitResult -> /fit rows,
// SweepResult -> /sweep rows, input data -> /data groups. Internal to run/.
#pragma once
#include <cstdint>
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
// Where a matrix a unit stored is in the file: row-major from `offset` (absolute) of
// /sweep_units/values.
struct UnitMatrixAt {
  std::int64_t task_id = 0;
  std::string name;
  double lambda = 0, lambda_d = 0;
  std::int64_t offset = 0;
};
// The units' rows and path ends (what a resume needs). With `stored_at`, also the
// matrices units stored (store = "all", store_lambdas): listed in each unit's `stored`
// without their entries (empty data; store = "all" can mean many n x n), which stay in
// the file, at the places appended to *stored_at.
std::map<std::int64_t, std::vector<cov::SweepUnitResult>> read_sweep_units(
    hid_t file, std::vector<UnitMatrixAt>* stored_at = nullptr);
// A task's assembled result into the /sweep summary: its stored matrices as
// /sweep/matrices/<id>/<name> (from their buffers, or from /sweep_units/values at
// `stored_at` for those read without entries), then its rows.
void append_sweep(hid_t file, io::SweepTables& tables, std::int64_t id, const std::string& data_name,
                  const std::string& model, bool centred, bool lambda_relative, const cov::SweepResult& result,
                  const std::vector<UnitMatrixAt>& stored_at);

}  // namespace covfit::run
