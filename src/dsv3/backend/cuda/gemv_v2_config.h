// gemv_v2_config.h: the tunable choices of the v2 decode GEMV (gemv_fp8_v2.cu; backend/cuda): tile rows, stage size,
// ring depth, CTAs per SM, copy engine and K split. Why: the kernel's design target (>= 80% of HBM) was missed by
// ~30 points with the first choices, and which limit binds (bytes in flight, per-stage barriers, run length per
// row, idle SMs) is measured, not derived: DSV3_GEMV_V2_CFG and test_ops --perf -o gemv2_sweep pick among these.
// Free of CUDA headers (cuda_backend.h includes it); parsing and printing live in gemv_v2_config.cpp.
#pragma once

#include <string>

namespace dsv3::cuda {

struct GemvV2Config {
  int tile_rows = 0;    // weight rows per tile: 16 or 32 (one or two mma A tiles); 0: gemv_v2_default_config(m, k)
  int stage_kb = 4;     // 128-K blocks per pipeline stage: a stage is tile_rows runs of stage_kb·128 bytes
  int stages = 5;       // ring depth, 2..8 (cp.async: stages - 1 in flight while one is consumed; bulk: stages)
  int ctas_per_sm = 1;  // 1 or 2: with 2, each CTA gets half the shared memory and one's barriers hide behind the other
  bool bulk = false;    // false: 16-byte cp.async by all 256 threads; true: one cp.async.bulk per weight row from a
                        // producer warp, completion on mbarriers (k % 128 != 0 runs the cp.async twin instead)
  int split = 0;        // K split (cluster size): 0 the launcher's cost model; 1, 2, 4 or 8
};
// (C++17: the .cu files include this header.)
constexpr bool operator==(const GemvV2Config& a, const GemvV2Config& b) {
  return a.tile_rows == b.tile_rows && a.stage_kb == b.stage_kb && a.stages == b.stages &&
         a.ctas_per_sm == b.ctas_per_sm && a.bulk == b.bulk && a.split == b.split;
}
constexpr bool operator!=(const GemvV2Config& a, const GemvV2Config& b) { return !(a == b); }

// The geometries compiled into gemv_fp8_v2.cu: 8 warps split a stage as (tile_rows / 16) row groups x (8 / that)
// K-warps, each taking whole 128-K blocks, so stage_kb must be a multiple of the K-warps.
constexpr bool gemv_v2_geometry_ok(int tile_rows, int stage_kb) {
  return (tile_rows == 32 && (stage_kb == 4 || stage_kb == 8)) || (tile_rows == 16 && (stage_kb == 8 || stage_kb == 16));
}

// Weights below this many bytes (m·k) count as small: q_a, kv_a, the experts (4-15 MB, latency-bound) against
// o_proj, q_b and the dense MLP (38-132 MB, bandwidth-bound). DSV3_GEMV_V2_CFG_SMALL applies below it.
constexpr long long kGemvV2SmallWeightBytes = 32ll << 20;

// The configuration for an [m, k] weight when none is requested (DSV3_GEMV_V2_CFG unset or "auto"): the one place to
// change the default after a sweep (scripts/device/gemv3.sh prints the best per shape). Today (H200 sweep, 2026-11-30
// 02:55, docs/benchmarks.md): cp.async.bulk with 2 CTAs per SM and a 2-deep ring everywhere; small weights in 32-row
// tiles of 8 K-blocks, big ones in 16-row tiles of 16 K-blocks (v3-slice decode at batch 1: 1.96 -> 1.56 ms/step
// against the original design, 32-row tiles, 5 stages of 4 K-blocks, 1 CTA per SM, cp.async: sweep config c0).
constexpr GemvV2Config gemv_v2_default_config(int m, int k) {
  return static_cast<long long>(m) * k < kGemvV2SmallWeightBytes
             ? GemvV2Config{/*tile_rows=*/32, /*stage_kb=*/8, /*stages=*/2, /*ctas_per_sm=*/2, /*bulk=*/true, /*split=*/0}
             : GemvV2Config{/*tile_rows=*/16, /*stage_kb=*/16, /*stages=*/2, /*ctas_per_sm=*/2, /*bulk=*/true,
                            /*split=*/0};
}

// "rows=R,stage_kb=B,stages=S,ctas=C,copy=cp|bulk,split=auto|1|2|4|8", keys in any order, each optional (missing
// keys take gemv_v2_default_config's values); "" or "auto": tile_rows = 0 (the per-shape default). Throws
// dsv3::Error naming `what` (e.g. the environment variable), the key and the allowed values on bad input.
GemvV2Config parse_gemv_v2_config(const std::string& text, const std::string& what);
// The string parse_gemv_v2_config reads back to `c` ("auto" for tile_rows = 0).
std::string format_gemv_v2_config(const GemvV2Config& c);

}  // namespace dsv3::cuda
