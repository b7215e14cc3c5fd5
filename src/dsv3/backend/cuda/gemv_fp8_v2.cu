// gemv_fp8_v2.cu: the decode FP8 GEMV for 1..8 tokens with the activation quantization fused in (backend/cuda), the
// default for FP8 linears of 1..8 rows (DSV3_GEMV=v1: the former pair). out[t, j] = Σ_b (Σ_{i∈b} a[t,i]·w[j,i]) ·
// sa[b,t] · sw[j/128, b], a = the e4m3 codes of x in 1x128 groups (model-spec §5.3-5.4). Why: the v1 path (quantize
// kernel + gemv_fp8.cu) reaches 50-60% of the H200's 4.54 TB/s on the big projections and 20-28% on the 15 MB expert
// shapes, and every GEMV waits for a separate quantize launch. Target: >= 80% of HBM on o_proj / dense gate_up /
// dense down. The first configuration (below: 32-row tiles, 16 KB stages, 5 of them, 1 CTA per SM) measured 47-55%
// on those (ncu, 2026-11-30) and 11-23% on the small shapes, so its choices are now a GemvV2Config (gemv_v2_config.h;
// DSV3_GEMV_V2_CFG, test_ops --perf -o gemv2_sweep) and the default is set per shape from the sweep.
// Parallelisation: a persistent grid of clusters, ctas_per_sm CTAs per SM (each with 1/ctas_per_sm of the shared
//   memory). Cluster c owns a contiguous range of R-row weight tiles (R = tile_rows, 16 or 32); its S CTAs
//   (S = cluster size, 1/2/4/8, chosen per shape by a cost model in the launcher unless forced) split K into S
//   contiguous ranges of 128-blocks. A CTA quantizes x[:, its K range] into shared memory (16 threads per 128-group,
//   the exact arithmetic of launch_quantize_fp8) and loads the weight scales of its tiles, while the first stages of
//   its weight stream are in flight; a stage is R rows x B K-blocks (B = stage_kb; one contiguous B·128-byte run per
//   row), in a ring of `stages` buffers. Two copy engines:
//   cp   all 256 threads copy a stage with 16-byte cp.async (zero-filled past m and k); a stage is released and the
//        next issued after cp.async.wait_group + __syncthreads at the top of each step (stages - 1 in flight).
//   bulk a 9th (producer) warp copies each row's run with one cp.async.bulk onto the stage's `full` mbarrier
//        (expect_tx = the stage's bytes) after the 8 consumer warps have released the buffer on its `empty` mbarrier:
//        no CTA-wide barrier per stage, `stages` in flight. Rows are padded by 64 bytes (conflict-free reads); rows
//        past m are not copied (their sums are never stored); k % 128 != 0 runs the cp twin (no zero fill here).
//   The 8 consumer warps split a stage into R/16 row groups x 8/(R/16) K-warps; a warp multiplies its whole 128-K
//   blocks on the tensor cores with mma.m16n8k32 e4m3: weights as the A operand (16 rows), codes as B (8 token
//   columns), so no mma row is wasted at n <= 8. At a tile's end the K-warps' sums meet in shared memory (fixed order,
//   double-buffered by tile parity, one barrier of the consumer warps); with S = 1 the CTA writes the outputs, else it
//   keeps the tile's partial and, after its last tile, the cluster adds its S partials through distributed shared
//   memory (rank order, deterministic). No cross-cluster communication, no global scratch: graph-capturable, safe
//   next to other kernels. An mbarrier wait that has not completed after 4 s traps (a bug, never a slow GPU).
// Shared-memory reads are conflict-free: cp stages and the codes put 16-byte chunk c of row r at c ^ 4·(r & 1); bulk
//   stages have a row stride of B·128 + 64 bytes; either way the 8 lanes of each quarter-warp phase (rows g, g+1 x
//   chunks q) hit 8 distinct 16-byte bank groups.
// Precision: codes and scales bitwise equal to launch_quantize_fp8 (the division x/s as a correctly rounded
//   reciprocal plus one fma correction step: equal codes for every bf16 x and every group scale, checked exhaustively
//   by dev/kernels/gemv_v2_quant_check.cpp); products as gemv_fp8.cu (each 32-wide mma from zero, the four of a
//   128-block added in fp32, scaled by sa·sw in fp32); the sums over K-blocks run in another order than v1's
//   (per warp, then the K-warps, then S ranks; the order depends on the configuration, never on timing): tolerance
//   kTolGemmFp8, as v1.
// Reference: CpuBackend::linear (FP8); tests/ops cases linear(... path=gemv2) and linear_gemv2(...) (every split and
//   every sweep configuration, the fused codes bitwise); dev/kernels/gemv_v2_emu.py emulates the first
//   configuration's indexing in numpy.
#include <cooperative_groups.h>

#include <algorithm>
#include <mutex>

#include "dsv3/backend/cuda/fp8.cuh"

