#include "tools/json_check.h"

#include <cmath>
#include <cstdlib>
#include <string>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace varve::tools {
namespace {

using byte_ptr = const uint8_t*;

constexpr unsigned kStackWords = kJsonDepthLimit / 64;  // 512 bytes of stack
static_assert(kJsonDepthLimit % 64 == 0 && kMaxJsonDepth <= kJsonDepthLimit);

inline bool is_ws(uint8_t c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }
inline bool is_digit(uint8_t c) { return static_cast<uint8_t>(c - '0') < 10; }

inline byte_ptr skip_ws(byte_ptr p, byte_ptr end) {
  while (p < end && *p <= ' ' && is_ws(*p)) ++p;
  return p;
}

// A string byte that needs no further look: printable ASCII but '"' and '\\'.
inline bool is_plain(uint8_t c) { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\'; }

// The first byte at or after p that is not plain (or end).
inline byte_ptr skip_plain(byte_ptr p, byte_ptr end) {
#if defined(__SSE2__)
  const __m128i quote = _mm_set1_epi8('"');
  const __m128i backslash = _mm_set1_epi8('\\');
  const __m128i space = _mm_set1_epi8(0x20);
  while (end - p >= 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    // Signed compare: bytes >= 0x80 are negative, so one "less than 0x20"
    // catches control characters and the start of every multi-byte sequence.
    const __m128i special =
        _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                     _mm_cmplt_epi8(v, space));
    const unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(special));
    if (mask != 0) return p + __builtin_ctz(mask);
    p += 16;
  }
#endif
  while (p < end && is_plain(*p)) ++p;
  return p;
}

// The value of 4 hex digits at p, or -1.
inline int hex4(byte_ptr p, byte_ptr end) {
  if (end - p < 4) return -1;
  int v = 0;
  for (int i = 0; i < 4; ++i) {
    const uint8_t c = p[i];
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') d = (c | 0x20) - 'a' + 10;
    else return -1;
    v = v << 4 | d;
  }
  return v;
}

// p is just past the opening quote; returns just past the closing one, or
// nullptr when the string is not valid.
byte_ptr scan_string_slow(byte_ptr p, byte_ptr end);

// The common case inline: a string of plain ASCII ending within 16 bytes is
// one load and one mask, with no byte reloaded.
__attribute__((always_inline)) inline byte_ptr scan_string(byte_ptr p, byte_ptr end) {
#if defined(__SSE2__)
  if (end - p >= 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const unsigned quotes =
        static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('"'))));
    const unsigned others = static_cast<unsigned>(_mm_movemask_epi8(
        _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('\\')), _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)))));
    // The first quote comes before anything that needs a closer look.
    if (quotes != 0 && (others & ((quotes & -quotes) - 1)) == 0) return p + __builtin_ctz(quotes) + 1;
  }
#endif
  return scan_string_slow(p, end);
}

