// mla_absorb.cu: mla_absorb_q on CUDA cores, and the q_pe copy behind the absorbed latent query (backend/cuda).
// Why a kernel of its own: cuBLASLt's strided-batched bf16 GEMM (one batch entry per head, N = tokens) took 360 µs
// for one decode token and 760 µs for 128 (H200, DSV3_PROFILE, 2026-11-29) — for 16.7 MB of W_UK. Here each block
// streams one head's W_UK [nope, rank] once for up to kTokens tokens: q_abs[t, h, c] = Σ_d q[t, h, d] · W_UK^h[d, c].
// Parallelisation: grid (H, token tiles of kTokens); rank/4 threads, thread j owns columns 4j..4j+3 (8-byte loads,
//   a warp reads 256 contiguous bytes of a W row); the tile's q_nope sits in shared memory as fp32.
// Precision: fp32 products and sums in the reference's order (d ascending, separate multiply and add): bitwise equal
//   to CpuBackend::mla_absorb_q. The rope part is copied.
// mla_absorb_v likewise (the cuBLASLt batched GEMM it replaces took ~0.2 ms per layer at one decode token, the
// largest item of a batch-1 step): out[t, h, v] = Σ_c o[t, h, c] · W_UV^h[v, c], W_UV^h rows stream through shared
// memory in 64-column chunks (coalesced loads, the next chunk prefetched into registers while this one is used),
// thread v owns output row v for a tile of tokens; sums in the reference's order, bitwise CpuBackend::mla_absorb_v.
// Shapes the kernels do not take run as cuBLASLt strided-batched bf16 GEMMs (gemm.cpp), with
// launch_batched_gemm_fallback (linear.cu) for strides cuBLASLt rejects.
// Decode sizes (1..kAbsorbSliceMaxTokens tokens) run the slice kernels below instead: the token-tile kernels give
// one CTA per head (128 CTAs, < 1 wave, a few KB in flight per SM, 8 token slots of arithmetic at 1 token). A slice
// kernel's CTA owns a slice of one head's outputs (absorb_q: 128 columns, absorb_v: 32 rows), copies that slice's
// whole weight block (32 KB) into shared memory with every 16-byte cp.async issued up front in 4 commit groups, and
// runs the per-output chains from shared memory as the groups land: 512 CTAs, ~4 per SM, the whole 16.8 MB in flight.
// Each output's chain still runs in one thread in the reference's order (fmaf: bf16 x bf16 products are exact in
// fp32, so fmaf(x, w, acc) rounds once like the reference's acc += x * w), so they are bitwise equal too.
// Reference: CpuBackend::mla_absorb_q / mla_absorb_v; checked by tests/ops cases "mla_absorb_q", "mla_absorb_v".
#include "dsv3/backend/cuda/common.cuh"
#include "dsv3/backend/cuda/mma_sm80.cuh"

