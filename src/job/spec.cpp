#include "covfit/job/spec.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "covfit/core/error.hpp"
#include "covfit/core/limits.hpp"

namespace covfit::job {
namespace {

std::string where_of(const std::string& path, const toml::node* node) {
  if (node && node->source().begin.line > 0)
    return path + ":" + std::to_string(node->source().begin.line);
  if (node) return path + " (--set)";  // inserted by an override: no line to name
  return path;
}

// A relative `file` written in the job file names a file next to the job file (the job
// then works from any directory); one given with --set is relative to the current
// directory, as the shell the user typed it in would have it.
std::string resolve_input_path(const std::string& job_path, const toml::node* node,
                               const std::string& file) {
  namespace fs = std::filesystem;
  if (file.empty() || fs::path(file).is_absolute()) return file;
  if (!node || node->source().begin.line == 0) return file;  // from --set
  const fs::path dir = fs::path(job_path).parent_path();
  return dir.empty() ? file : (dir / file).lexically_normal().string();
}

using NodePtr = std::unique_ptr<toml::node>;
// Every key a job was read with, defaults included ("section.key" -> value), for the
// resolved job text stored in results files. Set only while parse_job runs.
thread_local std::vector<std::pair<std::string, NodePtr>>* g_resolved = nullptr;

void record(const std::string& label, NodePtr value) {
  if (g_resolved) g_resolved->emplace_back(label, std::move(value));
}
template <class T>
NodePtr to_node(const T& v) {
  if constexpr (std::is_same_v<T, std::uint64_t>) return NodePtr(new toml::value<int64_t>(static_cast<int64_t>(v)));
  else if constexpr (std::is_same_v<T, bool>) return NodePtr(new toml::value<bool>(v));
  else if constexpr (std::is_integral_v<T>) return NodePtr(new toml::value<int64_t>(v));
  else if constexpr (std::is_floating_point_v<T>) return NodePtr(new toml::value<double>(v));
  else return NodePtr(new toml::value<std::string>(v));
}

// Reads keys from one TOML table, remembers which were used, and rejects the rest.
class TableReader {
 public:
  TableReader(const toml::table& t, std::string path, std::string section)
      : t_(t), path_(std::move(path)), section_(std::move(section)) {}

  const toml::node* node(const std::string& key) {
    used_.insert(key);
    return t_.get(key);
  }
  std::string where(const std::string& key) { return where_of(path_, t_.get(key) ? t_.get(key) : &t_); }
  std::string label(const std::string& key) const {
    return section_.empty() ? key : section_ + "." + key;
  }

  template <class T>
  T get(const std::string& key, T fallback) {
    const toml::node* n = node(key);
    T v = n ? convert<T>(*n, key) : fallback;
    record(label(key), to_node(v));
    return v;
  }

  template <class T>
  T convert(const toml::node& n, const std::string& key) {
    if constexpr (std::is_same_v<T, bool>) {
      if (auto v = n.value_exact<bool>()) return *v;
      fail(key, "expected true or false");
    } else if constexpr (std::is_integral_v<T>) {
      if (auto v = n.value_exact<int64_t>()) {
        const bool fits = std::is_signed_v<T>
                              ? *v >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
                                    *v <= static_cast<int64_t>(std::numeric_limits<T>::max())
                              : *v >= 0;
        if (!fits) fail(key, "integer " + std::to_string(*v) + " is out of range");
        return static_cast<T>(*v);
      }
      fail(key, "expected an integer");
    } else if constexpr (std::is_floating_point_v<T>) {
      if (auto v = n.value<double>(); v && (n.is_integer() || n.is_floating_point())) {
        if (!std::isfinite(*v)) fail(key, "expected a finite number, got " + std::to_string(*v));
        return *v;
      }
      fail(key, "expected a number");
    } else {
      if (auto v = n.value_exact<std::string>()) return *v;
      fail(key, "expected a string");
    }
    return T{};
  }

  // A scalar or an array of scalars -> vector.
  template <class T>
  std::vector<T> list(const std::string& key, std::vector<T> fallback) {
    // A key whose default is the empty list may be written as [] explicitly.
    const bool empty_ok = fallback.empty();
    std::vector<T> out = list_impl(key, std::move(fallback), empty_ok);
    auto* arr = new toml::array;
    for (const auto& v : out) {
      if constexpr (std::is_same_v<T, bool>) arr->push_back(v);
      else if constexpr (std::is_integral_v<T>) arr->push_back(static_cast<int64_t>(v));
      else if constexpr (std::is_floating_point_v<T>) arr->push_back(static_cast<double>(v));
      else arr->push_back(std::string(v));
    }
    record(label(key), NodePtr(arr));
    return out;
  }
  template <class T>
  std::vector<T> list_impl(const std::string& key, std::vector<T> fallback, bool empty_ok) {
    const toml::node* n = node(key);
    if (!n) return fallback;
    std::vector<T> out;
    if (auto arr = n->as_array()) {
      for (const auto& e : *arr) out.push_back(convert<T>(e, key));
      if (out.empty() && !empty_ok) fail(key, "must not be empty");
    } else {
      out.push_back(convert<T>(*n, key));
    }
    return out;
  }

