// moe_grouped.cu: decode-size routed experts with FP8 weights, every expert in one launch per projection and no
// host read-back, so a decode step can be captured in a CUDA graph (backend/cuda).
// Parallelisation: route: one 1024-thread block (histogram in shared memory, block-wide scans, then each entry
//   claims a row of its expert). gate_up: grid (128-column tiles of f, expert slots); 16 warps = {gate, up} x 4
//   column groups of 32 rows (R = 4) x 2 K-halves. down: grid (64-row tiles of d, expert slots); 8 warps = 4 row
//   groups of 16 (R = 2) x 2 K-halves. Each warp runs the decode GEMV core (fp8.cuh, tensor-core mma.m16n8k32 e4m3,
//   16-byte streaming weight loads) on at most 16 of the expert's rows at a time and loops over chunks of 16 rows;
//   the two K-halves add through shared memory in a fixed order (deterministic). Slots past the number of active
//   experts exit at once, so experts without rows read no weights.
// Precision: as CpuBackend::moe_experts: gate and up each rounded to bf16, h = bf16(silu(g)·u) in fp32, h quantized
//   per row in 1x128 groups exactly as quantize_row_fp8 (the gate_up block owns whole 128-column groups), down
//   rounded to bf16 per row, then launch_moe_combine. The GEMV's summation order inside a 128-K block differs from
//   the reference (tensor cores), so results are close, not bitwise.
// Reference: CpuBackend::moe_experts (model-spec §4.3); checked by tests/ops cases "moe_experts ... path=grouped".
#include "dsv3/backend/cuda/fp8.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kRouteThreads = 1024;
constexpr int kChunk = 16;  // activation rows per pass: the mma's M

// Counts, offsets, the active list and the permutation of the routed entries. Expert ids outside [0, n_experts)
// set kErrExpertId and take no row (row_of = -1; launch_moe_combine skips them).
__global__ void __launch_bounds__(kRouteThreads) moe_route_kernel(const MoeRouteArgs a) {
  extern __shared__ int32_t sm[];  // [2 * n_experts]: counts, then the running row cursor of each expert
  __shared__ int32_t warp_pre[kRouteThreads / 32][2];
  int32_t* s_cnt = sm;
  int32_t* s_cur = sm + a.n_experts;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, E = a.n_experts;
  for (int e = tid; e < E; e += kRouteThreads) s_cnt[e] = 0;
  __syncthreads();
  for (int i = tid; i < a.entries; i += kRouteThreads) {
    const int e = a.ids[i];
    if (e < 0 || e >= E) set_error(a.err, kErrExpertId);
    else atomicAdd(&s_cnt[e], 1);
  }
  __syncthreads();
  // Exclusive scans of counts (-> offsets) and of (count > 0) (-> place in the active list); thread tid owns the
  // experts [tid·per, tid·per + per).
  const int per = (E + kRouteThreads - 1) / kRouteThreads, lo = min(E, tid * per), hi = min(E, lo + per);
  int own_rows = 0, own_active = 0;
  for (int e = lo; e < hi; ++e) own_rows += s_cnt[e], own_active += s_cnt[e] > 0;
  int inc_rows = own_rows, inc_active = own_active;  // inclusive scans inside the warp
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int r = __shfl_up_sync(0xffffffffu, inc_rows, o), c = __shfl_up_sync(0xffffffffu, inc_active, o);
    if (lane >= o) inc_rows += r, inc_active += c;
  }
  if (lane == 31) warp_pre[warp][0] = inc_rows, warp_pre[warp][1] = inc_active;
  __syncthreads();
  if (warp == 0) {  // the warps' totals -> exclusive prefixes (kRouteThreads / 32 == 32 warps)
    const int r0 = warp_pre[lane][0], c0 = warp_pre[lane][1];
    int r = r0, c = c0;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int rr = __shfl_up_sync(0xffffffffu, r, o), cc = __shfl_up_sync(0xffffffffu, c, o);
      if (lane >= o) r += rr, c += cc;
    }
    warp_pre[lane][0] = r - r0, warp_pre[lane][1] = c - c0;
  }
  __syncthreads();
  int row = warp_pre[warp][0] + inc_rows - own_rows, slot = warp_pre[warp][1] + inc_active - own_active;
  for (int e = lo; e < hi; ++e) {
    const int c = s_cnt[e];
    a.counts[e] = c;
    a.offsets[e] = row;
    s_cur[e] = row;
    if (c > 0) a.active[slot++] = e;
    row += c;
  }
  if (tid == kRouteThreads - 1) *a.n_active = slot;  // the last thread's running slot is the total
  __syncthreads();
  for (int i = tid; i < a.entries; i += kRouteThreads) {
    const int e = a.ids[i];
    if (e < 0 || e >= E) {
      a.row_of[i] = -1;
      continue;
    }
    const int r = atomicAdd(&s_cur[e], 1);  // order inside an expert is arbitrary: each row is computed on its own
    a.row_of[i] = r;
    a.tok_of[r] = i / a.top_k;
  }
}

