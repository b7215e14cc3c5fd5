// moe_decode.cu: decode-size routed experts with FP8 weights in two launches (backend/cuda). Why: at 1..8 tokens the
// grouped path (moe_grouped.cu: route, quantize, gate/up, down, combine) has one block per SM or less in gate/up and
// five kernel boundaries, each a ramp-up and a tail with the HBM idle; here every SM streams weights from the first
// microsecond to the last.
// Parallelisation: prep: block 0 routes (n·top_k <= 128 entries, one thread each), blocks 1.. quantize x (a warp per
//   1x128 group). Main: a persistent grid (2 blocks of 256 threads per SM) takes items from an atomic queue in order:
//   all gate/up items, then all down items. A gate/up item (slot, 128-column tile of f, K range s of `split`): 8 warps
//   = {gate, up} x 4 groups of 32 rows, each over the whole K range; the partial sums go to global memory and the
//   last of the tile's `split` items adds them in order s = 0, 1, ..., then SwiGLU and h's 1x128 quantization (the
//   tile is one group), then counts the tile ready. A down item (slot, 64-row tile of d): waits until the expert's
//   f-tiles are all ready, 8 warps = 4 row groups of 16 x 2 K-halves (as moe_grouped.cu); the last item of a d-tile
//   (one per active slot) combines the tokens' outputs over that tile. Deadlock-free at any residency: items are
//   claimed in queue order and a block claims one item ahead only, so every gate/up item is held by a block that
//   never waits; only down items wait, and only for gate/up items.
// Precision: as moe_grouped.cu (gate and up each rounded to bf16, h = bf16(silu(g)·u), h quantized as
//   quantize_row_fp8, down rounded to bf16, the combine in fp32 in ascending expert id then k, as launch_moe_combine);
//   the K ranges are added in a fixed order, so results are deterministic run to run (not bitwise the CPU's: the
//   tensor cores sum a 128-K block in their own order).
// Reference: CpuBackend::moe_experts (model-spec §4.3); checked by tests/ops cases "moe_experts ... path=decode".
#include <mutex>

#include "dsv3/backend/cuda/fp8.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kThreads = 256, kWarps = kThreads / 32;
constexpr int kChunk = 16;             // activation rows per GEMV pass: the mma's M
constexpr int kGuCols = 128, kGuR = 4;  // gate/up: a tile of 128 columns of f = one 1x128 group of h; 32 rows per warp
constexpr int kDnR = 2, kDnRows = kWarps / 2 * 8 * kDnR;  // down: 64 rows of d per item, 16 per warp pair
constexpr int kQuantWarps = kWarps;    // prep: 1x128 groups of x per quantizing block
static_assert(kMoeDecodeMaxEntries <= kThreads, "the prep kernel routes one entry per thread");

struct SlotInfo {  // an active expert: its weights, rows [off, off + cnt) of the permuted buffers, its id
  MoeExpertPtrs w;
  int cnt, off, e, pad;
};

// Byte offsets into the work buffer, each region 256-byte aligned; computed identically on host and device.
struct Layout {
  int entries, slots, ftiles, dtiles, kbd, kbf, split;
  int n_ctr;                     // int32 counters zeroed by the prep kernel: queue, tile counts, ready, d-tile counts
  size_t ctr, info, n_active, tok_of, comb_row, comb_w, x_codes, x_scales, part, h_codes, h_scales, y, total;
};

__host__ __device__ inline size_t align256(size_t v) { return (v + 255) / 256 * 256; }

