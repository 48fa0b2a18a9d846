// The Python binding (module varve._varve), over the C++ API: python/varve
// wraps it in the package's public names. Python objects are converted to
// C++ values while the GIL is held; the GIL is then released around every
// call that may wait (appends in modes group/sync, wait_durable, flush,
// subscriptions) or read (readers), so other Python threads run meanwhile.
//
// Threads: event_log's writer-side calls (append, version_of, read_stream,
// stats, forget, delete/truncate_stream, set_stream_limits, scavenge, close)
// must come from one thread at a time; here a mutex per log serialises them,
// so any Python thread may append. Readers and subscriptions are used by one
// thread at a time (a mutex each, so misuse is serialised rather than
// undefined). A log stays alive while any reader or subscription made from
// it does (they hold a shared_ptr to it).
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <Python.h>

#include <algorithm>
#include <span>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "varve/varve.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

// ---- errors ----------------------------------------------------------------
// The exception classes live in python/varve/errors.py (so they carry
// Python attributes and docstrings); the package hands them over at import.
// A strong reference held for the life of the process: a static nb::dict
// would be released after the interpreter is gone.
PyObject* g_errors = nullptr;  // dict: errc name -> class

nb::object error_class(const char* name) {
  if (!g_errors) return nb::none();
  PyObject* c = PyDict_GetItemString(g_errors, name);  // borrowed
  return c ? nb::borrow(c) : nb::none();
}

const char* code_name(varve::errc c) {
  switch (c) {
    case varve::errc::ok: return "ok";
    case varve::errc::wrong_expected_version: return "wrong_expected_version";
    case varve::errc::corruption: return "corruption";
    case varve::errc::io_error: return "io_error";
    case varve::errc::no_space: return "no_space";
    case varve::errc::not_found: return "not_found";
    case varve::errc::invalid_argument: return "invalid_argument";
    case varve::errc::not_a_log: return "not_a_log";
    case varve::errc::newer_format: return "newer_format";
    case varve::errc::locked: return "locked";
    case varve::errc::read_only: return "read_only";
    case varve::errc::too_large: return "too_large";
    case varve::errc::cancelled: return "cancelled";
    case varve::errc::already_exists: return "already_exists";
    case varve::errc::removed: return "removed";
    case varve::errc::stream_deleted: return "stream_deleted";
  }
  return "error";
}

[[noreturn]] void raise(const varve::status& st, const std::string& stream = {}) {
  nb::gil_scoped_acquire gil;  // callers may have released it
  const std::string name = code_name(st.code());
  nb::object cls = error_class(name.c_str());
  if (cls.is_none()) cls = error_class("error");
  if (cls.is_none()) cls = nb::borrow(PyExc_RuntimeError);
  nb::object actual = nb::none();
  if (st.code() == varve::errc::wrong_expected_version) actual = nb::int_(st.actual_version());
  nb::object exc = cls(nb::str(st.to_string().c_str()), nb::str(name.c_str()), actual,
                       stream.empty() ? nb::none() : nb::cast(stream));
  PyErr_SetObject(cls.ptr(), exc.ptr());
  throw nb::python_error();
}

template <class T>
T take(varve::result<T>&& r) {
  if (!r) raise(r.error());
  return std::move(r).value();
}

void check(const varve::status& st) {
  if (!st) raise(st);
}

// ---- values coming in --------------------------------------------------------

// A stream id: str (UTF-8), bytes, or a non-negative int (8 big-endian bytes,
// flagged as an integer id). Owns its bytes.
struct stream_key {
  std::string bytes;
  bool is_int = false;
  uint64_t integer = 0;
  varve::stream_id id() const {
    return is_int ? varve::stream_id::from_u64(integer) : varve::stream_id(std::string_view(bytes));
  }
};

stream_key to_stream(nb::handle h) {
  stream_key k;
  if (nb::isinstance<nb::str>(h)) {
    k.bytes = nb::cast<std::string>(h);
  } else if (nb::isinstance<nb::bytes>(h)) {
    nb::bytes b = nb::borrow<nb::bytes>(h);
    k.bytes.assign(static_cast<const char*>(b.data()), b.size());
  } else if (PyLong_Check(h.ptr())) {
    long long v = PyLong_AsLongLong(h.ptr());
    if (v < 0 || PyErr_Occurred()) {
      PyErr_Clear();
      throw nb::value_error("an integer stream id must be between 0 and 2**63-1");
    }
    k.is_int = true;
    k.integer = static_cast<uint64_t>(v);
    return k;
  } else {
    throw nb::type_error("a stream id is a str, bytes or an int");
  }
  if (k.bytes.empty() || k.bytes.size() > varve::kMaxStreamIdBytes)
    throw nb::value_error("a stream id has 1 to 255 bytes");
  return k;
}

nb::object from_stream(std::string_view bytes, bool is_int) {
  if (is_int) {
    uint64_t v = 0;
    for (char c : bytes) v = (v << 8) | static_cast<uint8_t>(c);
    return nb::int_(v);
  }
  PyObject* s = PyUnicode_DecodeUTF8(bytes.data(), static_cast<Py_ssize_t>(bytes.size()), nullptr);
  if (s) return nb::steal(s);
  PyErr_Clear();  // not UTF-8: hand the raw bytes out
  return nb::bytes(bytes.data(), bytes.size());
}

// Expected versions: ANY (-1), NO_STREAM (-2), STREAM_EXISTS (-3) or an exact
// version >= 0 (0: the stream must not exist yet).
constexpr long long kAny = -1, kNoStream = -2, kStreamExists = -3;

varve::expected_version to_expected(long long e) {
  if (e == kAny) return varve::expected_version::any();
  if (e == kNoStream) return varve::expected_version::no_stream();
  if (e == kStreamExists) return varve::expected_version::stream_exists();
  if (e < 0) throw nb::value_error("expected version: ANY, NO_STREAM, STREAM_EXISTS or a version >= 0");
  if (e == 0) return varve::expected_version::no_stream();
  return varve::expected_version::exact(static_cast<uint64_t>(e));
}

bool to_id128(nb::handle h, varve::id128& out) {
  if (h.is_none()) return false;
  nb::object b = nb::borrow(h);
  if (!nb::isinstance<nb::bytes>(h)) {
    if (!nb::hasattr(h, "bytes")) throw nb::type_error("an id is 16 bytes or a uuid.UUID");
    b = h.attr("bytes");  // uuid.UUID
  }
  nb::bytes raw = nb::borrow<nb::bytes>(b);
  if (raw.size() != 16) throw nb::value_error("an id has exactly 16 bytes");
  std::memcpy(out.bytes.data(), raw.data(), 16);
  return true;
}

std::string to_bytes_value(nb::handle h, const char* what) {
  if (nb::isinstance<nb::bytes>(h)) {
    nb::bytes b = nb::borrow<nb::bytes>(h);
    return std::string(static_cast<const char*>(b.data()), b.size());
  }
  if (nb::isinstance<nb::str>(h)) return nb::cast<std::string>(h);
  if (PyByteArray_Check(h.ptr()) || PyMemoryView_Check(h.ptr())) {
    nb::bytes b = nb::steal<nb::bytes>(PyBytes_FromObject(h.ptr()));
    return std::string(static_cast<const char*>(b.data()), b.size());
  }
  throw nb::type_error((std::string(what) + " must be bytes or str").c_str());
}

// ---- the log -----------------------------------------------------------------

struct py_log {
  std::unique_ptr<varve::event_log> log;
  std::mutex mu;  // writer-side calls; the type registry
  std::optional<varve::type_registry> types;
  bool closed = false;

