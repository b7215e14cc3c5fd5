// gemv_fp8_v2.cu: the decode FP8 GEMV for 1..8 tokens with the activation quantization fused in (backend/cuda),
// selected by DSV3_GEMV=v2. out[t, j] = Σ_b (Σ_{i∈b} a[t,i]·w[j,i]) · sa[b,t] · sw[j/128, b], a = the e4m3 codes of
// x in 1x128 groups (model-spec §5.3-5.4). Why: the v1 path (quantize kernel + gemv_fp8.cu) reaches 50-60% of the
// H200's 4.54 TB/s on the big projections and 20-28% on the 15 MB expert shapes: each lane has only its own 16-byte
// register loads in flight, blocks live ~4 iterations, and every GEMV waits for a separate quantize launch. Target:
// >= 85% of HBM on o_proj / dense gate_up / dense down (floors 26-29 µs; v1 43-54 µs), ~5 µs instead of 11-16 on the
// 15 MB expert shapes, and one launch instead of two per linear (~24 per decode step).
// Parallelisation: a persistent grid of clusters, 1 CTA of 256 threads per SM (all the shared memory it can get).
//   Cluster c owns a contiguous range of 32-row weight tiles; its S CTAs (S = cluster size, 1/2/4/8, chosen per
//   shape by a cost model in the launcher) split K into S contiguous ranges of 128-blocks. A CTA first issues its
//   first kStages-1 pipeline stages, then quantizes x[:, its K range] into shared memory (16 threads per 128-group,
//   the exact arithmetic of launch_quantize_fp8), then streams its tiles: a stage is 32 rows x 4 K-blocks (16 KB,
//   one 512-byte run per row) plus the 4 weight scales, copied with cp.async (16-byte, zero-filled past m and k);
//   5 stages = 64 KB in flight per SM while one is consumed. Warp w takes K-block w%4 of the stage for rows
//   16·(w/4) .. +16 and multiplies on the tensor cores with mma.m16n8k32 e4m3: weights as the A operand (16 rows),
//   codes as B (8 token columns), so no mma row is wasted at n <= 8. At a tile's end the 4 K-warps' sums meet in
//   shared memory (fixed order); with S = 1 the CTA writes the outputs, else it keeps the tile's partial and, after
//   its last tile, the cluster adds its S partials through distributed shared memory (rank order, deterministic).
//   No cross-cluster communication, no spinning, no global scratch: graph-capturable, safe next to other kernels.
// Shared-memory reads are conflict-free: a 16-byte chunk c of row r sits at chunk c ^ 4·(r & 1) (weights and codes),
//   so the 8 lanes of each quarter-warp phase (rows g, g+1 x chunks q) hit 8 distinct 16-byte bank groups.
// Precision: codes and scales bitwise equal to launch_quantize_fp8 (the division x/s as a correctly rounded
//   reciprocal plus one fma correction step: equal codes for every bf16 x and every group scale, checked exhaustively
//   by dev/kernels/gemv_v2_quant_check.cpp); products as gemv_fp8.cu (each 32-wide mma from zero, the four of a
//   128-block added in fp32, scaled by sa·sw in fp32); the sums over K-blocks run in another order than v1's
//   (per warp, then 4 warps, then S ranks): tolerance kTolGemmFp8, as v1.
// Reference: CpuBackend::linear (FP8); tests/ops cases linear(... path=gemv2) and linear_gemv2(...) (every split,
//   the fused codes bitwise); dev/kernels/gemv_v2_emu.py emulates this kernel's indexing in numpy.
#include <cooperative_groups.h>

#include <algorithm>
#include <mutex>

#include "dsv3/backend/cuda/fp8.cuh"