__host__ __device__ inline Layout make_layout(int n, int top_k, int n_experts, int d, int f, int split) {
  Layout L{};
  L.entries = n * top_k;
  L.slots = n_experts < L.entries ? n_experts : L.entries;
  L.ftiles = (f + kGuCols - 1) / kGuCols;
  L.dtiles = (d + kDnRows - 1) / kDnRows;
  L.kbd = (d + 127) / 128;
  L.kbf = (f + 127) / 128;
  L.split = split;
  L.n_ctr = 1 + L.slots * L.ftiles + L.slots + L.dtiles;
  const size_t ne = static_cast<size_t>(L.entries), nt = static_cast<size_t>(n);
  size_t o = 0;
  auto take = [&](size_t bytes) {
    const size_t at = o;
    o += align256(bytes);
    return at;
  };
  L.ctr = take(static_cast<size_t>(L.n_ctr) * 4);
  L.info = take(static_cast<size_t>(L.slots) * sizeof(SlotInfo));
  L.n_active = take(4);
  L.tok_of = take(ne * 4);
  L.comb_row = take(ne * 4);
  L.comb_w = take(ne * 4);
  L.x_codes = take(nt * d);
  L.x_scales = take(static_cast<size_t>(L.kbd) * nt * 4);
  L.part = take(static_cast<size_t>(split) * ne * 2 * f * 4);
  L.h_codes = take(ne * f);
  L.h_scales = take(static_cast<size_t>(L.kbf) * ne * 4);
  L.y = take(ne * d * 2);
  L.total = o;
  return L;
}

struct Params {
  MoeDecodeArgs a;
  Layout L;
};
static_assert(std::is_trivially_copyable_v<Params>);

template <typename T>
__device__ __forceinline__ T* at(const Params& p, size_t off) {
  return reinterpret_cast<T*>(static_cast<char*>(p.a.work) + off);
}

__device__ __forceinline__ int ld_acquire(const int* ptr) {
  int v;
  asm volatile("ld.acquire.gpu.global.b32 %0, [%1];" : "=r"(v) : "l"(ptr) : "memory");
  return v;
}

__device__ __forceinline__ float round_bf16(float v) { return __bfloat162float(to_bf16(v)); }

// ---- prep: routing (block 0), x quantization (blocks 1..) ----
//
// Routing, one thread per entry i = (t, k) with expert e = ids[i]; entries with a bad id take no row. With `less` =
// valid entries of experts below e and `rank` = earlier entries of e, entry i's permuted row is less + rank (expert
// by expert in id order, inside an expert in entry order: deterministic). The slot of e is the number of distinct
// experts below it (slots are the active experts in ascending id). The combine order of token t lists its entries
// by (expert id, k), the valid ones first: comb_row / comb_w [t, q].
__global__ void __launch_bounds__(kThreads) moe_decode_prep_kernel(const __grid_constant__ Params p) {
  const MoeDecodeArgs& a = p.a;
  const Layout& L = p.L;
  if (blockIdx.x > 0) {  // one warp per 1x128 group of x, as launch_quantize_fp8 (bitwise)
    const int job = (blockIdx.x - 1) * kQuantWarps + static_cast<int>(threadIdx.x >> 5);
    if (job >= a.n * L.kbd) return;
    const int t = job / L.kbd, g = job % L.kbd;
    const float s = fp8_quantize_group_warp(a.x + static_cast<int64_t>(t) * a.d,
                                            at<uint8_t>(p, L.x_codes) + static_cast<int64_t>(t) * a.d, g * 128,
                                            min(a.d, g * 128 + 128), a.ue8m0);
    if ((threadIdx.x & 31) == 0) at<float>(p, L.x_scales)[static_cast<int64_t>(g) * a.n + t] = s;
    return;
  }
  __shared__ int s_id[kMoeDecodeMaxEntries];     // expert id, -1 for a bad one
  __shared__ int s_first[kMoeDecodeMaxEntries];  // the entry is its expert's first
  const int tid = threadIdx.x, ne = L.entries;
  for (int c = tid; c < L.n_ctr; c += kThreads) at<int>(p, L.ctr)[c] = 0;
  const int e = tid < ne ? a.ids[tid] : -1;
  const bool bad = tid < ne && (e < 0 || e >= a.n_experts);
  if (bad) set_error(a.err, kErrExpertId);
  const bool valid = tid < ne && !bad;
  if (tid < ne) s_id[tid] = valid ? e : -1;
  __syncthreads();
  int less = 0, rank = 0, cnt = 0;
  if (valid)
    for (int j = 0; j < ne; ++j) {
      const int ej = s_id[j];
      if (ej < 0) continue;
      less += ej < e;
      cnt += ej == e;
      rank += ej == e && j < tid;
    }
  const bool first = valid && rank == 0;
  if (tid < ne) s_first[tid] = first;
  const int n_active = __syncthreads_count(first);  // also orders s_first before the reads below
  if (first) {
    int slot = 0;
    for (int j = 0; j < ne; ++j) slot += s_first[j] && s_id[j] < e;
    SlotInfo info;
    info.w = a.experts[e];
    info.cnt = cnt;
    info.off = less;
    info.e = e;
    info.pad = 0;
    at<SlotInfo>(p, L.info)[slot] = info;
  }
  if (tid == 0) *at<int>(p, L.n_active) = n_active;
  if (tid >= ne) return;
  const int row = less + rank;
  if (valid) at<int>(p, L.tok_of)[row] = tid / a.top_k;
  // The combine order inside token t = tid / top_k: valid entries by (id, k), then the bad ones (row -1) by k.
  const int t0 = tid / a.top_k * a.top_k, k = tid - t0;
  int q = 0, n_valid = 0;
  for (int kk = 0; kk < a.top_k; ++kk) {
    const int ek = s_id[t0 + kk];
    n_valid += ek >= 0;
    if (valid) q += ek >= 0 && (ek < e || (ek == e && kk < k));
    else q += ek < 0 && kk < k;
  }
  if (!valid) q += n_valid;
  at<int>(p, L.comb_row)[t0 + q] = valid ? row : -1;
  at<float>(p, L.comb_w)[t0 + q] = valid ? a.weights[tid] : 0.f;
}

