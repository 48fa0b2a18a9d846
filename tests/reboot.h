// A simulated reboot for tests that open a crash image in the same process:
// recovery trusts varve.ctl's committed position only within the boot that
// wrote it (the page cache survived), so an image of a power loss must be
// opened "after a reboot". Restores the real boot id when it goes.
#pragma once

#include <array>
#include <cstdint>
#include <random>

#include "engine/control_block.h"

namespace varve_test {

class simulated_reboot {
 public:
  explicit simulated_reboot(uint64_t seed) : saved_(varve::current_boot_id()) {
    std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ull);
    std::array<uint8_t, 16> id;
    for (auto& b : id) b = static_cast<uint8_t>(rng() | 1);  // never all zero (unknown)
    varve::test_hooks::set_boot_id(id);
  }
  ~simulated_reboot() { varve::test_hooks::set_boot_id(saved_); }
  simulated_reboot(const simulated_reboot&) = delete;
  simulated_reboot& operator=(const simulated_reboot&) = delete;

 private:
  std::array<uint8_t, 16> saved_;
};

}  // namespace varve_test
