// The C API (include/varve/varve_c.h) over the public C++ API. It uses only
// include/varve/, like tools/: a binding layer above the engine, not part of
// it, which is why it has a folder of its own rather than a file in engine/.
//
// Every entry point is noexcept and runs its body inside guarded(), which turns
// any C++ exception into an error code: unwinding into a C caller's frames is
// undefined behaviour, and a C caller could not catch it anyway.

#include "varve/varve_c.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "varve/crypto.h"
#include "varve/event.h"
#include "varve/event_filter.h"
#include "varve/log.h"
#include "varve/reader.h"
#include "varve/status.h"
#include "varve/stream_reader.h"
#include "varve/type_registry.h"
#include "varve/upcast.h"
#include "varve/subscription.h"

// The handles. Each child keeps its log's address and is counted in it, so
// varve_log_close can refuse to pull the mapping from under an open cursor
// (whose event pointers would then dangle) instead of crashing later.
struct varve_log {
  std::unique_ptr<varve::event_log> log;
  std::atomic<uint64_t> children{0};
};
// Each reader keeps what varve_event has no room for, of the event its last
// next() returned (varve_*_event_ext).
struct last_event_ext {
  uint16_t stored_schema_version = 0;
  std::span<const std::byte> metadata;
  void set(const varve::event_view& v) {
    stored_schema_version = v.stored_schema_version;
    metadata = v.metadata.raw();
  }
};
// The views of a batch (varve_*_next_batch), kept so that a caller's loop
// allocates only when it asks for a larger batch than before.
struct batch_views {
  static constexpr size_t kMax = 1024;  // what one call returns at most
  std::vector<varve::event_view> views;
  std::span<varve::event_view> take(size_t capacity) {
    const size_t n = std::min(capacity, kMax);
    if (views.size() < n) views.resize(n);
    return std::span<varve::event_view>(views.data(), n);
  }
};
struct varve_reader {
  varve_log* owner;
  varve::log_reader reader;
  last_event_ext last{};
  batch_views batch{};
};
struct varve_stream_reader {
  varve_log* owner;
  varve::stream_reader reader;
  last_event_ext last{};
};
struct varve_subscription {
  varve_log* owner;
  varve::subscription sub;
  last_event_ext last{};
  batch_views batch{};
};

namespace {

using varve::errc;

// The C codes are varve::errc's values, so a status converts by a cast.
static_assert(VARVE_OK == static_cast<int>(errc::ok));
static_assert(VARVE_WRONG_EXPECTED_VERSION == static_cast<int>(errc::wrong_expected_version));
static_assert(VARVE_CORRUPTION == static_cast<int>(errc::corruption));
static_assert(VARVE_IO_ERROR == static_cast<int>(errc::io_error));
static_assert(VARVE_NO_SPACE == static_cast<int>(errc::no_space));
static_assert(VARVE_NOT_FOUND == static_cast<int>(errc::not_found));
static_assert(VARVE_INVALID_ARGUMENT == static_cast<int>(errc::invalid_argument));
static_assert(VARVE_NOT_A_LOG == static_cast<int>(errc::not_a_log));
static_assert(VARVE_NEWER_FORMAT == static_cast<int>(errc::newer_format));
static_assert(VARVE_LOCKED == static_cast<int>(errc::locked));
static_assert(VARVE_READ_ONLY == static_cast<int>(errc::read_only));
static_assert(VARVE_TOO_LARGE == static_cast<int>(errc::too_large));
static_assert(VARVE_CANCELLED == static_cast<int>(errc::cancelled));
static_assert(VARVE_ALREADY_EXISTS == static_cast<int>(errc::already_exists));
static_assert(VARVE_REMOVED == static_cast<int>(errc::removed));
static_assert(VARVE_STREAM_DELETED == static_cast<int>(errc::stream_deleted));
// varve_event hands out the mapping's id128s as varve_id128s.
static_assert(sizeof(varve_id128) == sizeof(varve::id128) &&
              alignof(varve_id128) == alignof(varve::id128));
static_assert(VARVE_POSITION_NONE == varve::position::none().value);
static_assert(VARVE_MASTER_KEY_SIZE == std::tuple_size_v<decltype(varve::master_key::bytes)>);
static_assert(VARVE_LATEST_VERSION == varve::kLatestVersion);
static_assert(VARVE_CONTENT_BINARY == static_cast<int>(varve::content_type::binary) &&
              VARVE_CONTENT_JSON == static_cast<int>(varve::content_type::json));
static_assert(VARVE_RECOVERY_TORN_TAIL == static_cast<int>(varve::recovery_mode::torn_tail) &&
              VARVE_RECOVERY_STRICT == static_cast<int>(varve::recovery_mode::strict) &&
              VARVE_RECOVERY_POINT_IN_TIME == static_cast<int>(varve::recovery_mode::point_in_time) &&
              VARVE_RECOVERY_SKIP_DAMAGED == static_cast<int>(varve::recovery_mode::skip_damaged));

// Copies `a` then `b` into the message buffer without allocating (it also runs
// in the handlers of std::bad_alloc), ending a message that does not fit in "...".
void set_message(varve_error* err, std::string_view a, std::string_view b = {}) noexcept {
  constexpr size_t cap = VARVE_ERROR_MESSAGE_SIZE - 1;
  size_t n = 0;
  bool cut = false;
  for (std::string_view part : {a, b}) {
    const size_t take = std::min(part.size(), cap - n);
    if (take) std::memcpy(err->message + n, part.data(), take);  // an empty view's data() may be null
    n += take;
    cut |= take < part.size();
  }
  if (cut) std::memcpy(err->message + cap - 3, "...", 3);
  err->message[n] = '\0';
}

varve_errc fail(varve_error* err, varve_errc code, std::string_view a,
                std::string_view b = {}) noexcept {
  if (err) {
    err->code = code;
    err->actual_version = 0;
    set_message(err, a, b);
  }
  return code;
}

varve_errc fail(varve_error* err, const varve::status& s) {
  const auto code = static_cast<varve_errc>(s.code());
  if (err) {
    err->code = code;
    err->actual_version = code == VARVE_WRONG_EXPECTED_VERSION ? s.actual_version() : 0;
    set_message(err, s.to_string());
  }
  return code;
}

varve_errc done(varve_error* err) noexcept {
  if (err) {
    err->code = VARVE_OK;
    err->actual_version = 0;
    err->message[0] = '\0';
  }
  return VARVE_OK;
}

varve_errc from_status(varve_error* err, const varve::status& s) {
  return s.ok() ? done(err) : fail(err, s);
}

template <class F>
varve_errc guarded(varve_error* err, F&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc& e) {
    return fail(err, VARVE_OUT_OF_MEMORY, "out of memory: ", e.what());
  } catch (const std::length_error& e) {
    return fail(err, VARVE_OUT_OF_MEMORY, "out of memory: ", e.what());
  } catch (const std::exception& e) {
    return fail(err, VARVE_INTERNAL, "unexpected C++ exception: ", e.what());
  } catch (...) {
    return fail(err, VARVE_INTERNAL, "unexpected C++ exception of unknown type");
  }
}