namespace dsv3::cuda {
namespace {

__global__ void copy_rows_kernel(const CopyRowsArgs a) {
  const int r = blockIdx.x;
  const bf16_t* src = a.src + static_cast<int64_t>(r) * a.src_stride;
  bf16_t* dst = a.dst + static_cast<int64_t>(r) * a.dst_stride;
  for (int c = threadIdx.x; c < a.width; c += blockDim.x) dst[c] = src[c];
}

constexpr int kTokens = 8;

__global__ void absorb_q_kernel(const AbsorbQArgs a) {
  extern __shared__ float qs[];  // [kTokens, nope]
  const int h = blockIdx.x, t0 = blockIdx.y * kTokens, nt = min(kTokens, a.n - t0);
  const int qd = a.nope + a.rope, out_w = a.rank + a.rope;
  for (int i = threadIdx.x; i < nt * a.nope; i += blockDim.x) {
    const int t = i / a.nope, d = i % a.nope;
    qs[t * a.nope + d] = ld_bf16(a.q + (static_cast<int64_t>(t0 + t) * a.heads + h) * qd + d);
  }
  // The rope part: copied behind the latent (bitwise).
  for (int i = threadIdx.x; i < nt * a.rope; i += blockDim.x) {
    const int t = i / a.rope, r = i % a.rope;
    a.q_abs[(static_cast<int64_t>(t0 + t) * a.heads + h) * out_w + a.rank + r] =
        a.q[(static_cast<int64_t>(t0 + t) * a.heads + h) * qd + a.nope + r];
  }
  __syncthreads();
  const int c0 = 4 * threadIdx.x;
  float acc[kTokens][4];
#pragma unroll
  for (int t = 0; t < kTokens; ++t)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[t][j] = 0.f;
  const bf16_t* w = a.kv_b + static_cast<int64_t>(h) * a.per_head * a.rank + c0;
  // W rows in groups of kRowsInFlight: every load of a group is issued before its first product (32 independent
  // 8-byte loads per thread, 32 KB per block in flight), instead of a few loads per memory round trip.
  constexpr int kRowsInFlight = 32;
  for (int d0 = 0; d0 < a.nope; d0 += kRowsInFlight) {
    uint2 raw[kRowsInFlight];
#pragma unroll
    for (int i = 0; i < kRowsInFlight; ++i)
      raw[i] = d0 + i < a.nope ? __ldg(reinterpret_cast<const uint2*>(w + static_cast<int64_t>(d0 + i) * a.rank))
                               : make_uint2(0u, 0u);
#pragma unroll
    for (int i = 0; i < kRowsInFlight; ++i) {
      if (d0 + i >= a.nope) break;
      const float2 w01 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw[i].x));
      const float2 w23 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw[i].y));
      const float wv[4] = {w01.x, w01.y, w23.x, w23.y};
#pragma unroll
      for (int t = 0; t < kTokens; ++t) {
        const float qv = qs[t * a.nope + d0 + i];  // tokens past nt read stale values; their sums are never stored
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[t][j] = __fadd_rn(acc[t][j], __fmul_rn(qv, wv[j]));
      }
    }
  }
#pragma unroll
  for (int t = 0; t < kTokens; ++t) {
    if (t >= nt) break;
    bf16_t* o = a.q_abs + (static_cast<int64_t>(t0 + t) * a.heads + h) * out_w + c0;
    __nv_bfloat162 lo = __floats2bfloat162_rn(acc[t][0], acc[t][1]), hi = __floats2bfloat162_rn(acc[t][2], acc[t][3]);
    uint2 packed;
    packed.x = *reinterpret_cast<uint32_t*>(&lo);
    packed.y = *reinterpret_cast<uint32_t*>(&hi);
    *reinterpret_cast<uint2*>(o) = packed;
  }
}

// absorb_v: grid (H, token tiles of kTokens), vd threads. Shared: the tile's o rows as fp32 [kTokens][rank] and one
// W chunk as fp32 [vd][kChunk + 1] (the +1 keeps thread v's row reads conflict-free).
constexpr int kChunk = 64;

__global__ void absorb_v_kernel(const AbsorbVArgs a) {
  extern __shared__ float sm[];
  float* os = sm;                              // [kTokens, rank]
  float* ws = os + kTokens * a.rank;           // [vd, kChunk + 1]
  constexpr int kPitch = kChunk + 1, kVecPerRow = kChunk / 8;
  const int h = blockIdx.x, t0 = blockIdx.y * kTokens, nt = min(kTokens, a.n - t0), v = threadIdx.x;
  for (int i = threadIdx.x; i < nt * a.rank; i += blockDim.x) {
    const int t = i / a.rank, c = i % a.rank;
    os[t * a.rank + c] = ld_bf16(a.o + (static_cast<int64_t>(t0 + t) * a.heads + h) * a.rank + c);
  }
  const bf16_t* w = a.kv_b + (static_cast<int64_t>(h) * a.per_head + a.nope) * a.rank;  // W_UV^h [vd, rank]
  // Chunk loads: vector j of the chunk is row j / kVecPerRow, 8 columns at (j % kVecPerRow) * 8; vd * kVecPerRow
  // vectors over vd threads: kVecPerRow each.
  uint4 pre[kVecPerRow];
  auto fetch = [&](int c0) {
#pragma unroll
    for (int q = 0; q < kVecPerRow; ++q) {
      const int j = q * a.vd + threadIdx.x, row = j / kVecPerRow, col = (j % kVecPerRow) * 8;
      pre[q] = __ldg(reinterpret_cast<const uint4*>(w + static_cast<int64_t>(row) * a.rank + c0 + col));
    }
  };
  fetch(0);
  float acc[kTokens];
#pragma unroll
  for (int t = 0; t < kTokens; ++t) acc[t] = 0.f;
  for (int c0 = 0; c0 < a.rank; c0 += kChunk) {
    __syncthreads();  // the previous chunk is consumed (and, the first time, os is written)
#pragma unroll
    for (int q = 0; q < kVecPerRow; ++q) {
      const int j = q * a.vd + threadIdx.x, row = j / kVecPerRow, col = (j % kVecPerRow) * 8;
      const __nv_bfloat162* p2 = reinterpret_cast<const __nv_bfloat162*>(&pre[q]);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 f = __bfloat1622float2(p2[e]);
        ws[row * kPitch + col + 2 * e] = f.x;
        ws[row * kPitch + col + 2 * e + 1] = f.y;
      }
    }
    __syncthreads();
    if (c0 + kChunk < a.rank) fetch(c0 + kChunk);
    const float* wr = ws + v * kPitch;
#pragma unroll 8
    for (int k = 0; k < kChunk; ++k) {
      const float wv = wr[k];
#pragma unroll
      for (int t = 0; t < kTokens; ++t)  // tokens past nt read stale values; their sums are never stored
        acc[t] = __fadd_rn(acc[t], __fmul_rn(wv, os[t * a.rank + c0 + k]));
    }
  }
  for (int t = 0; t < nt; ++t) a.out[(static_cast<int64_t>(t0 + t) * a.heads + h) * a.vd + v] = to_bf16(acc[t]);
}

