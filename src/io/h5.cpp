#include "covfit/io/h5.hpp"

#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "covfit/core/error.hpp"
#include "covfit/core/limits.hpp"

namespace covfit::io {
namespace {

// The innermost message of this thread's HDF5 error stack: for a failed read or write
// it names the file, the errno and its text (e.g. "No space left on device").
herr_t innermost_error(unsigned n, const H5E_error2_t* e, void* out) {
  if (n == 0 && e && e->desc) *static_cast<std::string*>(out) = e->desc;
  return 0;
}

void check(herr_t status, const std::string& what) {
  if (status < 0) throw RuntimeError("HDF5: " + what + " failed" + hdf5_error_detail());
}
hid_t check_id(hid_t id, const std::string& what) {
  if (id < 0) throw RuntimeError("HDF5: " + what + " failed" + hdf5_error_detail());
  return id;
}

Handle string_type(std::size_t len) {
  Handle t(H5Tcopy(H5T_C_S1), H5Tclose);
  check(H5Tset_size(t.get(), len), "H5Tset_size");
  check(H5Tset_strpad(t.get(), H5T_STR_NULLPAD), "H5Tset_strpad");
  check(H5Tset_cset(t.get(), H5T_CSET_UTF8), "H5Tset_cset");
  return t;
}

Handle member_type(const Column& c) {
  hid_t base = c.type == Column::f64   ? H5T_NATIVE_DOUBLE
               : c.type == Column::i64 ? H5T_NATIVE_INT64
                                       : H5T_NATIVE_INT32;
  if (c.type == Column::str) return string_type(static_cast<std::size_t>(c.count));
  if (c.count == 1) return Handle(H5Tcopy(base), H5Tclose);
  hsize_t dim = static_cast<hsize_t>(c.count);
  return Handle(check_id(H5Tarray_create2(base, 1, &dim), "H5Tarray_create2"), H5Tclose);
}

std::size_t member_bytes(const Column& c) {
  switch (c.type) {
    case Column::f64: return 8u * c.count;
    case Column::i64: return 8u * c.count;
    case Column::i32: return 4u * c.count;
    case Column::str: return static_cast<std::size_t>(c.count);
  }
  return 0;
}

}  // namespace

std::string hdf5_error_detail() {
  std::string msg;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_error, &msg);
  for (char& c : msg)
    if (c == '\n') c = ' ';  // ctime()'s newline inside HDF5's write-failure message
  return msg.empty() ? std::string() : " (" + msg + ")";
}

Handle::Handle(hid_t id, Closer closer) : id_(id), close_(closer) {
  if (id < 0) throw RuntimeError("HDF5: invalid handle");
}
Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = std::exchange(o.id_, -1);
    close_ = o.close_;
  }
  return *this;
}
void Handle::reset() {
  if (id_ >= 0 && close_) close_(id_);
  id_ = -1;
}

void quiet_hdf5_errors() {
  // COVFIT_HDF5_ERRORS=1 keeps HDF5's own error stack printing (debugging).
  if (const char* e = std::getenv("COVFIT_HDF5_ERRORS"); e && *e == '1') return;
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

bool exists(hid_t loc, const std::string& path) {
  std::string partial;
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    std::size_t next = path.find('/', pos + 1);
    partial = path.substr(0, next);
    pos = next;
    if (partial.empty() || partial == "/") continue;
    if (H5Lexists(loc, partial.c_str(), H5P_DEFAULT) <= 0) return false;
  }
  return true;
}

void write_attr(hid_t obj, const std::string& name, const std::string& value) {
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
  Handle type = string_type(std::max<std::size_t>(value.size(), 1));
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(check_id(H5Acreate2(obj, name.c_str(), type.get(), space.get(), H5P_DEFAULT,
                                  H5P_DEFAULT), "create attribute " + name),
              H5Aclose);
  std::string buf = value.empty() ? std::string(1, '\0') : value;
  check(H5Awrite(attr.get(), type.get(), buf.data()), "write attribute " + name);
}