#define VARVE_REQUIRE(arg)                                           \
  do {                                                               \
    if (!(arg)) return fail(err, VARVE_INVALID_ARGUMENT, #arg " is NULL"); \
  } while (0)

// The value a C caller stored in an enum: C lets any int live there, while in
// C++ merely loading an enum object outside its values is undefined (UBSan's
// -fsanitize=enum says so), so the bytes are read as the int they are.
template <class E>
int raw(const E& e) noexcept {
  static_assert(std::is_enum_v<E> && sizeof(E) == sizeof(int));
  int v;
  std::memcpy(&v, &e, sizeof v);
  return v;
}

// Converters, each validating what a C caller can get wrong that C++'s types
// rule out (enum values out of range, NULL with a non-zero size).

varve_errc to_stream(varve_stream_id in, varve::stream_id& out, varve_error* err) {
  if (in.is_integer) {
    out = varve::stream_id::from_u64(in.integer);
    return VARVE_OK;
  }
  if (!in.bytes && in.size != 0)
    return fail(err, VARVE_INVALID_ARGUMENT, "stream bytes are NULL with a non-zero size");
  out = varve::stream_id(std::string_view(in.bytes ? in.bytes : "", in.size));
  return VARVE_OK;
}

// A C filter as an event_filter; VARVE_INVALID_ARGUMENT (in err) for a NULL
// list with a non-zero count or a bad stream id.
varve_errc to_filter(const varve_filter* filter, varve::event_filter& f, varve_error* err) {
  if (!filter) return VARVE_OK;
  if ((!filter->types && filter->type_count) || (!filter->stream_prefixes && filter->stream_prefix_count) ||
      (!filter->streams && filter->stream_count))
    return fail(err, VARVE_INVALID_ARGUMENT, "filter list is NULL with a non-zero count");
  f.types.assign(filter->types, filter->types + filter->type_count);
  for (size_t i = 0; i < filter->stream_prefix_count; ++i) {
    if (!filter->stream_prefixes[i]) return fail(err, VARVE_INVALID_ARGUMENT, "filter stream prefix is NULL");
    f.stream_prefixes.emplace_back(filter->stream_prefixes[i]);
  }
  for (size_t i = 0; i < filter->stream_count; ++i) {
    varve::stream_id s;
    if (varve_errc c = to_stream(filter->streams[i], s, err)) return c;
    f.streams.emplace_back(s.bytes());
  }
  return VARVE_OK;
}

varve_errc to_expected(varve_expected_version in, varve::expected_version& out, varve_error* err) {
  switch (raw(in.kind)) {
    case VARVE_EXPECT_ANY: out = varve::expected_version::any(); return VARVE_OK;
    case VARVE_EXPECT_NO_STREAM: out = varve::expected_version::no_stream(); return VARVE_OK;
    case VARVE_EXPECT_STREAM_EXISTS:
      out = varve::expected_version::stream_exists();
      return VARVE_OK;
    case VARVE_EXPECT_EXACT: out = varve::expected_version::exact(in.version); return VARVE_OK;
  }
  return fail(err, VARVE_INVALID_ARGUMENT, "unknown expected-version kind");
}

// The C event's ids are copied beside it: the C++ event_data points at id128s.
struct ids {
  varve::id128 event, correlation, causation;
  std::vector<varve::metadata_entry> metadata;  // empty (no allocation) without metadata
};

varve_errc to_event(const varve_event_data& in, const varve_event_metadata* md,
                    varve::event_data& out, ids& keep, varve_error* err) {
  if (!in.payload && in.payload_size != 0)
    return fail(err, VARVE_INVALID_ARGUMENT, "event payload is NULL with a non-zero size");
  const int content = raw(in.content);
  if (content != VARVE_CONTENT_BINARY && content != VARVE_CONTENT_JSON)
    return fail(err, VARVE_INVALID_ARGUMENT, "unknown event content type");
  out = varve::event_data{};
  out.type = in.type;
  out.schema_version = in.schema_version ? in.schema_version : 1;
  out.payload = std::span(static_cast<const std::byte*>(in.payload), in.payload_size);
  out.content = static_cast<varve::content_type>(content);
  out.timestamp_ns = in.timestamp_ns;
  auto copy = [](const varve_id128* from, varve::id128& to) -> const varve::id128* {
    if (!from) return nullptr;
    std::memcpy(to.bytes.data(), from->bytes, 16);
    return &to;
  };
  out.event_id = copy(in.event_id, keep.event);
  out.correlation_id = copy(in.correlation_id, keep.correlation);
  out.causation_id = copy(in.causation_id, keep.causation);
  if (md && md->count) {
    if (!md->entries) return fail(err, VARVE_INVALID_ARGUMENT, "metadata entries are NULL with a non-zero count");
    keep.metadata.clear();
    for (size_t i = 0; i < md->count; ++i) {
      const varve_metadata_entry& m = md->entries[i];
      if ((!m.key && m.key_size) || (!m.value && m.value_size))
        return fail(err, VARVE_INVALID_ARGUMENT, "metadata entry " + std::to_string(i) + " has a NULL key or value with a non-zero size");
      keep.metadata.push_back({std::string_view(m.key ? m.key : "", m.key_size),
                               std::string_view(static_cast<const char*>(m.value ? m.value : ""), m.value_size)});
    }
    out.metadata = keep.metadata;
  }
  return VARVE_OK;
}

void to_c(const varve::event_view& v, varve_event& e) noexcept {
  e.position = v.position.value;
  e.sequence = v.sequence.value;
  e.stream = v.stream.data();
  e.stream_size = v.stream.size();
  e.stream_is_integer = v.stream_is_integer;
  e.version = v.version;
  e.previous = v.previous.value;
  e.type = v.type;
  e.schema_version = v.schema_version;
  // Stored as the int it is: a content byte this C header has no name for
  // must not become an out-of-range C++ enum value (see raw()).
  const int content = static_cast<int>(v.content);
  std::memcpy(&e.content, &content, sizeof content);
  e.timestamp_ns = v.timestamp_ns;
  e.batch_begin = v.batch_begin;
  e.batch_end = v.batch_end;
  e.event_id = reinterpret_cast<const varve_id128*>(v.event_id);
  e.correlation_id = reinterpret_cast<const varve_id128*>(v.correlation_id);
  e.causation_id = reinterpret_cast<const varve_id128*>(v.causation_id);
  e.payload = v.payload.data();
  e.payload_size = v.payload.size();
  e.record_bytes = v.record_bytes;
  e.encrypted = v.encrypted;
  e.forgotten = v.forgotten;
}

void to_c(const varve::append_result& r, varve_append_result* out) noexcept {
  if (!out) return;
  out->first = r.first.value;
  out->end = r.end.value;
  out->first_sequence = r.first_sequence.value;
  out->first_version = r.first_version;
  out->last_version = r.last_version;
  out->duplicate = r.duplicate;
}

// A stream's metadata as C sees it; `out` may be NULL (nothing to fill).
void to_c(const varve::stream_metadata& m, varve_stream_metadata* out) noexcept {
  if (!out) return;
  out->deleted = m.deleted;
  out->truncate_before = m.truncate_before;
  out->max_count = m.max_count;
  out->max_age_ns = m.max_age_ns;
}

varve_errc to_options(const varve_log_options* in, varve::log_options& out, varve_error* err) {
  if (!in) return VARVE_OK;
  const int mode = raw(in->durability), recovery = raw(in->recovery);
  if (mode < VARVE_DURABILITY_NONE || mode > VARVE_DURABILITY_SYNC)
    return fail(err, VARVE_INVALID_ARGUMENT, "unknown durability mode");
  if (recovery < VARVE_RECOVERY_TORN_TAIL || recovery > VARVE_RECOVERY_SKIP_DAMAGED)
    return fail(err, VARVE_INVALID_ARGUMENT, "unknown recovery mode");
  out.segment_bytes = in->segment_bytes;
  out.mode = static_cast<varve::durability>(mode);
  out.group_commit_interval = std::chrono::microseconds(in->group_commit_interval_us);
  out.group_commit_bytes = in->group_commit_bytes;
  out.recovery = static_cast<varve::recovery_mode>(recovery);
  out.prepare_next_segment = in->prepare_next_segment;
  out.verify_checksums = in->verify_checksums;
  if (in->master_key) {
    varve::master_key k;
    std::memcpy(k.bytes.data(), in->master_key, k.bytes.size());
    out.master_key = k;
  }
  return VARVE_OK;
}

using opener = varve::result<std::unique_ptr<varve::event_log>> (*)(const std::string&,
                                                                     const varve::log_options&);

varve_errc open_with(opener how, const char* dir, const varve_log_options* options,
                     varve_log** out, varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(out);
    *out = nullptr;
    VARVE_REQUIRE(dir);
    varve::log_options o;
    if (varve_errc c = to_options(options, o, err)) return c;
    auto log = how(dir, o);
    if (!log) return fail(err, log.error());
    auto handle = std::make_unique<varve_log>();
    handle->log = std::move(log).value();
    *out = handle.release();
    return done(err);
  });
}

}  // namespace