namespace dsv3::cuda {
namespace {

namespace cg = cooperative_groups;

constexpr int kConsumers = 256;   // 8 consumer warps (the bulk variant adds a producer warp)
constexpr int kQGroups = kConsumers / 16;  // 128-groups quantized per pass (16 threads x 8 elements each)
constexpr int kQBatch = 8;        // passes whose x loads are in flight together
constexpr int kMaxSplit = 8;      // portable cluster size limit
constexpr int kMaxStages = 8;
constexpr int kBulkPad = 64;      // bytes after each bulk-copied row: rows r, r+1 land in opposite bank-group halves
constexpr int kRedBytes = 2 * 8 * 16 * 8 * 4;  // red: [2 tile parities][K-warps][8 tokens][R rows] fp32, K-warps·R = 128

// Shared memory (dynamic, one layout per launch): ring [stages][stage bytes] | mbarriers full[8], empty[8] |
// weight scales [srows_max][kbr_max] | codes [n][kbr_max·128] | sa [kbr_max][8] | red | part [tpc_max][8][R] (S > 1).
struct GemvV2Params {
  LinearFp8GemvV2Args a;
  int kb;         // ceil(k / 128)
  int tiles;      // ceil(m / R)
  int clusters;   // grid = clusters x split CTAs
  int split;      // CTAs per cluster = K ranges
  int kbr_max;    // the most K-blocks of one CTA's range: ceil(kb / split)
  int stages;     // ring depth
  int srows_max;  // 128-row scale blocks one CTA's tiles can touch
  bool vec_x;     // x 16-byte aligned with a stride of a multiple of 8: one 16-byte load per 8 elements
  int bar_off, sw_off, codes_off, sa_off, red_off, part_off;  // byte offsets into shared memory
};

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// 16 bytes global -> shared, bypassing L1; src_bytes = 0 writes 16 zeros without reading (rows past m, K past k).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
// wait_group takes an immediate: the ring depth is a launch parameter, so one uniform switch.
__device__ __forceinline__ void cp_async_wait_dyn(int n) {
  switch (n) {
    case 1: cp_async_wait<1>(); break;
    case 2: cp_async_wait<2>(); break;
    case 3: cp_async_wait<3>(); break;
    case 4: cp_async_wait<4>(); break;
    case 5: cp_async_wait<5>(); break;
    case 6: cp_async_wait<6>(); break;
    default: cp_async_wait<0>(); break;
  }
}

// ---- mbarriers and bulk copies (sm_90) ----
__device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}
// One arrival plus `bytes` of expected transactions (the bulk copies that complete_tx onto this barrier).
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ bool mbar_try_wait(uint64_t* bar, uint32_t parity) {
  uint32_t done;
  asm volatile(
      "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(done)
      : "r"(smem_addr(bar)), "r"(parity)
      : "memory");
  return done != 0;
}
__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
// Waits for the completion of the barrier's phase with parity `parity`. A phase that never completes is a bug (a
// wrong expect_tx count, a missing arrival): trap after 4 s instead of hanging the stream.
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  if (mbar_try_wait(bar, parity)) return;
  const uint64_t t0 = global_ns();
  while (!mbar_try_wait(bar, parity))
    if (global_ns() - t0 > 4000000000ull) __trap();
}
// `bytes` (a multiple of 16; both addresses 16-byte aligned) global -> this CTA's shared memory by the TMA unit,
// completing as transactions on `bar`.
__device__ __forceinline__ void bulk_copy(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                   smem_addr(dst)),
               "l"(src), "r"(bytes), "r"(smem_addr(bar))
               : "memory");
}

// x / s rounded to nearest even, as __fdiv_rn(x, s) in fp8_encode, given r = RN(1/s) with s finite: q = RN(x·r) is
// within an ulp of x/s, x - q·s is exact in one fma, and one correction step rounds correctly (Markstein) except
// where x or x/s is subnormal, where |x/s| < 2^-80 encodes to ±0 either way (gemv_v2_quant_check.cpp). x = ±0
// returns x: the fma chain would turn -0 into +0.
__device__ __forceinline__ float fp8_div_scale(float x, float s, float r) {
  const float q = __fmul_rn(x, r);
  const float e = __fmaf_rn(-q, s, x);
  const float y = __fmaf_rn(e, r, q);
  return x == 0.f ? x : y;
}

__device__ __forceinline__ uint32_t fp8_pack4(float a, float b, float c, float d) {  // byte i = code of argument i
  const uint32_t lo = __nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, __NV_E4M3);
  const uint32_t hi = __nv_cvt_float2_to_fp8x2(make_float2(c, d), __NV_SATFINITE, __NV_E4M3);
  return lo | (hi << 16);
}

__device__ __forceinline__ uint4 lds128(const uint8_t* p) { return *reinterpret_cast<const uint4*>(p); }

// The byte offset of 16-byte chunk c of row r in a swizzled shared-memory matrix with `stride` bytes per row
// (a multiple of 128).
__device__ __forceinline__ int swz(int r, int c, int stride) { return r * stride + ((c ^ ((r & 1) << 2)) << 4); }