// ---- main: the persistent kernel ----

// Gate/up item: slot y, tile j (columns j·128 .. +128 of f), K range s (K-blocks [s·kps, s·kps + kps) of d).
template <bool kVec>
__device__ __forceinline__ void gate_up_item(const Params& p, int y, int j, int s, int* s_flag) {
  const MoeDecodeArgs& a = p.a;
  const Layout& L = p.L;
  const SlotInfo& si = at<const SlotInfo>(p, L.info)[y];
  const int cnt = si.cnt, off = si.off;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int mat = warp >> 2, col0 = 32 * (warp & 3);  // mat 0: gate, 1: up
  const int n0 = j * kGuCols + col0;                    // the warp's first row of gate / up (a column of f)
  const uint8_t* w = mat ? si.w.up : si.w.gate;
  const float* swr = (mat ? si.w.up_sc : si.w.gate_sc) + static_cast<int64_t>(j) * L.kbd;  // 128-row block j
  const uint8_t* wrow[kGuR];
#pragma unroll
  for (int r = 0; r < kGuR; ++r)  // rows past f read row f-1; their columns are never stored
    wrow[r] = w + static_cast<int64_t>(min(n0 + 8 * r + g, a.f - 1)) * a.d;
  const int kps = (L.kbd + L.split - 1) / L.split, kb0 = s * kps, kb1 = min(L.kbd, kb0 + kps);
  const int* tok_of = at<const int>(p, L.tok_of);
  const uint8_t* x_codes = at<const uint8_t>(p, L.x_codes);
  const float* x_scales = at<const float>(p, L.x_scales);
  float* part = at<float>(p, L.part);
  for (int c0 = 0; c0 < cnt; c0 += kChunk) {
    const int rows = min(kChunk, cnt - c0);
    // Rows past the chunk read its last row (fp8_gemv_warp zeroes their scales; they are never stored).
    const int tlo = tok_of[off + c0 + min(g, rows - 1)], thi = tok_of[off + c0 + min(g + 8, rows - 1)];
    const uint8_t* alo = x_codes + static_cast<int64_t>(tlo) * a.d;
    const uint8_t* ahi = x_codes + static_cast<int64_t>(thi) * a.d;
    float acc[kGuR][4];
#pragma unroll
    for (int r = 0; r < kGuR; ++r) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = 0.f;
    if (n0 < a.f) {  // warp-uniform: a partial last tile has warps wholly past f
      if (rows > 8)
        fp8_gemv_warp<kGuR, kVec, true>(acc, wrow, swr, alo, ahi, x_scales + tlo, x_scales + thi, a.n, g < rows,
                                        g + 8 < rows, a.d, kb0, 1, kb1, a.prefetch);
      else
        fp8_gemv_warp<kGuR, kVec, false>(acc, wrow, swr, alo, ahi, x_scales + tlo, x_scales + thi, a.n, g < rows,
                                         false, a.d, kb0, 1, kb1, a.prefetch);
      // acc[r][i]: chunk row g + 8·(i/2), column n0 + 8r + 2q + i%2. part: [split][entries][2][f] fp32.
#pragma unroll
      for (int r = 0; r < kGuR; ++r)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int t = g + 8 * (i / 2), col = n0 + 8 * r + 2 * q + (i % 2);
          if (t < rows && col < a.f)
            part[((static_cast<int64_t>(s) * L.entries + off + c0 + t) * 2 + mat) * a.f + col] = acc[r][i];
        }
    }
  }
  // The tile's last K range to finish adds them all (CG grid-sync pattern: barrier, fence, atomic; fence, barrier).
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    const int done = atomicAdd(at<int>(p, L.ctr) + 1 + y * L.ftiles + j, 1);
    __threadfence();
    *s_flag = done == L.split - 1;
  }
  __syncthreads();
  if (!*s_flag) return;
  // Warp w: rows w, w + 8, ... of the expert; lane l: columns j·128 + l + 32·i. gate and up each summed over the K
  // ranges in order and rounded to bf16 (the linear's output), h = bf16(silu(g)·u), then the 1x128 group quantized
  // as launch_quantize_fp8 does.
  const int j0 = j * kGuCols;
  for (int r = warp; r < cnt; r += kWarps) {
    const int64_t row = off + r;
    float h[4], amax = 0.f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int col = j0 + lane + 32 * i;
      h[i] = 0.f;
      if (col < a.f) {
        float pg[kMoeDecodeMaxSplit], pu[kMoeDecodeMaxSplit];  // every load in flight before the ordered adds
#pragma unroll
        for (int ss = 0; ss < kMoeDecodeMaxSplit; ++ss) {
          const int64_t base = ((static_cast<int64_t>(ss) * L.entries + row) * 2) * a.f + col;
          pg[ss] = ss < L.split ? __ldcg(part + base) : 0.f;
          pu[ss] = ss < L.split ? __ldcg(part + base + a.f) : 0.f;
        }
        float gs = pg[0], us = pu[0];
#pragma unroll
        for (int ss = 1; ss < kMoeDecodeMaxSplit; ++ss)
          if (ss < L.split) gs = __fadd_rn(gs, pg[ss]), us = __fadd_rn(us, pu[ss]);
        h[i] = round_bf16(silu_mul_f32(round_bf16(gs), round_bf16(us)));
      }
      amax = fmaxf(amax, fabsf(h[i]));
    }
    amax = warp_max(amax);
    const float sc = fp8_group_scale(amax, a.ue8m0);
    if (lane == 0) at<float>(p, L.h_scales)[static_cast<int64_t>(j) * L.entries + row] = sc;
    uint8_t* hr = at<uint8_t>(p, L.h_codes) + row * a.f;
