// Timestamps as text for the CLI: ISO 8601 / RFC 3339 in (`--since`,
// `--until`, "timestamp" in `varve append` input) and out (`--time-format iso`).
// Records hold integer nanoseconds since the Unix epoch (UTC).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace varve::tools {

// "2026-11-22T10:00:00Z", "2026-11-22T10:00:00.123456789+01:00": a date, a
// time, optional fractional seconds (digits past the ninth are dropped) and
// a zone, Z or +hh:mm / -hh:mm; a time without a zone is refused rather than
// guessed. Nothing before 1970 or past what 64-bit nanoseconds hold (2554).
std::optional<uint64_t> parse_iso8601(std::string_view text);

// "2026-11-22T10:00:00.123456789Z": UTC, always nine fractional digits, so
// the text is fixed-width (it sorts like the number) and parses back exactly.
inline constexpr size_t kIso8601Chars = 30;
void format_iso8601(uint64_t ns, char* out);

}  // namespace varve::tools
