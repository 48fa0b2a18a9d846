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

#include "varve/export.h"
#include "varve/file_system.h"
#include "varve/status.h"

namespace varve {

// Stored in DIR/types as text lines "ID NAME", rewritten atomically (write
// types.partial, sync, rename, sync dir) when a name is added. Not thread-safe;
// one registry per writer. Ids are assigned densely from 1.
class VARVE_API type_registry {
 public:
  static result<type_registry> open(const std::string& dir,
                                    std::shared_ptr<file_system> fs = nullptr);
  // The id of `name`, registering (and persisting) it if it is new.
  result<uint32_t> id_for(std::string_view name);
  std::optional<uint32_t> find(std::string_view name) const;
  std::optional<std::string_view> name_of(uint32_t id) const;

 private:
  std::string dir_;
  std::shared_ptr<file_system> fs_;
  std::map<uint32_t, std::string> by_id_;
  std::unordered_map<std::string, uint32_t> by_name_;
};

}  // namespace varve
