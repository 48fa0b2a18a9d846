// Stream lifecycle, the writer's side (varve/lifecycle.h; docs/DESIGN.md
// "Stream lifecycle"): a change is checked against the stream's head, the
// log is made durable up to its committed end, the change is appended to
// DIR/streams and synced, and only then is the new view published (to this
// process's readers, and through the control block's doorbell to others).
#include "engine/lifecycle/writer_lifecycle.h"

#include "engine/append_path.h"
#include "engine/lifecycle/stream_lifecycle.h"
#include "engine/log_state.h"
#include "varve/log.h"

namespace varve::detail {

status open_lifecycle(log_state& s) {
  auto v = lifecycle_view::load(*s.fs, s.dir, s.meta.log_id);
  if (!v) return v.error();
  s.any_deleted = v.value()->deleted_streams() != 0;
  s.shared->life_is_writer = !s.read_only;
  s.shared->set_lifecycle(v.value());
  if (!s.read_only) {
    s.life = std::make_unique<lifecycle_journal>(s.fs, s.dir, s.meta.log_id, v.value());
    s.shared->ctl->lifecycle_hint().store(v.value()->journal_end(), std::memory_order_release);
    if (status r = remove_scavenge_leftovers(*s.fs, s.dir); !r) return r;
    // A head rebuilt from the log alone (no checkpoint) misses the events a
    // scavenge removed; DIR/streams' floor says how far the stream went, so
    // its versions are never handed out again (they would be hidden).
    for (const lifecycle_view::item& i : v.value()->items()) {
      const stream_metadata& m = i.entry.metadata;
      if (m.truncate_before <= 1) continue;
      head_table::head* h = s.heads.find_or_insert(i.entry.stream, i.entry.stream_is_integer);
      if (h->version + 1 < m.truncate_before) h->version = m.truncate_before - 1;
      s.heads.tick();
    }
  }
  return {};
}

status check_writer_op(const log_state& s) {
  if (s.read_only) return status(errc::read_only, s.dir + ": log is open read-only");
  if (s.closed) return status(errc::invalid_argument, s.dir + ": log is closed");
  return s.write_failure;
}

status refuse_deleted(const log_state& s, const stream_id& stream, const char* what) {
  const auto& v = s.life->view();
  if (!v->maybe(stream.bytes())) return {};
  const stream_metadata* m = v->find(stream.bytes());
  if (!m || !m->deleted) return {};
  return status(errc::stream_deleted, s.dir + ": stream '" + stream_text(stream) + "' was deleted: " + what +
                                          " refused (a deleted stream takes no more events)");
}

namespace {

result<stream_metadata> change(event_log& log, log_state& s, stream_id stream, bool deleting,
                               const std::function<status(stream_metadata&, stream_version)>& edit) {
  if (status w = check_writer_op(s); !w) return w;
  const std::string_view key = stream.bytes();
  if (key.empty() || key.size() > kMaxStreamIdBytes)
    return status(errc::invalid_argument, "stream id must have 1 to 255 bytes, got " + std::to_string(key.size()));
  const head_table::head* head = s.heads.find(key, s.heads.hash(key));
  const stream_version version = head ? head->version : 0;
  const stream_metadata* now = s.life->view()->find(key);
  stream_metadata next = now ? *now : stream_metadata{};
  if (next.deleted) {
    if (deleting) return next;  // deleted already: nothing to do
    return status(errc::stream_deleted, s.dir + ": stream '" + stream_text(stream) + "' was deleted");
  }
  if (status e = edit(next, version); !e) return e;
  if (now ? next == *now : !next.any()) return next;  // nothing changes: nothing written
  // Everything committed is durable first: the change names versions the log
  // holds (a truncation before version v must not outlive events below v that
  // a power cut would take, to have new ones appended under those versions).
  if (status f = log.flush(); !f) return f;
  auto v = s.life->change(key, stream.is_integer(), next, s.shared->committed(), s.now_ns());
  if (!v) return v.error();
  s.any_deleted = v.value()->deleted_streams() != 0;
  s.shared->set_lifecycle(v.value());
  s.shared->ctl->lifecycle_hint().store(v.value()->journal_end(), std::memory_order_release);
  return next;
}

}  // namespace

}  // namespace varve::detail

namespace varve {

result<stream_metadata> event_log::delete_stream(stream_id stream) {
  return detail::change(*this, *s_, stream, true, [&](stream_metadata& m, stream_version version) -> status {
    if (version == 0)
      return status(errc::not_found, s_->dir + ": no stream '" + detail::stream_text(stream) + "' to delete");
    m.deleted = true;
    return {};
  });
}

result<stream_metadata> event_log::truncate_stream(stream_id stream, stream_version before) {
  return detail::change(*this, *s_, stream, false, [&](stream_metadata& m, stream_version version) -> status {
    const std::string name = detail::stream_text(stream);
    if (version == 0) return status(errc::not_found, s_->dir + ": no stream '" + name + "' to truncate");
    if (before > version + 1)
      return status(errc::invalid_argument, s_->dir + ": stream '" + name + "' is at version " +
                                                std::to_string(version) + ": it can be truncated before " +
                                                std::to_string(version + 1) + " at most, not " +
                                                std::to_string(before));
    if (before < m.truncate_before)
      return status(errc::invalid_argument, s_->dir + ": stream '" + name + "' is truncated before version " +
                                                std::to_string(m.truncate_before) +
                                                " already: a truncation only moves forward (hidden events may "
                                                "have been scavenged)");
    m.truncate_before = before;
    return {};
  });
}

result<stream_metadata> event_log::set_stream_limits(stream_id stream, uint64_t max_count, uint64_t max_age_ns) {
  return detail::change(*this, *s_, stream, false, [&](stream_metadata& m, stream_version) -> status {
    m.max_count = max_count;
    m.max_age_ns = max_age_ns;
    return {};
  });
}

result<stream_metadata> event_log::stream_metadata_of(stream_id stream) const {
  detail::log_state& s = *s_;
  if (status c = s.shared->check_lifecycle(); !c) return c;
  auto v = s.shared->lifecycle();
  const stream_metadata* m = v ? v->find(stream.bytes()) : nullptr;
  return m ? *m : stream_metadata{};
}

result<std::vector<stream_metadata_entry>> event_log::stream_metadata_list() const {
  detail::log_state& s = *s_;
  if (status c = s.shared->check_lifecycle(); !c) return c;
  auto v = s.shared->lifecycle();
  std::vector<stream_metadata_entry> out;
  if (v)
    for (const auto& i : v->items()) out.push_back(i.entry);
  std::sort(out.begin(), out.end(),
            [](const stream_metadata_entry& a, const stream_metadata_entry& b) { return a.change_number < b.change_number; });
  return out;
}

}  // namespace varve