#pragma unroll
    for (int i = 0; i < 4; ++i)
      if (j0 + lane + 32 * i < a.f) hr[j0 + lane + 32 * i] = fp8_encode(h[i], sc);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(at<int>(p, L.ctr) + 1 + L.slots * L.ftiles + y, 1);  // one more f-tile of slot y is ready
  }
}

// Down item: slot y, tile i (rows i·64 .. +64 of down = columns of the output).
template <bool kVec>
__device__ __forceinline__ void down_item(const Params& p, int y, int i, int n_active, int* s_flag,
                                          float (*red)[kDnR * 4][32]) {
  const MoeDecodeArgs& a = p.a;
  const Layout& L = p.L;
  if (threadIdx.x == 0) {  // wait for every f-tile of the expert's h
    const int* ready = at<const int>(p, L.ctr) + 1 + L.slots * L.ftiles + y;
    while (ld_acquire(ready) < L.ftiles) __nanosleep(64);
    __threadfence();
  }
  __syncthreads();
  const SlotInfo& si = at<const SlotInfo>(p, L.info)[y];
  const int cnt = si.cnt, off = si.off;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int part = warp & 1, grp = warp >> 1;
  const int n0 = i * kDnRows + 8 * kDnR * grp;  // the warp's first output column (row of down)
  const float* swr = si.w.down_sc + static_cast<int64_t>(n0 / 128) * L.kbf;  // 16 divides 128: one scale row
  const uint8_t* wrow[kDnR];
#pragma unroll
  for (int r = 0; r < kDnR; ++r) wrow[r] = si.w.down + static_cast<int64_t>(min(n0 + 8 * r + g, a.d - 1)) * a.f;
  const uint8_t* h_codes = at<const uint8_t>(p, L.h_codes);
  const float* h_scales = at<const float>(p, L.h_scales);
  bf16_t* yb = at<bf16_t>(p, L.y);
  for (int c0 = 0; c0 < cnt; c0 += kChunk) {
    const int rows = min(kChunk, cnt - c0);
    const int hlo = off + c0 + min(g, rows - 1), hhi = off + c0 + min(g + 8, rows - 1);
    const uint8_t* alo = h_codes + static_cast<int64_t>(hlo) * a.f;
    const uint8_t* ahi = h_codes + static_cast<int64_t>(hhi) * a.f;
    float acc[kDnR][4];
#pragma unroll
    for (int r = 0; r < kDnR; ++r) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = 0.f;
    if (n0 < a.d) {
      if (rows > 8)
        fp8_gemv_warp<kDnR, kVec, true, true>(acc, wrow, swr, alo, ahi, h_scales + hlo, h_scales + hhi, L.entries,
                                              g < rows, g + 8 < rows, a.f, part, 2, 1 << 30, a.prefetch);
      else
        fp8_gemv_warp<kDnR, kVec, false, true>(acc, wrow, swr, alo, ahi, h_scales + hlo, h_scales + hhi, L.entries,
                                               g < rows, false, a.f, part, 2, 1 << 30, a.prefetch);
    }
    if (part == 1) {
#pragma unroll
      for (int r = 0; r < kDnR; ++r)
#pragma unroll
        for (int e = 0; e < 4; ++e) red[grp][r * 4 + e][lane] = acc[r][e];
    }
    __syncthreads();
    if (part == 0 && n0 < a.d) {  // K-half 0 + K-half 1, rounded to bf16: y of the permuted row
#pragma unroll
      for (int r = 0; r < kDnR; ++r)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int t = g + 8 * (e / 2), col = n0 + 8 * r + 2 * q + (e % 2);
          if (t < rows && col < a.d)
            yb[static_cast<int64_t>(off + c0 + t) * a.d + col] = to_bf16(acc[r][e] + red[grp][r * 4 + e][lane]);
        }
    }
    __syncthreads();  // red is rewritten by the next chunk
  }
  if (threadIdx.x == 0) {
    __threadfence();
    const int done = atomicAdd(at<int>(p, L.ctr) + 1 + L.slots * L.ftiles + L.slots + i, 1);
    __threadfence();
    *s_flag = done == n_active - 1;
  }
  __syncthreads();
  if (!*s_flag) return;
  // The d-tile's last expert: out[t, c] = bf16(Σ_q w·y[row_q, c]) over token t's entries in (id, k) order, each
  // product and sum rounded once in fp32, as launch_moe_combine.
  const int* comb_row = at<const int>(p, L.comb_row);
  const float* comb_w = at<const float>(p, L.comb_w);
  for (int idx = threadIdx.x; idx < a.n * kDnRows; idx += kThreads) {
    const int t = idx / kDnRows, c = i * kDnRows + idx % kDnRows;
    if (c >= a.d) continue;
    float acc = 0.f;
    for (int qq = 0; qq < a.top_k; ++qq) {
      const int row = comb_row[t * a.top_k + qq];
      if (row < 0) break;
      const float yv = __bfloat162float(__ldcg(yb + static_cast<int64_t>(row) * a.d + c));
      acc = __fadd_rn(acc, __fmul_rn(comb_w[t * a.top_k + qq], yv));
    }
    a.out[static_cast<int64_t>(t) * a.d + c] = to_bf16(acc);
  }
}