// Quantizes x[t, 128·b .. 128·b + 128) for t < n and the CTA's K-blocks b in [b_begin, b_begin + kbr) into
// codes[t][128·(b - b_begin) ..] (swizzled) and sa[(b - b_begin)·8 + t]; sa of tokens n..7 is set to 0.
// Run by the 256 consumer threads. 16 threads per group, 8 consecutive elements each (one 16-byte load of x when
// p.vec_x); the group's amax by shuffles within the 16 lanes; fp8_group_scale and the e4m3 rounding as
// quantize_fp8_kernel.
__device__ __forceinline__ void quantize_range(const GemvV2Params& p, int b_begin, int kbr, uint8_t* codes, float* sa) {
  const int tid = threadIdx.x, warp = tid >> 5, sub = tid & 15, n = p.a.n, k = p.a.k;
  const int n_groups = n * kbr, stride = p.kbr_max * 128;
  for (int e = tid; e < p.kbr_max * 8; e += kConsumers)
    if ((e & 7) >= n) sa[e] = 0.f;
  for (int base = 0; base < n_groups; base += kQGroups * kQBatch) {
    uint4 raw[kQBatch];  // word i: bf16 elements 2i (low half) and 2i + 1 (high half)
#pragma unroll
    for (int u = 0; u < kQBatch; ++u) {
      const int gi = base + u * kQGroups + (tid >> 4);
      const int t = gi / kbr, bl = gi - t * kbr;
      const int64_t kk = static_cast<int64_t>(b_begin + bl) * 128 + sub * 8;
      raw[u] = make_uint4(0, 0, 0, 0);
      if (gi < n_groups && kk < k) {  // k % 16 == 0: the 8 elements are all inside or all outside
        const bf16_t* src = p.a.x + t * p.a.x_stride + kk;
        if (p.vec_x) {
          raw[u] = __ldg(reinterpret_cast<const uint4*>(src));
        } else {
          const unsigned short* s16 = reinterpret_cast<const unsigned short*>(src);
          uint32_t w[4];
#pragma unroll
          for (int i = 0; i < 4; ++i) w[i] = __ldg(s16 + 2 * i) | (static_cast<uint32_t>(__ldg(s16 + 2 * i + 1)) << 16);
          raw[u] = make_uint4(w[0], w[1], w[2], w[3]);
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kQBatch; ++u) {
      if (base + u * kQGroups + 2 * warp >= n_groups) break;  // the warp's two groups (warp-uniform) are past the end
      const int gi = base + u * kQGroups + (tid >> 4);
      float v[8];
      float amax = 0.f;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint32_t wd = i == 0 ? raw[u].x : i == 1 ? raw[u].y : i == 2 ? raw[u].z : raw[u].w;
        v[2 * i] = __uint_as_float(wd << 16);
        v[2 * i + 1] = __uint_as_float(wd & 0xffff0000u);
        amax = fmaxf(amax, fabsf(v[2 * i]));
        amax = fmaxf(amax, fabsf(v[2 * i + 1]));
      }
#pragma unroll
      for (int o = 8; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));  // 16-lane halves
      const float s = fp8_group_scale(amax, p.a.ue8m0);
      float y[8];
      if (s <= 0x1p126f) {  // always, unless the group holds an infinity (s = inf): then the plain division
        const float r = __frcp_rn(s);
#pragma unroll
        for (int i = 0; i < 8; ++i) y[i] = fp8_div_scale(v[i], s, r);
      } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) y[i] = __fdiv_rn(v[i], s);
      }
      if (gi < n_groups) {
        const int t = gi / kbr, bl = gi - t * kbr;
        const uint2 c = make_uint2(fp8_pack4(y[0], y[1], y[2], y[3]), fp8_pack4(y[4], y[5], y[6], y[7]));
        *reinterpret_cast<uint2*>(codes + swz(t, bl * 8 + (sub >> 1), stride) + 8 * (sub & 1)) = c;
        if (sub == 0) sa[bl * 8 + t] = s;
      }
    }
  }
}

