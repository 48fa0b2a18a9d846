// The writer's side of crypto-shredding: sealing the payloads of a batch
// before it is sized and written, choosing each stream's data key, forget,
// and opening DIR/keys with the log. The reader's side is keyring::
// open_payload, reached through shared_log::open_payload by every reader.
#include "engine/crypto/writer_keys.h"
#include "engine/lifecycle/writer_lifecycle.h"

#include <algorithm>

#include "base/coding.h"
#include "base/record_format.h"
#include "engine/crypto/keyring.h"
#include "engine/append_path.h"
#include "engine/background.h"
#include "engine/log_access.h"
#include "engine/log_state.h"
#include "varve/log.h"

namespace varve::detail {

namespace {

// The key slot named by the record at `pos` (a stream's last event), or 0
// when it cannot be read or is not encrypted: the stream then gets a new
// key, which is always safe (forget collects every slot a stream's records
// name).
uint32_t slot_in_record(log_state& s, uint64_t pos) {
  const uint64_t index = pos >> s.meta.log2_capacity;
  auto seg = s.shared->segment_for_read(index, pos);
  if (!seg) return 0;
  segment& g = *seg.value();
  const uint64_t off = pos & (s.capacity() - 1);
  if (off < segment_format::kHeaderSize || off >= g.records_end()) return 0;
  event_view v;
  const record::decoded d = record::decode(g.data() + off, g.records_end() - off, pos, true, v);
  if (d.outcome != record::decode_outcome::event || !v.encrypted) return 0;
  return coding::get_u32(v.payload.data());
}

// The key slot in a record this session wrote (its bytes are this writer's
// own: read in place, no checksum), 0 for one in clear.
uint32_t slot_in_own_record(const std::byte* rec) {
  const uint8_t flags = coding::get_u8(rec + 13);
  if (!(coding::get_u8(rec + 15) & record::kFlag2Encrypted)) return 0;
  const uint32_t ids = record::kIdSize * (((flags & record::kFlagEventId) != 0) +
                                          ((flags & record::kFlagCorrelation) != 0) +
                                          ((flags & record::kFlagCausation) != 0));
  return coding::get_u32(rec + record::kHeaderSize + ids + coding::get_u8(rec + 14));
}

// A stream keeps its key: the one its last record names, while it is live.
// No map from streams to keys: the head table already leads to that record
// (one cache miss, where a map of its own cost P1 a quarter of the
// writer's time: docs/BENCHMARKS.md section 18).
result<uint32_t> writer_slot(log_state& s, uint64_t last_position) {
  keyring& k = *s.shared->keys;
  if (last_position != ~uint64_t{0}) {
    uint32_t slot = 0;
    const uint64_t index = last_position >> s.meta.log2_capacity;
    segment* g = nullptr;
    if (last_position >= s.session_start)
      g = index == s.active->index() ? s.active : s.shared->segments.find(index);
    if (g && !g->archived())
      slot = slot_in_own_record(g->data() + (last_position & (s.capacity() - 1)));
    else
      slot = slot_in_record(s, last_position);  // an earlier session's: validated first
    if (slot && k.usable(slot)) return slot;
  }
  return k.new_slot();
}

// Seals `in` (one stream's events) into out[0..n) with their payloads at
// *p onward (advanced past them), in the writer's scratch.
void seal_into(log_state& s, uint32_t slot, std::string_view stream, std::span<const event_data> in,
               event_data* out, std::byte*& p) {
  for (const event_data& e : in) {
    *out = e;
    s.shared->keys->seal(slot, stream, e.payload, p);
    out->payload = std::span<const std::byte>(p, e.payload.size() + kSealOverhead);
    p += out->payload.size();
    ++out;
  }
}

}  // namespace

status seal_payloads(log_state& s, std::string_view stream, uint64_t last_position,
                     std::span<const event_data>& events) {
  auto slot = writer_slot(s, last_position);
  if (!slot) return slot.error();
  size_t bytes = 0;
  for (const event_data& e : events) bytes += e.payload.size() + kSealOverhead;
  // Both grow to the largest batch and stay: no allocation per append after that.
  if (s.sealed_bytes.size() < bytes) s.sealed_bytes.resize(bytes);
  s.sealed_events.resize(std::max(s.sealed_events.size(), events.size()));
  std::byte* p = s.sealed_bytes.data();
  seal_into(s, slot.value(), stream, events, s.sealed_events.data(), p);
  events = std::span<const event_data>(s.sealed_events.data(), events.size());
  return {};
}

status seal_batches(log_state& s, std::span<const stream_batch>& batches, const uint64_t* last_positions) {
  size_t bytes = 0, count = 0;
  for (const stream_batch& b : batches) {
    count += b.events.size();
    for (const event_data& e : b.events) bytes += e.payload.size() + kSealOverhead;
  }
  if (s.sealed_bytes.size() < bytes) s.sealed_bytes.resize(bytes);
  s.sealed_events.resize(std::max(s.sealed_events.size(), count));
  s.sealed_batches.assign(batches.begin(), batches.end());
  std::byte* p = s.sealed_bytes.data();
  event_data* out = s.sealed_events.data();
  for (size_t i = 0; i < batches.size(); ++i) {
    const std::string_view stream = batches[i].stream.bytes();
    if (batches[i].events.empty()) continue;
    auto slot = writer_slot(s, last_positions[i]);
    if (!slot) return slot.error();
    seal_into(s, slot.value(), stream, batches[i].events, out, p);
    s.sealed_batches[i].events = std::span<const event_data>(out, batches[i].events.size());
    out += batches[i].events.size();
  }
  batches = s.sealed_batches;
  return {};
}

status open_keys(log_state& s) {
  const bool has_keys = keyring::exists(*s.fs, s.dir);
  if (!s.opts.master_key) {
    if (has_keys && !s.read_only)
      return status(errc::invalid_argument, s.dir + ": the log encrypts payloads (it has " + s.dir +
                                                "/keys): its writer needs the master key (log_options::master_key, "
                                                "varve --master-key FILE or VARVE_MASTER_KEY_FILE)");
    return {};
  }
  if (s.read_only && !has_keys) return {};  // nothing in it is encrypted
  auto k = keyring::open(s.fs, s.dir, s.meta.log_id, *s.opts.master_key, !s.read_only, !s.read_only);
  if (!k) return k.error();
  if (!s.read_only) {
    auto done = k.value()->finish_forgets();
    if (!done) return done.error();
    if (done.value() && s.observer)
      s.observer->on_action({recovery_action::kind::note, s.dir + "/keys", 0, 0,
                             "finished a forget a crash interrupted: destroyed " + std::to_string(done.value()) +
                                 " data keys that DIR/forgotten names",
                             "", 0});
  }
  s.shared->keys = std::move(k.value());
  s.encrypting = !s.read_only;
  return {};
}

void start_key_runner(log_state& s) {
  // Key batches are made ahead on the preparer thread (close() takes this
  // back before that thread stops).
  if (s.shared->keys && !s.read_only)
    s.shared->keys->set_runner([bg = s.bg.get()](std::function<void()> task) { bg->run_later(std::move(task)); });
}

void stop_key_runner(log_state& s) {
  if (s.shared->keys) s.shared->keys->set_runner({});
}

}  // namespace varve::detail

