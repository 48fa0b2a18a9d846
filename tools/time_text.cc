#include "tools/time_text.h"

#include <cstdio>
#include <ctime>

namespace varve::tools {
namespace {

// Exactly `n` digits at s[at]: their value, or -1.
int digits(std::string_view s, size_t at, size_t n) {
  if (s.size() < at + n) return -1;
  int v = 0;
  for (size_t i = at; i < at + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

}  // namespace

std::optional<uint64_t> parse_iso8601(std::string_view s) {
  // YYYY-MM-DDThh:mm:ss, by position: sscanf would take " 5" and "+5".
  const int Y = digits(s, 0, 4), M = digits(s, 5, 2), D = digits(s, 8, 2);
  const int h = digits(s, 11, 2), m = digits(s, 14, 2), sec = digits(s, 17, 2);
  if (Y < 0 || M < 0 || D < 0 || h < 0 || m < 0 || sec < 0 || s[4] != '-' || s[7] != '-' ||
      (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
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
    const int oh = digits(rest, 1, 2), om = digits(rest, 4, 2);
    if (oh < 0 || om < 0 || oh > 23 || om > 59) return std::nullopt;
    offset = static_cast<int64_t>(oh * 3600 + om * 60) * (rest[0] == '+' ? 1 : -1);
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
  const uint64_t secs = static_cast<uint64_t>(t);
  if (secs > (UINT64_MAX - frac) / 1'000'000'000ull) return std::nullopt;
  return secs * 1'000'000'000ull + frac;
}

void format_iso8601(uint64_t ns, char* out) {
  const std::time_t secs = static_cast<std::time_t>(ns / 1'000'000'000ull);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09uZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<unsigned>(ns % 1'000'000'000ull));
  for (size_t i = 0; i < kIso8601Chars; ++i) out[i] = buf[i];
}

}  // namespace varve::tools
