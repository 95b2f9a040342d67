// Internal: in-place byte swapping of fixed-size units. Not installed.
#pragma once

#include <algorithm>
#include <cstdint>

namespace ckpt::detail {

/// Reverses each `unit`-byte group of [p, p + nbytes) (a no-op for unit <= 1).
inline void swap_units(uint8_t* p, uint64_t nbytes, int unit) {
  if (unit <= 1) return;
  for (uint64_t i = 0; i + static_cast<uint64_t>(unit) <= nbytes; i += static_cast<uint64_t>(unit))
    std::reverse(p + i, p + i + unit);
}

}  // namespace ckpt::detail