extern "C" {

const char* varve_errc_name(varve_errc code) noexcept {
  const int c = raw(code);
  if (c == VARVE_OUT_OF_MEMORY) return "out of memory";
  if (c == VARVE_INTERNAL) return "internal error";
  // Every value below 100 is varve::errc's, whose names are literals (hence
  // NUL-terminated); errc_name says "unknown" for a value that is no code.
  if (c < VARVE_OK || c >= VARVE_OUT_OF_MEMORY) return "unknown";
  return varve::errc_name(static_cast<errc>(c)).data();
}

const char* varve_version(void) noexcept { return VARVE_VERSION_STRING; }

void varve_log_options_init(varve_log_options* options) noexcept {
  if (!options) return;
  const varve::log_options d;
  options->segment_bytes = d.segment_bytes;
  options->durability = static_cast<varve_durability>(d.mode);
  options->group_commit_interval_us = static_cast<uint64_t>(d.group_commit_interval.count());
  options->group_commit_bytes = d.group_commit_bytes;
  options->recovery = static_cast<varve_recovery_mode>(d.recovery);
  options->prepare_next_segment = d.prepare_next_segment;
  options->verify_checksums = d.verify_checksums;
  options->master_key = nullptr;
}

varve_errc varve_log_create(const char* dir, const varve_log_options* options, varve_log** out,
                            varve_error* err) noexcept {
  return open_with(&varve::event_log::create, dir, options, out, err);
}
varve_errc varve_log_open(const char* dir, const varve_log_options* options, varve_log** out,
                          varve_error* err) noexcept {
  return open_with(&varve::event_log::open, dir, options, out, err);
}
varve_errc varve_log_open_or_create(const char* dir, const varve_log_options* options,
                                    varve_log** out, varve_error* err) noexcept {
  return open_with(&varve::event_log::open_or_create, dir, options, out, err);
}
varve_errc varve_log_open_read_only(const char* dir, const varve_log_options* options,
                                    varve_log** out, varve_error* err) noexcept {
  return open_with(&varve::event_log::open_read_only, dir, options, out, err);
}

varve_errc varve_log_close(varve_log* log, varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(log);
    if (const uint64_t n = log->children.load(std::memory_order_acquire); n != 0)
      return fail(err, VARVE_INVALID_ARGUMENT,
                  std::to_string(n) + " reader(s) or subscription(s) of this log are still open");
    // Freed whatever close() says: the destructor finishes what close could not.
    std::unique_ptr<varve_log> owned(log);
    return from_status(err, owned->log->close());
  });
}

