// Template body of scan_segment (see scan.h).
#pragma once

#include <vector>

#include "base/record_decode.h"

namespace varve {

template <class F>
segment_scan scan_segment(const segment& seg, uint64_t first_sequence, bool verify,
                          F&& on_event, uint64_t from) {
  segment_scan r;
  r.first_sequence = r.next_sequence = first_sequence;
  r.good_end = from;
  const uint64_t end = seg.records_end();
  const uint64_t base = seg.base_position();
  uint64_t off = from;
  uint64_t seq = first_sequence;
  // A batch holds few events in practice; reuse one buffer per scan.
  std::vector<event_view> batch;
  bool in_batch = false;
  auto stop = [&](const char* why) {
    r.problem = why;
    r.problem_offset = off;
  };
  while (true) {
    event_view v;
    record::decoded d = record::decode_inline(seg.data() + off, end - off, base + off, verify, v);
    if (d.outcome == record::decode_outcome::unwritten) {
      if (in_batch) stop("batch ends without its last record");
      else r.clean_zero_end = true;
      break;
    }
    if (d.outcome == record::decode_outcome::segment_end) {
      if (in_batch) stop("segment ends inside a batch");
      else r.ended_by_marker = true;
      break;
    }
    if (d.outcome == record::decode_outcome::invalid) {
      stop(d.why);
      break;
    }
    if (d.outcome == record::decode_outcome::hole) {
      if (in_batch) {
        stop("hole inside a batch");
        break;
      }
      if (d.hole_first != seq) {
        stop("hole's sequence numbers do not continue the log");
        break;
      }
      seq += d.hole_count;
      off += d.length;
      ++r.holes;
      r.lost_events += d.hole_count;
      if (d.hole_scavenged) r.scavenged_events += d.hole_count;
      r.next_sequence = seq;
      r.good_end = off;
      continue;
    }
    if (d.outcome == record::decode_outcome::skip) {
      off += d.length;
      if (!in_batch) r.good_end = off;
      continue;
    }
    if (v.sequence.value != seq) {
      stop("sequence number out of order");
      break;
    }
    if (v.batch_begin == in_batch) {
      stop(in_batch ? "batch begins inside another batch" : "record outside any batch");
      break;
    }
    // A batch may hold several streams (format version 2: the multi-stream
    // append); each record chains to its own stream's previous event.
    in_batch = true;
    batch.push_back(v);
    ++seq;
    off += d.length;
    if (v.batch_end) {
      for (const event_view& e : batch) on_event(e);
      r.events += batch.size();
      r.last_position = batch.back().position.value;
      r.next_sequence = seq;
      r.good_end = off;
      batch.clear();
      in_batch = false;
    }
  }
  return r;
}

}  // namespace varve