static void write_attr_numeric(hid_t obj, const std::string& name, hid_t type, const void* data,
                               hsize_t n, bool scalar) {
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
  Handle space(scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, nullptr), H5Sclose);
  Handle attr(check_id(H5Acreate2(obj, name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                       "create attribute " + name),
              H5Aclose);
  check(H5Awrite(attr.get(), type, data), "write attribute " + name);
}
void write_attr(hid_t obj, const std::string& name, std::int64_t value) {
  write_attr_numeric(obj, name, H5T_NATIVE_INT64, &value, 1, true);
}
void write_attr(hid_t obj, const std::string& name, double value) {
  write_attr_numeric(obj, name, H5T_NATIVE_DOUBLE, &value, 1, true);
}
void write_attr(hid_t obj, const std::string& name, const std::vector<double>& values) {
  double dummy = 0;
  write_attr_numeric(obj, name, H5T_NATIVE_DOUBLE, values.empty() ? &dummy : values.data(),
                     values.size(), false);
}
void write_attr(hid_t obj, const std::string& name, const std::vector<std::string>& values) {
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
  std::size_t len = 1;
  for (const auto& v : values) len = std::max(len, v.size());
  std::vector<char> buf(len * std::max<std::size_t>(values.size(), 1), '\0');
  for (std::size_t i = 0; i < values.size(); ++i) std::memcpy(buf.data() + i * len, values[i].data(), values[i].size());
  Handle type = string_type(len);
  hsize_t n = values.size();
  Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  Handle attr(check_id(H5Acreate2(obj, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
                       "create attribute " + name),
              H5Aclose);
  check(H5Awrite(attr.get(), type.get(), buf.data()), "write attribute " + name);
}
const char* type_name(Column::Type t) {
  switch (t) {
    case Column::f64: return "float64";
    case Column::i64: return "int64";
    case Column::i32: return "int32";
    case Column::str: return "string";
  }
  return "?";
}
bool has_attr(hid_t obj, const std::string& name) {
  const htri_t e = H5Aexists(obj, name.c_str());
  if (e < 0) throw RuntimeError("HDF5: cannot read the attributes of an object (damaged file?)" + hdf5_error_detail());
  return e > 0;
}

std::string read_attr_string(hid_t obj, const std::string& name) {
  Handle attr(check_id(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "open attribute " + name),
              H5Aclose);
  Handle ftype(H5Aget_type(attr.get()), H5Tclose);
  if (H5Tget_class(ftype.get()) != H5T_STRING)
    throw RuntimeError("attribute " + name + " is not a string");
  if (H5Tis_variable_str(ftype.get()) > 0) {
    Handle mtype(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mtype.get(), H5T_VARIABLE);
    char* s = nullptr;
    check(H5Aread(attr.get(), mtype.get(), &s), "read attribute " + name);
    std::string out = s ? s : "";
    H5free_memory(s);
    return out;
  }
  std::size_t len = H5Tget_size(ftype.get());
  std::string buf(len, '\0');
  check(H5Aread(attr.get(), ftype.get(), buf.data()), "read attribute " + name);
  buf.resize(std::strlen(buf.c_str()));
  return buf;
}

std::int64_t read_attr_int(hid_t obj, const std::string& name) {
  Handle attr(check_id(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "open attribute " + name),
              H5Aclose);
  std::int64_t v = 0;
  check(H5Aread(attr.get(), H5T_NATIVE_INT64, &v), "read attribute " + name);
  return v;
}

std::vector<double> read_attr_doubles(hid_t obj, const std::string& name) {
  Handle attr(check_id(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "open attribute " + name), H5Aclose);
  Handle space(H5Aget_space(attr.get()), H5Sclose);
  hssize_t n = H5Sget_simple_extent_npoints(space.get());
  std::vector<double> v(static_cast<std::size_t>(std::max<hssize_t>(n, 0)));
  if (!v.empty()) check(H5Aread(attr.get(), H5T_NATIVE_DOUBLE, v.data()), "read attribute " + name);
  return v;
}

std::vector<std::string> read_attr_strings(hid_t obj, const std::string& name) {
  Handle attr(check_id(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "open attribute " + name), H5Aclose);
  Handle ftype(H5Aget_type(attr.get()), H5Tclose);
  if (H5Tget_class(ftype.get()) != H5T_STRING || H5Tis_variable_str(ftype.get()) > 0)
    throw RuntimeError("attribute " + name + " is not an array of fixed-length strings");
  Handle space(H5Aget_space(attr.get()), H5Sclose);
  const auto n = static_cast<std::size_t>(std::max<hssize_t>(H5Sget_simple_extent_npoints(space.get()), 0));
  const std::size_t len = H5Tget_size(ftype.get());
  std::vector<char> buf(n * len + 1, '\0');
  if (n) check(H5Aread(attr.get(), ftype.get(), buf.data()), "read attribute " + name);
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n; ++i) out.emplace_back(buf.data() + i * len, strnlen(buf.data() + i * len, len));
  return out;
}

