#include "engine/index_table.h"

#include <time.h>

#include "base/log_files.h"
#include "engine/segment_table.h"
#include "index/index_file.h"

namespace varve {

namespace {

constexpr uint64_t kRetryMissingNs = 100'000'000;  // a missing file may be written soon

uint64_t monotonic_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

std::string index_dir(const std::string& dir) { return log_files::join(dir, log_files::kIndexDir); }

std::string sidx_path(const std::string& dir, uint64_t seg) {
  return log_files::join(index_dir(dir), log_files::sidx_name(seg));
}

// Ties an index to the exact bytes of the segment it describes: a segment
// rewritten by a repair makes its old index stale, never trusted.
status matches_segment(const segment_index::view& v, const segment& seg, const std::string& path) {
  segment_format::footer f;
  if (status s = seg.read_footer(f); !s) return s;
  if (f.data_checksum != v.data_checksum() || f.event_count != v.event_count() ||
      f.first_sequence != v.first_sequence())
    return status(errc::corruption, path + ": index does not describe " + seg.path() +
                                        " as it is now (stale)");
  return {};
}

}  // namespace

struct index_table::loaded {
  void* map = nullptr;
  uint64_t size = 0;
  segment_index::view v;
  index_table::state st = index_table::state::missing;
  uint64_t checked_ns = 0;
  loaded* next_retired = nullptr;
};

index_table::~index_table() {
  auto free_one = [this](loaded* l) {
    if (l->map) fs_->unmap(l->map, l->size);
    delete l;
  };
  slots_.for_each(free_one);
  for (loaded* l = retired_.load(); l;) {
    loaded* next = l->next_retired;
    free_one(l);
    l = next;
  }
}

index_table::loaded* index_table::load(const segment& seg, uint64_t now_ns) {
  auto* l = new loaded;
  l->checked_ns = now_ns;
  const std::string path = sidx_path(dir_, seg.index());
  auto f = fs_->open(path, file_system::open_mode::read_only);
  if (!f) return l;  // missing (or unreadable): not trusted, not an error for a reader
  file_handle fh = f.value();
  auto size = fs_->file_size(fh);
  status why;
  if (size && size.value() >= segment_index::kHeaderSize) {
    auto m = fs_->map(fh, size.value(), map_access::read_only);
    if (m) {
      l->map = m.value();
      l->size = size.value();
      auto v = segment_index::view::open(static_cast<const std::byte*>(l->map), l->size, path,
                                         log_id_, seg.index());
      if (v) why = matches_segment(v.value(), seg, path);
      else why = v.error();
      if (v && why) {
        l->v = v.value();
        l->st = state::valid;
      }
    } else {
      why = m.error();
    }
  } else {
    why = size ? status(errc::corruption, path + ": truncated index file") : size.error();
  }
  fs_->close(fh);
  if (l->st != state::valid) {
    l->st = state::damaged;
    if (observer_) observer_->on_truncated(path, 0, 0, "segment index ignored: " + why.to_string());
    std::lock_guard<std::mutex> g(damaged_mu_);
    damaged_.push_back(seg.index());
  }
  return l;
}

std::vector<uint64_t> index_table::take_damaged() {
  std::lock_guard<std::mutex> g(damaged_mu_);
  return std::exchange(damaged_, {});
}

void index_table::forget(uint64_t segment_index) {
  std::atomic<loaded*>* s = slots_.slot(segment_index, false);
  if (!s) return;
  auto* fresh = new loaded;  // missing, checked long ago: the next get() loads
  loaded* old = s->exchange(fresh, std::memory_order_acq_rel);
  if (old) {
    old->next_retired = retired_.load();
    while (!retired_.compare_exchange_weak(old->next_retired, old)) {
    }
  }
}

const segment_index::view* index_table::get(const segment& seg) {
  if (seg.index() >= sealed_end_.load(std::memory_order_acquire)) return nullptr;
  std::atomic<loaded*>* s = slots_.slot(seg.index(), true);
  if (!s) return nullptr;
  loaded* cur = s->load(std::memory_order_acquire);
  if (cur && cur->st == state::valid) return &cur->v;
  const uint64_t now = monotonic_ns();
  // A damaged file stays distrusted until reopened (the writer rebuilds it
  // at its next open); a missing one may be on its way from the sealer.
  if (cur && (cur->st == state::damaged || now - cur->checked_ns < kRetryMissingNs)) return nullptr;
  loaded* mine = load(seg, now);
  if (s->compare_exchange_strong(cur, mine, std::memory_order_acq_rel)) {
    if (cur) {
      cur->next_retired = retired_.load();
      while (!retired_.compare_exchange_weak(cur->next_retired, cur)) {
      }
    }
  } else {
    if (mine->map) fs_->unmap(mine->map, mine->size);
    delete mine;
    mine = cur;
  }
  return mine && mine->st == state::valid ? &mine->v : nullptr;
}

index_table::state index_table::check(file_system& fs, const std::string& dir, uint64_t log_id,
                                      const segment& seg, uint64_t& max_timestamp_through,
                                      status& why) {
  const std::string path = sidx_path(dir, seg.index());
  auto f = fs.open(path, file_system::open_mode::read_only);
  if (!f) return state::missing;
  file_handle fh = f.value();
  auto size = fs.file_size(fh);
  std::vector<std::byte> head(segment_index::kHeaderSize);
  status rd = !size ? size.error()
              : size.value() < head.size()
                  ? status(errc::corruption, path + ": truncated index file")
                  : fs.pread(fh, 0, head.data(), head.size());
  fs.close(fh);
  if (!rd) {
    why = rd;
    return state::damaged;
  }
  auto v = segment_index::view::open(head.data(), size.value(), path, log_id, seg.index(),
                                     /*verify_body=*/false);
  if (!v) {
    why = v.error();
    return state::damaged;
  }
  if (status s = matches_segment(v.value(), seg, path); !s) {
    why = s;
    return state::damaged;
  }
  max_timestamp_through = v.value().max_timestamp_through();
  return state::valid;
}

result<uint64_t> index_table::build_and_write(file_system& fs, const std::string& dir,
                                              uint64_t log_id, const segment& seg,
                                              uint64_t through_previous) {
  auto bytes = segment_index::build(seg, {log_id, through_previous, segment_index::hash_kind::xxh3});
  if (!bytes) return bytes.error();
  auto v = segment_index::view::open(bytes.value().data(), bytes.value().size(), "", log_id,
                                     seg.index());
  if (!v) return v.error();
  const uint64_t through = v.value().max_timestamp_through();
  if (status s = fs.create_dir(index_dir(dir)); !s) return s;
  if (status s = index_file::write(fs, index_dir(dir), log_files::sidx_name(seg.index()), bytes.value()); !s)
    return s;
  return through;
}

result<uint64_t> ensure_indexes(file_system& fs, segment_table& table, uint64_t first,
                                uint64_t end, recovery_observer* observer, bool force,
                                const std::atomic<bool>* cancel) {
  const segment::identity& id = table.identity();
  uint64_t through = 0;
  for (uint64_t k = first; k < end; ++k) {
    if (cancel && cancel->load(std::memory_order_relaxed))
      return status(errc::cancelled, id.dir + ": segment index pass cancelled at segment " + std::to_string(k));
    // Checking an index reads the segment's footer only: an archived
    // segment is inflated whole only when its index must be built.
    auto seg = table.get_lazy(k);
    if (!seg) return seg.error();
    uint64_t t = 0;
    status why;
    index_table::state st = force ? index_table::state::missing
                                  : index_table::check(fs, id.dir, id.log_id, *seg.value(), t, why);
    // A file whose running timestamp maximum is below its predecessor's was
    // built against another history: rebuilt like a damaged one.
    if (st == index_table::state::valid && t < through) {
      st = index_table::state::damaged;
      why = status(errc::corruption, "its running timestamp maximum is below the previous segment's");
    }
    if (st == index_table::state::valid) {
      through = t;
      continue;
    }
    if (st == index_table::state::damaged && observer)
      observer->on_truncated(sidx_path(id.dir, k), 0, 0,
                             "segment index damaged, rebuilt: " + why.to_string());
    if (status a = seg.value()->ensure_all(); !a) return a;
    auto built = index_table::build_and_write(fs, id.dir, id.log_id, *seg.value(), through);
    if (!built) return built.error();
    through = built.value();
  }
  return through;
}

}  // namespace varve
