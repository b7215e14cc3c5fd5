// router.cu: MoE expert selection — noaux_tc, greedy, group_limited_greedy with sigmoid or softmax (backend/cuda).
// Two kernels. Logits: grid (expert tiles of 32, tokens); each thread sums one 128-wide block of one expert's dot
// product sequentially, and the block sums of an expert are added in block order (backend.h kRouterSumBlock): the
// reference's order, so logits are bitwise the CPU's, while 14336 short chains per token run in parallel instead of
// 256 chains of 7168 dependent adds (a single-block design took 250 µs per decode token on the H200). Selection:
// one block per token; sigmoid scores per thread, softmax sums and group choices in the reference's order, the top-k
// as warp argmaxes (value desc, index asc: the reference's stable order).
// Precision: fp32 throughout; exp in double rounded to fp32 (agrees with glibc's expf); ties go to the lower index.
// Reference: CpuBackend::router (model-spec §4.2, §9.3); checked by tests/ops case "router" (every variant, ties).
#include <cfloat>

#include "dsv3/backend/cuda/common.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kThreads = 256, kTileE = 32, kBlock = 128;  // kBlock == kRouterSumBlock (backend.h)
constexpr int kSplitBelow = 64;  // tokens: below, the split logit kernel; from here, one block per token

__device__ __forceinline__ float exp_f(float x) { return static_cast<float>(exp(static_cast<double>(x))); }

// Σ_{i<len} x[i]·w[i], sequential in i with separate multiply and add: one 128-wide block sum of a logit, exactly as
// the reference adds it. vec: 16-byte aligned w and len % 8 == 0.
__device__ __forceinline__ float block_dot(const float* x, const bf16_t* w, int len, bool vec) {
  float s = 0.f;
  if (vec) {
    for (int i = 0; i < len; i += 8) {
      const uint4 raw = __ldg(reinterpret_cast<const uint4*>(w + i));
      const __nv_bfloat162* p = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const float2 f = __bfloat1622float2(p[q]);
        s = __fadd_rn(s, __fmul_rn(x[i + 2 * q], f.x));
        s = __fadd_rn(s, __fmul_rn(x[i + 2 * q + 1], f.y));
      }
    }
  } else {
    for (int i = 0; i < len; ++i) s = __fadd_rn(s, __fmul_rn(x[i], ld_bf16(w + i)));
  }
  return s;
}

// logits[t, j] for j in this block's 32 experts.
__global__ void __launch_bounds__(kThreads) router_logits_kernel(const RouterArgs a) {
  extern __shared__ float sm[];
  const int nb = (a.d + kBlock - 1) / kBlock;
  float* xs = sm;              // [d]
  float* part = xs + a.d;      // [kTileE, nb]
  const int t = blockIdx.y, e0 = blockIdx.x * kTileE, ne = min(kTileE, a.n_experts - e0);
  const bf16_t* xr = a.x + static_cast<int64_t>(t) * a.d;
  for (int i = threadIdx.x; i < a.d; i += kThreads) xs[i] = ld_bf16(xr + i);
  __syncthreads();
  const bool vec = a.d % 8 == 0 && (reinterpret_cast<uintptr_t>(a.gate) & 15) == 0;
  for (int item = threadIdx.x; item < ne * nb; item += kThreads) {
    const int jl = item / nb, b = item % nb, i0 = b * kBlock, len = min(kBlock, a.d - i0);
    const bf16_t* w = a.gate + static_cast<int64_t>(e0 + jl) * a.d + i0;
    part[jl * nb + b] = block_dot(xs + i0, w, len, vec);
  }
  __syncthreads();
  for (int jl = threadIdx.x; jl < ne; jl += kThreads) {
    float z = 0.f;
    for (int b = 0; b < nb; ++b) z = __fadd_rn(z, part[jl * nb + b]);
    a.logits[static_cast<int64_t>(t) * a.n_experts + e0 + jl] = z;
  }
}

// Prefill sizes: one block per token, thread j sums expert j's block sums (the same order as above). The split
// kernel reloads x per 32 experts, which costs more than it gains once tokens alone fill the GPU.
__global__ void __launch_bounds__(kThreads) router_logits_token_kernel(const RouterArgs a) {
  extern __shared__ float sm[];
  float* xs = sm;  // [d]
  const int t = blockIdx.x;
  const bf16_t* xr = a.x + static_cast<int64_t>(t) * a.d;
  for (int i = threadIdx.x; i < a.d; i += kThreads) xs[i] = ld_bf16(xr + i);
  __syncthreads();
  const bool vec = a.d % 8 == 0 && (reinterpret_cast<uintptr_t>(a.gate) & 15) == 0;
  for (int j = threadIdx.x; j < a.n_experts; j += kThreads) {
    const bf16_t* w = a.gate + static_cast<int64_t>(j) * a.d;
    float z = 0.f;
    for (int i0 = 0; i0 < a.d; i0 += kBlock) z = __fadd_rn(z, block_dot(xs + i0, w + i0, min(kBlock, a.d - i0), vec));
    a.logits[static_cast<int64_t>(t) * a.n_experts + j] = z;
  }
}

// Warp 0: the index of the best unused entry (largest value, lowest index among equals), as the reference's scan.
__device__ int warp_best(const float* v, const int* used, int count) {
  const int lane = threadIdx.x & 31;
  int best = -1;
  float bv = 0.f;
  for (int j = lane; j < count; j += 32)
    if (used[j] == 0 && (best < 0 || v[j] > bv)) best = j, bv = v[j];
  for (int off = 16; off > 0; off >>= 1) {
    const int ob = __shfl_xor_sync(0xffffffffu, best, off);
    const float ov = __shfl_xor_sync(0xffffffffu, bv, off);
    const bool take = ob >= 0 && (best < 0 || ov > bv || (!(ov < bv) && ov == bv && ob < best));
    if (take) best = ob, bv = ov;
  }
  return best;
}

