#include "varve/type_registry.h"

#include <sstream>

#include "base/log_files.h"

namespace varve {

result<type_registry> type_registry::open(const std::string& dir, std::shared_ptr<file_system> fs) {
  type_registry r;
  r.dir_ = dir;
  r.fs_ = fs ? std::move(fs) : posix_file_system();
  const std::string path = log_files::join(dir, log_files::kTypesName);
  if (!r.fs_->exists(path)) return r;
  auto f = r.fs_->open(path, file_system::open_mode::read_only);
  if (!f) return f.error();
  file_handle fh = f.value();
  auto size = r.fs_->file_size(fh);
  std::string text(size ? size.value() : 0, '\0');
  status s = size ? (text.empty() ? status{} : r.fs_->pread(fh, 0, text.data(), text.size()))
                  : size.error();
  r.fs_->close(fh);
  if (!s) return s;
  std::istringstream in(text);
  std::string line;
  uint64_t lineno = 0, offset = 0;
  while (std::getline(in, line)) {
    ++lineno;
    const size_t sp = line.find(' ');
    uint32_t id = 0;
    bool ok = sp != std::string::npos && sp > 0 && sp + 1 < line.size();
    for (size_t i = 0; ok && i < sp; ++i) {
      ok = line[i] >= '0' && line[i] <= '9' && id < 100'000'000;
      id = id * 10 + static_cast<uint32_t>(line[i] - '0');
    }
    if (!ok)
      return status(errc::corruption, path + " offset " + std::to_string(offset) + " (line " +
                                          std::to_string(lineno) + "): malformed type entry");
    std::string name = line.substr(sp + 1);
    r.by_name_[name] = id;
    r.by_id_[id] = std::move(name);
    offset += line.size() + 1;
  }
  return r;
}

std::optional<uint32_t> type_registry::find(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  if (it == by_name_.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string_view> type_registry::name_of(uint32_t id) const {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return std::nullopt;
  return std::string_view(it->second);
}

result<uint32_t> type_registry::id_for(std::string_view name) {
  if (auto id = find(name)) return *id;
  if (name.empty() || name.find('\n') != std::string_view::npos)
    return status(errc::invalid_argument, "event type names must be non-empty single lines");
  const uint32_t id = by_id_.empty() ? 1 : by_id_.rbegin()->first + 1;
  std::string text;
  for (const auto& [i, n] : by_id_) text += std::to_string(i) + " " + n + "\n";
  text += std::to_string(id) + " " + std::string(name) + "\n";
  const std::string path = log_files::join(dir_, log_files::kTypesName);
  const std::string partial = path + log_files::kPartialSuffix;
  auto f = fs_->open(partial, file_system::open_mode::create_or_open);
  if (!f) return f.error();
  file_handle fh = f.value();
  status s = fs_->truncate(fh, 0);
  if (s) s = fs_->pwrite(fh, 0, text.data(), text.size());
  if (s) s = fs_->datasync(fh);
  fs_->close(fh);
  // Crash story: the name is durable before any record uses its id.
  if (s) s = fs_->rename(partial, path);
  if (s) s = fs_->sync_dir(dir_);
  if (!s) return s;
  by_id_[id] = std::string(name);
  by_name_[std::string(name)] = id;
  return id;
}

}  // namespace varve