varve_errc varve_append(varve_log* log, varve_stream_id stream, varve_expected_version expected,
                        const varve_event_data* event, varve_append_result* result,
                        varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(log);
    VARVE_REQUIRE(event);
    varve::stream_id s;
    varve::expected_version e = varve::expected_version::any();
    varve::event_data d;
    ids keep;
    if (varve_errc c = to_stream(stream, s, err)) return c;
    if (varve_errc c = to_expected(expected, e, err)) return c;
    if (varve_errc c = to_event(*event, nullptr, d, keep, err)) return c;
    auto r = log->log->append(s, e, d);
    if (!r) return fail(err, r.error());
    to_c(r.value(), result);
    return done(err);
  });
}

varve_errc varve_append_batch(varve_log* log, varve_stream_id stream,
                              varve_expected_version expected, const varve_event_data* events,
                              size_t count, varve_append_result* result,
                              varve_error* err) noexcept {
  return varve_append_batch_with_metadata(log, stream, expected, events, nullptr, count, result, err);
}

varve_errc varve_append_batch_with_metadata(varve_log* log, varve_stream_id stream,
                                            varve_expected_version expected,
                                            const varve_event_data* events,
                                            const varve_event_metadata* metadata, size_t count,
                                            varve_append_result* result, varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(log);
    VARVE_REQUIRE(events);
    varve::stream_id s;
    varve::expected_version e = varve::expected_version::any();
    if (varve_errc c = to_stream(stream, s, err)) return c;
    if (varve_errc c = to_expected(expected, e, err)) return c;
    // Small batches convert on the stack, so the common case allocates no
    // more than the C++ call does.
    constexpr size_t kOnStack = 16;
    std::array<varve::event_data, kOnStack> small_data;
    std::array<ids, kOnStack> small_ids;
    std::vector<varve::event_data> big_data;
    std::vector<ids> big_ids;
    std::span<varve::event_data> data(small_data.data(), std::min(count, kOnStack));
    std::span<ids> keep(small_ids.data(), data.size());
    if (count > kOnStack) {
      big_data.resize(count);
      big_ids.resize(count);
      data = big_data;
      keep = big_ids;
    }
    for (size_t i = 0; i < count; ++i)
      if (varve_errc c = to_event(events[i], metadata ? &metadata[i] : nullptr, data[i], keep[i], err)) return c;
    auto r = log->log->append(s, e, std::span<const varve::event_data>(data.data(), count));
    if (!r) return fail(err, r.error());
    to_c(r.value(), result);
    return done(err);
  });
}

varve_errc varve_append_multi(varve_log* log, const varve_stream_batch* batches, size_t count,
                              varve_append_result* per_stream, varve_append_result* result,
                              varve_error* err) noexcept {
  return varve_append_multi_with_metadata(log, batches, nullptr, count, per_stream, result, err);
}