// ---- slice kernels (decode sizes) ----
// NOTE: fmaf(x, w, acc) == acc + x * w of the reference bit for bit because x * w of two bf16 values (8 significant
// bits each) is exact in fp32; only products below fp32's normal range (|x w| < 2^-126, far from any weight times
// activation) or beyond its top could round differently.
constexpr int kSliceThreads = 128, kSliceGroups = 4;
constexpr int kSliceQCols = 128;  // absorb_q: output columns per CTA (a 256-byte segment of each W_UK row)
constexpr int kSliceVRows = 32;   // absorb_v: output rows v per CTA (32 whole W_UV rows)

// Waits for commit group g of kSliceGroups (the groups land in order) and makes every thread's copies visible.
__device__ __forceinline__ void slice_wait(int g) {
  if (g == 0) cp_async_wait<kSliceGroups - 1>();
  else if (g == 1) cp_async_wait<kSliceGroups - 2>();
  else if (g == 2) cp_async_wait<kSliceGroups - 3>();
  else cp_async_wait<0>();
  __syncthreads();
}

__device__ __forceinline__ float bf16_lo(uint32_t u) { return __uint_as_float(u << 16); }          // lower address
__device__ __forceinline__ float bf16_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }  // upper address

// absorb_q, grid (rank / kSliceQCols, heads): q_abs[t, h, c0 + c] for c < 128 and every token, in tiles of kTok.
// Shared: ws [nope][128] bf16 = W_UK^h[:, c0 : c0 + 128] (group g = rows [g nope/4, (g+1) nope/4)), qs [kTok][nope]
// f32. Thread = (column pair p = tid % 64, token group tg = tid / 64) owns columns c0 + 2p, +1 for kTpt tokens.
template <int kTok>
__global__ void __launch_bounds__(kSliceThreads) absorb_q_slice_kernel(const AbsorbQArgs a) {
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr int kRowChunks = kSliceQCols * 2 / 16;  // 16 chunks of 16 bytes per W row segment
  constexpr int kPairs = kSliceQCols / 2;
  constexpr int kTpt = kTok * kPairs / kSliceThreads > 0 ? kTok * kPairs / kSliceThreads : 1;  // tokens per thread
  const bf16_t* ws = reinterpret_cast<const bf16_t*>(smem);                         // [nope][kSliceQCols]
  float* qs = reinterpret_cast<float*>(smem + static_cast<size_t>(a.nope) * kSliceQCols * 2);  // [kTok][nope]
  const int tid = threadIdx.x, c0 = blockIdx.x * kSliceQCols, h = blockIdx.y;
  const int qd = a.nope + a.rope, out_w = a.rank + a.rope, rows_g = a.nope / kSliceGroups;
  const bf16_t* w = a.kv_b + static_cast<int64_t>(h) * a.per_head * a.rank + c0;  // W_UK^h[0, c0]
  const uint32_t ws_s = smem_addr(smem);
  // Lane j of the group's rows_g x 16 chunks: row j / 16, chunk j % 16 (a warp reads 2 rows x 256 contiguous bytes).
#pragma unroll
  for (int g = 0; g < kSliceGroups; ++g) {
    for (int j = tid; j < rows_g * kRowChunks; j += kSliceThreads) {
      const int d = g * rows_g + j / kRowChunks, ch = j % kRowChunks;
      cp_async16(ws_s + (d * kRowChunks + ch) * 16, w + static_cast<int64_t>(d) * a.rank + ch * 8, 16);
    }
    cp_async_commit();
  }
  // The rope part: copied behind the latent (bitwise), by the first column slice.
  if (blockIdx.x == 0) {
    for (int i = tid; i < a.n * a.rope; i += kSliceThreads) {
      const int t = i / a.rope, r = i % a.rope;
      a.q_abs[(static_cast<int64_t>(t) * a.heads + h) * out_w + a.rank + r] =
          a.q[(static_cast<int64_t>(t) * a.heads + h) * qd + a.nope + r];
    }
  }
  const int p = tid % kPairs, tg = tid / kPairs;
  const bool active = tg * kTpt < kTok;  // kTok = 1: only the first 64 threads have a token
  for (int t0 = 0; t0 < a.n; t0 += kTok) {
    if (t0 > 0) __syncthreads();  // the previous tile's q rows are consumed
    for (int i = tid; i < kTok * a.nope; i += kSliceThreads) {
      const int t = i / a.nope, d = i % a.nope;
      qs[i] = t0 + t < a.n ? ld_bf16(a.q + (static_cast<int64_t>(t0 + t) * a.heads + h) * qd + d) : 0.f;
    }
    float acc[kTpt][2];
#pragma unroll
    for (int i = 0; i < kTpt; ++i) acc[i][0] = acc[i][1] = 0.f;
    // Rows [d0, d1) of every chain, d ascending (the reference's order); d0, d1 multiples of 4.
    auto rows = [&](int d0, int d1) {
      for (int d = d0; d < d1; d += 4) {
        float w0[4], w1[4];
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const uint32_t u = *reinterpret_cast<const uint32_t*>(ws + (d + r) * kSliceQCols + 2 * p);
          w0[r] = bf16_lo(u);
          w1[r] = bf16_hi(u);
        }
#pragma unroll
        for (int i = 0; i < kTpt; ++i) {
          const float4 x = *reinterpret_cast<const float4*>(qs + (tg * kTpt + i) * a.nope + d);
          const float xv[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
          for (int r = 0; r < 4; ++r) {
            acc[i][0] = fmaf(xv[r], w0[r], acc[i][0]);
            acc[i][1] = fmaf(xv[r], w1[r], acc[i][1]);
          }
        }
      }
    };
    if (t0 == 0) {  // the first tile follows the groups as they land
#pragma unroll
      for (int g = 0; g < kSliceGroups; ++g) {
        slice_wait(g);  // the first barrier also publishes qs
        if (active) rows(g * rows_g, (g + 1) * rows_g);
      }
    } else {
      __syncthreads();
      if (active) rows(0, a.nope);
    }
    if (active) {
#pragma unroll
      for (int i = 0; i < kTpt; ++i) {
        const int t = t0 + tg * kTpt + i;
        if (t < a.n)
          *reinterpret_cast<__nv_bfloat162*>(a.q_abs + (static_cast<int64_t>(t) * a.heads + h) * out_w + c0 + 2 * p) =
              __floats2bfloat162_rn(acc[i][0], acc[i][1]);
      }
    }
  }
}