  [[noreturn]] void fail(const std::string& key, const std::string& msg) {
    throw InputError(where(key), "'" + label(key) + "': " + msg);
  }

  void finish(const std::vector<std::string>& known) {
    for (const auto& [k, v] : t_) {
      std::string key(k.str());
      if (used_.count(key)) continue;
      std::string valid;
      for (const auto& s : known) valid += (valid.empty() ? "" : ", ") + s;
      throw InputError(where_of(path_, &v),
                       "unknown key '" + label(key) + "' (valid here: " + valid + ")");
    }
  }

 private:
  const toml::table& t_;
  std::string path_, section_;
  std::set<std::string> used_;
};

// Names end up in messages, HDF5 group names and default output file names: printable
// characters only, no '/'.
void check_name(TableReader& r, const std::string& key, const std::string& name) {
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "U+%04X", c);
      r.fail(key, std::string("contains the control character ") + buf + " (names must be printable)");
    }
    if (c == '/') r.fail(key, "must not contain '/'");
  }
}

std::string fnv1a_hex(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// The effective job text (after overrides) and its hash identify the job in files.
void set_text_and_hash(Job& job, const toml::table& root) {
  std::ostringstream os;
  os << root;
  job.text = os.str();
  job.hash = fnv1a_hex(job.text);
  // The resolved job: the text plus every key's value as used (defaults, resolved paths).
  if (!g_resolved) return;
  toml::table res = root;
  for (const auto& [label, value] : *g_resolved) {
    toml::table* t = &res;
    std::stringstream ss(label);
    std::vector<std::string> parts;
    for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
    for (std::size_t i = 0; t && i + 1 < parts.size(); ++i) {
      const std::string& p = parts[i];
      const auto br = p.find('[');
      if (br != std::string::npos) {  // data[3]: element of an array of tables
        toml::array* a = t->get_as<toml::array>(p.substr(0, br));
        const std::size_t k = std::stoul(p.substr(br + 1));
        t = a && k < a->size() ? a->get(k)->as_table() : nullptr;
      } else {
        if (!t->get(p)) t->insert(p, toml::table{});
        t = t->get_as<toml::table>(p);
      }
    }
    if (t) t->insert_or_assign(parts.back(), *value);
  }
  std::ostringstream rs;
  rs << res;
  job.resolved_text = rs.str();
}

// Apply one "a.b.c=value" override to the table.
void apply_override(toml::table& root, const std::string& spec) {
  auto eq = spec.find('=');
  if (eq == std::string::npos || eq == 0)
    throw InputError("--set " + spec, "expected key.path=value");
  std::string path = spec.substr(0, eq), value = spec.substr(eq + 1);
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + value);
  } catch (const toml::parse_error&) {
    parsed = toml::table{{"v", value}};  // bare word -> string
  }
  toml::table* t = &root;
  std::stringstream ss(path);
  std::string part, last;
  std::vector<std::string> parts;
  while (std::getline(ss, part, '.')) parts.push_back(part);
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    toml::node* n = t->get(parts[i]);
    if (!n) {
      t->insert(parts[i], toml::table{});
      n = t->get(parts[i]);
    }
    t = n->as_table();
    if (!t) throw InputError("--set " + spec, "'" + parts[i] + "' is not a table");
  }
  t->insert_or_assign(parts.back(), *parsed.get("v"));
}

// The `file` key of a data section (default `fallback`), resolved against the job file
// (resolve_input_path); the resolved job text records it as an absolute path.
std::string read_input_file(TableReader& r, const toml::table& t, const std::string& path,
                            const std::string& fallback) {
  std::string file = resolve_input_path(path, t.get("file"), r.get<std::string>("file", fallback));
  record(r.label("file"), to_node(file.empty() ? file  // as resolved, absolute
                                                : std::filesystem::absolute(file).lexically_normal().string()));
  return file;
}

