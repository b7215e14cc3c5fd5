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
// Reference: CpuBackend::mla_absorb_q / mla_absorb_v; checked by tests/ops cases "mla_absorb_q", "mla_absorb_v".
#include "dsv3/backend/cuda/common.cuh"

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

}  // namespace

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