Handle create_file(const std::string& path) {
  quiet_hdf5_errors();
  hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (id < 0) throw InputError(path, "cannot create file");
  return Handle(id, H5Fclose);
}

void copy_object(hid_t from, const std::string& path, hid_t to) {
  check(H5Ocopy(from, path.c_str(), to, path.c_str(), H5P_DEFAULT, H5P_DEFAULT), "copy of " + path);
}

Handle create_group(hid_t loc, const std::string& name) {
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  return Handle(check_id(H5Gcreate2(loc, name.c_str(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT),
                         "create group " + name),
                H5Gclose);
}

Handle create_array(hid_t loc, const std::string& name, const std::vector<hsize_t>& dims) {
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  // Attributes in dense storage from the first one: HDF5 1.10.8 fails (and leaves the
  // file unreadable) when attributes outgrow a chunked dataset's first object header
  // chunk in a file written with the latest format (seen at finalize, store = "all").
  H5Pset_attr_phase_change(dcpl.get(), 0, 0);
  hsize_t total = 1;
  for (hsize_t d : dims) total *= d;
  if (total > 4096) {  // compress anything beyond a few pages
    // Chunks of <= 64 Ki elements filled from the last dimension: a (lambda, n, n) stack
    // gets chunks inside one matrix, so one matrix is read (and written) on its own.
    std::vector<hsize_t> chunk(dims);
    hsize_t per = 1;
    for (std::size_t i = chunk.size(); i-- > 0;) {
      chunk[i] = std::max<hsize_t>(1, std::min<hsize_t>(chunk[i], (1u << 16) / std::max<hsize_t>(per, 1)));
      per *= chunk[i];
    }
    H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data());
    H5Pset_shuffle(dcpl.get());
    H5Pset_deflate(dcpl.get(), 1);  // level 1: most of the gain on our tables at a fraction of the CPU
  }
  return Handle(check_id(H5Dcreate2(loc, name.c_str(), H5T_NATIVE_DOUBLE, space.get(), lcpl.get(),
                                    dcpl.get(), H5P_DEFAULT),
                         "create dataset " + name),
                H5Dclose);
}

void write_array(hid_t loc, const std::string& name, const std::vector<hsize_t>& dims,
                 const double* data) {
  Handle ds = create_array(loc, name, dims);
  check(H5Dwrite(ds.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
        "write dataset " + name);
}

void write_slab(hid_t ds, hsize_t index, const double* data) {
  Handle fspace(H5Dget_space(ds), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(fspace.get());
  std::vector<hsize_t> dims(static_cast<std::size_t>(std::max(rank, 1)));
  H5Sget_simple_extent_dims(fspace.get(), dims.data(), nullptr);
  std::vector<hsize_t> start(dims.size(), 0), count(dims);
  start[0] = index;
  count[0] = 1;
  check(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr),
        "select slab");
  Handle mspace(H5Screate_simple(rank, count.data(), nullptr), H5Sclose);
  check(H5Dwrite(ds, H5T_NATIVE_DOUBLE, mspace.get(), fspace.get(), H5P_DEFAULT, data), "write slab");
}

void write_slab_rows(hid_t ds, hsize_t index, hsize_t row0, hsize_t nrows, const double* data) {
  if (nrows == 0) return;
  Handle fspace(H5Dget_space(ds), H5Sclose);
  if (H5Sget_simple_extent_ndims(fspace.get()) != 3) throw RuntimeError("write_slab_rows: not a (slabs, rows, cols) dataset");
  hsize_t dims[3];
  H5Sget_simple_extent_dims(fspace.get(), dims, nullptr);
  const hsize_t start[3] = {index, row0, 0}, count[3] = {1, nrows, dims[2]};
  check(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start, nullptr, count, nullptr), "select slab rows");
  Handle mspace(H5Screate_simple(3, count, nullptr), H5Sclose);
  check(H5Dwrite(ds, H5T_NATIVE_DOUBLE, mspace.get(), fspace.get(), H5P_DEFAULT, data), "write slab rows");
}