__attribute__((noinline)) byte_ptr scan_string_slow(byte_ptr p, byte_ptr end) {
  for (;;) {
    p = skip_plain(p, end);
    if (p == end) return nullptr;
    const uint8_t c = *p;
    if (c == '"') return p + 1;
    if (c == '\\') {
      if (end - p < 2) return nullptr;
      switch (p[1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
          p += 2;
          continue;
        case 'u': {
          const int u = hex4(p + 2, end);
          if (u < 0) return nullptr;
          p += 6;
          if (u >= 0xDC00 && u <= 0xDFFF) return nullptr;  // a low surrogate first
          if (u >= 0xD800 && u <= 0xDBFF) {                 // needs its low half now
            if (end - p < 2 || p[0] != '\\' || p[1] != 'u') return nullptr;
            const int lo = hex4(p + 2, end);
            if (lo < 0xDC00 || lo > 0xDFFF) return nullptr;
            p += 6;
          }
          continue;
        }
        default:
          return nullptr;
      }
    }
    if (c < 0x20) return nullptr;
    const size_t len = utf8_sequence_length(p, static_cast<size_t>(end - p));
    if (len == 0) return nullptr;
    p += len;
  }
}

// The slow path of the overflow check, for numbers near DBL_MAX only.
bool finite_as_double(byte_ptr begin, byte_ptr end) {
  const std::string text(reinterpret_cast<const char*>(begin), static_cast<size_t>(end - begin));
  return std::isfinite(std::strtod(text.c_str(), nullptr));
}

// p is at '-' or a digit; returns just past the number, or nullptr.
byte_ptr scan_number(byte_ptr p, byte_ptr end) {
  const byte_ptr start = p;
  if (*p == '-') ++p;
  if (p == end) return nullptr;
  int64_t int_digits = 0;  // of a non-zero integer part
  if (*p == '0') {
    ++p;
  } else if (is_digit(*p)) {
    const byte_ptr q = p;
    while (p < end && is_digit(*p)) ++p;
    int_digits = p - q;
  } else {
    return nullptr;
  }
  bool frac_nonzero = false;
  int64_t frac_zeros = 0;  // zeros after the point before the first other digit
  if (p < end && *p == '.') {
    ++p;
    const byte_ptr q = p;
    while (p < end && is_digit(*p)) ++p;
    if (p == q) return nullptr;
    if (int_digits == 0) {
      byte_ptr r = q;
      while (r < p && *r == '0') ++r;
      frac_nonzero = r < p;
      frac_zeros = r - q;
    }
  }
  int64_t exp = 0;
  if (p < end && (*p | 0x20) == 'e') {
    ++p;
    bool negative = false;
    if (p < end && (*p == '+' || *p == '-')) negative = *p++ == '-';
    const byte_ptr q = p;
    for (; p < end && is_digit(*p); ++p)
      if (exp < 1'000'000'000) exp = exp * 10 + (*p - '0');  // saturates, far past any double
    if (p == q) return nullptr;
    if (negative) exp = -exp;
  }
  // The value lies in [10^(mag-1), 10^mag). Below 10^308 it is finite; at or
  // past 10^309 it is not (DBL_MAX ~ 1.8e308); in between, ask strtod, which
  // is what nlohmann does.
  int64_t mag;
  if (int_digits > 0) mag = int_digits + exp;
  else if (frac_nonzero) mag = exp - frac_zeros;
  else return p;  // zero
  if (mag <= 308) return p;
  if (mag > 309 || !finite_as_double(start, p)) return nullptr;
  return p;
}

}  // namespace

size_t utf8_sequence_length(const uint8_t* p, size_t n) {
  const uint8_t c = p[0];
  auto cont = [&](size_t i, uint8_t lo = 0x80, uint8_t hi = 0xBF) {
    return i < n && p[i] >= lo && p[i] <= hi;
  };
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;  // no surrogates
  if (c == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;  // <= U+10FFFF
  return 0;
}

json_verdict check_json(std::string_view text, unsigned max_depth) {
  if (max_depth > kJsonDepthLimit) max_depth = kJsonDepthLimit;
  byte_ptr p = reinterpret_cast<byte_ptr>(text.data());
  const byte_ptr end = p + text.size();
  // One bit per open container: set for an object, clear for an array.
  // Not zeroed up front (512 bytes a call, and `varve read` calls this per
  // event): a word is zeroed when its first level opens (open_level).
  uint64_t is_object[kStackWords];
  unsigned depth = 0;
  auto open_level = [&](bool object) {
    uint64_t& word = is_object[depth / 64];
    const uint64_t bit = uint64_t{1} << (depth % 64);
    if (depth % 64 == 0) word = 0;
    word = object ? word | bit : word & ~bit;
    ++depth;
  };
  auto top_is_object = [&] { return (is_object[(depth - 1) / 64] >> ((depth - 1) % 64)) & 1; };
  // A key, then ':' (p at the key's opening quote); false when not there.
  auto member_key = [&]() -> bool {
    if (p == end || *p != '"') return false;
    if (!(p = scan_string(p + 1, end))) return false;
    p = skip_ws(p, end);
    if (p == end || *p != ':') return false;
    p = skip_ws(p + 1, end);
    return true;
  };

  p = skip_ws(p, end);
  for (;;) {
    // A value starts at p.
    if (p == end) return json_verdict::invalid;
    switch (*p) {
      case '{':
        if (depth == max_depth) return json_verdict::too_deep;
        open_level(true);
        p = skip_ws(p + 1, end);
        if (p != end && *p == '}') {
          ++p;
          --depth;
          break;
        }
        if (!member_key()) return json_verdict::invalid;
        continue;
      case '[':
        if (depth == max_depth) return json_verdict::too_deep;
        open_level(false);
        p = skip_ws(p + 1, end);
        if (p != end && *p == ']') {
          ++p;
          --depth;
          break;
        }
        continue;
      case '"':
        if (!(p = scan_string(p + 1, end))) return json_verdict::invalid;
        break;
      case 't':
        if (end - p < 4 || p[1] != 'r' || p[2] != 'u' || p[3] != 'e') return json_verdict::invalid;
        p += 4;
        break;
      case 'f':
        if (end - p < 5 || p[1] != 'a' || p[2] != 'l' || p[3] != 's' || p[4] != 'e')
          return json_verdict::invalid;
        p += 5;
        break;
      case 'n':
        if (end - p < 4 || p[1] != 'u' || p[2] != 'l' || p[3] != 'l') return json_verdict::invalid;
        p += 4;
        break;
      case '-': case '0': case '1': case '2': case '3': case '4':
      case '5': case '6': case '7': case '8': case '9':
        if (!(p = scan_number(p, end))) return json_verdict::invalid;
        break;
      default:
        return json_verdict::invalid;
    }
    // After a value: close containers until one wants another value.
    for (;;) {
      p = skip_ws(p, end);
      if (depth == 0) return p == end ? json_verdict::valid : json_verdict::invalid;
      if (p == end) return json_verdict::invalid;
      const bool object = top_is_object();
      if (*p == ',') {
        p = skip_ws(p + 1, end);
        if (object && !member_key()) return json_verdict::invalid;
        break;
      }
      if (*p != (object ? '}' : ']')) return json_verdict::invalid;
      ++p;
      --depth;
    }
  }
}

}  // namespace varve::tools