varve_errc varve_append_multi_with_metadata(varve_log* log, const varve_stream_batch* batches,
                                            const varve_event_metadata* const* metadata,
                                            size_t count, varve_append_result* per_stream,
                                            varve_append_result* result, varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(log);
    VARVE_REQUIRE(batches || count == 0);
    // Not the hot path of a single-stream writer: plain vectors.
    size_t events = 0;
    for (size_t i = 0; i < count; ++i) {
      VARVE_REQUIRE(batches[i].events || batches[i].count == 0);
      events += batches[i].count;
    }
    std::vector<varve::event_data> data(events);
    std::vector<ids> keep(events);
    std::vector<varve::stream_batch> parts(count);
    size_t at = 0;
    for (size_t i = 0; i < count; ++i) {
      if (varve_errc c = to_stream(batches[i].stream, parts[i].stream, err)) return c;
      if (varve_errc c = to_expected(batches[i].expected, parts[i].expected, err)) return c;
      for (size_t k = 0; k < batches[i].count; ++k)
        if (varve_errc c = to_event(batches[i].events[k],
                                    metadata && metadata[i] ? &metadata[i][k] : nullptr,
                                    data[at + k], keep[at + k], err))
          return c;
      parts[i].events = std::span<const varve::event_data>(data.data() + at, batches[i].count);
      at += batches[i].count;
    }
    std::vector<varve::append_result> acks(per_stream ? count : 0);
    auto r = log->log->append(std::span<const varve::stream_batch>(parts), std::span<varve::append_result>(acks));
    if (!r) return fail(err, r.error());
    for (size_t i = 0; i < acks.size(); ++i) to_c(acks[i], &per_stream[i]);
    if (result) {
      varve::append_result whole;
      whole.first = r->first;
      whole.end = r->end;
      whole.first_sequence = r->first_sequence;
      to_c(whole, result);
    }
    return done(err);
  });
}

varve_errc varve_wait_durable(varve_log* log, uint64_t position, varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(log);
    return from_status(err, log->log->wait_durable(varve::position{position}));
  });
}

varve_errc varve_log_set_upcasters(varve_log* log, const char* path, varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(log);
    if (!path) return from_status(err, log->log->set_upcasters(nullptr));
    // Type names in the file resolve through the log's own DIR/types.
    auto types = varve::type_registry::open(log->log->dir());
    if (!types) return fail(err, types.error());
    auto set = varve::upcasters::load(path, &types.value());
    if (!set) return fail(err, set.error());
    return from_status(err, log->log->set_upcasters(
                                std::make_shared<const varve::upcasters>(std::move(set.value()))));
  });
}

varve_errc varve_flush(varve_log* log, varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(log);
    return from_status(err, log->log->flush());
  });
}

varve_errc varve_log_positions(const varve_log* log, varve_positions* out,
                               varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(log);
    VARVE_REQUIRE(out);
    out->written = log->log->written_position().value;
    out->committed = log->log->committed_position().value;
    out->durable = log->log->durable_position().value;
    out->next_sequence = log->log->next_sequence().value;
    return done(err);
  });
}

varve_errc varve_log_stats(varve_log* log, varve_stats* out, varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(log);
    VARVE_REQUIRE(out);
    const varve::log_stats s = log->log->stats();
    out->segments = s.segments;
    out->segment_bytes = s.segment_bytes;
    out->events = s.events;
    out->streams = s.streams;
    out->written = s.written.value;
    out->committed = s.committed.value;
    out->durable = s.durable.value;
    out->bytes_on_disk = s.bytes_on_disk;
    return done(err);
  });
}

varve_errc varve_log_start(const varve_log* log, uint64_t* start_position, uint64_t* first_sequence,
                           varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(log);
    VARVE_REQUIRE(start_position);
    VARVE_REQUIRE(first_sequence);
    const varve::log_stats s = log->log->stats();
    *start_position = s.start.value;
    *first_sequence = s.first_sequence.value;
    return done(err);
  });
}

varve_errc varve_retain(varve_log* log, const varve_retention_policy* policy, int dry_run,
                        varve_retention_result* out, varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(log);
    VARVE_REQUIRE(policy);
    varve::retention_policy p;
    p.max_age_ns = policy->max_age_ns;
    p.max_bytes = policy->max_bytes;
    p.before = varve::position{policy->before};
    auto r = log->log->retain(p, dry_run != 0);
    if (!r) return from_status(err, r.error());
    if (out) {
      out->segments_removed = r.value().segments_removed;
      out->bytes_removed = r.value().bytes_removed;
      out->events_removed = r.value().events_removed;
      out->first_segment = r.value().first_segment;
      out->start_position = r.value().start.value;
      out->first_sequence = r.value().first_sequence.value;
    }
    return done(err);
  });
}

varve_errc varve_archive(varve_log* log, const char* dir, uint64_t before, int level, int dry_run,
                         varve_archive_result* out, varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(log);
    VARVE_REQUIRE(dir);
    varve::archive_options o;
    o.dir = dir;
    o.before = varve::position{before};
    if (level != 0) o.level = level;
    auto r = log->log->archive(o, dry_run != 0);
    if (!r) return from_status(err, r.error());
    if (out) {
      out->segments_archived = r.value().segments_archived;
      out->raw_bytes = r.value().raw_bytes;
      out->archived_bytes = r.value().archived_bytes;
      out->archive_end = r.value().archive_end;
    }
    return done(err);
  });
}

