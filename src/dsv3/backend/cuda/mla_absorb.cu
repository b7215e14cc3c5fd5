// mla_absorb.cu: mla_absorb_q on CUDA cores, and the q_pe copy behind the absorbed latent query (backend/cuda).
// Why a kernel of its own: cuBLASLt's strided-batched bf16 GEMM (one batch entry per head, N = tokens) took 360 µs
// for one decode token and 760 µs for 128 (H200, DSV3_PROFILE, 2026-11-29) — for 16.7 MB of W_UK. Here each block
// streams one head's W_UK [nope, rank] once for up to kTokens tokens: q_abs[t, h, c] = Σ_d q[t, h, d] · W_UK^h[d, c].
// Parallelisation: grid (H, token tiles of kTokens); rank/4 threads, thread j owns columns 4j..4j+3 (8-byte loads,
//   a warp reads 256 contiguous bytes of a W row); the tile's q_nope sits in shared memory as fp32.
// Precision: fp32 products and sums in the reference's order (d ascending, separate multiply and add): bitwise equal
//   to CpuBackend::mla_absorb_q. The rope part is copied.
// mla_absorb_v and larger shapes run as cuBLASLt strided-batched bf16 GEMMs (gemm.cpp), with
// launch_batched_gemm_fallback (linear.cu) for strides cuBLASLt rejects.
// Reference: CpuBackend::mla_absorb_q; checked by tests/ops case "mla_absorb_q".
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
#pragma unroll 4
  for (int d = 0; d < a.nope; ++d) {
    const uint2 raw = __ldg(reinterpret_cast<const uint2*>(w + static_cast<int64_t>(d) * a.rank));
    const float2 w01 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
    const float2 w23 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
    const float wv[4] = {w01.x, w01.y, w23.x, w23.y};
#pragma unroll
    for (int t = 0; t < kTokens; ++t) {
      const float qv = qs[t * a.nope + d];  // tokens past nt read stale values; their sums are never stored
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[t][j] = __fadd_rn(acc[t][j], __fmul_rn(qv, wv[j]));
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

}  // namespace

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
