#include "tools/cli/common.h"

#include <sys/stat.h>

#include <cinttypes>
#include <cstdio>
#include <ctime>

#include <nlohmann/json.hpp>

namespace varve::cli {

int fail(const status& s) {
  std::fprintf(stderr, "varve: %s\n", s.to_string().c_str());
  return kExitError;
}

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "varve: %s\nRun with --help for usage.\n", msg.c_str());
  return kExitUsage;
}

int fail_open(const status& s) {
  if (s.code() == errc::invalid_argument) return usage_error(s.to_string());
  return fail(s);
}

std::optional<int> check_dir(const std::string& dir) {
  if (dir.empty()) return usage_error("DIR is empty");
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode)) {
    std::fprintf(stderr, "varve: %s: not a directory\n", dir.c_str());
    return kExitError;
  }
  return std::nullopt;
}

std::optional<uint64_t> parse_u64(std::string_view s) {
  if (s.empty() || s.size() > 20) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

std::optional<int> parse_flag(const std::optional<std::string>& s, const char* flag, uint64_t& out,
                              const char* what) {
  if (!s) return std::nullopt;
  auto v = parse_u64(*s);
  if (!v) return usage_error(std::string(flag) + ": \"" + *s + "\" is not " + what);
  out = *v;
  return std::nullopt;
}

std::optional<uint64_t> parse_size(std::string_view s) {
  size_t digits = 0;
  while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
  auto n = parse_u64(s.substr(0, digits));
  if (!n) return std::nullopt;
  std::string_view suffix = s.substr(digits);
  if (suffix.empty()) return n;
  int shift = 0;
  switch (suffix[0]) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    default: return std::nullopt;
  }
  suffix.remove_prefix(1);
  if (!suffix.empty() && suffix != "B" && suffix != "iB") return std::nullopt;
  if (*n > (UINT64_MAX >> shift)) return std::nullopt;
  return *n << shift;
}

std::optional<uint64_t> parse_time(std::string_view s) {
  if (auto ns = parse_u64(s)) return ns;
  int Y, M, D, h, m, sec, n = 0;
  std::string text(s);
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &Y, &M, &D, &h, &m, &sec, &n) != 6 ||
      n != 19)
    return std::nullopt;
  if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60 || Y < 1970)
    return std::nullopt;
  std::string_view rest = s.substr(19);
  uint64_t frac = 0;
  if (!rest.empty() && rest[0] == '.') {
    size_t i = 1;
    uint64_t scale = 100'000'000;
    for (; i < rest.size() && rest[i] >= '0' && rest[i] <= '9'; ++i) {
      frac += static_cast<uint64_t>(rest[i] - '0') * scale;
      scale /= 10;
    }
    if (i == 1) return std::nullopt;
    rest.remove_prefix(i);
  }
  int64_t offset = 0;
  if (rest == "Z" || rest == "z") {
  } else if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':') {
    auto oh = parse_u64(rest.substr(1, 2)), om = parse_u64(rest.substr(4, 2));
    if (!oh || !om || *oh > 23 || *om > 59) return std::nullopt;
    offset = static_cast<int64_t>(*oh * 3600 + *om * 60) * (rest[0] == '+' ? 1 : -1);
  } else {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = Y - 1900;
  tm.tm_mon = M - 1;
  tm.tm_mday = D;
  tm.tm_hour = h;
  tm.tm_min = m;
  tm.tm_sec = sec;
  const int64_t t = static_cast<int64_t>(::timegm(&tm)) - offset;
  if (t < 0) return std::nullopt;
  return static_cast<uint64_t>(t) * 1'000'000'000ull + frac;
}

std::string human_bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  char buf[32];
  if (v == static_cast<double>(static_cast<uint64_t>(v)))
    std::snprintf(buf, sizeof buf, "%" PRIu64 " %s", static_cast<uint64_t>(v), units[u]);
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string display_stream(const tools::append_request& req) {
  if (req.stream_is_integer) return std::to_string(req.stream_u64);
  return nlohmann::json(req.stream).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// --- type_names --------------------------------------------------------------

type_names::type_names(const std::string& dir) {
  auto reg = type_registry::open(dir);
  if (reg) {
    registry_.emplace(std::move(reg.value()));
  } else if (reg.error().code() != errc::not_found) {
    std::fprintf(stderr, "varve: warning: %s; printing type numbers\n",
                 reg.error().to_string().c_str());
  }
}

std::string_view type_names::json_for(uint32_t id) {
  if (id < kDense) {
    if (dense_.size() <= id) dense_.resize(id + 1);
    if (dense_[id].empty()) dense_[id] = render(id);
    return dense_[id];
  }
  auto [it, inserted] = sparse_.try_emplace(id);
  if (inserted) it->second = render(id);
  return it->second;
}

std::string type_names::render(uint32_t id) const {
  if (registry_) {
    if (auto name = registry_->name_of(id))
      return nlohmann::json(std::string(*name))
          .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  return std::to_string(id);
}

}  // namespace varve::cli
