// Small RAII layer over the HDF5 C API, plus appendable compound tables.
//
// Every HDF5 failure becomes covfit::RuntimeError (or InputError where the caller says
// the file is user input). HDF5's own error stack printing is switched off once.
#pragma once
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace covfit::io {

// Owns one hid_t and closes it with the right H5*close.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer);
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, -1)), close_(o.close_) {}
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }
  hid_t get() const { return id_; }
  explicit operator bool() const { return id_ >= 0; }
  void reset();

 private:
  hid_t id_ = -1;
  Closer close_ = nullptr;
};

void quiet_hdf5_errors();
// " (innermost HDF5 error message)" of this thread's error stack, or "": for a failed
// read or write it names the file, errno and its text.
std::string hdf5_error_detail();
// Opens an input file read-only (regular files only); every failure is an InputError
// naming `path` (and `role`, e.g. "data set 'a'").
Handle open_input_file(const std::string& path, const std::string& role);
bool exists(hid_t loc, const std::string& path);  // link exists (every level)

// Attributes on a file, group or dataset.
void write_attr(hid_t obj, const std::string& name, const std::string& value);
void write_attr(hid_t obj, const std::string& name, std::int64_t value);
void write_attr(hid_t obj, const std::string& name, double value);
void write_attr(hid_t obj, const std::string& name, const std::vector<double>& values);
void write_attr(hid_t obj, const std::string& name, const std::vector<std::string>& values);
bool has_attr(hid_t obj, const std::string& name);
std::string read_attr_string(hid_t obj, const std::string& name);
std::int64_t read_attr_int(hid_t obj, const std::string& name);
std::vector<double> read_attr_doubles(hid_t obj, const std::string& name);
std::vector<std::string> read_attr_strings(hid_t obj, const std::string& name);  // 1-D fixed-length

// Whole fixed-size datasets (input data, small matrices).
struct DoubleArray {
  std::vector<hsize_t> dims;
  std::vector<double> data;  // row-major
};
void write_array(hid_t loc, const std::string& name, const std::vector<hsize_t>& dims,
                 const double* data);
// A float64 dataset of `dims` (chunked and compressed when large), to fill slab by slab:
// write_slab writes index `index` of the first dimension (the rest of the dims' data).
Handle create_array(hid_t loc, const std::string& name, const std::vector<hsize_t>& dims);
void write_slab(hid_t ds, hsize_t index, const double* data);
// Rows [row0, row0 + nrows) of slab `index` of a (slabs, rows, cols) dataset from `data`
// (nrows x cols, row-major): a large slab written in pieces from a bounded buffer.
void write_slab_rows(hid_t ds, hsize_t index, hsize_t row0, hsize_t nrows, const double* data);
// Rows per piece for write_slab_rows: whole chunks (no chunk is written twice), about
// `bytes` of them, at least one chunk's rows.
hsize_t slab_piece_rows(hid_t ds, std::size_t bytes);
// `where` names the place in messages (e.g. "in.h5:/X"); user-input errors (not a
// dataset, not numeric) are InputError.
DoubleArray read_array(hid_t loc, const std::string& name, const std::string& where = "");
Handle create_group(hid_t loc, const std::string& name);  // creates intermediate groups
Handle create_file(const std::string& path);  // truncates; InputError if it cannot
void copy_object(hid_t from, const std::string& path, hid_t to);  // H5Ocopy, same path

// Column description of an appendable table (an HDF5 compound dataset, 1-D, unlimited).
struct Column {
  enum Type { f64, i64, i32, str };
  std::string name;
  Type type = f64;
  int count = 1;  // array length for f64/i32/i64 (1 = scalar); byte length for str
  std::string units, description;  // for the dataset's attributes and the schema dump
};
const char* type_name(Column::Type t);  // "float64", "int64", "int32", "string"

class TableLayout {
 public:
  explicit TableLayout(std::vector<Column> columns);
  const std::vector<Column>& columns() const { return columns_; }
  std::size_t row_bytes() const { return row_bytes_; }
  const std::vector<std::size_t>& offsets() const { return offsets_; }
  std::size_t offset(const std::string& name) const;  // throws std::logic_error if unknown
  int index(const std::string& name) const;           // -1 if unknown
  Handle file_type() const;                            // HDF5 compound type

 private:
  std::vector<Column> columns_;
  std::vector<std::size_t> offsets_;
  std::size_t row_bytes_ = 0;
};

// The layout of an existing compound dataset, from its own type (older files included).
TableLayout layout_of_dataset(hid_t ds);
Handle open_dataset(hid_t loc, const std::string& path);  // RuntimeError if absent
// `column_names`, `column_units`, `column_descriptions`: string arrays in column order, on
// every compound table (h5py: dict(zip(ds.attrs["column_names"], ds.attrs["column_units"]))).
void write_column_attrs(hid_t ds, const TableLayout& layout);

// Rows are built in a byte buffer that matches the layout. Typed tables (io/table.hpp)
// are the way to write rows; Row is for the few columns addressed by name at run time
// (a task store's offset/count columns). An unknown column name throws std::logic_error.
class Row {
 public:
  explicit Row(const TableLayout& layout) : layout_(&layout), bytes_(layout.row_bytes(), 0) {}
  Row(const TableLayout& layout, const char* bytes)
      : layout_(&layout), bytes_(bytes, bytes + layout.row_bytes()) {}
  std::int64_t get_i64(const std::string& col) const;  // i64 or i32 scalar column
  std::string get_str(const std::string& col) const;
  Row& set(const std::string& col, double v, int i = 0);
  Row& set(const std::string& col, std::int64_t v, int i = 0);
  Row& set(const std::string& col, int v, int i = 0) { return set(col, std::int64_t{v}, i); }
  Row& set(const std::string& col, const std::string& v);
  const std::vector<char>& bytes() const { return bytes_; }

 private:
  const TableLayout* layout_;
  std::vector<char> bytes_;
};

// A 1-D chunked, compressed, unlimited dataset of rows (compound) or doubles.
class AppendTable {
 public:
  AppendTable() = default;
  // Create under `loc`; `layout` null = a plain float64 array.
  static AppendTable create(hid_t loc, const std::string& name, const TableLayout* layout,
                            hsize_t chunk_rows);
  static AppendTable open(hid_t loc, const std::string& name, const TableLayout* layout);

  hsize_t size() const { return size_; }
  void append(const void* rows, hsize_t n);  // n rows in layout (or doubles)
  void append(const Row& row) { append(row.bytes().data(), 1); }
  void truncate(hsize_t n);                   // shrink (only before SWMR mode)
  void flush();
  hid_t id() const { return ds_.get(); }
  // Read one numeric column (scalar member) for rows [0, size) as int64 / double.
  std::vector<std::int64_t> read_i64(const std::string& column) const;
  std::vector<double> read_f64(const std::string& column) const;
  std::vector<std::string> read_str(const std::string& column) const;
  std::vector<char> read_rows(hsize_t first, hsize_t n) const;  // raw row bytes
  void read_rows(hsize_t first, hsize_t n, void* out) const;    // into n rows at `out`

 private:
  Handle ds_;
  const TableLayout* layout_ = nullptr;
  hsize_t size_ = 0;
};

}  // namespace covfit::io
