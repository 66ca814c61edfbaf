// Human and machine summaries of a results file (covfit inspect, end of covfit run).
// Everything is read back from the file, so a resumed or still-running job reports
// all its tasks, and memory does not grow with what the run computed.
#pragma once
#include <string>

namespace covfit::report {

// Per (param, optimizer, data, K): tasks, failures, best/median loss, steps, seconds, and
// how reliably / how fast the success level was reached (io::summarise_fit: read from
// /fit/summary on a complete file, computed live otherwise). The answer to "which
// parameterisation converges fastest, to what loss, how reliably".
std::string fit_summary_table(const std::string& path);

// `covfit inspect`: attributes, progress by status, best tasks, summary table.
std::string inspect_text(const std::string& path, int best = 5);
std::string inspect_json(const std::string& path, int best = 5);

}  // namespace covfit::report
