// hash.h: splitmix64, the one integer mixer dsv3 uses for counter-based randomness (synthetic weights, sampling
// seeds) (base). Inline and constexpr so the same function can be mirrored bit for bit in device code.
#pragma once

#include <cstdint>

#include "dsv3/base/host_device.h"

namespace dsv3 {

DSV3_HD constexpr uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace dsv3
