// Upcaster chains (include/varve/upcast.h): the C++ steps, their
// application to events as readers hand them out, and the declarative JSON
// form compiled into steps.
#include "varve/upcast.h"

#include <optional>
#include <utility>

#include "engine/upcast/json_doc.h"
#include "varve/type_registry.h"

namespace varve {

namespace {
// Chains are indexed by type id; registries hand out dense ids from 1, and a
// bound keeps a stray id from sizing the tables at gigabytes.
constexpr uint32_t kMaxType = (1u << 20) - 1;
}  // namespace

upcasters::upcasters() = default;
upcasters::~upcasters() = default;
upcasters::upcasters(upcasters&&) noexcept = default;
upcasters& upcasters::operator=(upcasters&&) noexcept = default;

void upcasters::grow(uint32_t type) {
  if (type < current_.size()) return;
  current_.resize(type + 1, 0);
  first_.resize(type + 1, 0);
  reach_.resize(type + 1, 0);
  steps_.resize(type + 1);
}

status upcasters::add(uint32_t type, uint16_t from_version, upcast_fn fn) {
  if (type > kMaxType)
    return status(errc::invalid_argument, "upcaster for type " + std::to_string(type) +
                                              ": type ids above " + std::to_string(kMaxType) +
                                              " are not supported");
  if (from_version == 0 || from_version == UINT16_MAX)
    return status(errc::invalid_argument, "upcaster for type " + std::to_string(type) +
                                              ": from_version must be 1..65534, got " +
                                              std::to_string(from_version));
  if (!fn) return status(errc::invalid_argument, "upcaster for type " + std::to_string(type) + " is empty");
  grow(type);
  auto& chain = steps_[type];
  if (chain.size() <= from_version) chain.resize(from_version + 1);
  if (chain[from_version])
    return status(errc::already_exists, "type " + std::to_string(type) + " already has an upcaster from version " +
                                            std::to_string(from_version));
  chain[from_version] = std::move(fn);
  const uint16_t to = static_cast<uint16_t>(from_version + 1);
  if (first_[type] == 0 || from_version < first_[type]) first_[type] = from_version;
  if (to > reach_[type]) reach_[type] = to;
  if (to > current_[type]) current_[type] = to;
  return {};
}

status upcasters::set_current(uint32_t type, uint16_t version) {
  if (type > kMaxType)
    return status(errc::invalid_argument, "type ids above " + std::to_string(kMaxType) + " are not supported");
  if (version == 0) return status(errc::invalid_argument, "a current schema version is at least 1");
  grow(type);
  if (version < reach_[type])
    return status(errc::invalid_argument, "type " + std::to_string(type) + ": current version " +
                                              std::to_string(version) + " is below version " +
                                              std::to_string(reach_[type]) + " its upcasters produce");
  current_[type] = version;
  return {};
}

uint16_t upcasters::current(uint32_t type) const { return type < current_.size() ? current_[type] : 0; }

status upcasters::check_append(uint32_t type, uint16_t version) const {
  if (type < current_.size() && current_[type] != 0 && version > current_[type])
    return status(errc::invalid_argument, "event type " + std::to_string(type) + " at schema version " +
                                              std::to_string(version) + " is newer than its current version " +
                                              std::to_string(current_[type]) +
                                              " (register the upcaster or the version first)");
  return {};
}

status upcasters::validate() const {
  for (uint32_t t = 0; t < steps_.size(); ++t) {
    for (uint32_t v = first_[t]; v != 0 && v < reach_[t]; ++v)
      if (v >= steps_[t].size() || !steps_[t][v])
        return status(errc::invalid_argument,
                      "type " + std::to_string(t) + " has upcasters from version " + std::to_string(first_[t]) +
                          " to " + std::to_string(reach_[t]) + " but none from version " + std::to_string(v));
  }
  return {};
}

status upcasters::apply(event_view& ev, std::string& scratch) const {
  if (!needs(ev.type, ev.schema_version)) return {};
  upcast_event e;
  e.type = ev.type;
  e.schema_version = ev.schema_version;
  e.content = ev.content;
  // The scratch buffer's capacity is reused event after event.
  e.payload = std::move(scratch);
  e.payload.assign(reinterpret_cast<const char*>(ev.payload.data()), ev.payload.size());
  // Each step raises the version by one, so the walk ends within 65535 steps
  // whatever a type rename does.
  while (needs(e.type, e.schema_version)) {
    const uint32_t type = e.type;
    const uint16_t from = e.schema_version;
    const upcast_fn* fn = from < steps_[type].size() ? &steps_[type][from] : nullptr;
    status s;
    if (!fn || !*fn) {
      s = status(errc::invalid_argument, "no upcaster from this version");
    } else {
      try {
        s = (*fn)(e);
      } catch (const std::exception& ex) {
        s = status(errc::invalid_argument, std::string("upcaster threw: ") + ex.what());
      } catch (...) {
        s = status(errc::invalid_argument, "upcaster threw an exception");
      }
    }
    if (!s) {
      scratch = std::move(e.payload);
      return status(s.code(), "upcasting the event at position " + std::to_string(ev.position.value) +
                                  " (type " + std::to_string(type) + ", version " + std::to_string(from) +
                                  " to " + std::to_string(from + 1) + "): " + s.message());
    }
    e.schema_version = static_cast<uint16_t>(from + 1);
  }
  scratch = std::move(e.payload);
  ev.type = e.type;
  ev.schema_version = e.schema_version;
  ev.content = e.content;
  ev.payload = std::as_bytes(std::span<const char>(scratch.data(), scratch.size()));
  return {};
}

// ---------------------------------------------------------------------------
// The declarative form.

namespace {

using detail::json::field_path;
using detail::json::value;
namespace json = detail::json;

// One declarative step, applied to a JSON payload: drop, rename, add, then
// the type's new id.
struct declared_step {
  std::vector<field_path> drop;
  std::vector<std::pair<field_path, field_path>> rename;
  std::vector<std::pair<field_path, value>> add;
  std::optional<uint32_t> new_type;