// absorb_v, grid (vd / kSliceVRows, heads): out[t, h, v0 + r] for r < 32 and every token, in tiles of kTok.
// Shared: ws [32][rank + 8] bf16 = W_UV^h rows v0.. (group g = columns [g rank/4, (g+1) rank/4)); the row pitch is
// an odd number of 16-byte chunks, so the 8 rows a quarter-warp reads at one column lie on distinct bank groups;
// os [kTok][rank] f32. Thread = (row r = tid % 32, token group tg = tid / 32) owns row v0 + r for kTpt tokens.
template <int kTok>
__global__ void __launch_bounds__(kSliceThreads) absorb_v_slice_kernel(const AbsorbVArgs a) {
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr int kTpt = kTok * kSliceVRows / kSliceThreads > 0 ? kTok * kSliceVRows / kSliceThreads : 1;
  const int pitch = a.rank + 8;  // bf16 elements
  const bf16_t* ws = reinterpret_cast<const bf16_t*>(smem);                                  // [32][pitch]
  float* os = reinterpret_cast<float*>(smem + static_cast<size_t>(kSliceVRows) * pitch * 2);  // [kTok][rank]
  const int tid = threadIdx.x, v0 = blockIdx.x * kSliceVRows, h = blockIdx.y;
  const int cols_g = a.rank / kSliceGroups, chunks_g = cols_g / 8;
  const bf16_t* w = a.kv_b + (static_cast<int64_t>(h) * a.per_head + a.nope + v0) * a.rank;  // W_UV^h[v0, 0]
  const uint32_t ws_s = smem_addr(smem);
  // Lane j of the group's 32 x chunks_g chunks: row j / chunks_g, chunk j % chunks_g (contiguous along a row).
#pragma unroll
  for (int g = 0; g < kSliceGroups; ++g) {
    for (int j = tid; j < kSliceVRows * chunks_g; j += kSliceThreads) {
      const int r = j / chunks_g, c = g * cols_g + (j % chunks_g) * 8;
      cp_async16(ws_s + (r * pitch + c) * 2, w + static_cast<int64_t>(r) * a.rank + c, 16);
    }
    cp_async_commit();
  }
  const int r = tid % kSliceVRows, tg = tid / kSliceVRows;
  const bool active = tg * kTpt < kTok;
  for (int t0 = 0; t0 < a.n; t0 += kTok) {
    if (t0 > 0) __syncthreads();
    for (int i = tid; i < kTok * a.rank; i += kSliceThreads) {
      const int t = i / a.rank, c = i % a.rank;
      os[i] = t0 + t < a.n ? ld_bf16(a.o + (static_cast<int64_t>(t0 + t) * a.heads + h) * a.rank + c) : 0.f;
    }
    float acc[kTpt];
#pragma unroll
    for (int i = 0; i < kTpt; ++i) acc[i] = 0.f;
    // Columns [c0, c1) of every chain, c ascending (the reference's order); c0, c1 multiples of 8.
    auto cols = [&](int c0, int c1) {
      for (int c = c0; c < c1; c += 8) {
        const uint4 u = *reinterpret_cast<const uint4*>(ws + r * pitch + c);
        const float wv[8] = {bf16_lo(u.x), bf16_hi(u.x), bf16_lo(u.y), bf16_hi(u.y),
                             bf16_lo(u.z), bf16_hi(u.z), bf16_lo(u.w), bf16_hi(u.w)};
#pragma unroll
        for (int i = 0; i < kTpt; ++i) {
          const float* o = os + (tg * kTpt + i) * a.rank + c;
          const float4 x0 = *reinterpret_cast<const float4*>(o), x1 = *reinterpret_cast<const float4*>(o + 4);
          const float xv[8] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w};
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[i] = fmaf(wv[e], xv[e], acc[i]);
        }
      }
    };
    if (t0 == 0) {
#pragma unroll
      for (int g = 0; g < kSliceGroups; ++g) {
        slice_wait(g);
        if (active) cols(g * cols_g, (g + 1) * cols_g);
      }
    } else {
      __syncthreads();
      if (active) cols(0, a.rank);
    }
    if (active) {
#pragma unroll
      for (int i = 0; i < kTpt; ++i) {
        const int t = t0 + tg * kTpt + i;
        if (t < a.n) a.out[(static_cast<int64_t>(t) * a.heads + h) * a.vd + v0 + r] = to_bf16(acc[i]);
      }
    }
  }
}

