#include "base/log_layout.h"

#include <algorithm>

#include "base/log_files.h"

namespace varve::log_layout {

using log_files::join;

std::vector<uint64_t> layout::all() const {
  std::vector<uint64_t> out;
  for (uint64_t k = start_segment; k < hot_first; ++k) out.push_back(k);
  out.insert(out.end(), hot.begin(), hot.end());
  return out;
}

result<layout> read(file_system& fs, const std::string& dir, uint64_t log_id, const std::vector<std::string>& names) {
  layout l;
  auto start = start_file::read(fs, dir, log_id);
  if (!start) return start.error();
  if (start.value()) {
    l.start_segment = start.value()->first_segment;
    l.first_sequence = start.value()->first_sequence;
  }
  auto arch = archive_file::read_location(fs, dir, log_id);
  if (!arch) return arch.error();
  l.archive = std::move(arch.value());
  l.hot_first = std::max(l.start_segment, l.archive_end());
  if (l.archive)
    for (uint64_t k = l.start_segment; k-- > 0;) {
      if (!fs.exists(join(l.archive->dir, archive_file::segment_file_name(k)))) break;
      l.archived_below_start.push_back(k);
    }
  for (uint64_t k : log_files::segment_indices(names)) {
    if (k < l.start_segment)
      l.below_start.push_back(k);
    else if (k < l.hot_first)
      l.archived_hot.push_back(k);
    else
      l.hot.push_back(k);
  }
  return l;
}

result<layout> read(file_system& fs, const std::string& dir, uint64_t log_id) {
  auto names = fs.list_dir(dir);
  if (!names) return names.error();
  return read(fs, dir, log_id, names.value());
}

}  // namespace varve::log_layout
