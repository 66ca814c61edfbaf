#include "covfit/report/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <numeric>
#include <sstream>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "covfit/core/error.hpp"
#include "covfit/io/fit_tables.hpp"
#include "covfit/io/h5.hpp"
#include "covfit/io/results_file.hpp"
#include "covfit/io/sweep_tables.hpp"

namespace covfit::report {
namespace {

struct FileView {
  std::map<std::string, std::string> text_attrs;
  std::map<std::string, std::int64_t> int_attrs;
  bool has_fit = false, has_sweep = false;
  std::vector<io::FitTaskRow> fit;
  std::vector<double> targets;  // target_losses of /fit/tasks
  std::vector<io::SweepTaskRow> sweep;
  bool has_units = false;           // a sweep's work units (/sweep_units)
  std::int64_t units_done = 0;
  bool complete = false;                  // root attribute complete = 1 (finalised)
  std::vector<io::FitSummaryRow> summary;  // stored (complete file) or computed live
  bool summary_stored = false;
};

FileView read_view_unchecked(const std::string& path);

// A file HDF5 cannot read (flipped bytes, truncated) is bad input: exit 2, named.
FileView read_view(const std::string& path) {
  try {
    return read_view_unchecked(path);
  } catch (const RuntimeError& e) {
    throw InputError(path, std::string("cannot be read (damaged file?): ") + e.what());
  }
}

FileView read_view_unchecked(const std::string& path) {
  io::Handle f = io::open_for_reading(path);
  FileView v;
  if (!io::has_attr(f.get(), "format") ||
      io::read_attr_string(f.get(), "format") != io::kFormatName)
    throw InputError(path, "not a covfit results file");
  for (const char* a : {"format", "covfit_version", "job_name", "job_kind", "job_hash", "created",
                        "host", "git_commit", "git_dirty", "simd_arch", "compiler", "cxx_flags"})
    if (io::has_attr(f.get(), a)) v.text_attrs[a] = io::read_attr_string(f.get(), a);
  for (const char* a : {"format_version", "shard_index", "shard_count", "tasks_total", "tasks_in_file"})
    if (io::has_attr(f.get(), a)) v.int_attrs[a] = io::read_attr_int(f.get(), a);
  // Older files are read through their own layouts: missing columns keep defaults.
  if (io::exists(f.get(), "/sweep_units/units")) {
    v.has_units = true;
    v.units_done = static_cast<std::int64_t>(
        io::read_all(f.get(), "/sweep_units/units", io::SweepUnitTables().units()).size());
  }
  if (io::exists(f.get(), "/sweep/tasks")) {
    v.has_sweep = true;
    v.sweep = io::read_all(f.get(), "/sweep/tasks", io::SweepTables().tasks());
    for (auto& t : v.sweep)
      if (t.best_by.empty()) t.best_by = std::isfinite(t.best_r2_val_exact) ? "r2_val_exact" : "r2_val";
  }
  if (io::exists(f.get(), "/fit/tasks")) {
    v.has_fit = true;
    v.fit = io::read_all(f.get(), "/fit/tasks", io::FitTables(0).tasks());
    io::Handle ds = io::open_dataset(f.get(), "/fit/tasks");
    if (io::has_attr(ds.get(), "target_losses")) v.targets = io::read_attr_doubles(ds.get(), "target_losses");
    v.complete = io::has_attr(f.get(), "complete") && io::read_attr_int(f.get(), "complete") == 1;
    if (v.complete && io::exists(f.get(), "/fit/summary")) {
      v.summary = io::FitTables::read_summary(f.get());
      v.summary_stored = true;
    } else {
      v.summary = io::summarise_fit(v.fit, v.targets);
    }
  }
  return v;
}

std::string fmt(const char* f, double v) {
  if (!std::isfinite(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// A plain text table with right-aligned columns.
std::string render(const std::vector<std::vector<std::string>>& rows, std::size_t left = 3) {
  std::vector<std::size_t> w;
  for (const auto& r : rows)
    for (std::size_t i = 0; i < r.size(); ++i) {
      if (w.size() <= i) w.push_back(0);
      w[i] = std::max(w[i], r[i].size());
    }
  std::ostringstream os;
  for (std::size_t ri = 0; ri < rows.size(); ++ri) {
    for (std::size_t i = 0; i < rows[ri].size(); ++i) {
      const std::string& c = rows[ri][i];
      if (i) os << "  ";
      if (i < left) os << c << std::string(w[i] - c.size(), ' ');
      else os << std::string(w[i] - c.size(), ' ') << c;
    }
    os << '\n';
    if (ri == 0) {
      std::size_t total = 0;
      for (std::size_t x : w) total += x + 2;
      os << std::string(total - 2, '-') << '\n';
    }
  }
  return os.str();
}

// The per-group summary is io::summarise_fit, the one implementation: read back from
// /fit/summary when the file is complete (what the Python reader shows), computed live
// from the task rows otherwise (a run in progress, or a file written before format 3).
std::string summary_table(const FileView& v) {
  const std::vector<io::FitSummaryRow>& rows_in = v.summary;
  bool any_level = false, any_stop = false, several_data = false;
  for (const auto& r : rows_in) {
    any_level |= std::isfinite(r.level);
    several_data |= r.data != rows_in.front().data;
  }
  for (const auto& t : v.fit) any_stop |= t.stop_loss > 0;
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> head = {"param", "K", "optimizer"};
  if (several_data) head.push_back("data");
  for (const char* h : {"tasks", "failed", "best loss", "median loss", "median rel", "median steps", "median s"})
    head.push_back(h);
  if (any_stop) head.push_back("on target");
  if (any_level) {
    head.push_back("reached level");
    head.push_back("median s to it");
  }
  rows.push_back(head);
  for (const auto& r : rows_in) {
    std::vector<std::string> row = {r.param, std::to_string(r.K), r.optimizer};
    if (several_data) row.push_back(r.data);
    for (std::string c : {std::to_string(r.tasks), std::to_string(r.failed), fmt("%.3e", r.best_loss),
                          fmt("%.3e", r.median_final_loss), fmt("%.2e", r.median_final_rel_loss),
                          fmt("%.0f", r.median_steps), fmt("%.3f", r.median_wall_seconds)})
      row.push_back(c);
    if (any_stop) row.push_back(std::to_string(r.on_target) + "/" + std::to_string(r.tasks));
    if (any_level) {
      row.push_back(std::isfinite(r.level) ? std::to_string(r.reached) + "/" + std::to_string(r.tasks) +
                                                 " <= " + fmt("%.0e", r.level)
                                           : "-");
      row.push_back(fmt("%.3f", r.median_seconds_to_level));
    }
    rows.push_back(row);
  }
  std::string note;
  if (any_level)
    note = "\"reached level\": tasks whose loss went <= the tightest target_losses level not below "
           "the loss they stop at";
  if (any_stop) note += std::string(note.empty() ? "" : ";\n") +
                        "\"on target\": tasks that stopped on target_loss / target_rel_variance "
                        "(status reached_target)";
  note += std::string(note.empty() ? "" : "\n") +
          (v.summary_stored ? "(stored in the file: /fit/summary)"
                            : "(computed from the task rows; stored in /fit/summary when the run completes)");
  return render(rows, several_data ? 4 : 3) + note + "\n";
}

std::string sweep_table(const std::vector<io::SweepTaskRow>& t) {
  std::vector<std::vector<std::string>> rows = {
      {"data", "model", "status", "n", "m", "r", "folds", "best lambda", "(x s_max^2)", "lambda_d",
       "best by", "best R2", "one-SE lambda", "svd s", "total s", "exact path"}};
  for (const auto& x : t) {
    double s2 = x.s_max * x.s_max;
    // The task message counts the exact rows by status ("exact path: 39 certified, 2 budget").
    std::string exact = "-";
    const std::string prefix = "exact path: ";
    if (x.message.rfind(prefix, 0) == 0) exact = x.message.substr(prefix.size());
    rows.push_back({x.data, x.model, x.status, std::to_string(x.n), std::to_string(x.m),
                    std::to_string(x.r), std::to_string(x.folds), fmt("%.4g", x.best_lambda),
                    fmt("%.3g", x.best_lambda / s2), fmt("%.3g", x.best_lambda_d), x.best_by,
                    fmt("%.4f", x.best_r2_val), fmt("%.4g", x.one_se_lambda),
                    fmt("%.3f", x.svd_seconds), fmt("%.2f", x.seconds), exact});
  }
  return render(rows);
}

std::vector<const io::FitTaskRow*> best_tasks(const FileView& v, int best) {
  std::vector<const io::FitTaskRow*> order;
  for (const auto& t : v.fit) order.push_back(&t);
  auto key = [](const io::FitTaskRow* t) { return std::isfinite(t->final_loss) ? t->final_loss : INFINITY; };
  std::sort(order.begin(), order.end(), [&](const io::FitTaskRow* a, const io::FitTaskRow* b) {
    return key(a) < key(b) || (key(a) == key(b) && a->id < b->id);
  });
  if (order.size() > static_cast<std::size_t>(best)) order.resize(static_cast<std::size_t>(best));
  return order;
}

// JSON number, or null for NaN / inf (JSON has neither).
nlohmann::json num(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }

}  // namespace

std::string fit_summary_table(const std::string& path) {
  FileView v = read_view(path);
  if (v.has_sweep) return sweep_table(v.sweep);
  return v.has_fit ? summary_table(v) : "";
}

std::string inspect_text(const std::string& path, int best) {
  FileView v = read_view(path);
  std::ostringstream os;
  os << path << "\n";
  os << "  job        " << v.text_attrs["job_name"] << " (" << v.text_attrs["job_kind"]
     << ", hash " << v.text_attrs["job_hash"] << ")\n";
  os << "  format     " << v.text_attrs["format"] << " v" << v.int_attrs["format_version"]
     << ", written by covfit " << v.text_attrs["covfit_version"];
  if (v.text_attrs.count("git_commit"))
    os << " (" << v.text_attrs["git_commit"] << (v.text_attrs["git_dirty"] == "1" ? ", dirty" : "") << ")";
  os << "\n  created    " << v.text_attrs["created"] << " on " << v.text_attrs["host"] << "\n";
  if (v.text_attrs.count("simd_arch"))
    os << "  build      " << v.text_attrs["compiler"] << " " << v.text_attrs["cxx_flags"] << ", SIMD "
       << v.text_attrs["simd_arch"] << "\n";
  os << "  shard      " << v.int_attrs["shard_index"] << "/" << v.int_attrs["shard_count"]
     << " (" << v.int_attrs["tasks_in_file"] << " of " << v.int_attrs["tasks_total"]
     << " tasks)\n";
  if (v.has_units) {
    const std::int64_t total = v.int_attrs["tasks_in_file"];
    os << "  progress   " << v.units_done << "/" << total << " work units done";
    if (v.units_done < total) os << " (incomplete: re-run the same command to resume)";
    else if (!v.has_sweep && total < v.int_attrs["tasks_total"])
      os << " (shard complete: `covfit merge` the shards for the summary)";
    else if (!v.has_sweep)
      os << " (summary not written yet: re-run the same command to write it)";
    os << "\n";
  }
  if (v.has_sweep) {
    std::int64_t total = v.int_attrs["tasks_in_file"];
    std::int64_t done = static_cast<std::int64_t>(v.sweep.size());
    if (!v.has_units)  // format 2: one row per task
      os << "  progress   " << done << "/" << total << " done"
         << (done < total ? " (incomplete: re-run the same command to resume)" : "") << "\n";
    os << "\n"
       << "Sweeps (best lambda: largest mean over folds of the `best by` column; one-SE lambda: "
          "largest lambda within one standard error, sd with ddof=1):\n"
       << sweep_table(v.sweep);
  }
  if (!v.has_fit) return os.str();
  std::map<std::string, int> by_status;
  for (const auto& t : v.fit) ++by_status[t.status];
  std::int64_t total = v.int_attrs["tasks_in_file"];
  os << "  progress   " << v.fit.size() << "/" << total << " done"
     << (static_cast<std::int64_t>(v.fit.size()) < total ? " (incomplete: re-run the same command to resume)" : "")
     << "\n  status    ";
  for (const auto& [s, n] : by_status) os << " " << s << "=" << n;
  os << "\n\nBest tasks:\n";
  std::vector<std::vector<std::string>> rows = {{"id", "param", "optimizer", "K", "restart", "status", "final loss", "rel loss", "steps", "seconds"}};
  for (const auto* t : best_tasks(v, best))
    rows.push_back({std::to_string(t->id), t->param, t->optimizer, std::to_string(t->K),
                    std::to_string(t->restart), t->status, fmt("%.3e", t->final_loss),
                    fmt("%.2e", t->final_rel_loss), std::to_string(t->steps),
                    fmt("%.3f", t->wall_seconds)});
  os << render(rows) << "\nBy parameterisation:\n" << summary_table(v);
  return os.str();
}

std::string inspect_json(const std::string& path, int best) {
  FileView v = read_view(path);
  nlohmann::json j;
  j["path"] = path;
  for (const auto& [k, s] : v.text_attrs) j[k] = s;
  for (const auto& [k, n] : v.int_attrs) j[k] = n;
  if (v.has_units) j["units_done"] = v.units_done;
  if (v.has_sweep) {
    j["tasks_done"] = v.sweep.size();
    nlohmann::json sweeps = nlohmann::json::array();
    for (const auto& t : v.sweep)
      sweeps.push_back({{"id", t.id}, {"data", t.data}, {"model", t.model}, {"status", t.status},
                        {"best_by", t.best_by}, {"best_lambda", num(t.best_lambda)},
                        {"best_lambda_d", num(t.best_lambda_d)}, {"best_r2_val", num(t.best_r2_val)},
                        {"one_se_lambda", num(t.one_se_lambda)}});
    j["sweeps"] = sweeps;
  }
  if (v.has_fit) {
    j["tasks_done"] = v.fit.size();
    std::map<std::string, int> by_status;
    for (const auto& t : v.fit) ++by_status[t.status];
    j["by_status"] = by_status;
    nlohmann::json b = nlohmann::json::array();
    for (const auto* t : best_tasks(v, best))
      b.push_back({{"id", t->id}, {"param", t->param}, {"optimizer", t->optimizer}, {"K", t->K},
                   {"status", t->status}, {"final_loss", num(t->final_loss)}});
    j["best"] = b;
    // The rows of /fit/summary, named as its columns (NaN as null).
    nlohmann::json sum = nlohmann::json::array();
    for (const auto& r : v.summary)
      sum.push_back({{"data", r.data}, {"param", r.param}, {"optimizer", r.optimizer}, {"K", r.K},
                     {"tasks", r.tasks}, {"failed", r.failed}, {"on_target", r.on_target},
                     {"level", num(r.level)}, {"reached", r.reached}, {"frac_reached", num(r.frac_reached)},
                     {"best_loss", num(r.best_loss)}, {"median_final_loss", num(r.median_final_loss)},
                     {"median_final_rel_loss", num(r.median_final_rel_loss)},
                     {"median_steps", num(r.median_steps)}, {"median_wall_seconds", num(r.median_wall_seconds)},
                     {"median_seconds_to_level", num(r.median_seconds_to_level)}});
    j["summary"] = sum;
    j["summary_source"] = v.summary_stored ? "stored" : "computed";
  }
  return j.dump(1) + "\n";
}

}  // namespace covfit::report