hsize_t slab_piece_rows(hid_t ds, std::size_t bytes) {
  Handle fspace(H5Dget_space(ds), H5Sclose);
  hsize_t dims[3] = {1, 1, 1};
  if (H5Sget_simple_extent_ndims(fspace.get()) != 3) throw RuntimeError("slab_piece_rows: not a (slabs, rows, cols) dataset");
  H5Sget_simple_extent_dims(fspace.get(), dims, nullptr);
  hsize_t chunk_rows = 1;  // contiguous (small) datasets: any piece
  Handle dcpl(H5Dget_create_plist(ds), H5Pclose);
  if (H5Pget_layout(dcpl.get()) == H5D_CHUNKED) {
    hsize_t chunk[3];
    if (H5Pget_chunk(dcpl.get(), 3, chunk) == 3) chunk_rows = std::max<hsize_t>(1, chunk[1]);
  }
  const hsize_t want = std::max<hsize_t>(1, bytes / (8 * std::max<hsize_t>(1, dims[2])));
  return std::min(dims[1], std::max<hsize_t>(chunk_rows, want / chunk_rows * chunk_rows));
}

DoubleArray read_array(hid_t loc, const std::string& name, const std::string& where_) {
  const std::string where = where_.empty() ? name : where_;
  H5O_info_t info;  // HDF5 1.10 API
  if (H5Oget_info_by_name2(loc, name.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0)
    throw InputError(where, "no such dataset");
  if (info.type != H5O_TYPE_DATASET) throw InputError(where, "is a group, not a dataset");
  // Input files are user data: every failure names the file and dataset (exit 2).
  hid_t ds_id = H5Dopen2(loc, name.c_str(), H5P_DEFAULT);
  if (ds_id < 0) throw InputError(where, "cannot open the dataset (damaged file?)" + hdf5_error_detail());
  Handle ds(ds_id, H5Dclose);
  hid_t space_id = H5Dget_space(ds.get());
  if (space_id < 0) throw InputError(where, "cannot read the dataset's shape (damaged file?)");
  Handle space(space_id, H5Sclose);
  int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0 || rank > 32) throw InputError(where, "cannot read the dataset's shape (damaged file?)");
  DoubleArray out;
  out.dims.resize(static_cast<std::size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), out.dims.data(), nullptr);
  // The declared extent, before allocating it: a tiny file can declare 2^60 elements.
  double total_d = 1;
  hsize_t total = 1;
  for (hsize_t d : out.dims) {
    total_d *= static_cast<double>(d);
    total *= d;
  }
  std::string shape;
  for (hsize_t d : out.dims) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
  check_memory(8.0 * total_d, where, "the dataset's declared shape (" + shape + ")");
  hid_t type_id = H5Dget_type(ds.get());
  if (type_id < 0) throw InputError(where, "cannot read the dataset's type (damaged file?)");
  Handle type(type_id, H5Tclose);
  H5T_class_t cls = H5Tget_class(type.get());
  if (cls != H5T_FLOAT && cls != H5T_INTEGER)
    throw InputError(where, "expected a numeric dataset");
  out.data.resize(total);
  if (total && H5Dread(ds.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data.data()) < 0)
    throw InputError(where, "cannot read the data (truncated or damaged file?)" + hdf5_error_detail());
  return out;
}