varve_errc varve_version_of(varve_log* log, varve_stream_id stream, uint64_t* version,
                            varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(log);
    VARVE_REQUIRE(version);
    varve::stream_id s;
    if (varve_errc c = to_stream(stream, s, err)) return c;
    *version = log->log->version_of(s);
    return done(err);
  });
}

varve_errc varve_position_at_time(varve_log* log, uint64_t t_ns, uint64_t* position,
                                  varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(log);
    VARVE_REQUIRE(position);
    auto p = log->log->position_at_time(t_ns);
    if (!p) return fail(err, p.error());
    *position = p.value().value;
    return done(err);
  });
}

varve_errc varve_position_of_sequence(varve_log* log, uint64_t sequence, uint64_t* position,
                                     varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(log);
    VARVE_REQUIRE(position);
    auto p = log->log->position_of(varve::sequence{sequence});
    if (!p) return fail(err, p.error());
    *position = p.value().value;
    return done(err);
  });
}

varve_errc varve_master_key_generate(uint8_t out[VARVE_MASTER_KEY_SIZE], varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(out);
    const varve::master_key k = varve::generate_master_key();
    std::memcpy(out, k.bytes.data(), k.bytes.size());
    return done(err);
  });
}

varve_errc varve_master_key_load(const char* path, uint8_t out[VARVE_MASTER_KEY_SIZE],
                                 varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(path);
    VARVE_REQUIRE(out);
    auto k = varve::load_master_key(path);
    if (!k) return fail(err, k.error());
    std::memcpy(out, k.value().bytes.data(), k.value().bytes.size());
    return done(err);
  });
}

varve_errc varve_forget(varve_log* log, varve_stream_id stream, varve_forget_result* out,
                        varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(log);
    varve::stream_id s;
    if (varve_errc c = to_stream(stream, s, err)) return c;
    auto r = log->log->forget(s);
    if (!r) return fail(err, r.error());
    if (out) {
      out->keys_destroyed = r.value().keys_destroyed;
      out->events_forgotten = r.value().events_forgotten;
      out->plain_events = r.value().plain_events;
      out->forget_sequence = r.value().forget_sequence;
    }
    return done(err);
  });
}

varve_errc varve_log_encrypted(const varve_log* log, bool* encrypted, varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(log);
    VARVE_REQUIRE(encrypted);
    *encrypted = log->log->encrypted();
    return done(err);
  });
}

varve_errc varve_delete_stream(varve_log* log, varve_stream_id stream, varve_stream_metadata* out,
                               varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(log);
    varve::stream_id s;
    if (varve_errc c = to_stream(stream, s, err)) return c;
    auto r = log->log->delete_stream(s);
    if (!r) return fail(err, r.error());
    to_c(r.value(), out);
    return done(err);
  });
}

varve_errc varve_truncate_stream(varve_log* log, varve_stream_id stream, uint64_t before,
                                 varve_stream_metadata* out, varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(log);
    varve::stream_id s;
    if (varve_errc c = to_stream(stream, s, err)) return c;
    auto r = log->log->truncate_stream(s, before);
    if (!r) return fail(err, r.error());
    to_c(r.value(), out);
    return done(err);
  });
}

varve_errc varve_set_stream_limits(varve_log* log, varve_stream_id stream, uint64_t max_count,
                                   uint64_t max_age_ns, varve_stream_metadata* out,
                                   varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(log);
    varve::stream_id s;
    if (varve_errc c = to_stream(stream, s, err)) return c;
    auto r = log->log->set_stream_limits(s, max_count, max_age_ns);
    if (!r) return fail(err, r.error());
    to_c(r.value(), out);
    return done(err);
  });
}

varve_errc varve_stream_metadata_of(const varve_log* log, varve_stream_id stream,
                                    varve_stream_metadata* out, varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(log);
    VARVE_REQUIRE(out);
    varve::stream_id s;
    if (varve_errc c = to_stream(stream, s, err)) return c;
    auto r = log->log->stream_metadata_of(s);
    if (!r) return fail(err, r.error());
    to_c(r.value(), out);
    return done(err);
  });
}

varve_errc varve_scavenge(varve_log* log, bool dry_run, varve_scavenge_result* out,
                          varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(log);
    auto r = log->log->scavenge(dry_run);
    if (!r) return fail(err, r.error());
    if (out) {
      out->segments_examined = r.value().segments_examined;
      out->segments_rewritten = r.value().segments_rewritten;
      out->events_removed = r.value().events_removed;
      out->bytes_freed = r.value().bytes_freed;
    }
    return done(err);
  });
}

varve_errc varve_reader_open(varve_log* log, uint64_t from, varve_reader** out,
                             varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(out);
    *out = nullptr;
    VARVE_REQUIRE(log);
    *out = new varve_reader{log, log->log->read(varve::position{from})};
    log->children.fetch_add(1, std::memory_order_relaxed);
    return done(err);
  });
}

varve_errc varve_reader_open_filtered(varve_log* log, uint64_t from, const varve_filter* filter,
                                      const varve_id128* correlation_ids, size_t correlation_count,
                                      varve_reader** out, varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(out);
    *out = nullptr;
    VARVE_REQUIRE(log);
    if (!correlation_ids && correlation_count)
      return fail(err, VARVE_INVALID_ARGUMENT, "correlation_ids is NULL with a non-zero count");
    varve::event_filter f;
    if (varve_errc c = to_filter(filter, f, err)) return c;
    for (size_t i = 0; i < correlation_count; ++i) {
      varve::id128 id;
      std::memcpy(id.bytes.data(), correlation_ids[i].bytes, 16);
      f.correlation_ids.push_back(id);
    }
    *out = new varve_reader{log, log->log->read(varve::position{from}, std::move(f))};
    log->children.fetch_add(1, std::memory_order_relaxed);
    return done(err);
  });
}