DataSpec read_data(const toml::table& t, const std::string& path, const std::string& section,
                   const std::string& default_name) {
  TableReader r(t, path, section);
  DataSpec d;
  d.name = r.get<std::string>("name", default_name);
  d.source = r.get<std::string>("source", d.source);
  d.grid = r.get<int>("grid", d.grid);
  d.points = r.get<int>("points", d.points);
  d.kernels = r.get<int>("kernels", d.kernels);
  d.noise = r.get<double>("noise", d.noise);
  d.anisotropy = r.get<double>("anisotropy", d.anisotropy);
  d.seed = r.get<std::uint64_t>("seed", d.seed);
  d.file = read_input_file(r, t, path, d.file);
  d.points_dataset = r.get<std::string>("points_dataset", d.points_dataset);
  d.values_dataset = r.get<std::string>("values_dataset", d.values_dataset);
  check_name(r, "name", d.name);
  const bool named_points = t.get("points_dataset") || t.get("values_dataset");
  d.grid_dataset = r.get<std::string>("grid_dataset", d.grid_dataset);
  d.extent = r.list<double>("extent", d.extent);
  d.standardize = r.get<bool>("standardize", d.standardize);
  if (!d.grid_dataset.empty() && d.source != "hdf5") r.fail("grid_dataset", "only for source = \"hdf5\"");
  if (!d.grid_dataset.empty() && named_points)
    r.fail("grid_dataset", "give either grid_dataset or points_dataset/values_dataset, not both");
  if (!d.extent.empty() && d.grid_dataset.empty()) r.fail("extent", "only with grid_dataset");
  if (!d.extent.empty()) {
    if (d.extent.size() != 4) r.fail("extent", "expected [x_first, x_last, y_first, y_last]");
    for (double v : d.extent)
      if (!std::isfinite(v)) r.fail("extent", "values must be finite");
    if (d.extent[0] == d.extent[1] || d.extent[2] == d.extent[3])
      r.fail("extent", "x_first != x_last and y_first != y_last are required");
  }
  if (d.source != "franke" && d.source != "planted" && d.source != "hdf5")
    r.fail("source", "'" + d.source + "' is not one of franke, planted, hdf5");
  if (d.grid < 2 || d.grid > 4096) r.fail("grid", "must be in [2, 4096]");
  if (d.points < 1 || d.points > kMaxPoints) r.fail("points", "must be in [1, " + std::to_string(kMaxPoints) + "]");
  if (d.kernels < 1 || d.kernels > kMaxKernels) r.fail("kernels", "must be in [1, " + std::to_string(kMaxKernels) + "]");
  if (!(d.noise >= 0)) r.fail("noise", "must be >= 0");
  if (!(d.anisotropy >= 1)) r.fail("anisotropy", "must be >= 1");
  if (d.source == "hdf5" && d.file.empty()) r.fail("file", "required when source = \"hdf5\"");
  r.finish({"name", "source", "grid", "points", "kernels", "noise", "anisotropy", "seed",
            "file", "points_dataset", "values_dataset", "grid_dataset", "extent", "standardize"});
  return d;
}

CovDataSpec read_cov_data(const toml::table& t, const std::string& path, const std::string& section,
                          const std::string& default_name) {
  TableReader r(t, path, section);
  CovDataSpec d;
  d.name = r.get<std::string>("name", default_name);
  d.source = r.get<std::string>("source", d.source);
  d.n = r.get<int>("n", d.n);
  d.m = r.get<int>("m", d.m);
  d.rank = r.get<int>("rank", d.rank);
  d.noise = r.get<double>("noise", d.noise);
  d.w0_scale = r.get<double>("w0_scale", d.w0_scale);
  d.seed = r.get<std::uint64_t>("seed", d.seed);
  d.file = read_input_file(r, t, path, d.file);
  d.x_dataset = r.get<std::string>("x_dataset", d.x_dataset);
  d.s_dataset = r.get<std::string>("s_dataset", d.s_dataset);
  check_name(r, "name", d.name);
  if (d.source != "planted" && d.source != "hdf5")
    r.fail("source", "'" + d.source + "' is not one of planted, hdf5 (for kind = \"sweep\")");
  if (d.n < 2 || d.n > kMaxCovDim) r.fail("n", "must be in [2, " + std::to_string(kMaxCovDim) + "]");
  if (d.m < 3 || d.m > kMaxCovDim) r.fail("m", "must be in [3, " + std::to_string(kMaxCovDim) + "]");
  if (d.rank < 1) r.fail("rank", "must be >= 1");
  if (!(d.noise >= 0)) r.fail("noise", "must be >= 0");
  if (!(d.w0_scale >= 0)) r.fail("w0_scale", "must be >= 0");
  if (d.source == "hdf5" && d.file.empty()) r.fail("file", "required when source = \"hdf5\"");
  r.finish({"name", "source", "n", "m", "rank", "noise", "w0_scale", "seed", "file", "x_dataset",
            "s_dataset"});
  return d;
}

// A grid given either as a list `key = [..]` or log-spaced `key_from`, `key_to`, `key_count`.
std::vector<double> read_log_grid(TableReader& r, const std::string& key) {
  std::vector<double> list = r.list<double>(key, {});
  const toml::node* from = r.node(key + "_from");
  const toml::node* to = r.node(key + "_to");
  const toml::node* count = r.node(key + "_count");
  if (!list.empty() && (from || to || count))
    r.fail(key, "give either " + key + " = [...] or " + key + "_from/_to/_count, not both");
  if (!from && !to && !count) return list;
  if (!from || !to || !count) r.fail(key + "_from", key + "_from, " + key + "_to and " + key + "_count go together");
  double a = r.convert<double>(*from, key + "_from"), b = r.convert<double>(*to, key + "_to");
  int c = r.convert<int>(*count, key + "_count");
  if (!(a > 0 && b > 0)) r.fail(key + "_from", "log-spaced grids need positive ends");
  if (c < 1 || c > 1000000) r.fail(key + "_count", "must be in [1, 1000000]");
  std::vector<double> out;
  for (int i = 0; i < c; ++i)
    out.push_back(c == 1 ? a : std::exp(std::log(a) + (std::log(b) - std::log(a)) * i / (c - 1)));
  return out;
}