TableLayout::TableLayout(std::vector<Column> columns) : columns_(std::move(columns)) {
  for (const auto& c : columns_) {
    offsets_.push_back(row_bytes_);
    row_bytes_ += member_bytes(c);
  }
}
int TableLayout::index(const std::string& name) const {
  for (std::size_t i = 0; i < columns_.size(); ++i)
    if (columns_[i].name == name) return static_cast<int>(i);
  return -1;
}
std::size_t TableLayout::offset(const std::string& name) const {
  int i = index(name);
  if (i < 0) throw std::logic_error("table has no column " + name);
  return offsets_[static_cast<std::size_t>(i)];
}
Handle TableLayout::file_type() const {
  Handle t(H5Tcreate(H5T_COMPOUND, row_bytes_), H5Tclose);
  for (std::size_t i = 0; i < columns_.size(); ++i) {
    Handle m = member_type(columns_[i]);
    check(H5Tinsert(t.get(), columns_[i].name.c_str(), offsets_[i], m.get()), "H5Tinsert");
  }
  return t;
}

namespace {
const Column& column_or_throw(const TableLayout& layout, const std::string& col) {
  int idx = layout.index(col);
  if (idx < 0) throw std::logic_error("table has no column '" + col + "'");
  return layout.columns()[static_cast<std::size_t>(idx)];
}
}  // namespace

Row& Row::set(const std::string& col, double v, int i) {
  const Column& c = column_or_throw(*layout_, col);
  std::size_t off = layout_->offset(col);
  if (c.type == Column::f64) std::memcpy(&bytes_[off + 8u * i], &v, 8);
  else if (c.type == Column::i64) set(col, static_cast<std::int64_t>(v), i);
  else if (c.type == Column::i32) set(col, static_cast<std::int64_t>(v), i);
  else throw std::logic_error("column " + col + " is a string");
  return *this;
}
Row& Row::set(const std::string& col, std::int64_t v, int i) {
  const Column& c = column_or_throw(*layout_, col);
  std::size_t off = layout_->offset(col);
  if (c.type == Column::i64) std::memcpy(&bytes_[off + 8u * i], &v, 8);
  else if (c.type == Column::i32) {
    auto w = static_cast<std::int32_t>(v);
    std::memcpy(&bytes_[off + 4u * i], &w, 4);
  } else if (c.type == Column::f64) {
    double d = static_cast<double>(v);
    std::memcpy(&bytes_[off + 8u * i], &d, 8);
  } else throw std::logic_error("column " + col + " is a string");
  return *this;
}
std::int64_t Row::get_i64(const std::string& col) const {
  int idx = layout_->index(col);
  if (idx < 0) throw std::logic_error("table has no column " + col);
  const Column& c = layout_->columns()[static_cast<std::size_t>(idx)];
  std::size_t off = layout_->offset(col);
  if (c.type == Column::i64) {
    std::int64_t v;
    std::memcpy(&v, &bytes_[off], 8);
    return v;
  }
  if (c.type == Column::i32) {
    std::int32_t v;
    std::memcpy(&v, &bytes_[off], 4);
    return v;
  }
  throw std::logic_error("column " + col + " is not an integer");
}
std::string Row::get_str(const std::string& col) const {
  int idx = layout_->index(col);
  if (idx < 0) throw std::logic_error("table has no column " + col);
  std::size_t n = static_cast<std::size_t>(layout_->columns()[static_cast<std::size_t>(idx)].count);
  const char* p = &bytes_[layout_->offset(col)];
  return std::string(p, strnlen(p, n));
}
Row& Row::set(const std::string& col, const std::string& v) {
  const Column& c = column_or_throw(*layout_, col);
  if (c.type != Column::str) throw std::logic_error("column '" + col + "' is not a string");
  std::size_t off = layout_->offset(col);
  std::size_t n = std::min<std::size_t>(v.size(), static_cast<std::size_t>(c.count));
  std::memset(&bytes_[off], 0, static_cast<std::size_t>(c.count));
  std::memcpy(&bytes_[off], v.data(), n);
  return *this;
}

