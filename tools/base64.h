// Standard base64 (RFC 4648, '+' '/' alphabet) for binary payloads, which the
// CLI carries in NDJSON as "data_base64".
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "varve/status.h"

namespace varve::tools {

// Appends the padded encoding of `in` to `out` (appending lets the NDJSON
// writer encode straight into its buffer).
void base64_encode_to(std::span<const std::byte> in, std::string& out);
std::string base64_encode(std::span<const std::byte> in);

// Decodes padded or unpadded base64. Anything else (a character outside the
// alphabet, misplaced padding, an impossible length) is invalid_argument naming
// the offset, because a silently mangled payload is worse than a rejected line.
result<std::string> base64_decode(std::string_view in);

}  // namespace varve::tools
