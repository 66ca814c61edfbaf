// Append-only task results in one HDF5 group, the mechanism under every job kind.
//
// A task writes rows into any number of dependent tables and then one row into the
// commit table; the commit row holds, for each dependent, the (offset, count) of its
// rows. Commit rows are held back until the dependents are flushed, so whoever sees a
// commit row (an SWMR reader, a resume after a kill) finds all of the task's data. A
// task exists in a file if and only if it has a commit row.
//
// Every dependent row (for compound tables) starts with an int64 `task_id` column, so a
// copy can check that a commit row and its rows belong together.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "covfit/io/h5.hpp"

namespace covfit::io {

struct DependentTable {
  std::string name;                  // dataset name inside the group
  const TableLayout* layout;         // null: a plain float64 array
  std::string offset_col, count_col; // columns of the commit table
  hsize_t chunk_rows = 1024;
};

// One dependent's rows for TaskStore::append: encoded bytes (row_bytes * count, or 8 *
// count for float64 arrays), or, when `write` is set, a function that appends them to the
// table itself (piece by piece: large float64 arrays written from their own buffers,
// never copied whole).
struct DependentRows {
  std::vector<char> bytes;
  std::function<void(AppendTable&)> write;
};

class TaskStore {
 public:
  // `commit_layout` must have an int64 `id` and a string `status` column.
  TaskStore(std::string group, std::string commit_name, const TableLayout* commit_layout,
            std::vector<DependentTable> dependents);
  void create(hid_t file);
  void open(hid_t file);
  hid_t commit_id() const { return commit_.id(); }

  // rows[i]: dependent i's rows. The commit row's offset/count columns are filled in here.
  void append(Row commit_row, const std::vector<DependentRows>& rows);
  void append(Row commit_row, const std::vector<std::vector<char>>& rows);  // bytes only
  void flush();

  std::vector<std::int64_t> done_ids() const { return commit_.read_i64("id"); }
  std::int64_t rows() const { return static_cast<std::int64_t>(commit_.size()); }

  // Copy every complete, consistent task of `src` with accept(id) into this (new) store,
  // in id order; returns the ids copied. Rows that cannot be read or do not match are
  // skipped: that task will be recomputed. float64 arrays are copied in bounded pieces.
  std::vector<std::int64_t> copy_tasks_from(const TaskStore& src,
                                            const std::function<bool(std::int64_t)>& accept);

 private:
  std::string group_, commit_name_;
  const TableLayout* commit_layout_;
  std::vector<DependentTable> deps_;
  AppendTable commit_;
  std::vector<AppendTable> tables_;
  std::vector<char> pending_;
  hsize_t pending_rows_ = 0;
};

}  // namespace covfit::io