  varve::event_log& get() {
    if (closed || !log) throw nb::value_error("the log is closed");
    return *log;
  }
  // The id of a type name, registering it (writer) or looking it up (reader).
  uint32_t type_id(const std::string& name) {  // under mu
    if (!types) types = take(varve::type_registry::open(log->dir()));
    if (log->is_read_only()) {
      if (auto id = types->find(name)) return *id;
      types = take(varve::type_registry::open(log->dir()));  // another process may have added it
      if (auto id = types->find(name)) return *id;
      raise(varve::status(varve::errc::not_found, log->dir() + ": no event type named '" + name + "'"));
    }
    return take(types->id_for(name));
  }
  std::optional<uint32_t> find_type(const std::string& name) {  // under mu
    if (!types) types = take(varve::type_registry::open(log->dir()));
    if (auto id = types->find(name)) return id;
    types = take(varve::type_registry::open(log->dir()));
    return types->find(name);
  }
  nb::object type_name(uint32_t id) {  // under mu
    if (!types) types = take(varve::type_registry::open(log->dir()));
    auto n = types->name_of(id);
    if (!n) {  // registered by another process since: read the file again
      types = take(varve::type_registry::open(log->dir()));
      n = types->name_of(id);
    }
    if (!n) return nb::none();
    return nb::str(n->data(), n->size());
  }
};

// Each event read becomes one of these: plain Python values, copied out of
// the mapping (a Python object may outlive the log).
struct py_event {
  uint64_t position = 0, sequence = 0, version = 0, timestamp_ns = 0, previous = 0;
  nb::object stream, type_name, data, metadata, event_id, correlation_id, causation_id;
  uint32_t type = 0, record_bytes = 0;
  uint16_t schema_version = 0, stored_schema_version = 0;
  bool json = false, batch_begin = false, batch_end = false;
  bool encrypted = false, forgotten = false;
};

// Type names are looked up per event; a small cache keeps that off the
// registry (and its mutex) for the common case. A type without a name (an
// event appended with a numeric id) is cached too: looking it up again means
// reading the registry file again (another process may have named it since),
// a path lookup and a read per event, which made a scan of such a log run at
// a third of its speed. It is looked up again after a second, so a name
// registered elsewhere shows up within about that.
struct name_cache {
  struct entry {
    uint32_t id;
    nb::object name;  // None: the type had no name when last looked up
    std::chrono::steady_clock::time_point checked;
  };
  static constexpr auto kRecheckUnnamed = std::chrono::seconds(1);
  std::vector<entry> entries;
  nb::object get(py_log& lg, uint32_t id) {
    entry* hit = nullptr;
    for (auto& e : entries)
      if (e.id == id) {
        hit = &e;
        break;
      }
    const auto now = hit && hit->name.is_none() ? std::chrono::steady_clock::now()
                                                : std::chrono::steady_clock::time_point{};
    if (hit && (!hit->name.is_none() || now - hit->checked < kRecheckUnnamed)) return hit->name;
    nb::object n;
    {
      nb::gil_scoped_release rel;
      std::lock_guard lock(lg.mu);
      nb::gil_scoped_acquire gil;
      n = lg.type_name(id);
    }
    if (hit) {
      hit->name = n;
      hit->checked = std::chrono::steady_clock::now();
    } else if (entries.size() < 64) {
      entries.push_back({id, n, std::chrono::steady_clock::now()});
    }
    return n;
  }
};

nb::object id_or_none(const varve::id128* id) {
  if (!id) return nb::none();
  return nb::bytes(reinterpret_cast<const char*>(id->bytes.data()), 16);
}

py_event to_py(const varve::event_view& v, py_log& lg, name_cache& names) {
  py_event e;
  e.position = v.position.value;
  e.sequence = v.sequence.value;
  e.version = v.version;
  e.previous = v.previous.value;
  e.timestamp_ns = v.timestamp_ns;
  e.stream = from_stream(v.stream, v.stream_is_integer);
  e.type = v.type;
  e.type_name = names.get(lg, v.type);
  e.schema_version = v.schema_version;
  e.stored_schema_version = v.stored_schema_version;
  e.json = v.content == varve::content_type::json;
  e.batch_begin = v.batch_begin;
  e.batch_end = v.batch_end;
  e.record_bytes = v.record_bytes;
  e.encrypted = v.encrypted;
  e.forgotten = v.forgotten;
  e.data = nb::bytes(reinterpret_cast<const char*>(v.payload.data()), v.payload.size());
  nb::dict md;
  for (varve::metadata_entry m : v.metadata) {
    PyObject* k = PyUnicode_DecodeUTF8(m.key.data(), static_cast<Py_ssize_t>(m.key.size()),
                                       "surrogateescape");
    if (!k) throw nb::python_error();
    md[nb::steal(k)] = nb::bytes(m.value.data(), m.value.size());
  }
  e.metadata = md;
  e.event_id = id_or_none(v.event_id);
  e.correlation_id = id_or_none(v.correlation_id);
  e.causation_id = id_or_none(v.causation_id);
  return e;
}

// An event to append, converted from Python: owns every byte it points to.
struct new_event {
  nb::object type;  // str name or int id
  nb::object data;
  uint16_t schema_version = 1;
  bool json = false;
  uint64_t timestamp_ns = 0;
  nb::object metadata, event_id, correlation_id, causation_id;
};

struct owned_event {
  std::string payload;
  varve::id128 ids[3];
  std::vector<std::string> md_strings;
  std::vector<varve::metadata_entry> md;
  varve::event_data data;
};

// Converts under the GIL; the type id is resolved later (under the log's mutex).
void convert(const new_event& in, owned_event& out, std::string& type_name, long long& type_num) {
  out.payload = to_bytes_value(in.data, "data");
  out.data.payload = varve::event_data::bytes(out.payload);
  out.data.schema_version = in.schema_version;
  out.data.content = in.json ? varve::content_type::json : varve::content_type::binary;
  out.data.timestamp_ns = in.timestamp_ns;
  if (to_id128(in.event_id, out.ids[0])) out.data.event_id = &out.ids[0];
  if (to_id128(in.correlation_id, out.ids[1])) out.data.correlation_id = &out.ids[1];
  if (to_id128(in.causation_id, out.ids[2])) out.data.causation_id = &out.ids[2];
  if (in.metadata.is_valid() && !in.metadata.is_none()) {
    nb::dict d = nb::cast<nb::dict>(in.metadata);
    out.md_strings.reserve(2 * d.size());
    for (auto [k, v] : d) {
      out.md_strings.push_back(to_bytes_value(k, "a metadata key"));
      out.md_strings.push_back(to_bytes_value(v, "a metadata value"));
    }
    for (size_t i = 0; i < out.md_strings.size(); i += 2)
      out.md.push_back({out.md_strings[i], out.md_strings[i + 1]});
    out.data.metadata = out.md;
  }
  type_num = -1;
  if (nb::isinstance<nb::str>(in.type)) {
    type_name = nb::cast<std::string>(in.type);
  } else if (PyLong_Check(in.type.ptr())) {
    long long t = PyLong_AsLongLong(in.type.ptr());
    if (t < 0 || t > 0xffffffffLL || PyErr_Occurred()) {
      PyErr_Clear();
      throw nb::value_error("an event type id is between 0 and 2**32-1");
    }
    type_num = t;
  } else {
    throw nb::type_error("an event type is a name (str) or an id (int)");
  }
}

struct pending_events {
  std::vector<owned_event> events;  // stable addresses: sized once
  std::vector<std::string> names;
  std::vector<long long> nums;
  explicit pending_events(nb::handle seq) {
    nb::sequence s = nb::borrow<nb::sequence>(seq);
    const size_t n = nb::len(s);
    events.resize(n);
    names.resize(n);
    nums.resize(n);
    size_t i = 0;
    for (nb::handle h : s) {
      const new_event& ev = nb::cast<const new_event&>(h);
      convert(ev, events[i], names[i], nums[i]);
      ++i;
    }
  }
  // Under the log's mutex.
  void resolve_types(py_log& lg) {
    for (size_t i = 0; i < events.size(); ++i)
      events[i].data.type = nums[i] >= 0 ? static_cast<uint32_t>(nums[i]) : lg.type_id(names[i]);
  }
  std::vector<varve::event_data> data() const {
    std::vector<varve::event_data> d;
    d.reserve(events.size());
    for (const auto& e : events) d.push_back(e.data);
    return d;
  }
};

