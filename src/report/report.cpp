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

#include "covfit/core/error.hpp"
#include "covfit/io/h5.hpp"
#include "covfit/io/results_file.hpp"

namespace covfit::report {
namespace {

struct TaskTable {
  std::vector<std::int64_t> id, K, steps, restart;
  std::vector<std::string> data, param, optimizer, status;
  std::vector<double> final_loss, final_rel_loss, seconds;
  std::vector<std::vector<double>> seconds_to_target;  // per task, per level
  std::vector<double> targets;
  std::size_t size() const { return id.size(); }
};

struct SweepTable {
  std::vector<std::int64_t> id, n, m, r, folds;
  std::vector<std::string> data, model, status, message;
  std::vector<double> s_max, best_lambda, best_lambda_d, best_r2, one_se, best_exact_lambda,
      best_r2_exact, svd_seconds, seconds;
};

struct FileView {
  std::map<std::string, std::string> text_attrs;
  std::map<std::string, std::int64_t> int_attrs;
  bool has_fit = false, has_sweep = false;
  TaskTable tasks;
  SweepTable sweep;
};

// Build a layout from a dataset's own compound type, so reading does not depend on
// the writer's version of the layout (e.g. the number of target levels).
io::TableLayout layout_of(hid_t ds) {
  io::Handle type(H5Dget_type(ds), H5Tclose);
  std::vector<io::Column> cols;
  int n = H5Tget_nmembers(type.get());
  for (int i = 0; i < n; ++i) {
    char* name = H5Tget_member_name(type.get(), static_cast<unsigned>(i));
    io::Handle mt(H5Tget_member_type(type.get(), static_cast<unsigned>(i)), H5Tclose);
    io::Column c;
    c.name = name;
    H5free_memory(name);
    H5T_class_t cls = H5Tget_class(mt.get());
    if (cls == H5T_STRING) {
      c.type = io::Column::str;
      c.count = static_cast<int>(H5Tget_size(mt.get()));
    } else if (cls == H5T_ARRAY) {
      hsize_t dim = 0;
      H5Tget_array_dims2(mt.get(), &dim);
      io::Handle base(H5Tget_super(mt.get()), H5Tclose);
      c.type = H5Tget_class(base.get()) == H5T_FLOAT ? io::Column::f64
               : H5Tget_size(base.get()) == 8       ? io::Column::i64
                                                    : io::Column::i32;
      c.count = static_cast<int>(dim);
    } else {
      c.type = cls == H5T_FLOAT ? io::Column::f64
               : H5Tget_size(mt.get()) == 8 ? io::Column::i64 : io::Column::i32;
    }
    cols.push_back(c);
  }
  return io::TableLayout(cols);
}

void read_sweep_view(hid_t f, SweepTable& t) {
  io::Handle ds(H5Dopen2(f, "/sweep/tasks", H5P_DEFAULT), H5Dclose);
  io::TableLayout layout = layout_of(ds.get());
  io::AppendTable typed = io::AppendTable::open(f, "/sweep/tasks", &layout);
  t.id = typed.read_i64("id");
  t.n = typed.read_i64("n");
  t.m = typed.read_i64("m");
  t.r = typed.read_i64("r");
  t.folds = typed.read_i64("folds");
  t.data = typed.read_str("data");
  t.model = typed.read_str("model");
  t.status = typed.read_str("status");
  t.message = typed.read_str("message");
  t.s_max = typed.read_f64("s_max");
  t.best_lambda = typed.read_f64("best_lambda");
  t.best_lambda_d = typed.read_f64("best_lambda_d");
  t.best_r2 = typed.read_f64("best_r2_val");
  t.one_se = typed.read_f64("one_se_lambda");
  t.best_exact_lambda = typed.read_f64("best_exact_lambda");
  t.best_r2_exact = typed.read_f64("best_r2_val_exact");
  t.svd_seconds = typed.read_f64("svd_seconds");
  t.seconds = typed.read_f64("seconds");
}

FileView read_view(const std::string& path) {
  io::Handle f = io::open_for_reading(path);
  FileView v;
  if (!io::has_attr(f.get(), "format") ||
      io::read_attr_string(f.get(), "format") != io::kFormatName)
    throw InputError(path, "not a covfit results file");
  for (const char* a : {"format", "covfit_version", "job_name", "job_kind", "job_hash", "created", "host"})
    if (io::has_attr(f.get(), a)) v.text_attrs[a] = io::read_attr_string(f.get(), a);
  for (const char* a : {"format_version", "shard_index", "shard_count", "tasks_total", "tasks_in_file"})
    if (io::has_attr(f.get(), a)) v.int_attrs[a] = io::read_attr_int(f.get(), a);
  if (io::exists(f.get(), "/sweep/tasks")) {
    v.has_sweep = true;
    read_sweep_view(f.get(), v.sweep);
  }
  if (!io::exists(f.get(), "/fit/tasks")) return v;
  v.has_fit = true;
  io::Handle ds(H5Dopen2(f.get(), "/fit/tasks", H5P_DEFAULT), H5Dclose);
  io::TableLayout layout = layout_of(ds.get());
  const std::vector<io::Column>& cols = layout.columns();
  TaskTable& tt = v.tasks;
  {
    io::AppendTable typed = io::AppendTable::open(f.get(), "/fit/tasks", &layout);
    tt.id = typed.read_i64("id");
    tt.K = typed.read_i64("K");
    tt.steps = typed.read_i64("steps");
    tt.restart = typed.read_i64("restart");
    tt.data = typed.read_str("data");
    tt.param = typed.read_str("param");
    tt.optimizer = typed.read_str("optimizer");
    tt.status = typed.read_str("status");
    tt.final_loss = typed.read_f64("final_loss");
    tt.final_rel_loss = typed.read_f64("final_rel_loss");
    tt.seconds = typed.read_f64("wall_seconds");
    int idx = layout.index("seconds_to_target");
    if (idx >= 0) {
      int L = cols[static_cast<std::size_t>(idx)].count;
      std::vector<char> rows = typed.read_rows(0, typed.size());
      std::size_t off = layout.offset("seconds_to_target");
      for (std::size_t r = 0; r < typed.size(); ++r) {
        std::vector<double> s(static_cast<std::size_t>(L));
        std::memcpy(s.data(), rows.data() + r * layout.row_bytes() + off, 8u * L);
        tt.seconds_to_target.push_back(s);
      }
      io::Handle attr(H5Aopen(ds.get(), "target_losses", H5P_DEFAULT), H5Aclose);
      tt.targets.resize(static_cast<std::size_t>(L));
      H5Aread(attr.get(), H5T_NATIVE_DOUBLE, tt.targets.data());
    }
  }
  return v;
}

double median(std::vector<double> v) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return !std::isfinite(x); }), v.end());
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

