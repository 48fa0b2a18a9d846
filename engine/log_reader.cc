#include "base/record_format.h"
#include "engine/shared_log.h"
#include "varve/reader.h"

namespace varve {

log_reader::log_reader(std::shared_ptr<detail::shared_log> log, position from)
    : log_(std::move(log)), pos_(from) {}

position log_reader::committed() const { return position{log_ ? log_->committed() : 0}; }

result<bool> log_reader::next(event_view& out) {
  if (!log_) return status(errc::invalid_argument, "reader is not attached to a log");
  const uint64_t commit = log_->committed();
  const uint8_t l2 = log_->log2();
  const uint64_t mask = (uint64_t{1} << l2) - 1;
  while (pos_.value < commit) {
    const uint64_t index = pos_.value >> l2;
    uint64_t off = pos_.value & mask;
    if (off < segment_format::kHeaderSize) {
      off = segment_format::kHeaderSize;
      pos_.value = (index << l2) + off;
      continue;
    }
    if (index != seg_index_) {
      auto seg = log_->segments.get(index);
      if (!seg) return seg.error();
      seg_ = seg.value();
      seg_index_ = index;
    }
    const segment& sg = *static_cast<const segment*>(seg_);
    if (off % 8 != 0 || off >= sg.records_end())
      return status(errc::invalid_argument, sg.path() + " offset " + std::to_string(off) +
                                                ": not a record position");
    record::decoded d = record::decode(sg.data() + off, sg.records_end() - off, pos_.value,
                                       log_->verify_checksums, out);
    switch (d.outcome) {
      case record::decode_outcome::event:
        pos_.value += d.length;
        return true;
      case record::decode_outcome::segment_end:
        pos_.value = ((index + 1) << l2) + segment_format::kHeaderSize;
        continue;
      case record::decode_outcome::skip:
      case record::decode_outcome::hole:  // events a repair could not keep
        pos_.value += d.length;
        continue;
      case record::decode_outcome::unwritten:
        return status(errc::corruption, sg.path() + " offset " + std::to_string(off) +
                                            ": committed record is missing (zero header)");
      case record::decode_outcome::invalid:
        return status(errc::corruption,
                      sg.path() + " offset " + std::to_string(off) + ": " + d.why);
    }
  }
  return false;
}

}  // namespace varve
