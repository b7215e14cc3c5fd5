// timer.h: wall-clock helpers (base).
#pragma once

#include <chrono>

namespace dsv3 {

inline double now_seconds() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

}  // namespace dsv3