void read_sweep(const toml::table& t, const std::string& path, Job& job) {
  TableReader r(t, path, "sweep");
  SweepSettings& settings = job.sweep;
  cov::SweepConfig& s = settings.base;
  settings.models.clear();
  for (const auto& name : r.list<std::string>("models", {"free"})) {
    if (name == "free") settings.models.push_back(CovModel::free);
    else if (name == "free_diag") settings.models.push_back(CovModel::free_diag);
    else r.fail("models", "'" + name + "' is not one of free, free_diag");
  }
  s.lambdas = read_log_grid(r, "lambda");
  if (s.lambdas.empty()) r.fail("lambda", "a lambda grid is required (lambda = [...] or lambda_from/_to/_count)");
  for (double l : s.lambdas)
    if (!(l > 0) || !std::isfinite(l)) r.fail("lambda", "every lambda must be finite and > 0");
  std::string units = r.get<std::string>("lambda_units", "absolute");
  if (units != "absolute" && units != "s_max2") r.fail("lambda_units", "must be \"absolute\" or \"s_max2\"");
  s.lambda_relative = units == "s_max2";
  s.lambda_d = read_log_grid(r, "lambda_d");
  for (double l : s.lambda_d)
    if (!(l > 0) || !std::isfinite(l)) r.fail("lambda_d", "every lambda_d must be finite and > 0");
  settings.folds = r.get<int>("folds", settings.folds);
  settings.val = r.list<int>("val", {});
  if (settings.val.empty() && settings.folds < 2) r.fail("folds", "must be >= 2 (or give val = [...])");
  settings.fold_seed = r.get<std::uint64_t>("fold_seed", job.seed);
  s.exact = r.get<bool>("exact", s.exact);
  s.exact_max_rank = r.get<int>("exact_max_rank", s.exact_max_rank);
  s.train_r2 = r.get<bool>("train_r2", s.train_r2);
  s.losses = r.get<bool>("losses", s.losses);
  if (s.exact_max_rank < 0) r.fail("exact_max_rank", "must be >= 0");
  // Budgets per exact lambda solve (a row that exhausts one gets status "budget").
  cov::ExactOptions& eo = s.exact_options;
  eo.max_newton = r.get<int>("exact_max_newton", eo.max_newton);
  eo.max_cg = r.get<int>("exact_max_cg", eo.max_cg);
  eo.max_seconds = r.get<double>("exact_max_seconds", eo.max_seconds);
  if (eo.max_newton < 1 || eo.max_newton > 100000) r.fail("exact_max_newton", "must be in 1..100000");
  if (eo.max_cg < 1 || eo.max_cg > 1000000) r.fail("exact_max_cg", "must be in 1..1000000");
  if (!(eo.max_seconds >= 0) || !std::isfinite(eo.max_seconds))
    r.fail("exact_max_seconds", "must be finite and >= 0 (0: no time limit)");
  s.store_lambdas = r.list<double>("store_lambdas", {});
  for (double l : s.store_lambdas)
    if (!(l > 0) || !std::isfinite(l)) r.fail("store_lambdas", "every value must be finite and > 0");
  std::string store = r.get<std::string>("store", "best");
  if (store != "best" && store != "all") r.fail("store", "must be \"best\" or \"all\"");
  s.store_all = store == "all";
  s.blas_threads = r.get<int>("blas_threads", s.blas_threads);
  if (s.blas_threads < 1) r.fail("blas_threads", "must be >= 1");
  // Work units: lambda grid points per unit (0: automatic, see cov::sweep_lambda_block).
  s.lambda_block = r.get<int>("lambda_block", s.lambda_block);
  if (s.lambda_block < 0 || s.lambda_block > 1000000)
    r.fail("lambda_block", "must be in 0..1000000 (0: automatic)");
  r.finish({"models", "lambda", "lambda_from", "lambda_to", "lambda_count", "lambda_units",
            "lambda_d", "lambda_d_from", "lambda_d_to", "lambda_d_count", "folds", "val",
            "fold_seed", "exact", "exact_max_rank", "exact_max_newton", "exact_max_cg",
            "exact_max_seconds", "train_r2", "losses", "store_lambdas", "store",
            "blas_threads", "lambda_block"});
}

