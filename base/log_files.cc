#include "base/log_files.h"

#include <algorithm>
#include <cstdio>

namespace varve::log_files {

std::string join(const std::string& dir, std::string_view name) {
  std::string s = dir;
  if (!s.empty() && s.back() != '/') s += '/';
  s += name;
  return s;
}

static std::string padded(uint64_t v, const char* suffix) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%020llu%s", static_cast<unsigned long long>(v), suffix);
  return buf;
}

static std::optional<uint64_t> parse_padded(std::string_view name, std::string_view suffix) {
  if (name.size() != 20 + suffix.size() || name.substr(20) != suffix) return std::nullopt;
  uint64_t v = 0;
  for (size_t i = 0; i < 20; ++i) {
    char c = name[i];
    if (c < '0' || c > '9') return std::nullopt;
    uint64_t next = v * 10 + static_cast<uint64_t>(c - '0');
    if (next / 10 != v) return std::nullopt;  // overflow
    v = next;
  }
  return v;
}

std::string segment_name(uint64_t index) { return padded(index, ".seg"); }
std::optional<uint64_t> parse_segment_name(std::string_view n) { return parse_padded(n, ".seg"); }
std::vector<uint64_t> segment_indices(const std::vector<std::string>& names) {
  std::vector<uint64_t> segs;
  for (const std::string& n : names)
    if (auto i = parse_segment_name(n)) segs.push_back(*i);
  std::sort(segs.begin(), segs.end());
  return segs;
}

std::string heads_name(uint64_t last) { return padded(last, ".heads"); }
std::optional<uint64_t> parse_heads_name(std::string_view n) { return parse_padded(n, ".heads"); }

std::string sidx_name(uint64_t seg) { return padded(seg, ".sidx"); }
std::optional<uint64_t> parse_sidx_name(std::string_view n) { return parse_padded(n, ".sidx"); }

std::string lost_bytes_name(std::string_view file_name, uint64_t offset) {
  return std::string(file_name) + ".at-" + padded(offset, "");
}

std::string_view base_name(std::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

}  // namespace varve::log_files
