#include "covfit/io/task_store.hpp"

#include <algorithm>
#include <numeric>
#include <set>

#include "covfit/core/error.hpp"

namespace covfit::io {

TaskStore::TaskStore(std::string group, std::string commit_name, const TableLayout* commit_layout,
                     std::vector<DependentTable> dependents)
    : group_(std::move(group)), commit_name_(std::move(commit_name)),
      commit_layout_(commit_layout), deps_(std::move(dependents)) {}

void TaskStore::create(hid_t file) {
  create_group(file, group_);
  tables_.clear();
  for (const auto& d : deps_)
    tables_.push_back(AppendTable::create(file, group_ + "/" + d.name, d.layout, d.chunk_rows));
  commit_ = AppendTable::create(file, group_ + "/" + commit_name_, commit_layout_, 64);
}

void TaskStore::open(hid_t file) {
  tables_.clear();
  for (const auto& d : deps_)
    tables_.push_back(AppendTable::open(file, group_ + "/" + d.name, d.layout));
  commit_ = AppendTable::open(file, group_ + "/" + commit_name_, commit_layout_);
}

void TaskStore::append(Row commit_row, const std::vector<std::vector<char>>& rows) {
  std::vector<DependentRows> deps(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) deps[i].bytes = rows[i];
  append(std::move(commit_row), deps);
}

void TaskStore::append(Row commit_row, const std::vector<DependentRows>& rows) {
  for (std::size_t i = 0; i < deps_.size(); ++i) {
    const hsize_t first = tables_[i].size();
    if (rows[i].write) {
      rows[i].write(tables_[i]);
    } else {
      const hsize_t width = deps_[i].layout ? deps_[i].layout->row_bytes() : 8;
      tables_[i].append(rows[i].bytes.data(), rows[i].bytes.size() / width);
    }
    commit_row.set(deps_[i].offset_col, static_cast<std::int64_t>(first));
    commit_row.set(deps_[i].count_col, static_cast<std::int64_t>(tables_[i].size() - first));
  }
  pending_.insert(pending_.end(), commit_row.bytes().begin(), commit_row.bytes().end());
  ++pending_rows_;
}

void TaskStore::flush() {
  for (auto& t : tables_) t.flush();
  if (pending_rows_) {
    commit_.append(pending_.data(), pending_rows_);
    pending_.clear();
    pending_rows_ = 0;
  }
  commit_.flush();
}

std::vector<std::int64_t> TaskStore::copy_tasks_from(
    const TaskStore& src, const std::function<bool(std::int64_t)>& accept) {
  std::vector<std::int64_t> ids = src.commit_.read_i64("id");
  std::vector<std::size_t> order(ids.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return ids[a] < ids[b]; });
  std::vector<std::int64_t> copied;
  std::set<std::int64_t> seen;
  for (std::size_t i : order) {
    try {
      std::vector<char> bytes = src.commit_.read_rows(i, 1);
      Row row(*commit_layout_, bytes.data());
      const std::int64_t id = row.get_i64("id");
      // A row of fill values (allocated, never written) has an empty status.
      if (row.get_str("status").empty() || !accept(id) || seen.count(id)) continue;
      std::vector<DependentRows> rows(deps_.size());
      bool consistent = true;
      for (std::size_t d = 0; d < deps_.size() && consistent; ++d) {
        const auto off = static_cast<hsize_t>(row.get_i64(deps_[d].offset_col));
        const auto cnt = static_cast<hsize_t>(row.get_i64(deps_[d].count_col));
        if (off + cnt > src.tables_[d].size()) {
          consistent = false;
          break;
        }
        if (const TableLayout* L = deps_[d].layout) {
          rows[d].bytes = src.tables_[d].read_rows(off, cnt);
          for (hsize_t r = 0; r < cnt; ++r)
            consistent &= Row(*L, rows[d].bytes.data() + r * L->row_bytes()).get_i64("task_id") == id;
        } else {  // float64 (stored matrices: possibly many n x n): in pieces of 4 MB
          rows[d].write = [&src, d, off, cnt](AppendTable& to) {
            std::vector<double> piece(std::min<hsize_t>(cnt, hsize_t{1} << 19));
            for (hsize_t at = 0; at < cnt; at += piece.size()) {
              const hsize_t n = std::min<hsize_t>(piece.size(), cnt - at);
              src.tables_[d].read_rows(off + at, n, piece.data());
              to.append(piece.data(), n);
            }
          };
        }
      }
      if (!consistent) continue;
      append(row, rows);
      seen.insert(id);
      copied.push_back(id);
    } catch (const RuntimeError&) {
      continue;  // unreadable remains of a killed writer
    }
  }
  flush();
  return copied;
}

}  // namespace covfit::io