  bool touches_payload() const { return !drop.empty() || !rename.empty() || !add.empty(); }

  status operator()(upcast_event& e) const {
    if (touches_payload()) {
      auto doc = json::parse(e.payload);
      if (!doc) return status(errc::invalid_argument, "payload is not JSON (" + doc.error().message() + ")");
      value& root = doc.value();
      if (!root.is_object()) return status(errc::invalid_argument, "payload is not a JSON object");
      for (const field_path& f : drop) {
        auto parent = json::parent_of(root, f, false);
        if (!parent) return parent.error();
        if (value* p = parent.value()) {
          const size_t i = p->index_of(f.tokens.back());
          if (i < p->members.size()) p->members.erase(p->members.begin() + static_cast<ptrdiff_t>(i));
        }
      }
      for (const auto& [from, to] : rename) {
        auto src = json::parent_of(root, from, false);
        if (!src) return src.error();
        if (!src.value() || !src.value()->find(from.tokens.back())) continue;  // nothing to rename
        // Making the target's parent may move the source's storage: look
        // both up again after each change rather than hold pointers across it.
        auto dst = json::parent_of(root, to, true);
        if (!dst) return dst.error();
        if (dst.value()->find(to.tokens.back()))
          return status(errc::invalid_argument,
                        "renaming '" + from.text + "' to '" + to.text + "': the payload already has it");
        value* sp = json::parent_of(root, from, false).value();
        const size_t i = sp->index_of(from.tokens.back());
        if (sp == dst.value()) {  // in place: the field keeps its position
          sp->members[i].key = to.tokens.back();
          continue;
        }
        value moved = std::move(sp->members[i].v);
        sp->members.erase(sp->members.begin() + static_cast<ptrdiff_t>(i));
        auto again = json::parent_of(root, to, true);
        if (!again) return again.error();
        again.value()->members.push_back(json::member{to.tokens.back(), std::move(moved)});
      }
      for (const auto& [f, def] : add) {
        auto parent = json::parent_of(root, f, true);
        if (!parent) return parent.error();
        value* p = parent.value();
        if (!p->find(f.tokens.back())) p->members.push_back(json::member{f.tokens.back(), def});
      }
      // A rename can move a deep field under a deep path: what is written
      // must still parse (the next step, readers), so no deeper than parse's limit.
      if (json::depth(root) > json::kMaxDepth)
        return status(errc::invalid_argument, "the upcast payload would nest deeper than " +
                                                  std::to_string(json::kMaxDepth) + " levels");
      e.payload.clear();
      json::write(root, e.payload);
      e.content = content_type::json;
    }
    if (new_type) e.type = *new_type;
    return {};
  }
};

status entry_error(std::string_view source, size_t i, const std::string& what) {
  return status(errc::invalid_argument,
                std::string(source) + ": upcasters[" + std::to_string(i) + "]: " + what);
}

// A non-negative integer written without fraction or exponent.
std::optional<uint64_t> whole_number(const value& v) {
  if (v.k != value::kind::number || v.text.empty() || v.text.size() > 12) return std::nullopt;
  uint64_t n = 0;
  for (char c : v.text) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  return n;
}

result<uint32_t> type_of(const value& v, const type_registry* types, const std::string& what) {
  if (auto n = whole_number(v)) {
    if (*n == 0 || *n > kMaxType) return status(errc::invalid_argument, what + " must be 1.." + std::to_string(kMaxType));
    return static_cast<uint32_t>(*n);
  }
  if (v.k != value::kind::string || v.text.empty())
    return status(errc::invalid_argument, what + " must be a type name or id");
  if (!types)
    return status(errc::invalid_argument, what + " '" + v.text + "': type names need the log's types file");
  auto id = types->find(v.text);
  if (!id) return status(errc::invalid_argument, what + " '" + v.text + "' is not a registered type");
  if (*id > kMaxType) return status(errc::invalid_argument, what + " '" + v.text + "' has an id above the supported range");
  return *id;
}

result<uint16_t> version_of(const value& v, const std::string& what, uint64_t max) {
  auto n = whole_number(v);
  if (!n || *n == 0 || *n > max)
    return status(errc::invalid_argument, what + " must be a whole number 1.." + std::to_string(max));
  return static_cast<uint16_t>(*n);
}

}  // namespace

result<upcasters> upcasters::parse(std::string_view text, const type_registry* types, std::string_view source) {
  auto doc = json::parse(text, 64);
  if (!doc) return status(errc::invalid_argument, std::string(source) + ": " + doc.error().message());
  const value& root = doc.value();
  const value* list = root.is_object() ? root.find("upcasters") : nullptr;
  if (!list || list->k != value::kind::array || root.members.size() != 1)
    return status(errc::invalid_argument,
                  std::string(source) + ": expected an object with one member, \"upcasters\": [...]");
  upcasters set;
  for (size_t i = 0; i < list->items.size(); ++i) {
    const value& e = list->items[i];
    if (!e.is_object()) return entry_error(source, i, "not an object");
    const value* tv = e.find("type");
    if (!tv) return entry_error(source, i, "has no \"type\"");
    auto type = type_of(*tv, types, "\"type\"");
    if (!type) return entry_error(source, i, type.error().message());
    const value* from = e.find("from");
    const value* cur = e.find("current");
    if (!from && !cur) return entry_error(source, i, "needs \"from\" (a step) or \"current\" (a version)");
    if (from && cur) return entry_error(source, i, "has both \"from\" and \"current\": one entry is one of them");
    if (cur) {
      if (e.members.size() != 2) return entry_error(source, i, "a \"current\" entry has only \"type\" and \"current\"");
      auto v = version_of(*cur, "\"current\"", UINT16_MAX);
      if (!v) return entry_error(source, i, v.error().message());
      // Applied after every step is known (below), so order in the file does not matter.
      continue;
    }
    auto fv = version_of(*from, "\"from\"", UINT16_MAX - 1);
    if (!fv) return entry_error(source, i, fv.error().message());
    declared_step st;
    for (const json::member& m : e.members) {
      if (m.key == "type" || m.key == "from") continue;
      if (m.key == "drop") {
        if (m.v.k != value::kind::array) return entry_error(source, i, "\"drop\" must be an array of field names");
        for (const value& f : m.v.items) {
          if (f.k != value::kind::string) return entry_error(source, i, "\"drop\" must be an array of field names");
          auto p = json::parse_field(f.text);
          if (!p) return entry_error(source, i, p.error().message());
          st.drop.push_back(std::move(p.value()));
        }
      } else if (m.key == "rename") {
        if (!m.v.is_object()) return entry_error(source, i, "\"rename\" must be an object {\"old\": \"new\"}");
        for (const json::member& r : m.v.members) {
          if (r.v.k != value::kind::string)
            return entry_error(source, i, "\"rename\": the new name of '" + r.key + "' must be a string");
          auto a = json::parse_field(r.key);
          auto b = json::parse_field(r.v.text);
          if (!a) return entry_error(source, i, a.error().message());
          if (!b) return entry_error(source, i, b.error().message());
          st.rename.emplace_back(std::move(a.value()), std::move(b.value()));
        }
      } else if (m.key == "add") {
        if (!m.v.is_object()) return entry_error(source, i, "\"add\" must be an object {\"field\": default}");
        for (const json::member& a : m.v.members) {
          auto p = json::parse_field(a.key);
          if (!p) return entry_error(source, i, p.error().message());
          st.add.emplace_back(std::move(p.value()), a.v);
        }
      } else if (m.key == "rename_type") {
        auto nt = type_of(m.v, types, "\"rename_type\"");
        if (!nt) return entry_error(source, i, nt.error().message());
        st.new_type = nt.value();
      } else {
        return entry_error(source, i, "unknown key \"" + m.key + "\" (known: type, from, drop, rename, add, rename_type, current)");
      }
    }
    status s = set.add(type.value(), fv.value(), upcast_fn(std::move(st)));
    if (!s) return entry_error(source, i, s.message());
  }
  for (size_t i = 0; i < list->items.size(); ++i) {
    const value& e = list->items[i];
    if (const value* cur = e.find("current")) {
      status s = set.set_current(type_of(*e.find("type"), types, "").value(),
                                 version_of(*cur, "", UINT16_MAX).value());
      if (!s) return entry_error(source, i, s.message());
    }
  }
  // The versions the log's types file records count as current too.
  if (types)
    for (const type_registry::entry& t : types->list())
      if (t.id <= kMaxType && t.current_version > set.current(t.id))
        if (status s = set.set_current(t.id, t.current_version); !s) return s;
  if (status s = set.validate(); !s) return status(errc::invalid_argument, std::string(source) + ": " + s.message());
  return set;
}

result<upcasters> upcasters::load(const std::string& path, const type_registry* types) {
  std::string text;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return status(errc::not_found, path + ": cannot open the upcaster file");
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    text.append(buf, n);
    if (text.size() > (16u << 20)) {
      std::fclose(f);
      return status(errc::too_large, path + ": an upcaster file is at most 16 MiB");
    }
  }
  const bool bad = std::ferror(f);
  std::fclose(f);
  if (bad) return status(errc::io_error, path + ": read failed");
  return parse(text, types, path);
}

}  // namespace varve