struct py_append_result {
  uint64_t first = 0, end = 0, first_sequence = 0, first_version = 0, last_version = 0;
  bool duplicate = false;
};

py_append_result to_py(const varve::append_result& r) {
  return {r.first.value, r.end.value, r.first_sequence.value, r.first_version, r.last_version,
          r.duplicate};
}

// ---- readers -----------------------------------------------------------------

// Events read ahead by one next_batch of a reader or a subscription (the
// GIL released once per batch, not per event), handed out one per call. The
// fields are read and written under the GIL. Threads sharing the cursor: one
// reads a batch (`reading`) while the others wait for it, so each event is
// handed out once and in log order, and a batch is read only once every view
// of the one before (an upcast payload in the reader's buffer included) has
// been converted under the GIL.
struct read_ahead {
  static constexpr size_t kSize = 64;
  std::vector<varve::event_view> views;
  size_t at = 0, n = 0;
  bool reading = false;
  uint64_t last_end = 0;  // while events are left: just past the last one handed out
  uint64_t left() const { return n - at; }
  const varve::event_view& take() {
    const varve::event_view& v = views[at++];
    last_end = v.position.value + v.record_bytes;
    return v;
  }
  void drop() { at = n = 0; }
  // Before a read from `start` (the cursor's position) of at most `want` events.
  std::span<varve::event_view> begin_read(uint64_t start, size_t want) {
    if (views.size() < kSize) views.resize(kSize);
    drop();
    last_end = start;
    reading = true;
    return std::span<varve::event_view>(views.data(), std::min(want, kSize));
  }
  void end_read(size_t got) {
    reading = false;
    n = got;
  }
  // Returns once the thread that is reading has let go of the cursor's mutex.
  static void wait_for_reader(std::mutex& mu) {
    nb::gil_scoped_release rel;
    std::lock_guard lock(mu);
  }
};

struct py_reader {
  std::shared_ptr<py_log> lg;
  varve::log_reader r;
  std::optional<uint64_t> remaining;  // limit
  name_cache names;
  std::mutex mu;
  read_ahead ahead;
  // Where the next read starts: just past the last event handed out while
  // read-ahead events remain, else the reader's own cursor.
  uint64_t where() const { return ahead.left() ? ahead.last_end : r.where().value; }
};

struct py_stream_reader {
  std::shared_ptr<py_log> lg;
  varve::stream_reader r;
  name_cache names;
  std::mutex mu;
};

struct py_subscription {
  std::shared_ptr<py_log> lg;
  varve::subscription s;
  name_cache names;
  std::mutex mu;
  // While events read ahead are left, `where` and `lag` count them as not
  // read yet, and a cancel() stops the hand-out at once.
  read_ahead ahead;
  uint64_t where() const { return ahead.left() ? ahead.last_end : s.where().value; }
  std::pair<uint64_t, uint64_t> lag() const {
    const varve::subscription_lag l = s.lag();
    if (!ahead.left()) return {l.events, l.bytes};
    return {l.events + ahead.left(), l.bytes + (s.where().value - ahead.last_end)};
  }
};

// One step of a reader (of the log or of a stream), the GIL released while
// it reads; StopIteration at the end.
template <class Reader>
py_event next_event(Reader& rd) {
  if (rd.lg->closed) throw nb::value_error("the log is closed");
  varve::event_view v;
  varve::result<bool> got = false;
  {
    nb::gil_scoped_release rel;
    std::lock_guard lock(rd.mu);
    got = rd.r.next(v);
  }
  if (!got) raise(got.error());
  if (!got.value()) throw nb::stop_iteration();
  return to_py(v, *rd.lg, rd.names);
}

// The log reader's step: from the events read ahead, or a new batch read with
// the GIL released (read_ahead). A damaged record ends a batch before it; its
// error comes from the next batch, once the events before it are handed out.
py_event next_event(py_reader& rd) {
  for (;;) {
    if (rd.lg->closed) throw nb::value_error("the log is closed");
    if (rd.ahead.left()) return to_py(rd.ahead.take(), *rd.lg, rd.names);
    if (rd.ahead.reading) {
      read_ahead::wait_for_reader(rd.mu);
      continue;
    }
    std::span<varve::event_view> views =
        rd.ahead.begin_read(rd.r.where().value, rd.remaining ? *rd.remaining : read_ahead::kSize);
    varve::result<size_t> got = size_t{0};
    {
      nb::gil_scoped_release rel;
      std::lock_guard lock(rd.mu);
      got = rd.r.next_batch(views);
    }
    rd.ahead.end_read(got ? got.value() : 0);
    if (!got) raise(got.error());
    if (got.value() == 0) throw nb::stop_iteration();
  }
}

// A stream reader, opened under the log's writer mutex (read_stream looks up
// the stream's head in the writer's table).
varve::stream_reader open_stream(py_log& lg, const stream_key& key, uint64_t from, bool backward,
                                 std::optional<uint64_t> limit) {
  varve::result<varve::stream_reader> r = varve::status(varve::errc::invalid_argument, "");
  {
    nb::gil_scoped_release rel;
    std::lock_guard lock(lg.mu);
    r = lg.get().read_stream(key.id(), from,
                             backward ? varve::read_direction::backward : varve::read_direction::forward,
                             limit.value_or(UINT64_MAX));
  }
  return take(std::move(r));
}

varve::event_filter make_filter(py_log& lg, nb::handle types, nb::handle streams,
                                nb::handle prefixes, nb::handle correlation_ids) {
  varve::event_filter f;
  if (!types.is_none()) {
    for (nb::handle t : nb::borrow<nb::sequence>(types)) {
      if (nb::isinstance<nb::str>(t)) {
        const std::string name = nb::cast<std::string>(t);
        std::optional<uint32_t> id;
        {
          nb::gil_scoped_release rel;
          std::lock_guard lock(lg.mu);
          nb::gil_scoped_acquire gil;
          id = lg.find_type(name);
        }
        // A name not registered yet matches no event so far; an id that can
        // never be assigned keeps the filter from matching everything.
        f.types.push_back(id ? *id : 0xffffffffu);
      } else {
        f.types.push_back(nb::cast<uint32_t>(t));
      }
    }
  }
  if (!streams.is_none())
    for (nb::handle s : nb::borrow<nb::sequence>(streams)) f.streams.push_back(std::string(to_stream(s).id().bytes()));
  if (!prefixes.is_none())
    for (nb::handle s : nb::borrow<nb::sequence>(prefixes)) f.stream_prefixes.push_back(to_bytes_value(s, "a stream prefix"));
  if (!correlation_ids.is_none())
    for (nb::handle c : nb::borrow<nb::sequence>(correlation_ids)) {
      varve::id128 id;
      to_id128(c, id);
      f.correlation_ids.push_back(id);
    }
  return f;
}

// A master key from Python: None, or 32 bytes (bytes, bytearray, memoryview).
// str is refused: a key is random bytes, and its hex text would be 64 bytes.
std::optional<varve::master_key> to_master_key(nb::handle h) {
  if (h.is_none()) return std::nullopt;
  if (!nb::isinstance<nb::bytes>(h) && !PyByteArray_Check(h.ptr()) && !PyMemoryView_Check(h.ptr()))
    throw nb::type_error("master_key must be 32 bytes (generate_master_key / load_master_key) or None");
  const std::string b = to_bytes_value(h, "master_key");
  varve::master_key k;
  if (b.size() != k.bytes.size()) throw nb::value_error("master_key must be exactly 32 bytes");
  std::memcpy(k.bytes.data(), b.data(), k.bytes.size());
  return k;
}