template <bool kVec>
__global__ void __launch_bounds__(kThreads, 2) moe_decode_kernel(const __grid_constant__ Params p) {
  __shared__ float red[kWarps / 2][kDnR * 4][32];  // down: the second K-half's partial sums
  __shared__ int s_next, s_flag;
  const Layout& L = p.L;
  const int n_active = *at<const int>(p, L.n_active);
  const int n_gu = n_active * L.ftiles * L.split, total = n_gu + n_active * L.dtiles;
  if (n_active == 0) {  // every id was bad (kErrExpertId is set): the output is zero, as launch_moe_combine's
    if (blockIdx.x == 0)
      for (int64_t c = threadIdx.x; c < static_cast<int64_t>(p.a.n) * p.a.d; c += kThreads) p.a.out[c] = to_bf16(0.f);
    return;
  }
  int* queue = at<int>(p, L.ctr);
  if (threadIdx.x == 0) s_next = atomicAdd(queue, 1);
  __syncthreads();
  int item = s_next;
  while (item < total) {
    int next = 0;
    if (threadIdx.x == 0) next = atomicAdd(queue, 1);  // claimed now, read after this item (latency hidden)
    if (item < n_gu) {
      const int tile = item / L.split;  // = y · ftiles + j
      gate_up_item<kVec>(p, tile / L.ftiles, tile % L.ftiles, item % L.split, &s_flag);
    } else {
      const int di = item - n_gu;
      down_item<kVec>(p, di / L.dtiles, di % L.dtiles, n_active, &s_flag, red);
    }
    __syncthreads();  // s_flag and s_next: every thread is past its reads
    if (threadIdx.x == 0) s_next = next;
    __syncthreads();
    item = s_next;
  }
}