__device__ __forceinline__ float round_bf16(float v) { return __bfloat162float(to_bf16(v)); }

// ---- gate/up + SwiGLU + FP8 quantization of h ----
constexpr int kGuWarps = 16, kGuThreads = kGuWarps * 32, kGuR = 4, kGuCols = 128;

template <bool kVec>
__global__ void __launch_bounds__(kGuThreads, 1) moe_gate_up_kernel(const MoeGroupedArgs a) {
  __shared__ float red[kGuWarps / 2][kGuR * 4][32];  // the second K-half's partial sums
  __shared__ float gu[2][kChunk][kGuCols];           // bf16-rounded gate (0) and up (1) of the chunk's rows
  if (static_cast<int>(blockIdx.y) >= *a.n_active) return;  // block-uniform: no weights read
  const int e = a.active[blockIdx.y], cnt = a.counts[e], off = a.offsets[e];
  const MoeExpertPtrs ex = a.experts[e];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int part = warp & 1, grp = warp >> 1, mat = grp >> 2, col0 = 32 * (grp & 3);  // col0: within the tile
  const int j0 = blockIdx.x * kGuCols, n0 = j0 + col0;  // n0: the warp's first row of gate (mat 0) or up (mat 1)
  const int kbd = (a.d + 127) / 128;
  const uint8_t* w = mat ? ex.up : ex.gate;
  const float* swr = (mat ? ex.up_sc : ex.gate_sc) + static_cast<int64_t>(blockIdx.x) * kbd;  // 128-row block j0/128
  const uint8_t* wrow[kGuR];
#pragma unroll
  for (int r = 0; r < kGuR; ++r)  // rows past f read row f-1; their columns are never used
    wrow[r] = w + static_cast<int64_t>(min(n0 + 8 * r + g, a.f - 1)) * a.d;
  for (int c0 = 0; c0 < cnt; c0 += kChunk) {
    const int rows = min(kChunk, cnt - c0);
    // Rows past the chunk read its last row (fp8_gemv_warp zeroes their scales; they are never used).
    const int tlo = a.tok_of[off + c0 + min(g, rows - 1)], thi = a.tok_of[off + c0 + min(g + 8, rows - 1)];
    const uint8_t* alo = a.x_codes + static_cast<int64_t>(tlo) * a.d;
    const uint8_t* ahi = a.x_codes + static_cast<int64_t>(thi) * a.d;
    float acc[kGuR][4];
#pragma unroll
    for (int r = 0; r < kGuR; ++r) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = 0.f;
    if (n0 < a.f) {  // warp-uniform: a partial last tile has warps wholly past f
      if (rows > 8)
        fp8_gemv_warp<kGuR, kVec, true>(acc, wrow, swr, alo, ahi, a.x_scales + tlo, a.x_scales + thi, a.n, g < rows,
                                        g + 8 < rows, a.d, part, 2);
      else
        fp8_gemv_warp<kGuR, kVec, false>(acc, wrow, swr, alo, ahi, a.x_scales + tlo, a.x_scales + thi, a.n, g < rows,
                                         false, a.d, part, 2);
    }
    if (part == 1) {
#pragma unroll
      for (int r = 0; r < kGuR; ++r)
#pragma unroll
        for (int i = 0; i < 4; ++i) red[grp][r * 4 + i][lane] = acc[r][i];
    }
    __syncthreads();
    if (part == 0) {  // acc[r][i]: chunk row g + 8·(i/2), tile column col0 + 8r + 2q + i%2; the linear's bf16 output
#pragma unroll
      for (int r = 0; r < kGuR; ++r)
#pragma unroll
        for (int i = 0; i < 4; ++i)
          gu[mat][g + 8 * (i / 2)][col0 + 8 * r + 2 * q + (i % 2)] = round_bf16(acc[r][i] + red[grp][r * 4 + i][lane]);
    }
    __syncthreads();
    // Warp w: chunk row w. h = bf16(silu(g)·u) (CpuBackend::silu_mul), then the row's 128-group [j0, j0 + 128) of
    // f quantized as launch_quantize_fp8 does (lane + 32·i: the same lanes, the same order-free max).
    if (warp < rows) {
      const int64_t row = off + c0 + warp;
      float h[4], amax = 0.f;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int c = lane + 32 * i;
        h[i] = j0 + c < a.f ? round_bf16(silu_mul_f32(gu[0][warp][c], gu[1][warp][c])) : 0.f;
        amax = fmaxf(amax, fabsf(h[i]));
      }
      amax = warp_max(amax);
      const float s = fp8_group_scale(amax, a.ue8m0);
      if (lane == 0) a.h_scales[static_cast<int64_t>(blockIdx.x) * a.entries + row] = s;
      uint8_t* hr = a.h_codes + row * a.f + j0;
#pragma unroll
      for (int i = 0; i < 4; ++i)
        if (j0 + lane + 32 * i < a.f) hr[lane + 32 * i] = fp8_encode(h[i], s);
    }
    __syncthreads();  // red and gu are rewritten by the next chunk
  }
}