namespace varve {

result<forget_result> event_log::forget(stream_id stream) {
  detail::log_state& s = *s_;
  if (status w = detail::check_writer_op(s); !w) return w;
  if (!s.shared->keys)
    return status(errc::invalid_argument, s.dir + ": the log has no master key: its payloads are not encrypted, "
                                                  "so no stream can be forgotten");
  const std::string_view key = stream.bytes();
  const std::string name = detail::stream_text(stream);
  const head_table::head* head = s.heads.find(key, s.heads.hash(key));
  if (!head || head->version == 0) return status(errc::not_found, s.dir + ": no stream '" + name + "'");
  // Every key the stream's records name (a stream may have had several: a
  // writer that could not read its last record gave it a new one).
  forget_result out;
  std::vector<uint32_t> slots;
  // Newest first, down the stream's back-chain: where retention removed its
  // oldest events the walk ends there (nothing left to erase).
  // Every record, whatever stream lifecycle hides (a deleted stream's
  // payloads are erased all the same).
  stream_reader r;
  r.raw_ = true;
  if (status st = r.init(s.shared, std::string(key), head->version, head->last_position, head->version,
                         read_direction::backward, head->version, /*hide=*/false);
      !st)
    return st;
  event_view e;
  for (;;) {
    auto got = r.next(e);
    if (!got && got.error().code() == errc::removed) break;
    if (!got) return status(got.error().code(), "forget '" + name + "': " + got.error().message());
    if (!got.value()) break;
    if (!e.encrypted) {
      ++out.plain_events;
      continue;
    }
    ++out.events_forgotten;
    slots.push_back(coding::get_u32(e.payload.data()));
  }
  std::sort(slots.begin(), slots.end());
  slots.erase(std::unique(slots.begin(), slots.end()), slots.end());
  if (slots.empty())
    return status(errc::invalid_argument, s.dir + ": stream '" + name + "' has no encrypted event (its " +
                                              std::to_string(out.plain_events) +
                                              " events were appended before the log had a master key)");
  auto seq = s.shared->keys->forget(key, stream.is_integer(), slots);
  if (!seq) return seq.error();
  out.keys_destroyed = slots.size();
  out.forget_sequence = seq.value();
  return out;
}

result<std::vector<forgotten_stream>> event_log::forgotten() const {
  return detail::keyring::read_journal(*s_->fs, s_->dir, s_->meta.log_id);
}

bool event_log::encrypted() const {
  return s_->shared->keys != nullptr || detail::keyring::exists(*s_->fs, s_->dir);
}

}  // namespace varve