// kRows: tile rows (16, 32); kStageKb: 128-K blocks per stage; kBulk: the copy engine (see the file comment).
template <int kRows, int kStageKb, bool kBulk>
__global__ void __launch_bounds__(kBulk ? kConsumers + 32 : kConsumers, 2)
    linear_fp8_gemv_v2_kernel(const __grid_constant__ GemvV2Params p) {
  constexpr int kRowGroups = kRows / 16;               // mma A tiles per tile
  constexpr int kKWarps = 8 / kRowGroups;              // warps sharing a row group, each taking whole K-blocks
  constexpr int kBlocksPerWarp = kStageKb / kKWarps;   // K-blocks of one warp per stage
  constexpr int kRowBytes = kStageKb * 128;            // one contiguous run per weight row and stage
  constexpr int kRowStride = kBulk ? kRowBytes + kBulkPad : kRowBytes;
  constexpr int kStageBytes = kRows * kRowStride;
  constexpr int kTileOut = 8 * kRows;                  // partial sums per tile: [8 tokens][R rows] fp32
  static_assert(kRows == 16 || kRows == 32, "tile rows");
  static_assert(kStageKb % kKWarps == 0 && kBlocksPerWarp >= 1, "whole K-blocks per warp");
  static_assert(kKWarps * kRows == 128 && 2 * kKWarps * kTileOut * 4 == kRedBytes, "red layout");
  static_assert(kRows * kStageKb * 8 % kConsumers == 0, "cp: whole 16-byte chunks per thread");
  extern __shared__ __align__(128) uint8_t smem[];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, q = lane & 3;
  const int S = p.split, n = p.a.n, m = p.a.m, k = p.a.k, n_ring = p.stages;
  const int cluster_id = static_cast<int>(blockIdx.x) / S, rank = static_cast<int>(blockIdx.x) % S;
  const int t_begin = static_cast<int>(static_cast<int64_t>(cluster_id) * p.tiles / p.clusters);
  const int t_end = static_cast<int>(static_cast<int64_t>(cluster_id + 1) * p.tiles / p.clusters);
  const int b_begin = rank * p.kb / S, b_end = (rank + 1) * p.kb / S, kbr = b_end - b_begin;
  const int n_chunks = (kbr + kStageKb - 1) / kStageKb;  // stages per tile
  const int n_stages = (t_end - t_begin) * n_chunks;
  const int srow0 = t_begin * kRows / 128;               // the CTA's first 128-row scale block
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + p.bar_off);  // [kMaxStages] (bulk)
  uint64_t* empty = full + kMaxStages;                             // [kMaxStages] (bulk)
  float* sws = reinterpret_cast<float*>(smem + p.sw_off);          // [srows_max][kbr_max]
  uint8_t* codes = smem + p.codes_off;
  float* sa = reinterpret_cast<float*>(smem + p.sa_off);
  float* red = reinterpret_cast<float*>(smem + p.red_off);
  float* part = reinterpret_cast<float*>(smem + p.part_off);
  const int code_stride = p.kbr_max * 128;

  // Stage i: tile t_begin + i / n_chunks, K-blocks b_begin + kStageKb·(i % n_chunks) .. (at most kStageKb, within
  // the range), in ring slot i % n_ring.
  auto stage_tile = [&](int i) { return t_begin + i / n_chunks; };
  auto stage_kb0 = [&](int i) { return b_begin + (i % n_chunks) * kStageKb; };
  // The consumer warps' barrier: all 256 threads (cp), or named barrier 1 without the producer warp (bulk).
  auto consumer_sync = [] {
    if constexpr (kBulk) asm volatile("bar.sync 1, %0;\n" ::"n"(kConsumers) : "memory");
    else __syncthreads();
  };

  // cp: thread tid copies chunks e = tid + 256u: row e / (8·kStageKb), chunk e % (8·kStageKb), so each warp reads
  // 512 contiguous bytes of one row. Always commits a group (empty past the end) to keep the wait_group count uniform.
  auto issue = [&](int i) {
    if (i < n_stages) {
      const int row0 = stage_tile(i) * kRows, kb0 = stage_kb0(i), nkb = min(kStageKb, b_end - kb0);
      uint8_t* st = smem + (i % n_ring) * kStageBytes;
#pragma unroll
      for (int u = 0; u < kRows * kStageKb * 8 / kConsumers; ++u) {
        const int e = tid + kConsumers * u, row = e / (kStageKb * 8), c = e % (kStageKb * 8);
        if ((c >> 3) >= nkb) continue;
        const int64_t kbyte = static_cast<int64_t>(kb0) * 128 + c * 16;
        const bool ok = row0 + row < m && kbyte < k;
        const uint8_t* src = ok ? p.a.w + static_cast<int64_t>(row0 + row) * k + kbyte : p.a.w;
        cp_async16(st + swz(row, c, kRowBytes), src, ok ? 16 : 0);
      }
    }
    cp_async_commit();
  };

  // Stores one of a tile's kTileOut sums: e = token · R + row.
  auto store = [&](int tile, int e, float v) {
    const int t = e / kRows, j = tile * kRows + e % kRows;
    if (t >= n || j >= m) return;
    void* dst = p.a.out;
    int64_t o = static_cast<int64_t>(t) * m + j;
    if (p.a.out2) {  // a stacked weight: columns [0, m1) to out [n, m1], the rest to out2 [n, m - m1]
      const int m1 = p.a.m1;
      o = j < m1 ? static_cast<int64_t>(t) * m1 + j : static_cast<int64_t>(t) * (m - m1) + (j - m1);
      if (j >= m1) dst = p.a.out2;
    }
    if (p.a.out_f32) static_cast<float*>(dst)[o] = v;
    else static_cast<bf16_t*>(dst)[o] = to_bf16(v);
  };

  if constexpr (kBulk) {
    if (tid == 0) {
      for (int s = 0; s < kMaxStages; ++s) {
        mbar_init(&full[s], 1);         // the producer's arrive.expect_tx; the bytes complete it
        mbar_init(&empty[s], kConsumers / 32);  // one arrival per consumer warp
      }
      asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
  }

  if (kBulk && warp == kConsumers / 32) {
    // ---- the producer warp (bulk): lane r copies row r of each stage once the slot's consumers have released it.
    if constexpr (kBulk) {
      for (int i = 0; i < n_stages; ++i) {
        const int slot = i % n_ring, round = i / n_ring;
        if (round > 0) mbar_wait(&empty[slot], (round - 1) & 1);  // the consumers' release of round - 1
        const int row0 = stage_tile(i) * kRows, kb0 = stage_kb0(i);
        const int rows = min(kRows, m - row0);                   // >= 1: tile < tiles
        const uint32_t run = static_cast<uint32_t>(min(kStageKb, b_end - kb0)) * 128;  // k % 128 == 0: whole blocks
        if (lane == 0) mbar_arrive_expect_tx(&full[slot], static_cast<uint32_t>(rows) * run);
        __syncwarp();
        if (lane < rows)
          bulk_copy(smem + slot * kStageBytes + lane * kRowStride,
                    p.a.w + static_cast<int64_t>(row0 + lane) * k + static_cast<int64_t>(kb0) * 128, run, &full[slot]);
      }
    }
  } else {
    // ---- the consumer warps
    if constexpr (!kBulk)
      for (int i = 0; i < n_ring - 1; ++i) issue(i);
    {  // the weight scales of the CTA's tiles and K range; 0 past the matrix
      const int n_srows = (m + 127) / 128;
      for (int e = tid; e < p.srows_max * p.kbr_max; e += kConsumers) {
        const int r = e / p.kbr_max, bl = e - r * p.kbr_max;
        sws[e] = srow0 + r < n_srows && bl < kbr ? __ldg(p.a.sw + static_cast<int64_t>(srow0 + r) * p.kb + b_begin + bl)
                                                 : 0.f;
      }
    }
    quantize_range(p, b_begin, kbr, codes, sa);
    if ((p.a.dbg_codes || p.a.dbg_scales) && cluster_id == 0) {  // tests: the codes and scales as the consumers see them
      consumer_sync();
      for (int e = tid; p.a.dbg_codes && e < n * kbr * 8; e += kConsumers) {
        const int t = e / (kbr * 8), c = e - t * kbr * 8;
        const int64_t kk = static_cast<int64_t>(b_begin) * 128 + c * 16;
        if (kk >= k) continue;
        const uint8_t* src = codes + swz(t, c, code_stride);
        for (int i = 0; i < 16; ++i) p.a.dbg_codes[t * static_cast<int64_t>(k) + kk + i] = src[i];
      }
      for (int e = tid; p.a.dbg_scales && e < n * kbr; e += kConsumers) {
        const int t = e / kbr, bl = e - t * kbr;
        p.a.dbg_scales[static_cast<int64_t>(b_begin + bl) * n + t] = sa[bl * 8 + t];
      }
    }
    if constexpr (kBulk) consumer_sync();  // codes, sa, sws written (cp: the loop-top __syncthreads does it)

    // Warp (kw = warp % kKWarps, rg = warp / kKWarps): K-blocks kw, kw + kKWarps, ... of each stage, weight rows
    // 16·rg + g and 16·rg + g + 8 as the mma's A rows g / g + 8, tokens as B's columns: acc[i] = row 16·rg + g +
    // 8·(i/2), token 2q + i%2.
    const int kw = warp % kKWarps, rg = warp / kKWarps;
    const int rlo = 16 * rg + g;   // rows rlo and rlo + 8 share g's parity
    const int wsx = (g & 1) << 2;
    const int tg = min(g, n - 1);  // B column g: token g; columns past n read token n-1 (their sums are not stored)
    const uint8_t* crow = codes + tg * code_stride;
    const int csx = (tg & 1) << 2;
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    for (int i = 0; i < n_stages; ++i) {
      const int slot = i % n_ring;
      if constexpr (kBulk) {
        mbar_wait(&full[slot], (i / n_ring) & 1);  // round i / n_ring of this slot has landed
      } else {
        cp_async_wait_dyn(n_ring - 2);  // this thread's copies of stage i have landed
        __syncthreads();                // everyone's have; stage i-1's slot is free; (i = 0) codes, sa, sws written
        issue(i + n_ring - 1);
      }
      const int chunk = i % n_chunks, tile = stage_tile(i);
      const float* swr = sws + ((tile * kRows + 16 * rg) / 128 - srow0) * p.kbr_max;  // 16 rows: one scale block
      const uint8_t* st = smem + slot * kStageBytes;
#pragma unroll
      for (int u = 0; u < kBlocksPerWarp; ++u) {
        const int kbi = kw + kKWarps * u, bl = chunk * kStageKb + kbi;  // bl: the K-block within the CTA's range
        if (bl < kbr) {
          uint4 wl[2], wh[2], cv[2];
#pragma unroll
          for (int j = 0; j < 2; ++j) {  // K bytes 64j + 16q .. + 16 of the block
            const int c = kbi * 8 + 4 * j + q;
            if constexpr (kBulk) {
              wl[j] = lds128(st + rlo * kRowStride + (c << 4));
              wh[j] = lds128(st + (rlo + 8) * kRowStride + (c << 4));
            } else {
              wl[j] = lds128(st + rlo * kRowStride + ((c ^ wsx) << 4));
              wh[j] = lds128(st + (rlo + 8) * kRowStride + ((c ^ wsx) << 4));
            }
            cv[j] = lds128(crow + (((bl * 8 + 4 * j + q) ^ csx) << 4));
          }
          float blk[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
          for (int j = 0; j < 2; ++j) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {  // bytes 8h .. 8h + 8 of the lane's 16: A slots a0/a2 (a1/a3), B b0/b1
              float d[4];
              mma_e4m3(d, word(wl[j], 2 * h), word(wh[j], 2 * h), word(wl[j], 2 * h + 1), word(wh[j], 2 * h + 1),
                       word(cv[j], 2 * h), word(cv[j], 2 * h + 1));
#pragma unroll
              for (int e = 0; e < 4; ++e) blk[e] += d[e];
            }
          }
          const float sw = swr[bl];
          const float s0 = sa[bl * 8 + 2 * q] * sw, s1 = sa[bl * 8 + 2 * q + 1] * sw;
          acc[0] += blk[0] * s0;
          acc[1] += blk[1] * s1;
          acc[2] += blk[2] * s0;
          acc[3] += blk[3] * s1;
        }
      }
      if constexpr (kBulk) {  // this warp is done with the slot (its reads are consumed by the mma above)
        __syncwarp();
        if (lane == 0) mbar_arrive(&empty[slot]);
      }
      if (chunk == n_chunks - 1) {  // the tile's last stage (CTA-uniform): add the K-warps in a fixed order
        const int lt = i / n_chunks;  // the tile's index within the CTA
        float* rb = red + (lt & 1) * kKWarps * kTileOut;  // [K-warp][token][row]
        float* r = rb + kw * kTileOut;
        r[(2 * q) * kRows + rlo] = acc[0];
        r[(2 * q + 1) * kRows + rlo] = acc[1];
        r[(2 * q) * kRows + rlo + 8] = acc[2];
        r[(2 * q + 1) * kRows + rlo + 8] = acc[3];
        acc[0] = acc[1] = acc[2] = acc[3] = 0.f;
        consumer_sync();
        // NOTE: this parity's buffer is next written at tile lt + 2's end, after every consumer has passed tile
        // lt + 1's barrier, i.e. finished the reads below.
        if (tid < kTileOut) {
          float v = rb[tid];
#pragma unroll
          for (int w = 1; w < kKWarps; ++w) v += rb[w * kTileOut + tid];
          if (S == 1) store(tile, tid, v);
          else part[lt * kTileOut + tid] = v;
        }
      }
    }
    if constexpr (!kBulk) cp_async_wait<0>();  // only empty groups remain; leave nothing in flight at exit
  }
  if (S > 1) {
    // The cluster's S CTAs hold partials of the same tiles over disjoint K ranges: rank r adds tiles r, r + S, ...
    // reading every rank's part in rank order. Every thread of every CTA (the producer warp too) takes both syncs;
    // the second keeps each CTA's shared memory alive until all remote reads are done.
    cg::cluster_group cluster = cg::this_cluster();
    cluster.sync();
    if (tid < kTileOut) {
      const float* remote[kMaxSplit];
#pragma unroll
      for (int r = 0; r < kMaxSplit; ++r) remote[r] = cluster.map_shared_rank(part, min(r, S - 1));  // valid ranks only
      for (int tl = rank; tl < t_end - t_begin; tl += S) {
        float pv[kMaxSplit];
#pragma unroll
        for (int r = 0; r < kMaxSplit; ++r) pv[r] = r < S ? remote[r][tl * kTileOut + tid] : 0.f;
        float v = pv[0];
#pragma unroll
        for (int r = 1; r < kMaxSplit; ++r)
          if (r < S) v += pv[r];
        store(t_begin + tl, tid, v);
      }
    }
    cluster.sync();
  }
}

