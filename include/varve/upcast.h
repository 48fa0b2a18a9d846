// Upcasters: schema evolution without rewriting the log. An event is stored
// with the schema version it was written at; a chain of upcasters per event
// type turns a version-k payload into version k+1, and every read of a log
// that has them (log_reader, stream_reader, subscriptions, consumer groups,
// replay, load_aggregate) hands out the current version, computed when the
// event is handed out. The stored bytes are never touched: event_view's
// stored_schema_version says what is on disk.
//
// Two ways to write them: C++ functions (add), or a declarative JSON file for
// the common cases (rename, add with a default, drop a field; rename the
// type), which the CLI (`varve read --upcasters FILE`), the C API and
// bindings use without code. docs/DESIGN.md "Upcasters" has the file format.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "varve/event.h"
#include "varve/export.h"
#include "varve/status.h"

namespace varve {

class type_registry;

// What one step sees and changes. On entry: the event at schema_version k,
// its payload copied into `payload`. On return: version k+1's payload (and
// type, for a renamed type; content if the step changes it). The step must
// not change schema_version: the chain sets k+1 itself.
struct upcast_event {
  uint32_t type = 0;
  uint16_t schema_version = 0;
  content_type content = content_type::binary;
  std::string payload;
};

// A step may run on several threads at once (a replay's workers, readers in
// other threads), so it must not change shared state without its own
// synchronisation. An exception it throws is turned into an error status.
using upcast_fn = std::function<status(upcast_event&)>;

// A set of upcaster chains, immutable once handed to a log (event_log::
// set_upcasters); const methods are safe from any number of threads.
class VARVE_API upcasters {
 public:
  upcasters();
  ~upcasters();
  upcasters(upcasters&&) noexcept;
  upcasters& operator=(upcasters&&) noexcept;

  // The step of `type` from `from_version` to from_version + 1. One per
  // (type, version); from_version 1..65534.
  status add(uint32_t type, uint16_t from_version, upcast_fn fn);

  // Declares `type`'s current version without steps up to it (say, a field
  // added that readers tolerate). Never below what the steps reach.
  status set_current(uint32_t type, uint16_t version);

  // The version reads hand `type` out at: the highest declared or reached by
  // a step; 0 when the set knows nothing of `type`.
  uint16_t current(uint32_t type) const;

  // Whether an event of `type` stored at `version` is handed out changed:
  // a step starts at or below its version and the steps reach past it.
  // Versions below the first step, or from the last step's result up to a
  // declared current version, are handed out as stored (declared compatible).
  bool needs(uint32_t type, uint16_t version) const {
    return type < reach_.size() && version < reach_[type] && version >= first_[type];
  }

  // Refuses (errc::invalid_argument) an append at a version newer than the
  // current one of a type the set knows; anything else passes.
  status check_append(uint32_t type, uint16_t version) const;

  // Upcasts `ev` (a view just read) to its type's current version: on
  // success ev.type, ev.schema_version, ev.content and ev.payload describe the
  // result, the payload pointing into `scratch` (valid until scratch changes);
  // ev.stored_schema_version stays what the record holds. An event that needs
  // nothing is left as it is. A failing step's error names the type, the
  // versions and the event's position.
  status apply(event_view& ev, std::string& scratch) const;

  // Every chain must be complete: from its lowest step up to the current
  // version, no version missing. Checked by set_upcasters and parse.
  status validate() const;

  bool empty() const { return current_.empty(); }
  // The highest type id the set knows (0 when empty).
  uint32_t max_type() const { return current_.empty() ? 0 : static_cast<uint32_t>(current_.size() - 1); }

  // The declarative form (docs/DESIGN.md "Upcasters"):
  //   {"upcasters": [
  //     {"type": "OrderPlaced", "from": 1,
  //      "rename": {"amount": "total"}, "add": {"currency": "EUR"},
  //      "drop": ["legacy"], "rename_type": "OrderSubmitted"},
  //     {"type": "OrderSubmitted", "current": 3}, ...]}
  // Each entry with "from" is one step of a JSON payload (an object): drop,
  // then rename, then add (only where the field is absent), then the type's
  // new name. A field is a top-level key, or a JSON pointer ("/address/zip").
  // Types are names from `types` (DIR/types) or numbers. `source` names the
  // file in errors, which give the entry and what is wrong.
  static result<upcasters> parse(std::string_view json, const type_registry* types,
                                 std::string_view source = "upcasters");
  static result<upcasters> load(const std::string& path, const type_registry* types);

 private:
  // Indexed by type id: the current version (0 = unknown), the lowest
  // version a step starts at, the version the last step produces (0: no
  // steps), and the steps from first_ on (null: none at that version).
  std::vector<uint16_t> current_;
  std::vector<uint16_t> first_;
  std::vector<uint16_t> reach_;
  std::vector<std::vector<upcast_fn>> steps_;  // steps_[type][from_version]
  void grow(uint32_t type);
};

}  // namespace varve