__global__ void __launch_bounds__(kThreads) router_select_kernel(const RouterArgs a) {
  extern __shared__ float sm[];
  const int E = a.n_experts, t = blockIdx.x;
  float* score = sm;                     // [E]
  float* sel = score + E;                // [E]
  float* gscore = sel + E;               // [n_group]
  int* used = reinterpret_cast<int*>(gscore + a.n_group);  // [max(E, n_group)]
  int* gkeep = used + E;                 // [n_group]
  const float* lr = a.logits + static_cast<int64_t>(t) * E;
  for (int j = threadIdx.x; j < E; j += kThreads) {
    float s = lr[j];
    if (a.scoring == 0) s = __fdiv_rn(1.0f, __fadd_rn(1.0f, exp_f(-s)));  // elementwise
    score[j] = s;
    used[j] = 0;
  }
  __syncthreads();
  if (a.scoring != 0 && threadIdx.x == 0) {  // softmax: max and sum in the reference's order
    float mx = score[0];
    for (int j = 1; j < E; ++j) mx = score[j] > mx ? score[j] : mx;  // std::max_element: first maximum
    float sum = 0.f;
    for (int j = 0; j < E; ++j) {
      score[j] = exp_f(__fsub_rn(score[j], mx));
      sum = __fadd_rn(sum, score[j]);
    }
    for (int j = 0; j < E; ++j) score[j] = __fdiv_rn(score[j], sum);
  }
  __syncthreads();
  for (int j = threadIdx.x; j < E; j += kThreads) sel[j] = a.bias ? __fadd_rn(score[j], a.bias[j]) : score[j];
  __syncthreads();
  if (a.method != 1 && a.n_group > 1) {
    const int per_group = E / a.n_group;
    for (int g = threadIdx.x; g < a.n_group; g += kThreads) {  // one thread per group, the reference's scan
      const float* s = sel + g * per_group;
      if (a.method == 0) {  // sum of the two largest
        float x = -INFINITY, c = -INFINITY;
        for (int j = 0; j < per_group; ++j) {
          if (s[j] > x) {
            c = x;
            x = s[j];
          } else if (s[j] > c) {
            c = s[j];
          }
        }
        gscore[g] = __fadd_rn(x, c);
      } else {
        float x = s[0];
        for (int j = 1; j < per_group; ++j) x = s[j] > x ? s[j] : x;
        gscore[g] = x;
      }
      gkeep[g] = 0;
    }
    __syncthreads();
    if (threadIdx.x == 0)  // keep the topk_group best groups (stable: ties to the lower group index)
      for (int k = 0; k < a.topk_group; ++k) {
        int best = -1;
        for (int g = 0; g < a.n_group; ++g)
          if (gkeep[g] == 0 && (best < 0 || gscore[g] > gscore[best])) best = g;
        gkeep[best] = 1;
      }
    __syncthreads();
    for (int j = threadIdx.x; j < E; j += kThreads)
      if (gkeep[j / per_group] == 0) sel[j] = -INFINITY;
    __syncthreads();
  }
  if (threadIdx.x >= 32) return;
  // Top-k of sel (stable descending: ties to the lower expert index), one warp.
  int32_t* ids = a.topk_ids + static_cast<int64_t>(t) * a.top_k;
  float* wts = a.topk_weights + static_cast<int64_t>(t) * a.top_k;
  float wsum = 0.f;
  for (int k = 0; k < a.top_k; ++k) {
    const int best = warp_best(sel, used, E);
    if (threadIdx.x == 0) {
      used[best] = 1;
      ids[k] = best;
      wsum = __fadd_rn(wsum, score[best]);
    }
    __syncwarp();
  }
  if (threadIdx.x != 0) return;
  for (int k = 0; k < a.top_k; ++k) {
    float w = score[ids[k]];
    if (a.norm_topk_prob) w = __fdiv_rn(w, wsum);
    wts[k] = __fmul_rn(w, a.routed_scaling_factor);
  }
}

size_t logits_smem(int d) { return (static_cast<size_t>(d) + static_cast<size_t>(kTileE) * ((d + kBlock - 1) / kBlock)) * 4; }
size_t select_smem(int n_experts, int n_group) {
  return (2 * static_cast<size_t>(n_experts) + n_group) * 4 + (static_cast<size_t>(n_experts) + n_group) * 4;
}

}  // namespace

size_t router_smem_bytes(int d, int n_experts, int n_group) {
  return std::max(logits_smem(d), select_smem(n_experts, n_group));
}

void launch_router(const RouterArgs& a, cudaStream_t s) {
  if (a.n == 0) return;
  const size_t sl = logits_smem(a.d), ss = select_smem(a.n_experts, a.n_group);
  cudaFuncSetAttribute(router_select_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(ss));
  // Measured on the H200 (test_ops --perf -o router, d 7168, E 256): the split kernel 58 µs at 1-8 tokens but
  // 2.7 µs per token at 128+; one block per token 0.7 µs per token at 8192 but ~400 µs for a single token.
  if (a.n < kSplitBelow) {
    cudaFuncSetAttribute(router_logits_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(sl));
    router_logits_kernel<<<dim3((a.n_experts + kTileE - 1) / kTileE, a.n), kThreads, sl, s>>>(a);
  } else {
    const size_t st = static_cast<size_t>(a.d) * 4;
    cudaFuncSetAttribute(router_logits_token_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(st));
    router_logits_token_kernel<<<a.n, kThreads, st, s>>>(a);
  }
  router_select_kernel<<<a.n, kThreads, ss, s>>>(a);
}

}  // namespace dsv3::cuda