varve_errc varve_reader_next(varve_reader* reader, varve_event* event, bool* got,
                             varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(reader);
    VARVE_REQUIRE(event);
    VARVE_REQUIRE(got);
    *got = false;
    varve::event_view v;
    auto more = reader->reader.next(v);
    if (!more) return fail(err, more.error());
    if (more.value()) {
      to_c(v, *event);
      reader->last.set(v);
    }
    *got = more.value();
    return done(err);
  });
}

namespace {
// What a batch read hands back: the views converted, the last one's
// extension kept (varve_*_event_ext describes the last event returned).
void to_c_batch(std::span<const varve::event_view> views, varve_event* events, last_event_ext& last) noexcept {
  for (size_t i = 0; i < views.size(); ++i) to_c(views[i], events[i]);
  if (!views.empty()) last.set(views.back());
}
}  // namespace

varve_errc varve_reader_next_batch(varve_reader* reader, varve_event* events, size_t capacity,
                                   size_t* count, varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(reader);
    VARVE_REQUIRE(count);
    *count = 0;
    VARVE_REQUIRE(events || capacity == 0);
    if (capacity == 0) return done(err);
    std::span<varve::event_view> views = reader->batch.take(capacity);
    auto n = reader->reader.next_batch(views);
    if (!n) return fail(err, n.error());
    to_c_batch(views.first(n.value()), events, reader->last);
    *count = n.value();
    return done(err);
  });
}

varve_errc varve_reader_where(const varve_reader* reader, uint64_t* position,
                              varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(reader);
    VARVE_REQUIRE(position);
    *position = reader->reader.where().value;
    return done(err);
  });
}

varve_errc varve_reader_seek(varve_reader* reader, uint64_t position, varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(reader);
    reader->reader.seek(varve::position{position});
    return done(err);
  });
}

void varve_reader_free(varve_reader* reader) noexcept {
  if (!reader) return;
  varve_log* owner = reader->owner;
  delete reader;
  owner->children.fetch_sub(1, std::memory_order_release);
}

varve_errc varve_stream_read(varve_log* log, varve_stream_id stream, uint64_t from,
                             varve_direction direction, uint64_t max_count,
                             varve_stream_reader** out, varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(out);
    *out = nullptr;
    VARVE_REQUIRE(log);
    const int dir = raw(direction);
    if (dir != VARVE_FORWARD && dir != VARVE_BACKWARD)
      return fail(err, VARVE_INVALID_ARGUMENT, "unknown read direction");
    varve::stream_id s;
    if (varve_errc c = to_stream(stream, s, err)) return c;
    auto r = log->log->read_stream(s, from,
                                   dir == VARVE_FORWARD ? varve::read_direction::forward
                                                        : varve::read_direction::backward,
                                   max_count);
    if (!r) return fail(err, r.error());
    *out = new varve_stream_reader{log, std::move(r).value()};
    log->children.fetch_add(1, std::memory_order_relaxed);
    return done(err);
  });
}

varve_errc varve_stream_reader_next(varve_stream_reader* reader, varve_event* event, bool* got,
                                    varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(reader);
    VARVE_REQUIRE(event);
    VARVE_REQUIRE(got);
    *got = false;
    varve::event_view v;
    auto more = reader->reader.next(v);
    if (!more) return fail(err, more.error());
    if (more.value()) {
      to_c(v, *event);
      reader->last.set(v);
    }
    *got = more.value();
    return done(err);
  });
}

varve_errc varve_stream_reader_version(const varve_stream_reader* reader, uint64_t* version,
                                       varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(reader);
    VARVE_REQUIRE(version);
    *version = reader->reader.stream_version_at_start();
    return done(err);
  });
}

void varve_stream_reader_free(varve_stream_reader* reader) noexcept {
  if (!reader) return;
  varve_log* owner = reader->owner;
  delete reader;
  owner->children.fetch_sub(1, std::memory_order_release);
}

void varve_subscription_options_init(varve_subscription_options* options) noexcept {
  if (!options) return;
  const varve::subscription_options d;
  options->spin_ns = static_cast<int64_t>(d.spin.count());
  options->name = nullptr;
}

varve_errc varve_subscription_open(varve_log* log, uint64_t from, const varve_filter* filter,
                                   const varve_subscription_options* options,
                                   varve_subscription** out, varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(out);
    *out = nullptr;
    VARVE_REQUIRE(log);
    varve::event_filter f;
    if (varve_errc c = to_filter(filter, f, err)) return c;
    varve::subscription_options o;
    if (options) {
      if (options->spin_ns < 0) return fail(err, VARVE_INVALID_ARGUMENT, "negative spin_ns");
      o.spin = std::chrono::nanoseconds(options->spin_ns);
      if (options->name) o.name = options->name;
    }
    auto sub = varve::subscription::open(*log->log, varve::position{from}, std::move(f),
                                         std::move(o));
    if (!sub) return fail(err, sub.error());
    *out = new varve_subscription{log, std::move(sub).value()};
    log->children.fetch_add(1, std::memory_order_relaxed);
    return done(err);
  });
}