void read_fit(const toml::table& t, const std::string& path, FitSettings& settings) {
  rbf::FitConfig& f = settings.base;
  TableReader r(t, path, "fit");
  std::string precision = r.get<std::string>("precision", "f64");
  if (precision != "f64" && precision != "f32") r.fail("precision", "must be \"f64\" or \"f32\"");
  f.f32 = precision == "f32";
  f.max_steps = r.get<int>("max_steps", f.max_steps);
  f.rel_tol = r.get<double>("rel_tol", f.rel_tol);
  f.patience = r.get<int>("patience", f.patience);
  f.target_loss = r.get<double>("target_loss", f.target_loss);
  settings.target_rel_variance = r.get<double>("target_rel_variance", settings.target_rel_variance);
  f.target_losses = r.list<double>("target_losses", f.target_losses);
  f.log_every = r.get<int>("log_every", f.log_every);
  f.lr[0] = r.get<double>("lr_weight", f.lr[0]);
  f.lr[1] = r.get<double>("lr_centre", f.lr[1]);
  f.lr[2] = r.get<double>("lr_shape", f.lr[2]);
  f.beta1 = r.get<double>("beta1", f.beta1);
  f.beta2 = r.get<double>("beta2", f.beta2);
  f.eps = r.get<double>("eps", f.eps);
  f.clip_grad = r.get<double>("clip_grad", f.clip_grad);
  f.width_scale = r.get<double>("width_scale", f.width_scale);
  f.lm_mu0 = r.get<double>("lm_mu0", f.lm_mu0);
  f.lm_max_steps = r.get<int>("lm_max_steps", f.lm_max_steps);
  f.lr_final_ratio = r.get<double>("lr_final_ratio", f.lr_final_ratio);
  if (r.node("cull_tol")) {
    f.cull_tol = r.get<double>("cull_tol", f.cull_tol);
    if (!(f.cull_tol >= 0 && f.cull_tol < 1)) r.fail("cull_tol", "must be in [0, 1) (0: dense, exact)");
  }
  f.grid_recurrence = r.get<bool>("grid_recurrence", f.grid_recurrence);
  std::string init = r.get<std::string>("init", "greedy");
  if (init == "greedy") f.init = rbf::Init::greedy;
  else if (init == "lattice") f.init = rbf::Init::lattice;
  else r.fail("init", "'" + init + "' is not one of greedy, lattice");
  if (!(f.lr_final_ratio > 0 && f.lr_final_ratio <= 1)) r.fail("lr_final_ratio", "must be in (0, 1]");
  const double sigma_min = r.get<double>("sigma_min", std::exp(f.bounds.log_sigma_min));
  const double sigma_max = r.get<double>("sigma_max", std::exp(f.bounds.log_sigma_max));
  if (!(sigma_min > 0)) r.fail("sigma_min", "must be > 0");
  if (!(sigma_max > 0) || !std::isfinite(sigma_max)) r.fail("sigma_max", "must be finite and > 0");
  f.bounds.log_sigma_min = std::log(sigma_min);
  f.bounds.log_sigma_max = std::log(sigma_max);
  if (!(f.eps > 0)) r.fail("eps", "must be > 0");
  if (!(f.clip_grad >= 0)) r.fail("clip_grad", "must be >= 0 (0: no clipping)");
  if (!(f.lm_mu0 > 0)) r.fail("lm_mu0", "must be > 0");
  if (f.lm_max_steps < 0) r.fail("lm_max_steps", "must be >= 0 (0: max_steps)");
  if (!(f.target_loss >= 0)) r.fail("target_loss", "must be >= 0");
  if (!(settings.target_rel_variance >= 0)) r.fail("target_rel_variance", "must be >= 0");
  if (f.max_steps < 1) r.fail("max_steps", "must be >= 1");
  if (f.log_every < 1) r.fail("log_every", "must be >= 1");
  if (f.patience < 1) r.fail("patience", "must be >= 1");
  if (!(f.rel_tol >= 0)) r.fail("rel_tol", "must be >= 0");
  if (!(f.beta1 >= 0 && f.beta1 < 1)) r.fail("beta1", "must be in [0, 1)");
  if (!(f.beta2 >= 0 && f.beta2 < 1)) r.fail("beta2", "must be in [0, 1)");
  if (!(f.width_scale > 0)) r.fail("width_scale", "must be > 0");
  if (!(f.bounds.log_sigma_min < f.bounds.log_sigma_max))
    r.fail("sigma_min", "must be below sigma_max (both > 0)");
  if (f.target_losses.size() > 16) r.fail("target_losses", "at most 16 levels");
  for (double v : f.target_losses)
    if (!(v > 0)) r.fail("target_losses", "levels must be > 0");
  r.finish({"precision", "max_steps", "rel_tol", "patience", "target_loss",
            "target_rel_variance", "target_losses", "log_every", "lr_weight", "lr_centre",
            "lr_shape", "beta1", "beta2", "eps", "clip_grad", "width_scale", "lm_mu0", "lm_max_steps", "lr_final_ratio",
            "init", "sigma_min", "sigma_max", "cull_tol", "grid_recurrence"});
}