// ---- host: the compiled variants, device limits, the plan, the launch ----

using KernelFn = void (*)(GemvV2Params);
struct Variant {
  int rows, stage_kb;
  bool bulk;
  KernelFn fn;
};
const Variant kVariants[] = {
    {32, 4, false, linear_fp8_gemv_v2_kernel<32, 4, false>},  {32, 8, false, linear_fp8_gemv_v2_kernel<32, 8, false>},
    {16, 8, false, linear_fp8_gemv_v2_kernel<16, 8, false>},  {16, 16, false, linear_fp8_gemv_v2_kernel<16, 16, false>},
    {32, 4, true, linear_fp8_gemv_v2_kernel<32, 4, true>},    {32, 8, true, linear_fp8_gemv_v2_kernel<32, 8, true>},
    {16, 8, true, linear_fp8_gemv_v2_kernel<16, 8, true>},    {16, 16, true, linear_fp8_gemv_v2_kernel<16, 16, true>},
};
constexpr int kNumVariants = sizeof(kVariants) / sizeof(kVariants[0]);

int variant_index(int rows, int stage_kb, bool bulk) {
  for (int v = 0; v < kNumVariants; ++v)
    if (kVariants[v].rows == rows && kVariants[v].stage_kb == stage_kb && kVariants[v].bulk == bulk) return v;
  return -1;
}
int threads_of(const Variant& v) { return v.bulk ? kConsumers + 32 : kConsumers; }
int stage_bytes_of(const Variant& v) { return v.rows * (v.stage_kb * 128 + (v.bulk ? kBulkPad : 0)); }

