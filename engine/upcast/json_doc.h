// A small, strict JSON document for the declarative upcasters: parse (RFC
// 8259, well-formed UTF-8, bounded depth), change objects in place, write
// compact text. The library keeps no JSON dependency (an embedding project
// installs none), and upcasts need only this much: object members in source
// order (an upcast must not reorder a payload's fields), numbers kept as
// their source text (no float round trip can change a value).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "varve/status.h"

namespace varve::detail::json {

struct member;

struct value {
  enum class kind : uint8_t { null, boolean, number, string, array, object };
  kind k = kind::null;
  // boolean: "true"/"false"; number: its source text; string: decoded UTF-8.
  std::string text;
  std::vector<value> items;     // array
  std::vector<member> members;  // object, in source order; keys unique

  bool is_object() const { return k == kind::object; }
  // The member named `key`, or null.
  value* find(std::string_view key);
  const value* find(std::string_view key) const;
  // Index of `key` in members, or members.size().
  size_t index_of(std::string_view key) const;
};

struct member {
  std::string key;
  value v;
};

// Exactly one JSON text with optional whitespace around it. Duplicate keys
// in an object are refused (which one an upcast should change is
// ambiguous). Errors: errc::invalid_argument "offset N: what".
inline constexpr size_t kMaxDepth = 128;  // parse's default nesting limit
result<value> parse(std::string_view text, size_t max_depth = kMaxDepth);

// Compact text (no spaces), strings escaped as RFC 8259 requires.
void write(const value& v, std::string& out);

// How deeply arrays and objects nest in `v` (a scalar: 0; {"a":[1]}: 2), as
// parse's max_depth counts it: what an upcast writes must parse back.
size_t depth(const value& v);

// A JSON pointer in an upcaster names at most this many levels.
inline constexpr size_t kMaxPointerTokens = 64;

// A field named in an upcaster: a top-level key, or a JSON pointer (RFC 6901,
// "/address/zip", ~0 and ~1 escapes) through objects. Parsed once, when the
// upcaster file is read.
struct field_path {
  std::vector<std::string> tokens;  // at least one
  std::string text;                 // as written, for messages
};
result<field_path> parse_field(std::string_view text);

// The object holding the path's last token, or null where a step on the way
// is missing. With create, missing objects on the way are added. A step
// through a value that is not an object: errc::invalid_argument.
result<value*> parent_of(value& root, const field_path& p, bool create);

}  // namespace varve::detail::json
