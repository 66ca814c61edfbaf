// Typed tables: a plain row struct per table plus one field list, from which come the
// HDF5 compound type, the bytes a writer appends, the C++ reader, the `units` /
// `description` attributes on the dataset and the schema dump (`covfit schema`).
//
// A column is named once, in its table's field list (io/fit_tables.cpp,
// io/sweep_tables.cpp); writers and readers use the struct's members, so a misspelt
// column is a compile error.
#pragma once
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "covfit/io/h5.hpp"

namespace covfit::io {

template <class T>
struct Field {
  Column column;  // name, type, count, units, description
  bool dynamic = false;  // array whose length is the table's `array_len` (count set at layout time)
  std::function<void(const T&, char*, int count)> put;
  std::function<void(T&, const char*, int count)> get;
};

// Field makers: one overload per member type.
template <class T>
Field<T> field(const char* name, std::int64_t T::*m, const char* units, const char* desc) {
  return {{name, Column::i64, 1, units, desc}, false,
          [m](const T& r, char* p, int) { std::memcpy(p, &(r.*m), 8); },
          [m](T& r, const char* p, int) { std::memcpy(&(r.*m), p, 8); }};
}
template <class T>
Field<T> field(const char* name, std::int32_t T::*m, const char* units, const char* desc) {
  return {{name, Column::i32, 1, units, desc}, false,
          [m](const T& r, char* p, int) { std::memcpy(p, &(r.*m), 4); },
          [m](T& r, const char* p, int) { std::memcpy(&(r.*m), p, 4); }};
}
template <class T>
Field<T> field(const char* name, double T::*m, const char* units, const char* desc) {
  return {{name, Column::f64, 1, units, desc}, false,
          [m](const T& r, char* p, int) { std::memcpy(p, &(r.*m), 8); },
          [m](T& r, const char* p, int) { std::memcpy(&(r.*m), p, 8); }};
}
// Fixed-length string of `bytes` bytes (NUL padded UTF-8; longer values are truncated).
template <class T>
Field<T> field(const char* name, std::string T::*m, int bytes, const char* units, const char* desc) {
  return {{name, Column::str, bytes, units, desc}, false,
          [m](const T& r, char* p, int n) {
            std::memset(p, 0, static_cast<std::size_t>(n));
            std::memcpy(p, (r.*m).data(), std::min<std::size_t>((r.*m).size(), static_cast<std::size_t>(n)));
          },
          [m](T& r, const char* p, int n) { r.*m = std::string(p, strnlen(p, static_cast<std::size_t>(n))); }};
}
// Arrays of the table's per-file length (e.g. one entry per target level).
template <class T>
Field<T> field(const char* name, std::vector<double> T::*m, const char* units, const char* desc) {
  return {{name, Column::f64, 0, units, desc}, true,
          [m](const T& r, char* p, int n) {
            for (int i = 0; i < n; ++i) {
              double v = static_cast<std::size_t>(i) < (r.*m).size() ? (r.*m)[static_cast<std::size_t>(i)] : 0.0;
              std::memcpy(p + 8 * i, &v, 8);
            }
          },
          [m](T& r, const char* p, int n) {
            (r.*m).resize(static_cast<std::size_t>(n));
            if (n) std::memcpy((r.*m).data(), p, 8u * static_cast<std::size_t>(n));
          }};
}
template <class T>
Field<T> field(const char* name, std::vector<std::int32_t> T::*m, const char* units, const char* desc) {
  return {{name, Column::i32, 0, units, desc}, true,
          [m](const T& r, char* p, int n) {
            for (int i = 0; i < n; ++i) {
              std::int32_t v = static_cast<std::size_t>(i) < (r.*m).size() ? (r.*m)[static_cast<std::size_t>(i)] : 0;
              std::memcpy(p + 4 * i, &v, 4);
            }
          },
          [m](T& r, const char* p, int n) {
            (r.*m).resize(static_cast<std::size_t>(n));
            if (n) std::memcpy((r.*m).data(), p, 4u * static_cast<std::size_t>(n));
          }};
}

// One table: its dataset name (inside its group), fields and layout. `array_len` is the
// length of the dynamic array fields; with 0 they are left out of the file.
template <class T>
class Table {
 public:
  Table(std::string name, std::string description, std::vector<Field<T>> fields, int array_len = 0)
      : name_(std::move(name)), description_(std::move(description)), fields_(std::move(fields)),
        array_len_(array_len), layout_(columns_for(fields_, array_len)) {
    for (const auto& f : fields_) index_.push_back(f.dynamic && array_len == 0 ? -1 : layout_.index(f.column.name));
  }
  const std::string& name() const { return name_; }
  const std::string& description() const { return description_; }
  const TableLayout& layout() const { return layout_; }
  const std::vector<Field<T>>& fields() const { return fields_; }
  int array_len() const { return array_len_; }

  void encode(const T& row, std::vector<char>& out) const {
    const std::size_t at = out.size();
    out.resize(at + layout_.row_bytes(), 0);
    for (std::size_t i = 0; i < fields_.size(); ++i) {
      if (index_[i] < 0) continue;
      const auto c = static_cast<std::size_t>(index_[i]);
      fields_[i].put(row, out.data() + at + layout_.offsets()[c], layout_.columns()[c].count);
    }
  }
  std::vector<char> encode(const T& row) const {
    std::vector<char> out;
    encode(row, out);
    return out;
  }
  // Rows in `layout` (e.g. a file's own, older layout): fields the layout lacks, or has
  // with another type, keep the struct's defaults.
  std::vector<T> decode(const TableLayout& layout, const std::vector<char>& bytes) const {
    std::vector<int> at;
    for (const auto& f : fields_) {
      int i = layout.index(f.column.name);
      const bool ok = i >= 0 && layout.columns()[static_cast<std::size_t>(i)].type == f.column.type &&
                      (f.dynamic || layout.columns()[static_cast<std::size_t>(i)].count == f.column.count);
      at.push_back(ok ? i : -1);
    }
    const std::size_t n = layout.row_bytes() ? bytes.size() / layout.row_bytes() : 0;
    std::vector<T> out(n);
    for (std::size_t r = 0; r < n; ++r)
      for (std::size_t i = 0; i < fields_.size(); ++i)
        if (at[i] >= 0) {
          const auto c = static_cast<std::size_t>(at[i]);
          fields_[i].get(out[r], bytes.data() + r * layout.row_bytes() + layout.offsets()[c],
                         layout.columns()[c].count);
        }
    return out;
  }

 private:
  static std::vector<Column> columns_for(const std::vector<Field<T>>& fields, int array_len) {
    std::vector<Column> cols;
    for (const auto& f : fields) {
      if (f.dynamic && array_len == 0) continue;
      Column c = f.column;
      if (f.dynamic) c.count = array_len;
      cols.push_back(c);
    }
    return cols;
  }
  std::string name_, description_;
  std::vector<Field<T>> fields_;
  int array_len_;
  TableLayout layout_;
  std::vector<int> index_;
};

// Reads every row of a table dataset through its own on-disk layout.
template <class T>
std::vector<T> read_all(hid_t file, const std::string& path, const Table<T>& table) {
  Handle ds = open_dataset(file, path);
  TableLayout layout = layout_of_dataset(ds.get());
  AppendTable t = AppendTable::open(file, path, &layout);
  return table.decode(layout, t.read_rows(0, t.size()));
}

}  // namespace covfit::io