struct DeviceInfo {
  bool ready = false;
  int n_sms = 0;
  int smem[2] = {};                      // dynamic shared memory per CTA at 1 and 2 CTAs per SM
  int max_clusters[kNumVariants][2][4] = {};  // [variant][ctas_per_sm - 1][split 1, 2, 4, 8]; 0: not launchable
};

constexpr int kMaxDevices = 64;
std::mutex g_info_mutex;
DeviceInfo g_info[kMaxDevices];

int split_index(int s) { return s == 1 ? 0 : s == 2 ? 1 : s == 4 ? 2 : 3; }

const DeviceInfo& device_info() {
  static const DeviceInfo kNone{};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kMaxDevices) {
    (void)cudaGetLastError();
    return kNone;
  }
  std::lock_guard<std::mutex> lock(g_info_mutex);
  DeviceInfo& d = g_info[dev];
  if (d.ready) return d;
  int optin = 0, per_sm = 0, reserved = 0;
  if (cudaDeviceGetAttribute(&d.n_sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&reserved, cudaDevAttrReservedSharedMemoryPerBlock, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    d.ready = true;  // nothing launchable: every call falls back
    return d;
  }
  d.smem[0] = std::min(optin, 227 * 1024);
  d.smem[1] = std::min(d.smem[0], (per_sm / 2 - reserved) / 128 * 128);
  for (int v = 0; v < kNumVariants; ++v) {
    if (cudaFuncSetAttribute(kVariants[v].fn, cudaFuncAttributeMaxDynamicSharedMemorySize, d.smem[0]) != cudaSuccess)
      continue;  // this variant stays unlaunchable (max_clusters 0)
    for (int c = 0; c < 2; ++c) {
      for (int si = 0; si < 4; ++si) {
        const unsigned s = 1u << si;
        cudaLaunchConfig_t cfg = {};
        cudaLaunchAttribute attr[1];
        attr[0].id = cudaLaunchAttributeClusterDimension;
        attr[0].val.clusterDim.x = s;
        attr[0].val.clusterDim.y = 1;
        attr[0].val.clusterDim.z = 1;
        cfg.gridDim = dim3(s * static_cast<unsigned>(d.n_sms) * 2);
        cfg.blockDim = dim3(static_cast<unsigned>(threads_of(kVariants[v])));
        cfg.dynamicSmemBytes = static_cast<size_t>(d.smem[c]);
        cfg.attrs = attr;
        cfg.numAttrs = 1;
        int n_clusters = 0;
        if (cudaOccupancyMaxActiveClusters(&n_clusters, kVariants[v].fn, &cfg) != cudaSuccess) n_clusters = 0;
        d.max_clusters[v][c][si] = n_clusters;
      }
    }
  }
  (void)cudaGetLastError();
  d.ready = true;
  return d;
}