void read_grid(const toml::table& t, const std::string& path, Job& job) {
  TableReader r(t, path, "grid");
  FitGrid& g = job.grid;
  for (const auto& name : r.list<std::string>("param", {"full"})) {
    try {
      g.param.push_back(rbf::param_from_name(name));
    } catch (const std::invalid_argument& e) {
      r.fail("param", e.what());
    }
  }
  g.K = r.list<int>("K", {9});
  for (int k : g.K)
    if (k < 1 || k > 65536) r.fail("K", "values must be in [1, 65536]");
  for (const auto& name : r.list<std::string>("optimizer", {"adam"})) {
    if (name == "adam") g.optimizer.push_back(Optimizer::adam);
    else if (name == "lm") g.optimizer.push_back(Optimizer::lm);
    else if (name == "varpro") g.optimizer.push_back(Optimizer::varpro);
    else r.fail("optimizer", "'" + name + "' is not one of adam, lm, varpro");
  }
  g.lr_weight = r.list<double>("lr_weight", {job.fit.base.lr[0]});
  g.lr_centre = r.list<double>("lr_centre", {job.fit.base.lr[1]});
  g.lr_shape = r.list<double>("lr_shape", {job.fit.base.lr[2]});
  for (const auto& [key, values] : {std::pair{"lr_weight", &g.lr_weight},
                                    std::pair{"lr_centre", &g.lr_centre},
                                    std::pair{"lr_shape", &g.lr_shape}})
    for (double x : *values)
      if (!(x > 0)) r.fail(key, "learning rates must be > 0");
  std::vector<std::string> names = r.list<std::string>("data", {});
  if (names.empty()) {
    for (int i = 0; i < static_cast<int>(job.data.size()); ++i) g.data.push_back(i);
  } else {
    for (const auto& n : names) {
      int found = -1;
      for (int i = 0; i < static_cast<int>(job.data.size()); ++i)
        if (job.data[i].name == n) found = i;
      if (found < 0) r.fail("data", "no data set named '" + n + "'");
      g.data.push_back(found);
    }
  }
  g.restarts = r.get<int>("restarts", 1);
  if (g.restarts < 1 || g.restarts > kMaxRestarts)
    r.fail("restarts", "must be in [1, " + std::to_string(kMaxRestarts) + "]");
  g.same_start = r.get<bool>("same_start", g.same_start);
  r.finish({"param", "K", "optimizer", "lr_weight", "lr_centre", "lr_shape", "data", "restarts",
            "same_start"});
}

// The grid's size without overflow, against kMaxTasks.
void check_task_count(const Job& job, const std::string& path) {
  const std::vector<std::size_t> axes =
      job.kind == "sweep" ? std::vector<std::size_t>{job.cov_data.size(), static_cast<std::size_t>(job.sweep_units_per_data())}
                          : std::vector<std::size_t>{job.grid.data.size(), job.grid.param.size(),
                                                     job.grid.K.size(), job.grid.optimizer.size(),
                                                     job.grid.lr_weight.size(), job.grid.lr_centre.size(),
                                                     job.grid.lr_shape.size(),
                                                     static_cast<std::size_t>(job.grid.restarts)};
  double n = 1;
  for (std::size_t a : axes) n *= static_cast<double>(a);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", n);
  if (n > static_cast<double>(kMaxTasks))
    throw InputError(path, std::string("the grid has ") + buf + " tasks; at most " + std::to_string(kMaxTasks) +
                               " per job (split it into several jobs)");
}

}  // namespace