nb::bytes key_bytes(const varve::master_key& k) {
  return nb::bytes(reinterpret_cast<const char*>(k.bytes.data()), k.bytes.size());
}

varve::log_options make_options(const std::string& durability, uint64_t segment_bytes,
                                uint64_t group_commit_us, bool verify_checksums) {
  varve::log_options o;
  if (durability == "none") o.mode = varve::durability::none;
  else if (durability == "group") o.mode = varve::durability::group;
  else if (durability == "sync") o.mode = varve::durability::sync;
  else throw nb::value_error("durability is 'none', 'group' or 'sync'");
  if (segment_bytes) o.segment_bytes = segment_bytes;
  o.group_commit_interval = std::chrono::microseconds(group_commit_us);
  o.verify_checksums = verify_checksums;
  return o;
}

std::shared_ptr<py_log> open_log(int how, const std::string& dir, const std::string& durability,
                                 uint64_t segment_bytes, uint64_t group_commit_us,
                                 bool verify_checksums, std::optional<std::string> upcasters_file,
                                 nb::handle master_key) {
  varve::log_options o = make_options(durability, segment_bytes, group_commit_us, verify_checksums);
  o.master_key = to_master_key(master_key);
  auto lg = std::make_shared<py_log>();
  varve::result<std::unique_ptr<varve::event_log>> r = varve::status(varve::errc::invalid_argument, "");
  {
    nb::gil_scoped_release rel;  // recovery may take a while
    switch (how) {
      case 0: r = varve::event_log::create(dir, o); break;
      case 1: r = varve::event_log::open(dir, o); break;
      case 2: r = varve::event_log::open_or_create(dir, o); break;
      default: r = varve::event_log::open_read_only(dir, o); break;
    }
  }
  lg->log = take(std::move(r));
  if (upcasters_file) {
    // Declarative upcasters name event types: they resolve through the log's registry.
    std::lock_guard lock(lg->mu);
    lg->types = take(varve::type_registry::open(lg->log->dir()));
    auto u = take(varve::upcasters::load(*upcasters_file, &*lg->types));
    check(lg->log->set_upcasters(std::make_shared<varve::upcasters>(std::move(u))));
  }
  return lg;
}

// ---- rows: caller-chosen fields straight into caller-chosen objects -------
// read_stream_rows builds cls(*prefix, *fields) per event without an
// intermediate RecordedEvent: for callers (eventsourcing_varve) whose own row
// type is what they hand out, half the cost per event.
struct field_spec {
  enum kind_t { sequence, number, position, stream, stream_uuid, version, type, type_id, data, timestamp_ns, meta, meta_int } kind;
  std::string key;  // meta, meta_int
};

std::vector<field_spec> parse_fields(nb::handle fields) {
  std::vector<field_spec> out;
  for (nb::handle h : nb::borrow<nb::sequence>(fields)) {
    const std::string f = nb::cast<std::string>(h);
    field_spec fs{field_spec::data, {}};
    if (f == "sequence") fs.kind = field_spec::sequence;
    else if (f == "number") fs.kind = field_spec::number;
    else if (f == "position") fs.kind = field_spec::position;
    else if (f == "stream_uuid") fs.kind = field_spec::stream_uuid;
    else if (f == "stream") fs.kind = field_spec::stream;
    else if (f == "version") fs.kind = field_spec::version;
    else if (f == "type") fs.kind = field_spec::type;
    else if (f == "type_id") fs.kind = field_spec::type_id;
    else if (f == "data") fs.kind = field_spec::data;
    else if (f == "timestamp_ns") fs.kind = field_spec::timestamp_ns;
    else if (f.starts_with("meta_int:")) fs = {field_spec::meta_int, f.substr(9)};
    else if (f.starts_with("meta:")) fs = {field_spec::meta, f.substr(5)};
    else throw nb::value_error(("unknown field '" + f + "'").c_str());
    out.push_back(std::move(fs));
  }
  return out;
}

// Per call: type names, and the uuid.UUID of each stream seen (parsing one
// costs more than reading the event).
struct row_context {
  py_log& lg;
  name_cache names;
  nb::object uuid_cls;
  std::unordered_map<std::string, nb::object> uuids;
  explicit row_context(py_log& l) : lg(l) {}
  nb::object uuid_of(std::string_view stream) {
    auto it = uuids.find(std::string(stream));
    if (it != uuids.end()) return it->second;
    if (!uuid_cls.is_valid()) uuid_cls = nb::module_::import_("uuid").attr("UUID");
    nb::object u = uuid_cls(nb::str(stream.data(), stream.size()));
    if (uuids.size() >= 65536) uuids.clear();
    uuids.emplace(std::string(stream), u);
    return u;
  }
};

nb::object field_value(const field_spec& f, const varve::event_view& v, row_context& cx) {
  switch (f.kind) {
    case field_spec::sequence: return nb::int_(v.sequence.value);
    case field_spec::number: return nb::int_(v.sequence.value + 1);
    case field_spec::stream_uuid: return cx.uuid_of(v.stream);
    case field_spec::position: return nb::int_(v.position.value);
    case field_spec::stream: return from_stream(v.stream, v.stream_is_integer);
    case field_spec::version: return nb::int_(v.version);
    case field_spec::type: return cx.names.get(cx.lg, v.type);
    case field_spec::type_id: return nb::int_(v.type);
    case field_spec::data:
      return nb::bytes(reinterpret_cast<const char*>(v.payload.data()), v.payload.size());
    case field_spec::timestamp_ns: return nb::int_(v.timestamp_ns);
    case field_spec::meta:
    case field_spec::meta_int: {
      auto m = v.metadata.find(f.key);
      if (!m) return nb::none();
      if (f.kind == field_spec::meta) return nb::bytes(m->data(), m->size());
      // Short decimals (the common case) without an allocation.
      if (!m->empty() && m->size() <= 18 && std::all_of(m->begin(), m->end(), [](char c) { return c >= '0' && c <= '9'; })) {
        uint64_t x = 0;
        for (char c : *m) x = x * 10 + static_cast<uint64_t>(c - '0');
        return nb::steal(PyLong_FromUnsignedLongLong(x));
      }
      PyObject* i = PyLong_FromString(std::string(*m).c_str(), nullptr, 10);
      if (!i) throw nb::python_error();
      return nb::steal(i);
    }
  }
  return nb::none();
}

// Builds one row from the prefix and the event's fields: cls(*values), or,
// with attribute names, as unpickling does (cls.__new__, then __dict__).
struct row_builder {
  nb::handle cls;
  nb::tuple prefix;
  std::vector<field_spec> spec;
  std::vector<nb::str> attr;
  std::vector<PyObject*> args;
  std::vector<nb::object> hold;
  nb::tuple no_args;
  row_builder(nb::handle c, nb::tuple p, nb::handle fields, nb::handle attr_names)
      : cls(c), prefix(std::move(p)), spec(parse_fields(fields)) {
    if (!attr_names.is_none()) {
      if (!PyType_Check(cls.ptr())) throw nb::type_error("rows by names need a class");
      for (nb::handle h : nb::borrow<nb::sequence>(attr_names)) {
        PyObject* o = nb::borrow<nb::str>(h).release().ptr();
        PyUnicode_InternInPlace(&o);
        attr.push_back(nb::steal<nb::str>(o));
      }
      if (attr.size() != prefix.size() + spec.size())
        throw nb::value_error("one name per prefix value and field");
    }
    args.resize(prefix.size() + spec.size());
    hold.resize(spec.size());
    for (size_t i = 0; i < prefix.size(); ++i) args[i] = prefix[i].ptr();
    no_args = nb::steal<nb::tuple>(PyTuple_New(0));
  }
  nb::object make(const varve::event_view& v, row_context& cx) {
    const size_t n = args.size();
    for (size_t i = 0; i < spec.size(); ++i) {
      hold[i] = field_value(spec[i], v, cx);
      args[prefix.size() + i] = hold[i].ptr();
    }
    if (attr.empty()) {
      PyObject* row = PyObject_Vectorcall(cls.ptr(), args.data(), n, nullptr);
      if (!row) throw nb::python_error();
      return nb::steal(row);
    }
    auto* t = reinterpret_cast<PyTypeObject*>(cls.ptr());
    PyObject* row = t->tp_new(t, no_args.ptr(), nullptr);
    if (!row) throw nb::python_error();
    nb::object keep = nb::steal(row);
    PyObject* d = PyObject_GenericGetDict(row, nullptr);
    if (!d) throw nb::python_error();
    nb::object dict = nb::steal(d);
    for (size_t i = 0; i < n; ++i)
      if (PyDict_SetItem(d, attr[i].ptr(), args[i]) != 0) throw nb::python_error();
    return keep;
  }
};