struct Plan {
  int variant = -1, ctas_per_sm = 1, stages = 0;
  int split = 0, clusters = 0, tiles = 0, kb = 0, kbr_max = 0, tpc_max = 0, srows_max = 0;
  int bar_off = 0, sw_off = 0, codes_off = 0, sa_off = 0, red_off = 0, part_off = 0, smem_used = 0;
};

int align128(int v) { return (v + 127) / 128 * 128; }

// The layout of configuration c (geometry and copy engine resolved to a compiled variant) at split S, or false when
// it does not fit the device.
bool plan_for(int n, int m, int k, const GemvV2Config& c, int S, const DeviceInfo& d, Plan* out) {
  const int v = variant_index(c.tile_rows, c.stage_kb, c.bulk);
  if (v < 0 || c.stages < 2 || c.stages > kMaxStages || (c.ctas_per_sm != 1 && c.ctas_per_sm != 2)) return false;
  if (c.bulk && k % 128 != 0) return false;  // bulk rows are whole 128-K blocks (no zero fill)
  Plan pl;
  pl.variant = v;
  pl.ctas_per_sm = c.ctas_per_sm;
  pl.stages = c.stages;
  pl.kb = (k + 127) / 128;
  pl.tiles = (m + c.tile_rows - 1) / c.tile_rows;
  const int max_clusters = d.max_clusters[v][c.ctas_per_sm - 1][split_index(S)];
  if (S > pl.kb || max_clusters <= 0) return false;
  pl.split = S;
  pl.clusters = std::min(max_clusters, pl.tiles);
  pl.kbr_max = (pl.kb + S - 1) / S;
  pl.tpc_max = (pl.tiles + pl.clusters - 1) / pl.clusters;
  pl.srows_max = (pl.tpc_max * c.tile_rows + 127) / 128 + 1;
  pl.bar_off = align128(c.stages * stage_bytes_of(kVariants[v]));
  pl.sw_off = pl.bar_off + 2 * kMaxStages * 8;  // 128: stays 128-aligned
  pl.codes_off = pl.sw_off + align128(pl.srows_max * pl.kbr_max * 4);
  pl.sa_off = pl.codes_off + n * pl.kbr_max * 128;
  pl.red_off = pl.sa_off + align128(pl.kbr_max * 8 * 4);
  pl.part_off = pl.red_off + kRedBytes;
  pl.smem_used = pl.part_off + (S > 1 ? pl.tpc_max * 8 * c.tile_rows * 4 : 0);
  if (pl.smem_used > d.smem[c.ctas_per_sm - 1]) return false;
  *out = pl;
  return true;
}

// Estimated time (ns) of a plan: the busiest CTA's weight bytes at its bandwidth share (HBM 4.54 TB/s split over the
// CTAs, at most twice an SM's fair share when fewer CTAs than SMs run, an SM's port shared by its CTAs), plus the
// quantization that the first stages' latency does not hide (~20 elements/ns per CTA, ~1 µs hidden), plus ~0.5 µs
// for a cluster's reduction. First guesses; test_ops --perf -o gemv2_sweep prints every split against them.
double plan_cost(int n, int rows, const Plan& pl, const DeviceInfo& d) {
  constexpr double kHbmBytesPerNs = 4540, kQuantPerNs = 20, kQuantHiddenNs = 1000, kReduceNs = 500;
  const int ctas = pl.clusters * pl.split;
  const double bytes = static_cast<double>(pl.tpc_max) * rows * pl.kbr_max * 128;
  const double bw = std::min(kHbmBytesPerNs / ctas, 2 * kHbmBytesPerNs / (d.n_sms * pl.ctas_per_sm));
  const double quant = std::max(0.0, static_cast<double>(n) * pl.kbr_max * 128 / kQuantPerNs - kQuantHiddenNs);
  return bytes / bw + quant + (pl.split > 1 ? kReduceNs : 0);
}

