// Names for event types: a small persisted map between a type name
// ("OrderPlaced") and the u32 stored in each record.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "varve/export.h"
#include "varve/file_system.h"
#include "varve/status.h"

namespace varve {

// Stored in DIR/types (docs/FORMAT.md 8), rewritten atomically (write
// types.partial, sync, rename, sync dir) when a name or a version is added.
// Not thread-safe; one registry per writer. Ids are assigned densely from 1.
// Each type may record its current schema version: appends through the CLI
// (and any caller of check_append) at a newer version are refused, and
// upcasters::parse counts it as the type's current version.
class VARVE_API type_registry {
 public:
  struct entry {
    uint32_t id = 0;
    std::string name;
    uint16_t current_version = 0;  // 0: none recorded
  };

  static result<type_registry> open(const std::string& dir,
                                    std::shared_ptr<file_system> fs = nullptr);
  // The id of `name`, registering (and persisting) it if it is new.
  result<uint32_t> id_for(std::string_view name);
  std::optional<uint32_t> find(std::string_view name) const;
  std::optional<std::string_view> name_of(uint32_t id) const;

  // The recorded current schema version of type `id` (0: none recorded).
  uint16_t current_version(uint32_t id) const;
  // Records `name`'s current schema version (registering the name if new).
  // Versions only go up: lowering one is errc::invalid_argument (events at
  // the higher version may already be in the log).
  status set_current_version(std::string_view name, uint16_t version);
  // errc::invalid_argument when `version` is newer than type `id`'s recorded
  // current version; anything passes where none is recorded.
  status check_append(uint32_t id, uint16_t version) const;
  // Every type, by id.
  std::vector<entry> list() const;

 private:
  status persist(const std::map<uint32_t, std::string>& by_id,
                 const std::map<uint32_t, uint16_t>& versions) const;
  std::string dir_;
  std::shared_ptr<file_system> fs_;
  std::map<uint32_t, std::string> by_id_;
  std::unordered_map<std::string, uint32_t> by_name_;
  std::map<uint32_t, uint16_t> versions_;  // recorded ones only
};

}  // namespace varve
