// The declarative upcaster file (varve/upcast.h) and the JSON document under
// it (engine/upcast/json_doc.h). Input: an upcaster file, optionally followed
// by a NUL byte and an event payload. Checks: any bytes parse or are refused
// with invalid_argument (never a crash, never another code); a parsed
// document writes back to text that parses and writes back identically; a
// set that parses upcasts the payload at every version of every type it
// knows either to a version that needs nothing more or with an
// invalid_argument error naming the event.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "engine/upcast/json_doc.h"
#include "varve/upcast.h"

namespace {

using namespace varve;
namespace json = varve::detail::json;

void check_round_trip(std::string_view text) {
  auto v = json::parse(text, 64);
  if (!v) {
    if (v.error().code() != errc::invalid_argument) std::abort();
    return;
  }
  std::string out;
  json::write(v.value(), out);
  auto again = json::parse(out, 64);
  if (!again) std::abort();
  std::string out2;
  json::write(again.value(), out2);
  if (out2 != out) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  const size_t nul = all.find('\0');
  const std::string_view file = all.substr(0, nul);
  const std::string payload(nul == std::string_view::npos ? std::string_view{} : all.substr(nul + 1));
  check_round_trip(file);
  check_round_trip(payload);

  auto set = upcasters::parse(file, nullptr, "fuzz");
  if (!set) {
    if (set.error().code() != errc::invalid_argument) std::abort();
    return 0;
  }
  const upcasters& u = set.value();
  std::string scratch;
  for (uint32_t type = 1; type <= u.max_type() && type < 64; ++type) {
    const uint16_t cur = u.current(type);
    for (uint32_t v = 1; v <= cur && v < 64; ++v) {
      event_view e;
      e.type = type;
      e.schema_version = static_cast<uint16_t>(v);
      e.stored_schema_version = e.schema_version;
      e.position = position{4096};
      e.content = content_type::json;
      e.payload = std::as_bytes(std::span<const char>(payload.data(), payload.size()));
      status s = u.apply(e, scratch);
      if (!s) {
        if (s.code() != errc::invalid_argument) std::abort();
        if (s.message().find("position 4096") == std::string::npos) std::abort();
        continue;
      }
      if (u.needs(e.type, e.schema_version) || e.schema_version < v || e.stored_schema_version != v) std::abort();
      // A step that changed the payload wrote it as JSON.
      if (e.payload.data() != reinterpret_cast<const std::byte*>(payload.data()) &&
          e.schema_version > v && e.content == content_type::json && !e.payload.empty()) {
        const std::string_view out(reinterpret_cast<const char*>(e.payload.data()), e.payload.size());
        if (out != payload && !json::parse(out, 256)) std::abort();
      }
    }
  }
  return 0;
}