// c resolved (tile_rows != 0) at split S (0: the cost model's choice among 1, 2, 4, 8).
bool choose_plan(int n, int m, int k, const GemvV2Config& c, int S, const DeviceInfo& d, Plan* out) {
  if (S) return plan_for(n, m, k, c, S, d, out);
  bool found = false;
  double best = 0;
  for (int s = 1; s <= kMaxSplit; s *= 2) {
    Plan pl;
    if (!plan_for(n, m, k, c, s, d, &pl)) continue;
    const double cost = plan_cost(n, c.tile_rows, pl, d);
    if (!found || cost < best) found = true, best = cost, *out = pl;
  }
  return found;
}

bool shape_ok(int n, int m, int k) { return n >= 1 && n <= kGemvV2MaxTokens && m >= 1 && k >= 16 && k % 16 == 0; }

// What runs for (cfg, forced split): cfg at its split; a bulk cfg with k % 128 != 0 as its cp twin; then (split not
// forced) cfg at the cost model's split; then the shape's default configuration. *used gets the configuration.
bool resolve(int n, int m, int k, const GemvV2Config& cfg_in, int forced_split, const DeviceInfo& d, Plan* pl,
             GemvV2Config* used) {
  GemvV2Config c = cfg_in.tile_rows == 0 ? gemv_v2_default_config(m, k) : cfg_in;
  if (c.bulk && k % 128 != 0) c.bulk = false;
  const int S = forced_split ? forced_split : c.split;
  auto take = [&](GemvV2Config cc, int s) {
    if (!choose_plan(n, m, k, cc, s, d, pl)) return false;
    cc.split = pl->split;
    *used = cc;
    return true;
  };
  if (take(c, S)) return true;
  if (forced_split) return false;
  if (S && take(c, 0)) return true;
  GemvV2Config def = gemv_v2_default_config(m, k);
  if (def.bulk && k % 128 != 0) def.bulk = false;
  if (def == c) return false;  // tried above
  return take(def, def.split) || (def.split != 0 && take(def, 0));
}

bool split_ok(int s) { return s == 0 || s == 1 || s == 2 || s == 4 || s == 8; }

}  // namespace

void prepare_linear_fp8_gemv_v2() { (void)device_info(); }

GemvV2Config linear_fp8_gemv_v2_plan(int n, int m, int k, const GemvV2Config& cfg, int split) {
  Plan pl;
  GemvV2Config used;
  if (!shape_ok(n, m, k) || !split_ok(split) || !resolve(n, m, k, cfg, split, device_info(), &pl, &used))
    return GemvV2Config{};
  return used;
}

int linear_fp8_gemv_v2_split(int n, int m, int k, const GemvV2Config& cfg) {
  return linear_fp8_gemv_v2_plan(n, m, k, cfg).split;
}

bool launch_linear_fp8_gemv_v2(const LinearFp8GemvV2Args& a, cudaStream_t s) {
  if (!shape_ok(a.n, a.m, a.k) || !split_ok(a.split)) return false;
  if (reinterpret_cast<uintptr_t>(a.w) % 16 != 0 || reinterpret_cast<uintptr_t>(a.x) % 2 != 0) return false;
  if (a.x_stride < a.k || reinterpret_cast<uintptr_t>(a.sw) % 4 != 0) return false;
  if (a.out2 && (a.m1 <= 0 || a.m1 >= a.m)) return false;
  const DeviceInfo& d = device_info();
  Plan pl;
  GemvV2Config used;
  if (!resolve(a.n, a.m, a.k, a.cfg, a.split, d, &pl, &used)) return false;
  GemvV2Params p{a,          pl.kb,        pl.tiles,    pl.clusters, pl.split,   pl.kbr_max, pl.stages,
                 pl.srows_max, false,      pl.bar_off,  pl.sw_off,   pl.codes_off, pl.sa_off, pl.red_off,
                 pl.part_off};
  p.vec_x = reinterpret_cast<uintptr_t>(a.x) % 16 == 0 && a.x_stride % 8 == 0;
  const Variant& v = kVariants[pl.variant];
  cudaLaunchConfig_t cfg = {};
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = static_cast<unsigned>(pl.split);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.gridDim = dim3(static_cast<unsigned>(pl.clusters * pl.split));
  cfg.blockDim = dim3(static_cast<unsigned>(threads_of(v)));
  // All of the per-CTA share, always: ctas_per_sm CTAs per SM, as max_clusters assumed.
  cfg.dynamicSmemBytes = static_cast<size_t>(d.smem[pl.ctas_per_sm - 1]);
  cfg.stream = s;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  // A launch error stays the runtime's last error, which the caller's launched() reports.
  (void)cudaLaunchKernelEx(&cfg, v.fn, p);
  return true;
}

}  // namespace dsv3::cuda