// One event of a subscription: from the events read ahead, or a new batch
// read with the GIL released, waiting in slices of at most 100 ms so that
// Ctrl-C (a pending signal) and timeouts are honoured. Threads sharing one
// subscription wait for the one reading (as for py_reader).
nb::object subscription_next(py_subscription& s, std::optional<double> timeout_s) {
  using namespace std::chrono;
  const auto deadline = timeout_s ? steady_clock::now() + duration_cast<steady_clock::duration>(duration<double>(*timeout_s))
                                  : steady_clock::time_point::max();
  while (true) {
    if (s.ahead.left()) {
      if (!s.s.cancelled()) return nb::cast(to_py(s.ahead.take(), *s.lg, s.names));
      s.ahead.drop();  // cancelled: the read below says so
    }
    if (s.ahead.reading) {
      read_ahead::wait_for_reader(s.mu);
      if (!s.ahead.left() && timeout_s && steady_clock::now() >= deadline) return nb::none();
      continue;
    }
    auto slice = nanoseconds(milliseconds(100));
    if (timeout_s) {
      auto left = deadline - steady_clock::now();
      if (left <= steady_clock::duration::zero()) slice = nanoseconds(0);
      else if (left < slice) slice = duration_cast<nanoseconds>(left);
    }
    std::span<varve::event_view> views = s.ahead.begin_read(s.s.where().value, read_ahead::kSize);
    varve::result<size_t> got = size_t{0};
    {
      nb::gil_scoped_release rel;
      std::lock_guard lock(s.mu);
      got = s.s.next_batch(views, slice);
    }
    s.ahead.end_read(got ? got.value() : 0);
    if (!got) raise(got.error());
    if (got.value() > 0) continue;
    if (timeout_s && steady_clock::now() >= deadline) return nb::none();
    if (PyErr_CheckSignals() != 0) throw nb::python_error();
  }
}

// A stream's lifecycle metadata (varve/lifecycle.h), as the CLI's JSON has it.
nb::dict metadata_dict(const varve::stream_metadata& m) {
  nb::dict d;
  d["deleted"] = m.deleted;
  d["truncate_before"] = m.truncate_before;
  d["max_count"] = m.max_count;
  d["max_age_ns"] = m.max_age_ns;
  return d;
}

}  // namespace

