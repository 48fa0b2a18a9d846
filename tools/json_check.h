// A strict, allocation-free JSON validator for `varve read`: a payload flagged
// content_type::json is spliced into the NDJSON output verbatim only when this
// accepts it, so a payload that only claims to be JSON cannot break the line.
//
// What it accepts is RFC 8259 (one value, optional surrounding whitespace),
// tightened where a lenient reading would hand downstream parsers trouble and
// matching nlohmann::json::accept (what `varve append` uses, so that
// `varve read A | varve append B` takes every line it is given):
// - strings are valid UTF-8 (RFC 3629: no overlong forms, no encoded
//   surrogates, nothing past U+10FFFF), no raw control characters (< 0x20),
//   only the escapes \" \\ \/ \b \f \n \r \t \uXXXX;
// - a \u escape of a UTF-16 surrogate must be a high surrogate followed at
//   once by a \u low surrogate. RFC 8259's grammar admits lone surrogates, but
//   they name no character, strict parsers (nlohmann among them) reject them,
//   and they cannot be converted to UTF-8 - so they are refused here;
// - numbers follow the grammar (no leading zeros, no "1.", ".5", "+1") and must
//   be finite as IEEE doubles: "1e400" is refused, as nlohmann refuses it;
// - no byte-order mark, no comments, no trailing commas;
// - nesting is bounded (max_depth containers, kMaxJsonDepth unless the caller
//   asks otherwise, never more than kJsonDepthLimit); the check itself never
//   recurses, so any input is safe to give it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace varve::tools {

// What `varve read` splices verbatim, and `varve append --max-depth`'s default.
inline constexpr unsigned kMaxJsonDepth = 512;
// The most any caller may ask for. What the validator accepts goes on to
// nlohmann::json, whose serializer (dump) recurses once per level: about
// 0.1 KB of stack a level optimised, 0.5 KB under ASan at -O0, where 20,000
// levels overflowed the default 8 MiB stack. 4096 leaves room for both.
inline constexpr unsigned kJsonDepthLimit = 4096;

enum class json_verdict : uint8_t {
  valid,
  invalid,   // not one RFC 8259 JSON value under the rules above
  too_deep,  // arrays/objects nested deeper than max_depth (the rest is unchecked)
};

// max_depth above kJsonDepthLimit counts as kJsonDepthLimit.
json_verdict check_json(std::string_view text, unsigned max_depth = kMaxJsonDepth);

inline bool is_valid_json(std::string_view text) {
  return check_json(text) == json_verdict::valid;
}

// Length of the valid UTF-8 sequence starting at p (n > 0 bytes available):
// 1 for ASCII, 2..4 for a well-formed multi-byte sequence (RFC 3629), 0 when
// the bytes there are not one.
size_t utf8_sequence_length(const uint8_t* p, size_t n);

}  // namespace varve::tools