namespace dsv3::cuda {
namespace {

namespace cg = cooperative_groups;

constexpr int kThreads = 256;                          // 8 warps: 4 K-blocks x 2 row halves of a stage
constexpr int kTileRows = 32;                          // weight rows per tile (two mma A tiles of 16); 128 % 32 == 0
constexpr int kStageKb = 4;                            // 128-K blocks per stage
constexpr int kStageRowBytes = kStageKb * 128;         // 512: one contiguous run per weight row and stage
constexpr int kStageBytes = kTileRows * kStageRowBytes;  // 16 KB of weight per stage
constexpr int kStages = 5;                             // 4 stages (64 KB) in flight while one is consumed
constexpr int kTileOut = 8 * kTileRows;                // 256 partial sums per tile: [8 tokens][32 rows] fp32
constexpr int kQGroups = kThreads / 16;                // 128-groups quantized per pass (16 threads x 8 elements each)
constexpr int kQBatch = 8;                             // passes whose x loads are in flight together
constexpr int kMaxSplit = 8;                           // portable cluster size limit

// Shared memory (dynamic, one layout per launch): [kStages][32][512] weights | [kStages][4] weight scales (128 B) |
// codes [n][kbr_max·128] | sa [kbr_max][8] | red [4 K-warps][8 tokens][32 rows] | part [tpc_max][8][32] (S > 1).
struct GemvV2Params {
  LinearFp8GemvV2Args a;
  int kb;         // ceil(k / 128)
  int tiles;      // ceil(m / 32)
  int clusters;   // grid = clusters x split CTAs
  int split;      // CTAs per cluster = K ranges
  int kbr_max;    // the most K-blocks of one CTA's range: ceil(kb / split)
  int sw_off, codes_off, sa_off, red_off, part_off;  // byte offsets into shared memory
};

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// 16 bytes global -> shared, bypassing L1; src_bytes = 0 writes 16 zeros without reading (rows past m, K past k).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async4(void* dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(smem_addr(dst)), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
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
// 16 threads per group, 8 consecutive elements each (one 16-byte load of x when kVecX); the group's amax by
// shuffles within the 16 lanes; fp8_group_scale and the e4m3 rounding as quantize_fp8_kernel.
template <bool kVecX>
__device__ __forceinline__ void quantize_range(const GemvV2Params& p, int b_begin, int kbr, uint8_t* codes, float* sa) {
  const int tid = threadIdx.x, warp = tid >> 5, sub = tid & 15, n = p.a.n, k = p.a.k;
  const int n_groups = n * kbr, stride = p.kbr_max * 128;
  for (int e = tid; e < p.kbr_max * 8; e += kThreads)
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
        if constexpr (kVecX) {
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

template <bool kVecX>
__global__ void __launch_bounds__(kThreads, 1) linear_fp8_gemv_v2_kernel(const __grid_constant__ GemvV2Params p) {
  extern __shared__ __align__(128) uint8_t smem[];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, q = lane & 3;
  const int S = p.split, n = p.a.n, m = p.a.m, k = p.a.k;
  const int cluster_id = static_cast<int>(blockIdx.x) / S, rank = static_cast<int>(blockIdx.x) % S;
  const int t_begin = static_cast<int>(static_cast<int64_t>(cluster_id) * p.tiles / p.clusters);
  const int t_end = static_cast<int>(static_cast<int64_t>(cluster_id + 1) * p.tiles / p.clusters);
  const int b_begin = rank * p.kb / S, b_end = (rank + 1) * p.kb / S, kbr = b_end - b_begin;
  const int n_chunks = (kbr + kStageKb - 1) / kStageKb;  // stages per tile
  const int n_stages = (t_end - t_begin) * n_chunks;
  float* sw_s = reinterpret_cast<float*>(smem + p.sw_off);  // [kStages][4]
  uint8_t* codes = smem + p.codes_off;
  float* sa = reinterpret_cast<float*>(smem + p.sa_off);
  float* red = reinterpret_cast<float*>(smem + p.red_off);
  float* part = reinterpret_cast<float*>(smem + p.part_off);
  const int code_stride = p.kbr_max * 128;

  // Stage i: tile t_begin + i / n_chunks, K-blocks b_begin + 4·(i % n_chunks) .. (at most 4, within the range).
  // Thread tid copies chunks tid + 256u (u < 4): row (tid >> 5) + 8u, chunk tid & 31, so each warp reads one
  // 512-byte run of a row. Always commits a group (empty past the end) to keep the wait_group count uniform.
  auto issue = [&](int i) {
    if (i < n_stages) {
      const int tile = t_begin + i / n_chunks, kb0 = b_begin + (i % n_chunks) * kStageKb;
      const int row0 = tile * kTileRows, nkb = min(kStageKb, b_end - kb0);
      uint8_t* st = smem + (i % kStages) * kStageBytes;
#pragma unroll
      for (int u = 0; u < kTileRows * 32 / kThreads; ++u) {
        const int row = (tid >> 5) + 8 * u, c = tid & 31;
        if ((c >> 3) >= nkb) continue;
        const int64_t kbyte = static_cast<int64_t>(kb0) * 128 + c * 16;
        const bool ok = row0 + row < m && kbyte < k;
        const uint8_t* src = ok ? p.a.w + static_cast<int64_t>(row0 + row) * k + kbyte : p.a.w;
        cp_async16(st + swz(row, c, kStageRowBytes), src, ok ? 16 : 0);
      }
      if (tid < nkb)
        cp_async4(sw_s + (i % kStages) * kStageKb + tid, p.a.sw + static_cast<int64_t>(row0 / 128) * p.kb + kb0 + tid);
    }
    cp_async_commit();
  };

  // Stores the tile's 256 sums: thread tid holds token tid >> 5, row tid & 31.
  auto store = [&](int tile, float v) {
    const int t = tid >> 5, j = tile * kTileRows + (tid & 31);
    if (t >= n || j >= m) return;
    const int64_t o = static_cast<int64_t>(t) * m + j;
    if (p.a.out_f32) static_cast<float*>(p.a.out)[o] = v;
    else static_cast<bf16_t*>(p.a.out)[o] = to_bf16(v);
  };

  for (int i = 0; i < kStages - 1; ++i) issue(i);
  quantize_range<kVecX>(p, b_begin, kbr, codes, sa);
  if ((p.a.dbg_codes || p.a.dbg_scales) && cluster_id == 0) {  // tests: the codes and scales as the consumers see them
    __syncthreads();
    for (int e = tid; p.a.dbg_codes && e < n * kbr * 8; e += kThreads) {
      const int t = e / (kbr * 8), c = e - t * kbr * 8;
      const int64_t kk = static_cast<int64_t>(b_begin) * 128 + c * 16;
      if (kk >= k) continue;
      const uint8_t* src = codes + swz(t, c, code_stride);
      for (int i = 0; i < 16; ++i) p.a.dbg_codes[t * static_cast<int64_t>(k) + kk + i] = src[i];
    }
    for (int e = tid; p.a.dbg_scales && e < n * kbr; e += kThreads) {
      const int t = e / kbr, bl = e - t * kbr;
      p.a.dbg_scales[static_cast<int64_t>(b_begin + bl) * n + t] = sa[bl * 8 + t];
    }
  }

  // Warp (kbi = warp & 3, rh = warp >> 2): K-block kbi of each stage, weight rows 16·rh + g and 16·rh + g + 8 as the
  // mma's A rows g / g + 8, tokens as B's columns: acc[i] = row 16·rh + g + 8·(i/2), token 2q + i%2.
  const int kbi = warp & 3, rh = warp >> 2;
  const int wsx = (g & 1) << 2;  // rows 16rh + g and + 8 share g's parity
  const int tg = min(g, n - 1);  // B column g: token g; columns past n read token n-1 (their sums are not stored)
  const uint8_t* crow = codes + tg * code_stride;
  const int csx = (tg & 1) << 2;
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  for (int i = 0; i < n_stages; ++i) {
    cp_async_wait<kStages - 2>();  // this thread's copies of stage i have landed
    __syncthreads();               // everyone's have; stage i-1's buffer is free; (i = 0) the codes are written
    issue(i + kStages - 1);
    const int chunk = i % n_chunks, bl = chunk * kStageKb + kbi;  // bl: the K-block within the CTA's range
    if (bl < kbr) {
      const uint8_t* st = smem + (i % kStages) * kStageBytes + (16 * rh + g) * kStageRowBytes;
      uint4 wl[2], wh[2], cv[2];
#pragma unroll
      for (int j = 0; j < 2; ++j) {  // K bytes 64j + 16q .. + 16 of the block
        const int c = kbi * 8 + 4 * j + q;
        wl[j] = lds128(st + ((c ^ wsx) << 4));
        wh[j] = lds128(st + 8 * kStageRowBytes + ((c ^ wsx) << 4));
        cv[j] = lds128(crow + (((bl * 8 + 4 * j + q) ^ csx) << 4));
      }
      float blk[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int j = 0; j < 2; ++j) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {  // bytes 8h .. 8h + 8 of the lane's 16: A slots a0/a2 (a1/a3), B slots b0/b1
          float d[4];
          mma_e4m3(d, word(wl[j], 2 * h), word(wh[j], 2 * h), word(wl[j], 2 * h + 1), word(wh[j], 2 * h + 1),
                   word(cv[j], 2 * h), word(cv[j], 2 * h + 1));
#pragma unroll
          for (int e = 0; e < 4; ++e) blk[e] += d[e];
        }
      }
      const float sw = sw_s[(i % kStages) * kStageKb + kbi];
      const float s0 = sa[bl * 8 + 2 * q] * sw, s1 = sa[bl * 8 + 2 * q + 1] * sw;
      acc[0] += blk[0] * s0;
      acc[1] += blk[1] * s1;
      acc[2] += blk[2] * s0;
      acc[3] += blk[3] * s1;
    }
    if (chunk == n_chunks - 1) {  // the tile's last stage (CTA-uniform): add the 4 K-warps in a fixed order
      const int tile = t_begin + i / n_chunks, row = 16 * rh + g;
      float* r = red + kbi * kTileOut;  // [token][row]
      r[(2 * q) * kTileRows + row] = acc[0];
      r[(2 * q + 1) * kTileRows + row] = acc[1];
      r[(2 * q) * kTileRows + row + 8] = acc[2];
      r[(2 * q + 1) * kTileRows + row + 8] = acc[3];
      acc[0] = acc[1] = acc[2] = acc[3] = 0.f;
      __syncthreads();
      // NOTE: red is next written at the next tile's end, after at least one more loop-top __syncthreads.
      const float v = ((red[tid] + red[kTileOut + tid]) + red[2 * kTileOut + tid]) + red[3 * kTileOut + tid];
      if (S == 1) store(tile, v);
      else part[(tile - t_begin) * kTileOut + tid] = v;
    }
  }
  cp_async_wait<0>();  // only empty groups remain; leave nothing in flight at exit
  if (S > 1) {
    // The cluster's S CTAs hold partials of the same tiles over disjoint K ranges: rank r adds tiles r, r + S, ...
    // reading every rank's part in rank order. The second sync keeps each CTA's shared memory alive until all
    // remote reads are done.
    cg::cluster_group cluster = cg::this_cluster();
    cluster.sync();
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
      store(t_begin + tl, v);
    }
    cluster.sync();
  }
}

// ---- host: device limits, the split choice, the launch ----

struct DeviceInfo {
  bool ready = false;
  int n_sms = 0;
  int smem = 0;                   // dynamic shared memory requested by every launch (1 CTA per SM)
  int max_clusters[4] = {};       // of 1, 2, 4, 8 CTAs at that shared memory; 0: not launchable
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
  int optin = 0;
  if (cudaDeviceGetAttribute(&d.n_sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    d.ready = true;  // nothing launchable: every call falls back
    return d;
  }
  d.smem = std::min(optin, 227 * 1024);
  bool ok = cudaFuncSetAttribute(linear_fp8_gemv_v2_kernel<true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 d.smem) == cudaSuccess &&
            cudaFuncSetAttribute(linear_fp8_gemv_v2_kernel<false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 d.smem) == cudaSuccess;
  for (int si = 0; si < 4 && ok; ++si) {
    const unsigned s = 1u << si;
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = s;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.gridDim = dim3(s * static_cast<unsigned>(d.n_sms));
    cfg.blockDim = dim3(kThreads);
    cfg.dynamicSmemBytes = static_cast<size_t>(d.smem);
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    int c = 0;
    if (cudaOccupancyMaxActiveClusters(&c, linear_fp8_gemv_v2_kernel<true>, &cfg) != cudaSuccess) c = 0;
    d.max_clusters[si] = c;
  }
  (void)cudaGetLastError();
  d.ready = true;
  return d;
}

struct Plan {
  int split = 0, clusters = 0, tiles = 0, kb = 0, kbr_max = 0, tpc_max = 0;
  int sw_off = 0, codes_off = 0, sa_off = 0, red_off = 0, part_off = 0, smem_used = 0;
};

int align128(int v) { return (v + 127) / 128 * 128; }

// The layout for split S, or false when it does not fit the device.
bool plan_for(int n, int m, int k, int S, const DeviceInfo& d, Plan* out) {
  Plan pl;
  pl.kb = (k + 127) / 128;
  pl.tiles = (m + kTileRows - 1) / kTileRows;
  if (S > pl.kb || d.max_clusters[split_index(S)] <= 0) return false;
  pl.split = S;
  pl.clusters = std::min(d.max_clusters[split_index(S)], pl.tiles);
  pl.kbr_max = (pl.kb + S - 1) / S;
  pl.tpc_max = (pl.tiles + pl.clusters - 1) / pl.clusters;
  pl.sw_off = kStages * kStageBytes;
  pl.codes_off = pl.sw_off + align128(kStages * kStageKb * 4);
  pl.sa_off = pl.codes_off + n * pl.kbr_max * 128;
  pl.red_off = pl.sa_off + align128(pl.kbr_max * 8 * 4);
  pl.part_off = pl.red_off + kStageKb * kTileOut * 4;
  pl.smem_used = pl.part_off + (S > 1 ? pl.tpc_max * kTileOut * 4 : 0);
  if (pl.smem_used > d.smem) return false;
  *out = pl;
  return true;
}

// Estimated time (ns) of a plan: the busiest CTA's weight bytes at its bandwidth share (HBM 4.54 TB/s split over the
// CTAs, at most twice an SM's fair share when fewer CTAs than SMs run), plus the quantization that the first
// stages' latency does not hide (~20 elements/ns per CTA, ~1 µs hidden), plus ~0.5 µs for a cluster's reduction.
// First guesses, to be tuned with test_ops --perf -o linear (its split sweep prints every split).
double plan_cost(int n, const Plan& pl, const DeviceInfo& d) {
  constexpr double kHbmBytesPerNs = 4540, kQuantPerNs = 20, kQuantHiddenNs = 1000, kReduceNs = 500;
  const int ctas = pl.clusters * pl.split;
  const double bytes = static_cast<double>(pl.tpc_max) * kTileRows * pl.kbr_max * 128;
  const double bw = std::min(kHbmBytesPerNs / ctas, 2 * kHbmBytesPerNs / d.n_sms);
  const double quant = std::max(0.0, static_cast<double>(n) * pl.kbr_max * 128 / kQuantPerNs - kQuantHiddenNs);
  return bytes / bw + quant + (pl.split > 1 ? kReduceNs : 0);
}

bool choose_plan(int n, int m, int k, int force_split, const DeviceInfo& d, Plan* out) {
  if (force_split) return plan_for(n, m, k, force_split, d, out);
  bool found = false;
  double best = 0;
  for (int S = 1; S <= kMaxSplit; S *= 2) {
    Plan pl;
    if (!plan_for(n, m, k, S, d, &pl)) continue;
    const double c = plan_cost(n, pl, d);
    if (!found || c < best) found = true, best = c, *out = pl;
  }
  return found;
}

bool shape_ok(int n, int m, int k) { return n >= 1 && n <= kGemvV2MaxTokens && m >= 1 && k >= 16 && k % 16 == 0; }

}  // namespace

void prepare_linear_fp8_gemv_v2() { (void)device_info(); }

int linear_fp8_gemv_v2_split(int n, int m, int k) {
  Plan pl;
  return shape_ok(n, m, k) && choose_plan(n, m, k, 0, device_info(), &pl) ? pl.split : 0;
}

bool launch_linear_fp8_gemv_v2(const LinearFp8GemvV2Args& a, cudaStream_t s) {
  if (!shape_ok(a.n, a.m, a.k)) return false;
  if (a.split != 0 && a.split != 1 && a.split != 2 && a.split != 4 && a.split != 8) return false;
  if (reinterpret_cast<uintptr_t>(a.w) % 16 != 0 || reinterpret_cast<uintptr_t>(a.x) % 2 != 0) return false;
  if (a.x_stride < a.k || reinterpret_cast<uintptr_t>(a.sw) % 4 != 0) return false;
  const DeviceInfo& d = device_info();
  Plan pl;
  if (!choose_plan(a.n, a.m, a.k, a.split, d, &pl)) return false;
  GemvV2Params p{a, pl.kb, pl.tiles, pl.clusters, pl.split, pl.kbr_max,
                 pl.sw_off, pl.codes_off, pl.sa_off, pl.red_off, pl.part_off};
  const bool vec_x = reinterpret_cast<uintptr_t>(a.x) % 16 == 0 && a.x_stride % 8 == 0;
  cudaLaunchConfig_t cfg = {};
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = static_cast<unsigned>(pl.split);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.gridDim = dim3(static_cast<unsigned>(pl.clusters * pl.split));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = static_cast<size_t>(d.smem);  // all of it, always: 1 CTA per SM, as max_clusters assumed
  cfg.stream = s;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  // A launch error stays the runtime's last error, which the caller's launched() reports.
  if (vec_x) (void)cudaLaunchKernelEx(&cfg, linear_fp8_gemv_v2_kernel<true>, p);
  else (void)cudaLaunchKernelEx(&cfg, linear_fp8_gemv_v2_kernel<false>, p);
  return true;
}

}  // namespace dsv3::cuda