varve_errc varve_subscription_next(varve_subscription* sub, varve_event* event,
                                   int64_t timeout_ns, bool* got, varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(sub);
    VARVE_REQUIRE(event);
    VARVE_REQUIRE(got);
    *got = false;
    if (timeout_ns < 0) return fail(err, VARVE_INVALID_ARGUMENT, "negative timeout_ns");
    varve::event_view v;
    auto more = sub->sub.next(v, std::chrono::nanoseconds(timeout_ns));
    if (!more) return fail(err, more.error());
    if (more.value()) {
      to_c(v, *event);
      sub->last.set(v);
    }
    *got = more.value();
    return done(err);
  });
}

varve_errc varve_subscription_next_batch(varve_subscription* sub, varve_event* events,
                                         size_t capacity, int64_t timeout_ns, size_t* count,
                                         varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(sub);
    VARVE_REQUIRE(count);
    *count = 0;
    VARVE_REQUIRE(events || capacity == 0);
    if (timeout_ns < 0) return fail(err, VARVE_INVALID_ARGUMENT, "negative timeout_ns");
    if (capacity == 0) return done(err);
    std::span<varve::event_view> views = sub->batch.take(capacity);
    auto n = sub->sub.next_batch(views, std::chrono::nanoseconds(timeout_ns));
    if (!n) return fail(err, n.error());
    to_c_batch(views.first(n.value()), events, sub->last);
    *count = n.value();
    return done(err);
  });
}

varve_errc varve_subscription_where(const varve_subscription* sub, uint64_t* position,
                                    varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(sub);
    VARVE_REQUIRE(position);
    *position = sub->sub.where().value;
    return done(err);
  });
}

varve_errc varve_subscription_lag(const varve_subscription* sub, uint64_t* events,
                                  uint64_t* bytes, varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(sub);
    VARVE_REQUIRE(events);
    VARVE_REQUIRE(bytes);
    const varve::subscription_lag lag = sub->sub.lag();
    *events = lag.events;
    *bytes = lag.bytes;
    return done(err);
  });
}

varve_errc varve_subscription_cancel(varve_subscription* sub) noexcept {
  // Nothing here may allocate or lock: a signal handler may be the caller.
  if (!sub) return VARVE_INVALID_ARGUMENT;
  sub->sub.cancel();
  return VARVE_OK;
}

varve_errc varve_subscription_ack(varve_subscription* sub, uint64_t resume_at,
                                  varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(sub);
    return from_status(err, sub->sub.ack(varve::position{resume_at}));
  });
}

varve_errc varve_subscription_commit(varve_subscription* sub, varve_error* err) noexcept {
  return guarded(err, [&] {
    VARVE_REQUIRE(sub);
    return from_status(err, sub->sub.commit());
  });
}

void varve_subscription_free(varve_subscription* sub) noexcept {
  if (!sub) return;
  varve_log* owner = sub->owner;
  delete sub;
  owner->children.fetch_sub(1, std::memory_order_release);
}

}  // extern "C"

namespace {
varve_errc event_ext(const last_event_ext& last, varve_event_ext* out, varve_error* err) {
  return guarded(err, [&] {
    VARVE_REQUIRE(out);
    out->stored_schema_version = last.stored_schema_version;
    out->metadata = last.metadata.data();
    out->metadata_size = last.metadata.size();
    return done(err);
  });
}
}  // namespace

varve_errc varve_reader_event_ext(const varve_reader* reader, varve_event_ext* out,
                                  varve_error* err) noexcept {
  if (!reader) return fail(err, VARVE_INVALID_ARGUMENT, "reader is NULL");
  return event_ext(reader->last, out, err);
}

varve_errc varve_stream_reader_event_ext(const varve_stream_reader* reader, varve_event_ext* out,
                                         varve_error* err) noexcept {
  if (!reader) return fail(err, VARVE_INVALID_ARGUMENT, "reader is NULL");
  return event_ext(reader->last, out, err);
}

varve_errc varve_subscription_event_ext(const varve_subscription* sub, varve_event_ext* out,
                                        varve_error* err) noexcept {
  if (!sub) return fail(err, VARVE_INVALID_ARGUMENT, "subscription is NULL");
  return event_ext(sub->last, out, err);
}

bool varve_metadata_next(const void* metadata, size_t size, size_t* cursor,
                         varve_metadata_entry* entry) noexcept {
  // Entries: key_len u8, value_len u16 LE, key, value (FORMAT.md 4.1a).
  if (!metadata || !cursor || !entry || *cursor >= size || size - *cursor < 3) return false;
  const auto* p = static_cast<const unsigned char*>(metadata) + *cursor;
  const size_t k = p[0], v = static_cast<size_t>(p[1]) | (static_cast<size_t>(p[2]) << 8);
  if (k == 0 || size - *cursor - 3 < k + v) return false;
  entry->key = reinterpret_cast<const char*>(p + 3);
  entry->key_size = k;
  entry->value = p + 3 + k;
  entry->value_size = v;
  *cursor += 3 + k + v;
  return true;
}

bool varve_metadata_find(const void* metadata, size_t size, const char* key, size_t key_size,
                         const void** value, size_t* value_size) noexcept {
  if (!key && key_size) return false;
  size_t at = 0;
  varve_metadata_entry e;
  while (varve_metadata_next(metadata, size, &at, &e)) {
    if (e.key_size == key_size && (key_size == 0 || std::memcmp(e.key, key, key_size) == 0)) {
      if (value) *value = e.value;
      if (value_size) *value_size = e.value_size;
      return true;
    }
  }
  return false;
}