std::uint64_t mix_seed(std::uint64_t job_seed, std::uint64_t id) {
  std::uint64_t z = job_seed * 0x9E3779B97F4A7C15ull + id + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::string cov_model_name(CovModel m) { return m == CovModel::free ? "free" : "free_diag"; }

SweepTask Job::sweep_task(std::int64_t id) const {
  SweepTask t;
  t.id = id;
  const auto nm = static_cast<std::int64_t>(sweep.models.size());
  t.model = sweep.models[static_cast<std::size_t>(id % nm)];
  t.data = static_cast<int>(id / nm);
  return t;
}

int Job::sweep_folds() const { return sweep.val.empty() ? sweep.folds : 1; }

int Job::sweep_blocks(CovModel model) const {
  cov::SweepConfig c = sweep.base;
  c.model = model == CovModel::free ? cov::SweepModel::free : cov::SweepModel::free_diag;
  return static_cast<int>(cov::sweep_blocks(c).size());
}

std::int64_t Job::sweep_units_per_data() const {
  std::int64_t n = 0;
  for (CovModel m : sweep.models) n += static_cast<std::int64_t>(sweep_folds() + 1) * sweep_blocks(m);
  return n;
}

std::int64_t Job::sweep_task_count() const {
  return static_cast<std::int64_t>(cov_data.size() * sweep.models.size());
}

// Units of one data set: model by model (in job order), each block-major: block 0 of the
// full data, of fold 0, 1, ..., then block 1 of each (cov::sweep_unit_part/_block).
SweepUnit Job::sweep_unit(std::int64_t id) const {
  SweepUnit u;
  u.id = id;
  const std::int64_t per_data = sweep_units_per_data();
  std::int64_t rest = id % per_data;
  const auto data = static_cast<int>(id / per_data);
  for (std::size_t mi = 0; mi < sweep.models.size(); ++mi) {
    const int blocks = sweep_blocks(sweep.models[mi]);
    const std::int64_t n = static_cast<std::int64_t>(sweep_folds() + 1) * blocks;
    if (rest < n) {
      u.task = sweep_task(static_cast<std::int64_t>(data) * static_cast<std::int64_t>(sweep.models.size()) +
                          static_cast<std::int64_t>(mi));
      u.part = cov::sweep_unit_part(static_cast<int>(rest), sweep_folds());
      u.block = cov::sweep_unit_block(static_cast<int>(rest), sweep_folds());
      u.blocks = blocks;
      return u;
    }
    rest -= n;
  }
  throw RuntimeError("sweep unit " + std::to_string(id) + " out of range");
}

std::int64_t Job::shard_key(std::int64_t id) const {
  if (kind != "sweep") return id;
  const SweepUnit u = sweep_unit(id);  // its chain: (task, part)
  return u.task.id * (sweep_folds() + 1) + (u.part + 1);
}

std::int64_t Job::task_count() const {
  if (kind == "sweep") return static_cast<std::int64_t>(cov_data.size()) * sweep_units_per_data();
  return static_cast<std::int64_t>(grid.data.size() * grid.param.size() * grid.K.size() *
                                   grid.optimizer.size() * grid.lr_weight.size() *
                                   grid.lr_centre.size() * grid.lr_shape.size()) *
         grid.restarts;
}

TaskCoord Job::task(std::int64_t id) const {
  TaskCoord c;
  c.id = id;
  std::int64_t rest = id;
  auto take = [&rest](std::size_t n) {
    auto i = static_cast<std::size_t>(rest % static_cast<std::int64_t>(n));
    rest /= static_cast<std::int64_t>(n);
    return i;
  };
  // Restart varies fastest, data slowest.
  c.restart = static_cast<int>(take(grid.restarts));
  const std::size_t i_ls = take(grid.lr_shape.size()), i_lc = take(grid.lr_centre.size()),
                    i_lw = take(grid.lr_weight.size()), i_opt = take(grid.optimizer.size());
  c.lr_shape = grid.lr_shape[i_ls];
  c.lr_centre = grid.lr_centre[i_lc];
  c.lr_weight = grid.lr_weight[i_lw];
  c.optimizer = grid.optimizer[i_opt];
  c.K = grid.K[take(grid.K.size())];
  c.param = grid.param[take(grid.param.size())];
  c.data = grid.data[take(grid.data.size())];
  // same_start: the seed (hence the initialisation) of the task with the first optimizer
  // and learning rates, so tasks that differ only in those start from the same point.
  std::int64_t seed_id = id;
  if (grid.same_start) {
    const auto R = static_cast<std::int64_t>(grid.restarts);
    const auto block = R * static_cast<std::int64_t>(grid.lr_shape.size() * grid.lr_centre.size() *
                                                     grid.lr_weight.size() * grid.optimizer.size());
    seed_id = (id / block) * block + c.restart;
  }
  c.seed = mix_seed(seed, static_cast<std::uint64_t>(seed_id));
  return c;
}

Job parse_job(const std::string& text, const std::string& path,
              const std::vector<std::string>& overrides) {
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    throw InputError(path + ":" + std::to_string(e.source().begin.line),
                     std::string(e.description()));
  }
  for (const auto& o : overrides) apply_override(root, o);

  Job job;
  job.path = path;
  std::vector<std::pair<std::string, NodePtr>> resolved;
  g_resolved = &resolved;
  struct Reset {
    ~Reset() { g_resolved = nullptr; }
  } reset;
  TableReader r(root, path, "");
  job.name = r.get<std::string>("name", "");
  if (job.name.empty()) r.fail("name", "every job needs a name");
  check_name(r, "name", job.name);
  job.kind = r.get<std::string>("kind", "fit");
  if (job.kind != "fit" && job.kind != "sweep")
    r.fail("kind", "'" + job.kind + "' is not a known job kind (fit, sweep)");
  job.seed = r.get<std::uint64_t>("seed", 0);
  const bool sweep = job.kind == "sweep";
  auto add_data = [&](const toml::table& t, const std::string& section, const std::string& name) {
    if (sweep) job.cov_data.push_back(read_cov_data(t, path, section, name));
    else job.data.push_back(read_data(t, path, section, name));
  };

  if (const toml::node* n = r.node("data")) {
    if (const toml::table* t = n->as_table()) {
      add_data(*t, "data", "data");
    } else if (const toml::array* a = n->as_array()) {
      for (std::size_t i = 0; i < a->size(); ++i) {
        const toml::table* t = a->get(i)->as_table();
        if (!t) throw InputError(where_of(path, a->get(i)), "[[data]] entries must be tables");
        add_data(*t, "data[" + std::to_string(i) + "]", "data" + std::to_string(i));
      }
    } else {
      r.fail("data", "expected a table [data] or an array of tables [[data]]");
    }
  } else {
    r.fail("data", "missing [data] section");
  }
  std::vector<std::string> names;
  for (const auto& d : job.data) names.push_back(d.name);
  for (const auto& d : job.cov_data) names.push_back(d.name);
  for (std::size_t i = 0; i < names.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (names[i] == names[j]) throw InputError(path, "two data sets are named '" + names[i] + "'");
  if (sweep) {
    if (r.node("fit") || r.node("grid")) r.fail(r.node("fit") ? "fit" : "grid", "not used by kind = \"sweep\" (use [sweep])");
    const toml::node* n = r.node("sweep");
    if (!n || !n->as_table()) r.fail("sweep", "kind = \"sweep\" needs a [sweep] table");
    read_sweep(*n->as_table(), path, job);
    r.finish({"name", "kind", "seed", "data", "sweep"});
    check_task_count(job, path);
    set_text_and_hash(job, root);
    return job;
  }
  if (r.node("sweep")) r.fail("sweep", "only for kind = \"sweep\"");

  if (const toml::node* n = r.node("fit")) {
    if (!n->as_table()) r.fail("fit", "expected a table");
    read_fit(*n->as_table(), path, job.fit);
  }
  if (const toml::node* n = r.node("grid")) {
    if (!n->as_table()) r.fail("grid", "expected a table");
    read_grid(*n->as_table(), path, job);
  } else {
    read_grid(toml::table{}, path, job);
  }
  r.finish({"name", "kind", "seed", "data", "fit", "grid"});
  check_task_count(job, path);
  set_text_and_hash(job, root);
  return job;
}

Job load_job(const std::string& path, const std::vector<std::string>& overrides) {
  require_regular_file(path, "job file");  // a FIFO or device would block or never end
  std::error_code ec;
  if (std::filesystem::file_size(path, ec) > static_cast<std::uintmax_t>(kMaxJobFileBytes) && !ec)
    throw InputError(path, "job file is larger than " + std::to_string(kMaxJobFileBytes >> 20) + " MB");
  std::ifstream in(path);
  if (!in) throw InputError(path, "cannot open job file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_job(ss.str(), path, overrides);
}

namespace {
// Reads an integer environment variable; false if unset.
bool env_int(const char* name, long& out) {
  const char* v = std::getenv(name);
  if (!v || !*v) return false;
  char* end = nullptr;
  out = std::strtol(v, &end, 10);
  if (*end != '\0') throw InputError(std::string("environment ") + name + "=" + v, "expected an integer");
  return true;
}
}  // namespace

// From a Slurm array: shard index = SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN, shard
// count = SLURM_ARRAY_TASK_COUNT, so --array=0-7, 1-8 and 100-107 all give shards 0..7 of 8.
// A range with a step or a list (--array=1-8:2, --array=1,3,7) cannot name every shard
// once: refused with a message, as is a --shard whose count disagrees with the array's.
Shard parse_shard(const std::string& spec) {
  Shard s;
  long id = 0, min = 0, max = 0, count = 0;
  const bool in_array = env_int("SLURM_ARRAY_TASK_ID", id);
  if (in_array) {
    const bool have_min = env_int("SLURM_ARRAY_TASK_MIN", min);
    const bool have_max = env_int("SLURM_ARRAY_TASK_MAX", max);
    const bool have_count = env_int("SLURM_ARRAY_TASK_COUNT", count);
    const std::string where = "Slurm array (SLURM_ARRAY_TASK_ID=" + std::to_string(id) +
                              (have_min ? ", _MIN=" + std::to_string(min) : "") +
                              (have_max ? ", _MAX=" + std::to_string(max) : "") +
                              (have_count ? ", _COUNT=" + std::to_string(count) : "") + ")";
    if (!have_count && !(have_min && have_max))
      throw InputError(where, "SLURM_ARRAY_TASK_COUNT (or _MIN and _MAX) is not set; pass --shard i/N");
    if (!have_count) count = max - min + 1;
    if (count < 1 || count > kMaxTasks) throw InputError(where, "array task count out of range");
    if (!have_max) max = min + count - 1;
    if (max - min + 1 != count)
      throw InputError(where, "the array's task ids are not one contiguous range (a step or a "
                              "list in --array?); covfit needs e.g. --array=0-" +
                              std::to_string(count - 1) + " or 1-" + std::to_string(count) +
                              ", or an explicit --shard i/N per task");
    if (id < min || id > max)
      throw InputError(where, "task id outside the array's range");
    if (spec.empty()) {
      s.index = static_cast<int>(id - min);
      s.count = static_cast<int>(count);
      return s;
    }
  } else if (spec.empty()) {
    return s;
  }
  const std::string& text = spec;
  auto slash = text.find('/');
  char* end = nullptr;
  if (slash == std::string::npos) throw InputError("--shard " + text, "expected i/N, e.g. 0/4");
  // As long long, range-checked before narrowing: 1/4294967298 must not wrap to 1/2.
  errno = 0;
  const long long want_index = std::strtoll(text.c_str(), &end, 10);
  bool ok = end == text.c_str() + slash && slash > 0;
  const long long want_count = std::strtoll(text.c_str() + slash + 1, &end, 10);
  ok = ok && errno == 0 && *end == '\0' && end != text.c_str() + slash + 1 && want_count >= 1 &&
       want_count <= kMaxTasks && want_index >= 0 && want_index < want_count;
  if (ok) {
    s.index = static_cast<int>(want_index);
    s.count = static_cast<int>(want_count);
  }
  if (!ok) throw InputError("--shard " + text, "expected i/N with 0 <= i < N <= " + std::to_string(kMaxTasks));
  if (in_array && s.count != count)
    throw InputError("--shard " + text, "disagrees with the Slurm array of " + std::to_string(count) +
                                         " tasks (SLURM_ARRAY_TASK_COUNT); drop --shard to take "
                                         "the shard from the array, or submit --array with " +
                                         std::to_string(s.count) + " tasks");
  return s;
}

}  // namespace covfit::job