Handle open_dataset(hid_t loc, const std::string& path) {
  return Handle(check_id(H5Dopen2(loc, path.c_str(), H5P_DEFAULT), "open dataset " + path), H5Dclose);
}

void write_column_attrs(hid_t ds, const TableLayout& layout) {
  std::vector<std::string> names, units, desc;
  for (const auto& c : layout.columns()) {
    names.push_back(c.name);
    units.push_back(c.units);
    desc.push_back(c.description);
  }
  write_attr(ds, "column_names", names);
  write_attr(ds, "column_units", units);
  write_attr(ds, "column_descriptions", desc);
}

TableLayout layout_of_dataset(hid_t ds) {
  Handle type(H5Dget_type(ds), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_COMPOUND) throw RuntimeError("HDF5: not a compound dataset");
  std::vector<Column> cols;
  int n = H5Tget_nmembers(type.get());
  for (int i = 0; i < n; ++i) {
    char* name = H5Tget_member_name(type.get(), static_cast<unsigned>(i));
    Handle mt(H5Tget_member_type(type.get(), static_cast<unsigned>(i)), H5Tclose);
    Column c;
    c.name = name;
    H5free_memory(name);
    H5T_class_t cls = H5Tget_class(mt.get());
    auto numeric = [](hid_t t) {
      return H5Tget_class(t) == H5T_FLOAT ? Column::f64 : H5Tget_size(t) == 8 ? Column::i64 : Column::i32;
    };
    if (cls == H5T_STRING) {
      c.type = Column::str;
      c.count = static_cast<int>(H5Tget_size(mt.get()));
    } else if (cls == H5T_ARRAY) {
      hsize_t dim = 0;
      H5Tget_array_dims2(mt.get(), &dim);
      Handle base(H5Tget_super(mt.get()), H5Tclose);
      c.type = numeric(base.get());
      c.count = static_cast<int>(dim);
    } else {
      c.type = numeric(mt.get());
    }
    cols.push_back(c);
  }
  return TableLayout(cols);
}

AppendTable AppendTable::create(hid_t loc, const std::string& name, const TableLayout* layout,
                                hsize_t chunk_rows) {
  AppendTable t;
  t.layout_ = layout;
  hsize_t zero = 0, unlimited = H5S_UNLIMITED;
  Handle space(H5Screate_simple(1, &zero, &unlimited), H5Sclose);
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  check(H5Pset_chunk(dcpl.get(), 1, &chunk_rows), "H5Pset_chunk");
  H5Pset_attr_phase_change(dcpl.get(), 0, 0);  // dense attributes: see create_array
  H5Pset_shuffle(dcpl.get());
  H5Pset_deflate(dcpl.get(), 1);  // level 1: most of the gain on our tables at a fraction of the CPU
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  Handle type = layout ? layout->file_type() : Handle(H5Tcopy(H5T_NATIVE_DOUBLE), H5Tclose);
  t.ds_ = Handle(check_id(H5Dcreate2(loc, name.c_str(), type.get(), space.get(), lcpl.get(),
                                     dcpl.get(), H5P_DEFAULT),
                          "create dataset " + name),
                 H5Dclose);
  if (layout) write_column_attrs(t.ds_.get(), *layout);
  return t;
}

AppendTable AppendTable::open(hid_t loc, const std::string& name, const TableLayout* layout) {
  AppendTable t;
  t.layout_ = layout;
  t.ds_ = Handle(check_id(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), "open dataset " + name),
                 H5Dclose);
  Handle space(H5Dget_space(t.ds_.get()), H5Sclose);
  H5Sget_simple_extent_dims(space.get(), &t.size_, nullptr);
  if (layout) {
    Handle ftype(H5Dget_type(t.ds_.get()), H5Tclose);
    Handle want = layout->file_type();
    if (H5Tequal(ftype.get(), want.get()) <= 0)
      throw InputError(name, "table layout differs from this covfit version's");
  }
  return t;
}

