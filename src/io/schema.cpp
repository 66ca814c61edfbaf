#include "covfit/io/schema.hpp"

#include <nlohmann/json.hpp>

#include "covfit/io/fit_tables.hpp"
#include "covfit/io/results_file.hpp"
#include "covfit/io/sweep_tables.hpp"

namespace covfit::io {
namespace {

template <class T>
nlohmann::json table_json(const std::string& group, const Table<T>& t, const char* commit_or_dep) {
  nlohmann::json cols = nlohmann::json::array();
  for (const auto& f : t.fields()) {
    nlohmann::json c = {{"name", f.column.name}, {"dtype", type_name(f.column.type)},
                        {"units", f.column.units}, {"description", f.column.description}};
    if (f.column.type == Column::str) c["bytes"] = f.column.count;
    if (f.dynamic) c["shape"] = "L (one per target level; absent when L = 0)";
    cols.push_back(c);
  }
  return {{"path", group + "/" + t.name()}, {"role", commit_or_dep}, {"description", t.description()},
          {"columns", cols}};
}

}  // namespace

std::string schema_json() {
  FitTables fit(1);
  SweepTables sweep;
  nlohmann::json tables = nlohmann::json::array();
  tables.push_back(table_json(FitTables::kGroup, fit.tasks(), "commit"));
  tables.push_back(table_json(FitTables::kGroup, fit.curves(), "dependent"));
  tables.push_back(table_json(FitTables::kGroup, fit.kernels(), "dependent"));
  tables.push_back(table_json(FitTables::kGroup, fit.summary(), "summary"));
  tables.push_back(table_json(SweepTables::kGroup, sweep.tasks(), "commit"));
  tables.push_back(table_json(SweepTables::kGroup, sweep.lambdas(), "dependent"));
  tables.push_back(table_json(SweepTables::kGroup, sweep.folds(), "dependent"));
  tables.push_back(table_json(SweepTables::kGroup, sweep.matrices(), "dependent"));
  SweepUnitTables units;
  tables.push_back(table_json(SweepUnitTables::kGroup, units.units(), "commit"));
  tables.push_back(table_json(SweepUnitTables::kGroup, units.lambdas(), "dependent"));
  tables.push_back(table_json(SweepUnitTables::kGroup, units.folds(), "dependent"));
  tables.push_back(table_json(SweepUnitTables::kGroup, units.matrices(), "dependent"));
  nlohmann::json arrays = nlohmann::json::array(
      {{{"path", "/fit/raw"}, {"dtype", "float64"}, {"description", "final raw parameters, kernel-major"}},
       {{"path", "/sweep_units/values"}, {"dtype", "float64"}, {"description", "entries of the matrices work units stored, row-major"}},
       {{"path", "/sweep/matrices/<task id>/<name>"}, {"dtype", "float64"},
        {"description", "every stored matrix of the summary, (lambda, rows, cols), written when the file is complete"}}});
  nlohmann::json j = {{"format", kFormatName}, {"format_version", kFormatVersion},
                      {"tables", tables}, {"arrays", arrays}};
  return j.dump(1) + "\n";
}

}  // namespace covfit::io