int blocks_per_sm(bool vec) {
  static int cached[2] = {0, 0};
  static std::once_flag once[2];
  std::call_once(once[vec], [&] {
    int b = 0;
    if (vec) cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, moe_decode_kernel<true>, kThreads, 0);
    else cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, moe_decode_kernel<false>, kThreads, 0);
    cached[vec] = b > 0 ? b : 1;
  });
  return cached[vec];
}

}  // namespace

// Items of equal size balance the SMs when each block gets several: the smallest power of two that makes at least
// 8 gate/up items per resident block (2 per SM) with every slot active, at most kMoeDecodeMaxSplit and at least 4
// K-blocks per range. DeepSeek-V3 (d 7168, f 2048, top-8) on 132 SMs: 8 at 1-4 tokens, 4 at 8 tokens.
int moe_decode_split(int n, int top_k, int n_experts, int d, int f, int n_sms) {
  const Layout L = make_layout(n, top_k, n_experts, d, f, 1);
  const int64_t target = 8LL * 2 * n_sms, tiles = static_cast<int64_t>(L.slots) * L.ftiles;
  int split = 1;
  while (split < kMoeDecodeMaxSplit && tiles * split < target && L.kbd / (2 * split) >= 4) split *= 2;
  return split;
}

size_t moe_decode_work_bytes(int n, int top_k, int n_experts, int d, int f, int split) {
  return make_layout(n, top_k, n_experts, d, f, split).total;
}

void launch_moe_decode(const MoeDecodeArgs& a, int n_sms, cudaStream_t s) {
  if (a.n == 0 || a.top_k == 0) return;
  const Params p{a, make_layout(a.n, a.top_k, a.n_experts, a.d, a.f, a.split)};
  moe_decode_prep_kernel<<<1 + (a.n * p.L.kbd + kQuantWarps - 1) / kQuantWarps, kThreads, 0, s>>>(p);
  // Persistent: the resident blocks, fewer when there are fewer items than that even with every slot active.
  const int64_t items = static_cast<int64_t>(p.L.slots) * (p.L.ftiles * p.L.split + p.L.dtiles);
  const int grid = static_cast<int>(std::min<int64_t>(items, static_cast<int64_t>(n_sms) * blocks_per_sm(a.vec)));
  if (a.vec) moe_decode_kernel<true><<<grid, kThreads, 0, s>>>(p);
  else moe_decode_kernel<false><<<grid, kThreads, 0, s>>>(p);
}

}  // namespace dsv3::cuda
