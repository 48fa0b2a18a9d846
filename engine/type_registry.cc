#include "varve/type_registry.h"

#include <sstream>

#include "base/log_files.h"

namespace varve {

namespace {
// The first line of a types file of format 2 and later ("#varve-types 2").
constexpr const char* kTypesHeader = "#varve-types ";
}  // namespace

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
  int format = 1;
  auto bad = [&](const std::string& why) {
    return status(errc::corruption, path + " offset " + std::to_string(offset) + " (line " +
                                        std::to_string(lineno) + "): " + why);
  };
  // A decimal number ending at a space; false if there is none.
  auto number = [&](size_t& at, uint64_t max, uint64_t& out) {
    const size_t from = at;
    out = 0;
    while (at < line.size() && line[at] >= '0' && line[at] <= '9' && out <= max)
      out = out * 10 + static_cast<uint64_t>(line[at++] - '0');
    return at > from && out <= max && at < line.size() && line[at] == ' ';
  };
  while (std::getline(in, line)) {
    ++lineno;
    if (lineno == 1 && line.rfind(kTypesHeader, 0) == 0) {
      if (line != std::string(kTypesHeader) + "2")
        return status(errc::newer_format, path + ": '" + line + "' is a types file format this varve does not know");
      format = 2;
      offset += line.size() + 1;
      continue;
    }
    size_t at = 0;
    uint64_t id = 0, version = 0;
    bool ok = number(at, 100'000'000, id);
    if (ok && format == 2) ok = number(++at, UINT16_MAX, version);
    if (ok) ++at;
    if (!ok || at >= line.size()) return bad("malformed type entry");
    std::string name = line.substr(at);
    if (r.by_name_.count(name) || r.by_id_.count(static_cast<uint32_t>(id)))
      return bad("type '" + name + "' or id " + std::to_string(id) + " appears twice");
    r.by_name_[name] = static_cast<uint32_t>(id);
    r.by_id_[static_cast<uint32_t>(id)] = std::move(name);
    if (version) r.versions_[static_cast<uint32_t>(id)] = static_cast<uint16_t>(version);
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
  auto next = by_id_;
  next[id] = std::string(name);
  if (status s = persist(next, versions_); !s) return s;
  by_id_ = std::move(next);
  by_name_[std::string(name)] = id;
  return id;
}

uint16_t type_registry::current_version(uint32_t id) const {
  auto it = versions_.find(id);
  return it == versions_.end() ? 0 : it->second;
}

status type_registry::set_current_version(std::string_view name, uint16_t version) {
  if (version == 0) return status(errc::invalid_argument, "a current schema version is at least 1");
  auto id = id_for(name);
  if (!id) return id.error();
  const uint16_t now = current_version(id.value());
  if (version == now) return {};
  if (version < now)
    return status(errc::invalid_argument, "type '" + std::string(name) + "' is at schema version " +
                                              std::to_string(now) + "; versions never go down (asked for " +
                                              std::to_string(version) + ")");
  auto next = versions_;
  next[id.value()] = version;
  if (status s = persist(by_id_, next); !s) return s;
  versions_ = std::move(next);
  return {};
}

status type_registry::check_append(uint32_t id, uint16_t version) const {
  const uint16_t now = current_version(id);
  if (now == 0 || version <= now) return {};
  auto name = name_of(id);
  return status(errc::invalid_argument, "type '" + std::string(name ? *name : std::to_string(id)) +
                                            "' at schema version " + std::to_string(version) +
                                            " is newer than its current version " + std::to_string(now) +
                                            " (record the new version first)");
}

std::vector<type_registry::entry> type_registry::list() const {
  std::vector<entry> out;
  for (const auto& [id, name] : by_id_) out.push_back(entry{id, name, current_version(id)});
  return out;
}

// Format 1 ("ID NAME" lines) while no version is recorded, so a log that
// never uses versions stays readable by a varve that predates them; format 2
// (a header line, then "ID VERSION NAME") once one is. A varve that knows
// only format 1 refuses format 2 as a malformed entry, not misreading it.
status type_registry::persist(const std::map<uint32_t, std::string>& by_id,
                              const std::map<uint32_t, uint16_t>& versions) const {
  std::string text;
  if (!versions.empty()) text = std::string(kTypesHeader) + "2\n";
  for (const auto& [i, n] : by_id) {
    text += std::to_string(i) + " ";
    if (!versions.empty()) {
      auto v = versions.find(i);
      text += std::to_string(v == versions.end() ? 0 : v->second) + " ";
    }
    text += n + "\n";
  }
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
  return s;
}

}  // namespace varve