size_t absorb_q_slice_smem(int nope, int tok) {
  return static_cast<size_t>(nope) * kSliceQCols * 2 + static_cast<size_t>(tok) * nope * sizeof(float);
}
size_t absorb_v_slice_smem(int rank, int tok) {
  return static_cast<size_t>(kSliceVRows) * (rank + 8) * 2 + static_cast<size_t>(tok) * rank * sizeof(float);
}
// Token-tile width for n tokens: 1, 2, 4 or 8 (n > 8 loops over tiles of 8).
int slice_tok(int n) { return n <= 1 ? 1 : n <= 2 ? 2 : n <= 4 ? 4 : 8; }

template <typename Kernel, typename Args>
void launch_slice(Kernel kernel, dim3 grid, size_t smem, cudaStream_t s, const Args& args) {
  if (smem > 48 * 1024)  // above the default limit the kernel must opt in (set per launch, as the other kernels do)
    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  kernel<<<grid, kSliceThreads, smem, s>>>(args);
}

}  // namespace

bool absorb_q_slice_supported(int rank, int nope, int rope) {
  return rank % kSliceQCols == 0 && nope % (4 * kSliceGroups) == 0 && nope > 0 &&
         absorb_q_slice_smem(nope, 8) <= 200 * 1024 && rope >= 0 && (rank + rope) % 2 == 0;
}