NB_MODULE(_varve, m) {
  m.doc() = "varve's C++ core; use the `varve` package";
  m.attr("ANY") = kAny;
  m.attr("NO_STREAM") = kNoStream;
  m.attr("STREAM_EXISTS") = kStreamExists;
  m.attr("LATEST") = nb::int_(varve::kLatestVersion);
  m.attr("END") = nb::int_(varve::position::none().value);
  m.def("_set_error_classes", [](nb::dict d) {
    Py_XDECREF(g_errors);
    g_errors = d.release().ptr();
  });
  m.def("generate_master_key", [] { return key_bytes(varve::generate_master_key()); },
        "A fresh master key: 32 bytes from libsodium's CSPRNG");
  m.def("load_master_key",
        [](const std::string& path) {
          varve::result<varve::master_key> k = varve::master_key{};
          {
            nb::gil_scoped_release rel;
            k = varve::load_master_key(path);
          }
          return key_bytes(take(std::move(k)));
        },
        "path"_a,
        "Reads a key file (64 hex digits and a newline, as `varve keygen` writes, or 32 raw bytes)");

  nb::class_<new_event>(m, "EventData",
                        "An event to append: its type (a name, registered in the log's type "
                        "registry, or a numeric id), its payload (bytes or str), and optionally "
                        "its schema version, whether the payload is JSON, a timestamp (ns since "
                        "the epoch; 0: the log's clock), metadata (a dict of str/bytes), and "
                        "event, correlation and causation ids (16 bytes or uuid.UUID).")
      .def(
          "__init__",
          [](new_event* self, nb::object type, nb::object data, uint16_t schema_version, bool json,
             uint64_t timestamp_ns, nb::object metadata, nb::object event_id, nb::object correlation_id,
             nb::object causation_id) {
            new (self) new_event{type, data, schema_version, json, timestamp_ns, metadata, event_id,
                                 correlation_id, causation_id};
          },
          "type"_a, "data"_a = nb::bytes("", 0), "schema_version"_a = 1, "json"_a = false,
          "timestamp_ns"_a = 0, "metadata"_a = nb::none(), "event_id"_a = nb::none(),
          "correlation_id"_a = nb::none(), "causation_id"_a = nb::none())
      .def_rw("type", &new_event::type)
      .def_rw("data", &new_event::data)
      .def_rw("schema_version", &new_event::schema_version)
      .def_rw("json", &new_event::json)
      .def_rw("timestamp_ns", &new_event::timestamp_ns)
      .def_rw("metadata", &new_event::metadata)
      .def_rw("event_id", &new_event::event_id)
      .def_rw("correlation_id", &new_event::correlation_id)
      .def_rw("causation_id", &new_event::causation_id);

  nb::class_<py_event>(m, "RecordedEvent",
                       "An event read from the log, validated (checksum, framing) and copied "
                       "out: position and sequence in the log, stream and version, type (its "
                       "name, or None when unregistered) and type_id, schema versions (as read "
                       "and as stored), payload `data`, `metadata` (dict of str to bytes), ids "
                       "(16 bytes or None), batch framing, `end` (where a read resumes after it), "
                       "and crypto-shredding's `encrypted` (sealed on disk, read back decrypted) "
                       "and `forgotten` (its stream's key was destroyed: `data` is b'').")
      .def_ro("position", &py_event::position)
      .def_ro("sequence", &py_event::sequence)
      .def_ro("stream", &py_event::stream)
      .def_ro("version", &py_event::version)
      .def_ro("type_id", &py_event::type)
      .def_ro("type", &py_event::type_name)
      .def_ro("schema_version", &py_event::schema_version)
      .def_ro("stored_schema_version", &py_event::stored_schema_version)
      .def_ro("timestamp_ns", &py_event::timestamp_ns)
      .def_ro("json", &py_event::json)
      .def_ro("batch_begin", &py_event::batch_begin)
      .def_ro("batch_end", &py_event::batch_end)
      .def_ro("data", &py_event::data)
      .def_ro("metadata", &py_event::metadata)
      .def_ro("event_id", &py_event::event_id)
      .def_ro("correlation_id", &py_event::correlation_id)
      .def_ro("causation_id", &py_event::causation_id)
      .def_ro("record_bytes", &py_event::record_bytes)
      .def_ro("encrypted", &py_event::encrypted)
      .def_ro("forgotten", &py_event::forgotten)
      .def_prop_ro("end", [](const py_event& e) { return e.position + e.record_bytes; })
      .def("__repr__", [](const py_event& e) {
        return nb::str("RecordedEvent(sequence={}, stream={!r}, version={}, type={!r}, data={!r})")
            .format(e.sequence, e.stream, e.version, e.type_name.is_none() ? nb::cast(e.type) : e.type_name, e.data);
      });

  nb::class_<py_append_result>(m, "AppendResult",
                               "What an append acknowledged: `first` and `end` positions (pass "
                               "`end` to wait_durable), the first event's sequence, the stream's "
                               "first and last version written, and `duplicate` (an idempotent "
                               "retry: nothing was written).")
      .def_ro("first", &py_append_result::first)
      .def_ro("end", &py_append_result::end)
      .def_ro("first_sequence", &py_append_result::first_sequence)
      .def_ro("first_version", &py_append_result::first_version)
      .def_ro("last_version", &py_append_result::last_version)
      .def_ro("duplicate", &py_append_result::duplicate)
      .def("__repr__", [](const py_append_result& r) {
        return nb::str("AppendResult(first={}, end={}, first_sequence={}, versions={}..{}, duplicate={})")
            .format(r.first, r.end, r.first_sequence, r.first_version, r.last_version, r.duplicate);
      });

  nb::class_<py_reader>(m, "Reader",
                        "An iterator over committed events in log order (EventLog.read); "
                        "`where` is the position it would continue from.")
      .def("__iter__", [](nb::handle self) { return self; })
      .def("__next__",
           [](py_reader& rd) -> py_event {
             if (rd.remaining && *rd.remaining == 0) throw nb::stop_iteration();
             py_event e = next_event(rd);
             if (rd.remaining) --*rd.remaining;
             return e;
           })
      .def_prop_ro("where", [](py_reader& rd) { return rd.where(); },
                   "Where the next read starts: just past the last event read");
  nb::class_<py_stream_reader>(m, "StreamReader",
                               "An iterator over one stream's events (EventLog.read_stream), as "
                               "the stream stood when the read began.")
      .def("__iter__", [](nb::handle self) { return self; })
      .def("__next__", [](py_stream_reader& rd) { return next_event(rd); })
      .def_prop_ro("stream_version", [](py_stream_reader& rd) { return rd.r.stream_version_at_start(); },
                   "The stream's version when the read began (0: no such stream)");

  nb::class_<py_subscription>(m, "Subscription",
                              "The binding's subscription; use varve.Subscription.")
      .def("next", &subscription_next, "timeout"_a.none() = nb::none(),
           "The next event, waiting up to `timeout` seconds for one (None: forever); None if none came")
      .def("__iter__", [](nb::handle self) { return self; })
      .def("__next__",
           [](py_subscription& s) -> nb::object {
             try {
               return subscription_next(s, std::nullopt);
             } catch (nb::python_error& e) {
               if (nb::object c = error_class("cancelled"); !c.is_none() && e.matches(c))
                 throw nb::stop_iteration();
               throw;
             }
           })
      .def("cancel", [](py_subscription& s) { s.s.cancel(); },
           "Makes a waiting or later next() stop (iteration ends); any thread")
      .def_prop_ro("cancelled", [](py_subscription& s) { return s.s.cancelled(); })
      .def_prop_ro("where", [](py_subscription& s) { return s.where(); })
      .def_prop_ro("lag", [](py_subscription& s) { return s.lag(); })
      .def("ack", [](py_subscription& s, uint64_t resume_at) { check(s.s.ack(varve::position{resume_at})); },
           "resume_at"_a)
      .def("commit", [](py_subscription& s) {
        varve::status st;
        {
          nb::gil_scoped_release rel;
          std::lock_guard lock(s.mu);
          st = s.s.commit();
        }
        check(st);
      });

  nb::class_<py_log>(m, "EventLog", "The binding's log; use varve.EventLog.")
      .def_static("_open", &open_log, "how"_a, "dir"_a, "durability"_a, "segment_bytes"_a,
                  "group_commit_us"_a, "verify_checksums"_a, "upcasters"_a.none(),
                  "master_key"_a.none())
      .def("append",
           [](py_log& lg, nb::handle stream, nb::handle events, long long expected) {
             stream_key key = to_stream(stream);
             const varve::expected_version ev = to_expected(expected);
             pending_events p(events);
             if (p.events.empty()) throw nb::value_error("append needs at least one event");
             varve::result<varve::append_result> r = varve::status(varve::errc::invalid_argument, "");
             {
               nb::gil_scoped_release rel;
               std::lock_guard lock(lg.mu);
               nb::gil_scoped_acquire gil;  // type registration may raise
               varve::event_log& log = lg.get();
               p.resolve_types(lg);
               const auto data = p.data();
               nb::gil_scoped_release rel2;
               r = log.append(key.id(), ev, std::span<const varve::event_data>(data));
             }
             if (!r) raise(r.error(), std::string(key.is_int ? std::to_string(key.integer) : key.bytes));
             return to_py(r.value());
           },
           "stream"_a, "events"_a, "expected"_a = kAny)
      .def("append_multi",
           [](py_log& lg, nb::handle batches) {
             // [(stream, expected, [EventData, ...]), ...]
             std::vector<stream_key> keys;
             std::vector<varve::expected_version> exp;
             std::vector<std::unique_ptr<pending_events>> evs;
             for (nb::handle b : nb::borrow<nb::sequence>(batches)) {
               nb::sequence t = nb::borrow<nb::sequence>(b);
               if (nb::len(t) != 3) throw nb::value_error("each batch is (stream, expected, events)");
               keys.push_back(to_stream(t[0]));
               exp.push_back(to_expected(nb::cast<long long>(t[1])));
               evs.push_back(std::make_unique<pending_events>(t[2]));
             }
             std::vector<std::vector<varve::event_data>> data(keys.size());
             std::vector<varve::stream_batch> sb(keys.size());
             std::vector<varve::append_result> per(keys.size());
             varve::result<varve::multi_append_result> r = varve::status(varve::errc::invalid_argument, "");
             {
               nb::gil_scoped_release rel;
               std::lock_guard lock(lg.mu);
               nb::gil_scoped_acquire gil;
               varve::event_log& log = lg.get();
               for (size_t i = 0; i < keys.size(); ++i) {
                 evs[i]->resolve_types(lg);
                 data[i] = evs[i]->data();
                 sb[i] = varve::stream_batch{keys[i].id(), exp[i], data[i]};
               }
               nb::gil_scoped_release rel2;
               r = log.append(std::span<const varve::stream_batch>(sb), std::span<varve::append_result>(per));
             }
             if (!r) raise(r.error());
             nb::list results;
             for (const auto& a : per) results.append(to_py(a));
             nb::dict out;
             out["first"] = r.value().first.value;
             out["end"] = r.value().end.value;
             out["first_sequence"] = r.value().first_sequence.value;
             out["events"] = r.value().events;
             out["streams"] = results;
             return out;
           },
           "batches"_a)
      .def("forget",
           [](py_log& lg, nb::handle stream) {
             stream_key key = to_stream(stream);
             varve::result<varve::forget_result> r = varve::forget_result{};
             {
               nb::gil_scoped_release rel;
               std::lock_guard lock(lg.mu);
               r = lg.get().forget(key.id());
             }
             if (!r) raise(r.error(), std::string(key.is_int ? std::to_string(key.integer) : key.bytes));
             const varve::forget_result& x = r.value();
             nb::dict d;
             d["keys_destroyed"] = x.keys_destroyed;
             d["events_forgotten"] = x.events_forgotten;
             d["plain_events"] = x.plain_events;
             d["forget_sequence"] = x.forget_sequence;
             return d;
           },
           "stream"_a)
      .def("forgotten",
           [](py_log& lg) {
             varve::result<std::vector<varve::forgotten_stream>> r = std::vector<varve::forgotten_stream>{};
             varve::event_log& log = lg.get();
             {
               nb::gil_scoped_release rel;
               r = log.forgotten();
             }
             nb::list out;
             for (const varve::forgotten_stream& f : take(std::move(r))) {
               nb::dict d;
               d["forget_sequence"] = f.forget_sequence;
               d["time_ns"] = f.time_ns;
               d["stream"] = from_stream(f.stream, f.stream_is_integer);
               out.append(d);
             }
             return out;
           })
      .def("delete_stream",
           [](py_log& lg, nb::handle stream) {
             stream_key key = to_stream(stream);
             varve::result<varve::stream_metadata> r = varve::stream_metadata{};
             {
               nb::gil_scoped_release rel;
               std::lock_guard lock(lg.mu);
               r = lg.get().delete_stream(key.id());
             }
             if (!r) raise(r.error(), std::string(key.is_int ? std::to_string(key.integer) : key.bytes));
             return metadata_dict(r.value());
           },
           "stream"_a)
      .def("truncate_stream",
           [](py_log& lg, nb::handle stream, uint64_t before) {
             stream_key key = to_stream(stream);
             varve::result<varve::stream_metadata> r = varve::stream_metadata{};
             {
               nb::gil_scoped_release rel;
               std::lock_guard lock(lg.mu);
               r = lg.get().truncate_stream(key.id(), before);
             }
             if (!r) raise(r.error(), std::string(key.is_int ? std::to_string(key.integer) : key.bytes));
             return metadata_dict(r.value());
           },
           "stream"_a, "before"_a)
      .def("set_stream_limits",
           [](py_log& lg, nb::handle stream, uint64_t max_count, uint64_t max_age_ns) {
             stream_key key = to_stream(stream);
             varve::result<varve::stream_metadata> r = varve::stream_metadata{};
             {
               nb::gil_scoped_release rel;
               std::lock_guard lock(lg.mu);
               r = lg.get().set_stream_limits(key.id(), max_count, max_age_ns);
             }
             if (!r) raise(r.error(), std::string(key.is_int ? std::to_string(key.integer) : key.bytes));
             return metadata_dict(r.value());
           },
           "stream"_a, "max_count"_a = 0, "max_age_ns"_a = 0)
      .def("stream_metadata",
           [](py_log& lg, nb::handle stream) {
             stream_key key = to_stream(stream);
             varve::result<varve::stream_metadata> r = varve::stream_metadata{};
             varve::event_log& log = lg.get();
             {
               nb::gil_scoped_release rel;
               r = log.stream_metadata_of(key.id());
             }
             if (!r) raise(r.error(), std::string(key.is_int ? std::to_string(key.integer) : key.bytes));
             return metadata_dict(r.value());
           },
           "stream"_a)
      .def("stream_metadata_list",
           [](py_log& lg) {
             varve::result<std::vector<varve::stream_metadata_entry>> r = std::vector<varve::stream_metadata_entry>{};
             varve::event_log& log = lg.get();
             {
               nb::gil_scoped_release rel;
               r = log.stream_metadata_list();
             }
             nb::list out;
             for (const varve::stream_metadata_entry& e : take(std::move(r))) {
               nb::dict d;
               d["stream"] = from_stream(e.stream, e.stream_is_integer);
               d["metadata"] = metadata_dict(e.metadata);
               d["changed_ns"] = e.changed_ns;
               d["change_number"] = e.change_number;
               out.append(d);
             }
             return out;
           })
      .def("scavenge",
           [](py_log& lg, bool dry_run) {
             varve::result<varve::scavenge_result> r = varve::scavenge_result{};
             {
               nb::gil_scoped_release rel;
               std::lock_guard lock(lg.mu);
               r = lg.get().scavenge(dry_run);
             }
             const varve::scavenge_result& x = take(std::move(r));
             nb::dict d;
             d["segments_examined"] = x.segments_examined;
             d["segments_rewritten"] = x.segments_rewritten;
             d["events_removed"] = x.events_removed;
             d["bytes_freed"] = x.bytes_freed;
             return d;
           },
           "dry_run"_a = false)
      .def("wait_durable",
           [](py_log& lg, uint64_t p) {
             varve::status st;
             varve::event_log& log = lg.get();
             {
               nb::gil_scoped_release rel;
               st = log.wait_durable(varve::position{p});
             }
             check(st);
           },
           "position"_a)
      .def("flush",
           [](py_log& lg) {
             varve::status st;
             {
               nb::gil_scoped_release rel;
               std::lock_guard lock(lg.mu);
               if (lg.closed) return;
               st = lg.log->flush();
             }
             check(st);
           })
      .def("close",
           [](py_log& lg) {
             varve::status st;
             {
               nb::gil_scoped_release rel;
               std::lock_guard lock(lg.mu);
               if (lg.closed) return;
               lg.closed = true;
               // The event_log itself stays until the last reader made from
               // it is gone (views point into its mappings).
               st = lg.log->close();
             }
             check(st);
           })
      .def_prop_ro("closed", [](py_log& lg) { return lg.closed; })
      .def_prop_ro("dir", [](py_log& lg) { return lg.get().dir(); })
      .def_prop_ro("read_only", [](py_log& lg) { return lg.get().is_read_only(); })
      .def_prop_ro("encrypted", [](py_log& lg) { return lg.get().encrypted(); })
      .def_prop_ro("committed", [](py_log& lg) { return lg.get().committed_position().value; })
      .def_prop_ro("durable", [](py_log& lg) { return lg.get().durable_position().value; })
      .def_prop_ro("written", [](py_log& lg) { return lg.get().written_position().value; })
      .def_prop_ro("next_sequence", [](py_log& lg) { return lg.get().next_sequence().value; })
      .def("version_of",
           [](py_log& lg, nb::handle stream) {
             stream_key key = to_stream(stream);
             nb::gil_scoped_release rel;
             std::lock_guard lock(lg.mu);
             return lg.get().version_of(key.id());
           },
           "stream"_a)
      .def("position_of",
           [](py_log& lg, uint64_t seq) {
             varve::result<varve::position> p = varve::position{};
             varve::event_log& log = lg.get();
             {
               nb::gil_scoped_release rel;
               p = log.position_of(varve::sequence{seq});
             }
             return take(std::move(p)).value;
           },
           "sequence"_a)
      .def("position_at_time",
           [](py_log& lg, uint64_t t) {
             varve::result<varve::position> p = varve::position{};
             {
               nb::gil_scoped_release rel;
               std::lock_guard lock(lg.mu);
               p = lg.get().position_at_time(t);
             }
             return take(std::move(p)).value;
           },
           "t_ns"_a)
      .def("type_name", [](py_log& lg, uint32_t id) {
             nb::gil_scoped_release rel;
             std::lock_guard lock(lg.mu);
             nb::gil_scoped_acquire gil;
             return lg.type_name(id);
           }, "type_id"_a)
      .def("type_id", [](py_log& lg, const std::string& name) {
             nb::gil_scoped_release rel;
             std::lock_guard lock(lg.mu);
             nb::gil_scoped_acquire gil;
             return lg.type_id(name);
           }, "name"_a)
      .def("stats",
           [](py_log& lg) {
             varve::log_stats st;
             {
               nb::gil_scoped_release rel;
               std::lock_guard lock(lg.mu);
               st = lg.get().stats();
             }
             nb::dict d;
             d["segments"] = st.segments;
             d["segment_bytes"] = st.segment_bytes;
             d["events"] = st.events;
             d["streams"] = st.streams;
             d["written"] = st.written.value;
             d["committed"] = st.committed.value;
             d["durable"] = st.durable.value;
             d["bytes_on_disk"] = st.bytes_on_disk;
             d["rollovers"] = st.rollovers;
             d["rollovers_that_waited"] = st.rollovers_that_waited;
             d["start_position"] = st.start.value;
             d["first_sequence"] = st.first_sequence.value;
             return d;
           })
      .def("retain",
           [](py_log& lg, std::optional<uint64_t> max_age_ns, std::optional<uint64_t> max_bytes,
              std::optional<uint64_t> before, bool dry_run) {
             varve::retention_policy p;
             if (max_age_ns) p.max_age_ns = *max_age_ns;
             if (max_bytes) p.max_bytes = *max_bytes;
             if (before) p.before = varve::position{*before};
             varve::result<varve::retention_result> r = varve::retention_result{};
             {
               nb::gil_scoped_release rel;
               std::lock_guard lock(lg.mu);
               r = lg.get().retain(p, dry_run);
             }
             const varve::retention_result& x = take(std::move(r));
             nb::dict d;
             d["segments_removed"] = x.segments_removed;
             d["bytes_removed"] = x.bytes_removed;
             d["events_removed"] = x.events_removed;
             d["first_segment"] = x.first_segment;
             d["start_position"] = x.start.value;
             d["first_sequence"] = x.first_sequence.value;
             d["held_back"] = x.held_back.empty() ? nb::none() : nb::cast(x.held_back);
             return d;
           },
           "max_age_ns"_a = nb::none(), "max_bytes"_a = nb::none(), "before"_a = nb::none(), "dry_run"_a = false)
      .def("archive",
           [](py_log& lg, std::string dir, std::optional<uint64_t> before, int level, bool dry_run) {
             varve::archive_options o;
             o.dir = std::move(dir);
             o.level = level;
             if (before) o.before = varve::position{*before};
             varve::result<varve::archive_result> r = varve::archive_result{};
             {
               nb::gil_scoped_release rel;
               std::lock_guard lock(lg.mu);
               r = lg.get().archive(o, dry_run);
             }
             const varve::archive_result& x = take(std::move(r));
             nb::dict d;
             d["segments_archived"] = x.segments_archived;
             d["raw_bytes"] = x.raw_bytes;
             d["archived_bytes"] = x.archived_bytes;
             d["archive_end"] = x.archive_end;
             d["dir"] = x.dir;
             return d;
           },
           "dir"_a, "before"_a = nb::none(), "level"_a = 3, "dry_run"_a = false)
      .def("_read",
           [](std::shared_ptr<py_log> lg, uint64_t from, nb::handle types, nb::handle streams,
              nb::handle prefixes, nb::handle correlation_ids, std::optional<uint64_t> limit) {
             auto rd = std::make_unique<py_reader>();
             rd->lg = lg;
             varve::event_filter f = make_filter(*lg, types, streams, prefixes, correlation_ids);
             rd->r = f.empty() ? lg->get().read(varve::position{from}) : lg->get().read(varve::position{from}, std::move(f));
             rd->remaining = limit;
             return rd;
           },
           "from_position"_a, "types"_a.none(), "streams"_a.none(), "prefixes"_a.none(),
           "correlation_ids"_a.none(), "limit"_a.none())
      .def("_read_stream",
           [](std::shared_ptr<py_log> lg, nb::handle stream, uint64_t from, bool backward,
              std::optional<uint64_t> limit) {
             stream_key key = to_stream(stream);
             auto rd = std::make_unique<py_stream_reader>();
             rd->lg = lg;
             rd->r = open_stream(*lg, key, from, backward, limit);
             return rd;
           },
           "stream"_a, "from_version"_a, "backward"_a, "limit"_a.none())
      .def("_read_stream_rows",
           [](std::shared_ptr<py_log> lg, nb::handle stream, uint64_t from, bool backward,
              std::optional<uint64_t> limit, nb::handle cls, nb::tuple prefix, nb::handle fields,
              nb::handle attr_names) {
             stream_key key = to_stream(stream);
             row_builder rb(cls, std::move(prefix), fields, attr_names);
             varve::stream_reader rd = open_stream(*lg, key, from, backward, limit);
             row_context cx(*lg);
             nb::list out;
             varve::event_view v;
             while (true) {
               // Stream reads come from the index and the mapping: no waits
               // here, so the GIL stays held for the whole call.
               auto got = rd.next(v);
               if (!got) raise(got.error(), std::string(key.bytes));
               if (!got.value()) break;
               out.append(rb.make(v, cx));
             }
             return out;
           },
           "stream"_a, "from_version"_a, "backward"_a, "limit"_a.none(), "cls"_a, "prefix"_a,
           "fields"_a, "names"_a.none())
      .def("_read_rows",
           [](std::shared_ptr<py_log> lg, uint64_t from, uint64_t limit, nb::handle cls,
              nb::tuple prefix, nb::handle fields, nb::handle attr_names, nb::handle types,
              nb::handle exclude_types, std::optional<uint64_t> until_sequence) {
             row_builder rb(cls, std::move(prefix), fields, attr_names);
             // Type names to ids (an unregistered name matches nothing).
             auto ids_of = [&](nb::handle names_in, std::vector<uint32_t>& out, bool& any_unknown) {
               for (nb::handle t : nb::borrow<nb::sequence>(names_in)) {
                 if (!nb::isinstance<nb::str>(t)) {
                   out.push_back(nb::cast<uint32_t>(t));
                   continue;
                 }
                 const std::string name = nb::cast<std::string>(t);
                 std::optional<uint32_t> id;
                 {
                   nb::gil_scoped_release rel;
                   std::lock_guard lock(lg->mu);
                   nb::gil_scoped_acquire gil;
                   id = lg->find_type(name);
                 }
                 if (id) out.push_back(*id);
                 else any_unknown = true;
               }
             };
             std::vector<uint32_t> want, skip;
             bool unknown = false, unused = false;
             const bool filtered = !types.is_none() && nb::len(types) > 0;
             if (filtered) ids_of(types, want, unknown);
             if (!exclude_types.is_none()) ids_of(exclude_types, skip, unused);
             nb::list out;
             varve::log_reader rd = lg->get().read(varve::position{from});
             row_context cx(*lg);
             std::optional<uint64_t> next_seq;
             uint64_t resume = from;  // just past the last event consumed
             varve::event_view v;
             if (!(filtered && want.empty())) {
               // The GIL stays held: releasing it per event would cost more
               // than the event (a page not in memory blocks other threads
               // for one disk read).
               while (out.size() < limit) {
                 auto got = rd.next(v);
                 if (!got) raise(got.error());
                 if (!got.value()) break;
                 if (until_sequence && v.sequence.value > *until_sequence) break;
                 next_seq = v.sequence.value + 1;
                 resume = v.position.value + v.record_bytes;
                 const uint32_t ty = v.type;
                 if (std::find(skip.begin(), skip.end(), ty) != skip.end()) continue;
                 if (filtered && std::find(want.begin(), want.end(), ty) == want.end()) continue;
                 out.append(rb.make(v, cx));
               }
             } else {
               // No wanted type is registered: nothing matches (the reader
               // is not walked at all).
               next_seq = std::nullopt;
             }
             nb::object ns = next_seq ? nb::object(nb::int_(*next_seq)) : nb::none();
             return nb::make_tuple(out, resume, ns);
           },
           "from_position"_a, "limit"_a, "cls"_a, "prefix"_a, "fields"_a, "names"_a.none(),
           "types"_a.none(), "exclude_types"_a.none(), "until_sequence"_a.none())
      .def("_subscribe",
           [](std::shared_ptr<py_log> lg, uint64_t from, nb::handle types, nb::handle streams,
              nb::handle prefixes, std::optional<std::string> name, double spin_us) {
             auto s = std::make_unique<py_subscription>();
             s->lg = lg;
             varve::event_filter f = make_filter(*lg, types, streams, prefixes, nb::none());
             varve::subscription_options o;
             o.spin = std::chrono::nanoseconds(static_cast<int64_t>(spin_us * 1000));
             if (name) o.name = *name;
             varve::result<varve::subscription> r = varve::status(varve::errc::invalid_argument, "");
             {
               nb::gil_scoped_release rel;
               r = varve::subscription::open(lg->get(), varve::position{from}, std::move(f), std::move(o));
             }
             s->s = take(std::move(r));
             return s;
           },
           "from_position"_a, "types"_a.none(), "streams"_a.none(), "prefixes"_a.none(),
           "name"_a.none(), "spin_us"_a);
}