// ---- down ----
constexpr int kDnWarps = 8, kDnThreads = kDnWarps * 32, kDnR = 2, kDnRows = kDnWarps / 2 * 8 * kDnR;  // 64 rows

template <bool kVec>
__global__ void __launch_bounds__(kDnThreads, 2) moe_down_kernel(const MoeGroupedArgs a) {
  __shared__ float red[kDnWarps / 2][kDnR * 4][32];
  if (static_cast<int>(blockIdx.y) >= *a.n_active) return;
  const int e = a.active[blockIdx.y], cnt = a.counts[e], off = a.offsets[e];
  const MoeExpertPtrs ex = a.experts[e];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int part = warp & 1, grp = warp >> 1;
  const int n0 = blockIdx.x * kDnRows + 8 * kDnR * grp;  // the warp's first output column (row of down)
  const int kbf = (a.f + 127) / 128;
  const float* swr = ex.down_sc + static_cast<int64_t>(n0 / 128) * kbf;  // 16 divides 128: one scale row per warp
  const uint8_t* wrow[kDnR];
#pragma unroll
  for (int r = 0; r < kDnR; ++r) wrow[r] = ex.down + static_cast<int64_t>(min(n0 + 8 * r + g, a.d - 1)) * a.f;
  for (int c0 = 0; c0 < cnt; c0 += kChunk) {
    const int rows = min(kChunk, cnt - c0);
    const int hlo = off + c0 + min(g, rows - 1), hhi = off + c0 + min(g + 8, rows - 1);
    const uint8_t* alo = a.h_codes + static_cast<int64_t>(hlo) * a.f;
    const uint8_t* ahi = a.h_codes + static_cast<int64_t>(hhi) * a.f;
    float acc[kDnR][4];
#pragma unroll
    for (int r = 0; r < kDnR; ++r) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = 0.f;
    if (n0 < a.d) {
      if (rows > 8)
        fp8_gemv_warp<kDnR, kVec, true>(acc, wrow, swr, alo, ahi, a.h_scales + hlo, a.h_scales + hhi, a.entries,
                                        g < rows, g + 8 < rows, a.f, part, 2);
      else
        fp8_gemv_warp<kDnR, kVec, false>(acc, wrow, swr, alo, ahi, a.h_scales + hlo, a.h_scales + hhi, a.entries,
                                         g < rows, false, a.f, part, 2);
    }
    if (part == 1) {
#pragma unroll
      for (int r = 0; r < kDnR; ++r)
#pragma unroll
        for (int i = 0; i < 4; ++i) red[grp][r * 4 + i][lane] = acc[r][i];
    }
    __syncthreads();
    if (part == 0 && n0 < a.d) {
#pragma unroll
      for (int r = 0; r < kDnR; ++r)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int t = g + 8 * (i / 2), j = n0 + 8 * r + 2 * q + (i % 2);
          if (t < rows && j < a.d)
            a.y[static_cast<int64_t>(off + c0 + t) * a.d + j] = to_bf16(acc[r][i] + red[grp][r * 4 + i][lane]);
        }
    }
    __syncthreads();
  }
}

}  // namespace

void launch_moe_route(const MoeRouteArgs& a, cudaStream_t s) {
  if (a.entries == 0 || a.n_experts == 0) return;
  moe_route_kernel<<<1, kRouteThreads, 2 * sizeof(int32_t) * a.n_experts, s>>>(a);
}

void launch_moe_gate_up_fp8(const MoeGroupedArgs& a, cudaStream_t s) {
  if (a.slots == 0 || a.f == 0) return;
  const dim3 grid((a.f + kGuCols - 1) / kGuCols, a.slots);
  if (a.vec) moe_gate_up_kernel<true><<<grid, kGuThreads, 0, s>>>(a);
  else moe_gate_up_kernel<false><<<grid, kGuThreads, 0, s>>>(a);
}

void launch_moe_down_fp8(const MoeGroupedArgs& a, cudaStream_t s) {
  if (a.slots == 0 || a.d == 0) return;
  const dim3 grid((a.d + kDnRows - 1) / kDnRows, a.slots);
  if (a.vec) moe_down_kernel<true><<<grid, kDnThreads, 0, s>>>(a);
  else moe_down_kernel<false><<<grid, kDnThreads, 0, s>>>(a);
}

}  // namespace dsv3::cuda
