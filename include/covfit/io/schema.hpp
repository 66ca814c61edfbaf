// The machine-readable schema of the results file format (`covfit schema`): every table
// of every job kind with its columns' names, dtypes, units and descriptions, generated
// from the typed tables (fit_tables.hpp, sweep_tables.hpp). analysis/covfit/schema.json
// is a copy; a test compares them, docs/FORMAT.md and the reader's digest per version.
#pragma once
#include <string>

namespace covfit::io {

std::string schema_json();

}  // namespace covfit::io