void AppendTable::append(const void* rows, hsize_t n) {
  if (n == 0) return;
  hsize_t new_size = size_ + n;
  check(H5Dset_extent(ds_.get(), &new_size), "extend dataset");
  Handle fspace(H5Dget_space(ds_.get()), H5Sclose);
  check(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, &size_, nullptr, &n, nullptr),
        "select rows");
  Handle mspace(H5Screate_simple(1, &n, nullptr), H5Sclose);
  Handle type = layout_ ? layout_->file_type() : Handle(H5Tcopy(H5T_NATIVE_DOUBLE), H5Tclose);
  check(H5Dwrite(ds_.get(), type.get(), mspace.get(), fspace.get(), H5P_DEFAULT, rows),
        "append rows");
  size_ = new_size;
}

void AppendTable::truncate(hsize_t n) {
  if (n >= size_) return;
  check(H5Dset_extent(ds_.get(), &n), "shrink dataset");
  size_ = n;
}

void AppendTable::flush() { check(H5Dflush(ds_.get()), "flush dataset"); }

std::vector<char> AppendTable::read_rows(hsize_t first, hsize_t n) const {
  std::vector<char> out(n * (layout_ ? layout_->row_bytes() : 8));
  read_rows(first, n, out.data());
  return out;
}

void AppendTable::read_rows(hsize_t first, hsize_t n, void* out) const {
  if (n == 0) return;
  Handle fspace(H5Dget_space(ds_.get()), H5Sclose);
  check(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, &first, nullptr, &n, nullptr),
        "select rows");
  Handle mspace(H5Screate_simple(1, &n, nullptr), H5Sclose);
  Handle type = layout_ ? layout_->file_type() : Handle(H5Tcopy(H5T_NATIVE_DOUBLE), H5Tclose);
  check(H5Dread(ds_.get(), type.get(), mspace.get(), fspace.get(), H5P_DEFAULT, out), "read rows");
}

template <class T>
static std::vector<T> read_member(hid_t ds, hsize_t size, const std::string& column, hid_t native) {
  std::vector<T> out(size);
  if (size == 0) return out;
  Handle mtype(H5Tcreate(H5T_COMPOUND, sizeof(T)), H5Tclose);
  check(H5Tinsert(mtype.get(), column.c_str(), 0, native), "H5Tinsert");
  check(H5Dread(ds, mtype.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()),
        "read column " + column);
  return out;
}
std::vector<std::int64_t> AppendTable::read_i64(const std::string& column) const {
  return read_member<std::int64_t>(ds_.get(), size_, column, H5T_NATIVE_INT64);
}
std::vector<double> AppendTable::read_f64(const std::string& column) const {
  return read_member<double>(ds_.get(), size_, column, H5T_NATIVE_DOUBLE);
}
std::vector<std::string> AppendTable::read_str(const std::string& column) const {
  int idx = layout_ ? layout_->index(column) : -1;
  if (idx < 0) throw std::logic_error("table has no column " + column);
  std::size_t len = static_cast<std::size_t>(layout_->columns()[static_cast<std::size_t>(idx)].count);
  std::vector<char> raw(size_ * len);
  std::vector<std::string> out;
  if (size_ == 0) return out;
  Handle st = string_type(len);
  Handle mtype(H5Tcreate(H5T_COMPOUND, len), H5Tclose);
  check(H5Tinsert(mtype.get(), column.c_str(), 0, st.get()), "H5Tinsert");
  check(H5Dread(ds_.get(), mtype.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()),
        "read column " + column);
  for (hsize_t i = 0; i < size_; ++i) {
    const char* p = raw.data() + i * len;
    out.emplace_back(p, strnlen(p, len));
  }
  return out;
}

}  // namespace covfit::io

namespace covfit::io {

Handle open_input_file(const std::string& path, const std::string& role) {
  quiet_hdf5_errors();
  require_regular_file(path, "input file (" + role + ")");
  if (H5Fis_hdf5(path.c_str()) <= 0) throw InputError(path, "not a readable HDF5 file (" + role + ")");
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0)
    throw InputError(path, "cannot open as HDF5 (truncated or damaged file?) (" + role + ")" +
                               hdf5_error_detail());
  return Handle(id, H5Fclose);
}

}  // namespace covfit::io