bool failed(const std::string& status) { return status == "diverged" || status == "failed"; }

std::string fmt(const char* f, double v) {
  if (!std::isfinite(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// A plain text table with right-aligned columns.
std::string render(const std::vector<std::vector<std::string>>& rows) {
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
      if (i < 3) os << c << std::string(w[i] - c.size(), ' ');
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

std::string summary_table(const TaskTable& t) {
  using Key = std::tuple<std::string, std::int64_t, std::string>;
  std::map<Key, std::vector<std::size_t>> groups;
  for (std::size_t i = 0; i < t.size(); ++i) groups[{t.param[i], t.K[i], t.optimizer[i]}].push_back(i);
  const bool has_target = !t.targets.empty();
  const std::size_t tight = has_target ? t.targets.size() - 1 : 0;
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> head = {"param", "K", "optimizer", "tasks", "failed", "best loss",
                                   "median loss", "median rel", "median steps", "median s"};
  if (has_target) {
    head.push_back("reached " + fmt("%.0e", t.targets[tight]));
    head.push_back("median s to it");
  }
  rows.push_back(head);
  for (const auto& [key, idx] : groups) {
    std::vector<double> loss, rel, steps, secs, to_target;
    int nfail = 0, reached = 0;
    double best = std::numeric_limits<double>::infinity();
    for (std::size_t i : idx) {
      if (failed(t.status[i])) ++nfail;
      loss.push_back(t.final_loss[i]);
      rel.push_back(t.final_rel_loss[i]);
      steps.push_back(static_cast<double>(t.steps[i]));
      secs.push_back(t.seconds[i]);
      if (std::isfinite(t.final_loss[i])) best = std::min(best, t.final_loss[i]);
      if (has_target && std::isfinite(t.seconds_to_target[i][tight])) {
        ++reached;
        to_target.push_back(t.seconds_to_target[i][tight]);
      }
    }
    std::vector<std::string> r = {std::get<0>(key), std::to_string(std::get<1>(key)),
                                  std::get<2>(key), std::to_string(idx.size()),
                                  std::to_string(nfail), fmt("%.3e", best),
                                  fmt("%.3e", median(loss)), fmt("%.2e", median(rel)),
                                  fmt("%.0f", median(steps)), fmt("%.3f", median(secs))};
    if (has_target) {
      r.push_back(std::to_string(reached) + "/" + std::to_string(idx.size()));
      r.push_back(fmt("%.3f", median(to_target)));
    }
    rows.push_back(r);
  }
  return render(rows);
}

std::string sweep_table(const SweepTable& t) {
  std::vector<std::vector<std::string>> rows = {
      {"data", "model", "status", "n", "m", "r", "folds", "best lambda", "(x s_max^2)", "lambda_d",
       "best R2 val", "(exact sol.)", "one-SE lambda", "svd s", "total s", "exact path"}};
  for (std::size_t i = 0; i < t.id.size(); ++i) {
    double s2 = t.s_max[i] * t.s_max[i];
    // The task message counts the exact rows by status ("exact path: 39 certified, 2 budget").
    std::string exact = "-";
    const std::string prefix = "exact path: ";
    if (t.message[i].rfind(prefix, 0) == 0) exact = t.message[i].substr(prefix.size());
    rows.push_back({t.data[i], t.model[i], t.status[i], std::to_string(t.n[i]), std::to_string(t.m[i]),
                    std::to_string(t.r[i]), std::to_string(t.folds[i]), fmt("%.4g", t.best_lambda[i]),
                    fmt("%.3g", t.best_lambda[i] / s2), fmt("%.3g", t.best_lambda_d[i]),
                    fmt("%.4f", t.best_r2[i]), std::isfinite(t.best_r2_exact[i]) ? "yes" : "no",
                    fmt("%.4g", t.one_se[i]), fmt("%.3f", t.svd_seconds[i]),
                    fmt("%.2f", t.seconds[i]), exact});
  }
  return render(rows);
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += c;
    else if (c == '\n') o += "\\n";
    else if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else o += c;
  }
  return o;
}

std::vector<std::size_t> best_tasks(const TaskTable& t, int best) {
  std::vector<std::size_t> order(t.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    double la = std::isfinite(t.final_loss[a]) ? t.final_loss[a] : INFINITY;
    double lb = std::isfinite(t.final_loss[b]) ? t.final_loss[b] : INFINITY;
    return la < lb || (la == lb && t.id[a] < t.id[b]);
  });
  if (order.size() > static_cast<std::size_t>(best)) order.resize(static_cast<std::size_t>(best));
  return order;
}

}  // namespace

std::string fit_summary_table(const std::string& path) {
  FileView v = read_view(path);
  if (v.has_sweep) return sweep_table(v.sweep);
  return v.has_fit ? summary_table(v.tasks) : "";
}

std::string inspect_text(const std::string& path, int best) {
  FileView v = read_view(path);
  std::ostringstream os;
  os << path << "\n";
  os << "  job        " << v.text_attrs["job_name"] << " (" << v.text_attrs["job_kind"]
     << ", hash " << v.text_attrs["job_hash"] << ")\n";
  os << "  format     " << v.text_attrs["format"] << " v" << v.int_attrs["format_version"]
     << ", written by covfit " << v.text_attrs["covfit_version"] << "\n";
  os << "  created    " << v.text_attrs["created"] << " on " << v.text_attrs["host"] << "\n";
  os << "  shard      " << v.int_attrs["shard_index"] << "/" << v.int_attrs["shard_count"]
     << " (" << v.int_attrs["tasks_in_file"] << " of " << v.int_attrs["tasks_total"]
     << " tasks)\n";
  if (v.has_sweep) {
    std::int64_t total = v.int_attrs["tasks_in_file"];
    std::int64_t done = static_cast<std::int64_t>(v.sweep.id.size());
    os << "  progress   " << done << "/" << total << " done"
       << (done < total ? " (incomplete: re-run the same command to resume)" : "") << "\n\n"
       << "Sweeps (best lambda by validation R2; exact-solution R2 where computed):\n"
       << sweep_table(v.sweep);
  }
  if (!v.has_fit) return os.str();
  const TaskTable& t = v.tasks;
  std::map<std::string, int> by_status;
  for (const auto& s : t.status) ++by_status[s];
  std::int64_t total = v.int_attrs["tasks_in_file"];
  os << "  progress   " << t.size() << "/" << total << " done"
     << (static_cast<std::int64_t>(t.size()) < total ? " (incomplete: re-run the same command to resume)" : "")
     << "\n  status    ";
  for (const auto& [s, n] : by_status) os << " " << s << "=" << n;
  os << "\n\nBest tasks:\n";
  std::vector<std::vector<std::string>> rows = {{"id", "param", "optimizer", "K", "restart", "status", "final loss", "rel loss", "steps", "seconds"}};
  for (std::size_t i : best_tasks(t, best))
    rows.push_back({std::to_string(t.id[i]), t.param[i], t.optimizer[i], std::to_string(t.K[i]),
                    std::to_string(t.restart[i]), t.status[i], fmt("%.3e", t.final_loss[i]),
                    fmt("%.2e", t.final_rel_loss[i]), std::to_string(t.steps[i]),
                    fmt("%.3f", t.seconds[i])});
  os << render(rows) << "\nBy parameterisation:\n" << summary_table(t);
  return os.str();
}

std::string inspect_json(const std::string& path, int best) {
  FileView v = read_view(path);
  std::ostringstream os;
  os << "{\"path\": \"" << json_escape(path) << "\"";
  for (const auto& [k, s] : v.text_attrs) os << ", \"" << k << "\": \"" << json_escape(s) << "\"";
  for (const auto& [k, n] : v.int_attrs) os << ", \"" << k << "\": " << n;
  if (v.has_sweep) {
    const SweepTable& t = v.sweep;
    os << ", \"tasks_done\": " << t.id.size() << ", \"sweeps\": [";
    for (std::size_t i = 0; i < t.id.size(); ++i) {
      auto num = [&](double x) { return std::isfinite(x) ? fmt("%.17g", x) : std::string("null"); };
      os << (i ? ", " : "") << "{\"id\": " << t.id[i] << ", \"data\": \"" << json_escape(t.data[i])
         << "\", \"model\": \"" << t.model[i] << "\", \"status\": \"" << t.status[i]
         << "\", \"best_lambda\": " << num(t.best_lambda[i]) << ", \"best_r2_val\": "
         << num(t.best_r2[i]) << ", \"one_se_lambda\": " << num(t.one_se[i]) << "}";
    }
    os << "]";
  }
  if (v.has_fit) {
    const TaskTable& t = v.tasks;
    std::map<std::string, int> by_status;
    for (const auto& s : t.status) ++by_status[s];
    os << ", \"tasks_done\": " << t.size() << ", \"by_status\": {";
    bool first = true;
    for (const auto& [s, n] : by_status) {
      os << (first ? "" : ", ") << "\"" << s << "\": " << n;
      first = false;
    }
    os << "}, \"best\": [";
    first = true;
    for (std::size_t i : best_tasks(t, best)) {
      os << (first ? "" : ", ") << "{\"id\": " << t.id[i] << ", \"param\": \"" << t.param[i]
         << "\", \"optimizer\": \"" << t.optimizer[i] << "\", \"K\": " << t.K[i]
         << ", \"status\": \"" << t.status[i] << "\", \"final_loss\": "
         << (std::isfinite(t.final_loss[i]) ? fmt("%.17g", t.final_loss[i]) : "null") << "}";
      first = false;
    }
    os << "]";
  }
  os << "}\n";
  return os.str();
}

}  // namespace covfit::report
