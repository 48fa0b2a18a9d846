// Operator functions behind the CLI: verify and stat a log directory. The CLI
// only parses arguments and prints; all checking lives here.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "varve/log.h"
#include "varve/status.h"

namespace varve {

struct verify_report {
  uint64_t segments = 0;
  uint64_t sealed_segments = 0;
  uint64_t events = 0;
  uint64_t bytes = 0;          // record bytes checked
  status first_problem;        // ok when intact; otherwise file and offset
};

// Checks every record of every segment (checksums, positions, sequence
// continuity, batch framing) and every footer, without modifying anything and
// without the writer lock. `progress(bytes_done, bytes_total)` is called now
// and then when set.
result<verify_report> verify_log(const std::string& dir,
                                 std::function<void(uint64_t, uint64_t)> progress = {});

result<log_stats> stat_log(const std::string& dir);

}  // namespace varve
