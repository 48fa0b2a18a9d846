// The varve peer of varve-bench: one event per append() with
// expected_version::exact(version - 1), integer stream ids, 64 MiB segments,
// checksums verified by every reader. The durability mode is the peer's:
//   varve        mode none:  P2 = 1,000 appends then flush() (msync of what is
//                            committed); P3 = append then flush()
//   varve-group  mode group: P2 = 1,000 appends then wait_durable(end of the
//                            last), which nudges the flusher thread; P3 = append
//                            then wait_durable(its end)
//   varve-sync   mode sync:  P3 = append (it returns once durable); P2 does not
//                            apply (sync mode has no group commit)
#pragma once

#include <array>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>

#include "../bench_common.h"
#include "../es1_check.h"
#include "varve/varve.h"

namespace varve_bench {

class varve_peer {
 public:
  varve_peer(varve::durability mode, uint64_t segment_bytes) {
    opts_.segment_bytes = segment_bytes;
    opts_.mode = mode;
    opts_.verify_checksums = true;
  }
  ~varve_peer() { close(); }

  void create(const std::string& dir) {
    dir_ = dir;
    auto r = varve::event_log::create(dir, opts_);
    if (!r) fatal("varve create " + dir + ": " + r.error().to_string());
    log_ = std::move(r.value());
  }

  inline varve::append_result append(const es1_data& d, uint64_t i) { return append_stamped(d, i, i + 1); }
  // P7: the timestamp is the writer's clock just before the call.
  inline varve::append_result append_stamped(const es1_data& d, uint64_t i, uint64_t ts) {
    ev_.type = d.version[i] % 8;
    ev_.payload = {d.payload_of(i), kPayloadBytes};
    ev_.timestamp_ns = ts;
    auto r = log_->append(varve::stream_id::from_u64(d.aggregate[i]),
                          varve::expected_version::exact(d.version[i] - 1), ev_);
    if (!r) [[unlikely]]
      fatal("varve append #" + std::to_string(i) + ": " + r.error().to_string());
    return r.value();
  }

  // After the load: close (drains the background sealer and index writer) and
  // reopen, as varve-p5 does; what a reader of a loaded log sees.
  // The writer's waits on its helpers during the load (issue 16: a roll-over
  // should never wait).
  std::vector<std::pair<std::string, double>> load_figures() const {
    const varve::log_stats st = log_->stats();
    return {{"rollovers", double(st.rollovers)},
            {"rollovers_that_waited", double(st.rollovers_that_waited)},
            {"longest_rollover_wait_us", double(st.longest_rollover_wait_ns) / 1e3},
            {"longest_seal_wait_us", double(st.longest_seal_wait_ns) / 1e3}};
  }

  void finish_load() {
    if (auto s = log_->close(); !s.ok()) fatal("varve close: " + s.to_string());
    log_.reset();
    auto r = varve::event_log::open(dir_, opts_);
    if (!r) fatal("varve open " + dir_ + ": " + r.error().to_string());
    log_ = std::move(r.value());
  }

  void append_batch_durable(const es1_data& d, uint64_t first, uint64_t n) {
    varve::append_result last{};
    for (uint64_t i = first; i < first + n; ++i) last = append(d, i);
    make_durable(last);
  }
  void append_durable(const es1_data& d, uint64_t i) {
    auto r = append(d, i);
    if (opts_.mode != varve::durability::sync) make_durable(r);
  }

  template <class F>
  uint64_t scan(F&& f, uint64_t& record_bytes) {
    // The lazy bulk reader (log_reader::next_batch into event_refs), as a
    // scanning application that wants the payloads would use it;
    // BM_ReaderNext / BM_ReaderNextBatch / BM_ReaderNextRefs in
    // varve-micro-bench compare it with next() and with full views.
    // VARVE_BENCH_P4_VIEWS=1 reads full event_views instead (the A/B of
    // docs/BENCHMARKS.md section 31, within one binary).
    static const bool views = [] {
      const char* e = std::getenv("VARVE_BENCH_P4_VIEWS");
      return e && *e == '1';
    }();
    return views ? scan_as<varve::event_view>(f, record_bytes) : scan_as<varve::event_ref>(f, record_bytes);
  }

  static std::span<const std::byte> payload_of(const varve::event_view& v) { return v.payload; }
  static std::span<const std::byte> payload_of(const varve::event_ref& r) { return r.payload(); }
  static uint32_t record_bytes_of(const varve::event_view& v) { return v.record_bytes; }
  static uint32_t record_bytes_of(const varve::event_ref& r) { return r.record_bytes(); }

  template <class View, class F>
  uint64_t scan_as(F& f, uint64_t& record_bytes) {
    varve::log_reader reader = log_->read();
    std::array<View, 64> v;
    uint64_t n = 0, rb = 0;
    for (;;) {
      auto r = reader.next_batch(v);
      if (!r) [[unlikely]]
        fatal("varve scan: " + r.error().to_string());
      if (r.value() == 0) break;
      for (size_t i = 0; i < r.value(); ++i) {
        const auto payload = payload_of(v[i]);
        f(payload.data(), payload.size());
        rb += record_bytes_of(v[i]);
      }
      n += r.value();
    }
    record_bytes = rb;
    return n;
  }

  agg_read read_aggregate(uint32_t agg) {
    agg_read out;
    auto r = log_->read_stream(varve::stream_id::from_u64(agg), 1, varve::read_direction::forward);
    if (!r) [[unlikely]]
      fatal("varve read_stream(" + std::to_string(agg) + "): " + r.error().to_string());
    varve::event_view v;
    for (;;) {
      auto m = r->next(v);
      if (!m) [[unlikely]]
        fatal("varve read_stream(" + std::to_string(agg) + ").next: " + m.error().to_string());
      if (!m.value()) break;
      out.in_order &= v.version == out.count + 1;
      out.checksum = fold(out.checksum, touch(v.payload.data(), v.payload.size()));
      ++out.count;
    }
    return out;
  }

  // Bytes of one ES-1 record in this log (all ES-1 records have the same size).
  uint32_t first_record_bytes() {
    varve::log_reader reader = log_->read();
    varve::event_view v;
    auto r = reader.next(v);
    if (!r || !r.value()) fatal("varve: cannot read the first record back");
    return v.record_bytes;
  }

  void close() {
    if (!log_) return;
    if (auto s = log_->close(); !s.ok()) fatal("varve close: " + s.to_string());
    log_.reset();
  }

 private:
  void make_durable(const varve::append_result& r) {
    varve::status s = opts_.mode == varve::durability::group ? log_->wait_durable(r.end) : log_->flush();
    if (!s.ok()) [[unlikely]]
      fatal("varve durable: " + s.to_string());
  }

  varve::log_options opts_;
  std::string dir_;
  std::unique_ptr<varve::event_log> log_;
  varve::event_data ev_;
};

}  // namespace varve_bench
