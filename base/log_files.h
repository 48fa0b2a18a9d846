// File names are part of the format: built and parsed here and nowhere else.
// Zero-padded so that lexical order is numeric order.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace varve::log_files {

inline constexpr const char* kMetaName = "varve.meta";
inline constexpr const char* kControlName = "varve.ctl";
inline constexpr const char* kLockName = "varve.lock";
inline constexpr const char* kIndexDir = "index";
inline constexpr const char* kTypesName = "types";
inline constexpr const char* kPartialSuffix = ".partial";
inline constexpr const char* kDamagedSuffix = ".damaged";
// Where recovery keeps every byte it takes out of the log (FORMAT.md section 1).
inline constexpr const char* kLostFoundDir = "lost+found";
inline constexpr const char* kLostFoundReport = "REPORT";

std::string join(const std::string& dir, std::string_view name);
// "00000000000000000042.seg": 20 digits hold any u64.
std::string segment_name(uint64_t index);
std::optional<uint64_t> parse_segment_name(std::string_view name);
// The segment indices named in a directory listing, ascending.
std::vector<uint64_t> segment_indices(const std::vector<std::string>& names);
// index/00000000000000000042.heads: head-table checkpoint covering segments [0, 42].
std::string heads_name(uint64_t last_segment);
std::optional<uint64_t> parse_heads_name(std::string_view name);
// index/00000000000000000042.sidx: the stream index of segment 42.
std::string sidx_name(uint64_t segment);
std::optional<uint64_t> parse_sidx_name(std::string_view name);
// lost+found/<file>.at-<offset, 20 digits>: bytes that sat at `offset` of `file`.
std::string lost_bytes_name(std::string_view file_name, uint64_t offset);
// The last component of a path.
std::string_view base_name(std::string_view path);

}  // namespace varve::log_files