bool absorb_v_slice_supported(int rank, int vd) {
  return rank % (8 * kSliceGroups) == 0 && rank > 0 && vd % kSliceVRows == 0 && vd > 0 &&
         absorb_v_slice_smem(rank, 8) <= 200 * 1024;
}

void launch_absorb_q_slice(const AbsorbQArgs& a, cudaStream_t s) {
  if (a.n == 0) return;
  const dim3 grid(a.rank / kSliceQCols, a.heads);
  const int tok = slice_tok(a.n);
  const size_t smem = absorb_q_slice_smem(a.nope, tok);
  if (tok == 1) launch_slice(absorb_q_slice_kernel<1>, grid, smem, s, a);
  else if (tok == 2) launch_slice(absorb_q_slice_kernel<2>, grid, smem, s, a);
  else if (tok == 4) launch_slice(absorb_q_slice_kernel<4>, grid, smem, s, a);
  else launch_slice(absorb_q_slice_kernel<8>, grid, smem, s, a);
}

void launch_absorb_v_slice(const AbsorbVArgs& a, cudaStream_t s) {
  if (a.n == 0) return;
  const dim3 grid(a.vd / kSliceVRows, a.heads);
  const int tok = slice_tok(a.n);
  const size_t smem = absorb_v_slice_smem(a.rank, tok);
  if (tok == 1) launch_slice(absorb_v_slice_kernel<1>, grid, smem, s, a);
  else if (tok == 2) launch_slice(absorb_v_slice_kernel<2>, grid, smem, s, a);
  else if (tok == 4) launch_slice(absorb_v_slice_kernel<4>, grid, smem, s, a);
  else launch_slice(absorb_v_slice_kernel<8>, grid, smem, s, a);
}

bool absorb_v_kernel_supported(int rank, int vd) { return rank % kChunk == 0 && vd >= 32 && vd <= 1024 && vd % 32 == 0; }

size_t absorb_v_smem_bytes(int rank, int vd) {
  return (static_cast<size_t>(kTokens) * rank + static_cast<size_t>(vd) * (kChunk + 1)) * sizeof(float);
}

void launch_absorb_v(const AbsorbVArgs& a, cudaStream_t s) {
  if (a.n == 0) return;
  const size_t smem = absorb_v_smem_bytes(a.rank, a.vd);
  cudaFuncSetAttribute(absorb_v_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  absorb_v_kernel<<<dim3(a.heads, (a.n + kTokens - 1) / kTokens), a.vd, smem, s>>>(a);
}

bool absorb_q_kernel_supported(int rank, int nope, int rope) {
  return rank % 4 == 0 && rank / 4 <= 1024 && rank >= 32 && nope <= 1024 && rope >= 0 && (rank + rope) % 4 == 0 &&
         (nope + rope) >= 1;
}

void launch_absorb_q(const AbsorbQArgs& a, cudaStream_t s) {
  if (a.n == 0) return;
  const dim3 grid(a.heads, (a.n + kTokens - 1) / kTokens);
  const size_t smem = static_cast<size_t>(kTokens) * a.nope * sizeof(float);
  absorb_q_kernel<<<grid, a.rank / 4, smem, s>>>(a);
}

void launch_copy_rows(const CopyRowsArgs& a, cudaStream_t s) {
  if (a.rows == 0 || a.width == 0) return;
  copy_rows_kernel<<<a.rows, 64, 0, s>>>(a);
}

}  // namespace dsv3::cuda
