// subscription_store::wait_until (include/varve/subscription.h): a request
// handler waits for a named subscription's committed position, the
// read-your-writes helper of issue 22. Polls the position file: commits are
// rare (each is an fsync) and the file is 48 bytes.
#include <algorithm>
#include <thread>

#include "varve/subscription.h"

namespace varve {

result<bool> subscription_store::wait_until(std::string_view name, position p,
                                            std::chrono::nanoseconds timeout) const {
  using clock = std::chrono::steady_clock;
  timeout = std::min<std::chrono::nanoseconds>(timeout, std::chrono::hours(24 * 365 * 50));
  const auto deadline = clock::now() + timeout;
  for (;;) {
    auto saved = load(name);
    if (!saved) return saved.error();
    if (saved.value() && *saved.value() >= p) return true;
    const auto now = clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(std::min<clock::duration>(deadline - now, std::chrono::milliseconds(2)));
  }
}

}  // namespace varve
