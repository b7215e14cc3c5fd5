// router.cu: MoE expert selection — noaux_tc, greedy, group_limited_greedy with sigmoid or softmax (backend/cuda).
// Logits: each is the sum of its 128-wide block sums added in block order (backend.h kRouterSumBlock), every block
// sum a sequential chain — the reference's order, so logits and expert ids are bitwise the CPU's. Below 256 tokens a
// chain kernel (one thread per token x expert x block, ~64 blocks per token) whose last block per token runs the
// selection (one launch; decode); from 256 tokens a register-tiled fp32 GEMM on the CUDA cores (tokens share the
// staged gate), then a selection kernel. Selection: one block per token; sigmoid scores per thread, softmax sums in
// the reference's order, group scores a warp per group (the top-2 of a multiset does not depend on the scan order),
// group and expert top-k as warp argmaxes over registers (value desc, index asc: the reference's stable order).
// Precision: fp32 throughout; exp is the reference's (ref::exp, backend/ref_math.h); ties go to the lower index.
// Reference: CpuBackend::router (model-spec §4.2, §9.3); checked by tests/ops case "router" (every variant, ties).
#include <atomic>
#include <cfloat>

#include "dsv3/backend/cuda/common.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kThreads = 256, kBlock = 128;  // kBlock == kRouterSumBlock (backend.h)
constexpr int kTiledFrom = kRouterFusedMaxTokens;  // tokens: from here the tiled logit kernel, below the chain kernel
constexpr int kTopkPerLane = 16;                  // expert top-k in registers up to 32 x 16 = 512 experts

// The CPU's exp (backend/ref_math.h), so that scores, weights and ties are the reference's bit for bit.
__device__ __forceinline__ float exp_f(float x) { return ref::exp(x); }

// NOTE on exactness: x and the gate are bf16, so each product x·w has at most 16 significant bits and is exact in
// fp32 (unless it falls below ~2^-134); fmaf(x, w, s) therefore rounds exactly once, like the reference's
// `s += x * w` (product exact, one rounding in the add). Every kernel here uses fmaf: one instruction per MAC.

// Decode sizes (< kTiledFrom tokens, or rows that are not 16-byte aligned): one thread per (token, expert, 128-wide
// block) chain. The thread loads its 128 weights and 128 activations as 16-byte vectors before the chain
// (independent loads in flight instead of one L2 round trip per 8 MACs), a block holds whole experts, and threads
// 0..ne-1 add their expert's block sums in block order. Grid (expert tiles, tokens): ~64 blocks per token at d 7168, E 256.
__device__ void router_select(const RouterArgs& a, int t, float* sm);

// With a.done (the fused form), the last block of token t to finish (an atomic count per token, reset by that block)
// runs the selection of token t, reading the other blocks' logits from L2 after the fence.
__global__ void __launch_bounds__(kThreads) router_logits_chain_kernel(const RouterArgs a, int experts_per_block) {
  extern __shared__ float part[];  // [experts_per_block, nb]; later router_select's shared memory
  __shared__ int s_last;
  const int nb = (a.d + kBlock - 1) / kBlock;
  const int t = blockIdx.y, e0 = blockIdx.x * experts_per_block, ne = min(experts_per_block, a.n_experts - e0);
  const bf16_t* xr = a.x + static_cast<int64_t>(t) * a.d;
  const bool vec = a.d % 8 == 0 && (reinterpret_cast<uintptr_t>(a.gate) & 15) == 0 &&
                   (reinterpret_cast<uintptr_t>(a.x) & 15) == 0;
  for (int item = threadIdx.x; item < ne * nb; item += blockDim.x) {
    const int jl = item / nb, b = item % nb, i0 = b * kBlock, len = min(kBlock, a.d - i0);
    const bf16_t* w = a.gate + static_cast<int64_t>(e0 + jl) * a.d + i0;
    float s = 0.f;
    if (vec && len == kBlock) {
      uint4 wv[kBlock / 8], xv[kBlock / 8];
#pragma unroll
      for (int v = 0; v < kBlock / 8; ++v) {
        wv[v] = __ldg(reinterpret_cast<const uint4*>(w) + v);
        xv[v] = __ldg(reinterpret_cast<const uint4*>(xr + i0) + v);
      }
#pragma unroll
      for (int v = 0; v < kBlock / 8; ++v) {
        const __nv_bfloat162* pw = reinterpret_cast<const __nv_bfloat162*>(&wv[v]);
        const __nv_bfloat162* px = reinterpret_cast<const __nv_bfloat162*>(&xv[v]);
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const float2 fw = __bfloat1622float2(pw[q]), fx = __bfloat1622float2(px[q]);
          s = fmaf(fx.x, fw.x, s);
          s = fmaf(fx.y, fw.y, s);
        }
      }
    } else {
      for (int i = 0; i < len; ++i) s = fmaf(ld_bf16(xr + i0 + i), ld_bf16(w + i), s);
    }
    part[jl * nb + b] = s;
  }
  __syncthreads();
  for (int jl = threadIdx.x; jl < ne; jl += blockDim.x) {
    float z = 0.f;
#pragma unroll 8
    for (int b = 0; b < nb; ++b) z = __fadd_rn(z, part[jl * nb + b]);
    a.logits[static_cast<int64_t>(t) * a.n_experts + e0 + jl] = z;
  }
  if (!a.done) return;
  __syncthreads();  // the block's logits are written (and part is free)
  if (threadIdx.x == 0) {
    __threadfence();
    const int prev = atomicAdd(a.done + t, 1);
    __threadfence();
    s_last = prev == static_cast<int>(gridDim.x) - 1;
    if (s_last) a.done[t] = 0;  // every block of token t has counted: ready for the next launch
  }
  __syncthreads();
  if (s_last) router_select(a, t, part);
}

// Prefill sizes: a register-tiled fp32 GEMM on the CUDA cores in the reference's order. A block owns TM tokens x TE
// experts; per 128-wide block of d it stages both operands in shared memory as fp32, k-major (xs[k][token],
// ws[k][expert]), and each thread runs the RT x RE sequential chains of its outputs, then adds each chain into its
// logit (block order). The tokens share every staged weight (TM-fold reuse) where the one-block-per-token design
// re-read the whole gate per token (7.9 ms per 8192 tokens on the H200). The next block's operands are loaded into
// registers (16-byte vectors; consecutive threads take consecutive rows, so the transposing stores are
// conflict-free) while the current block is multiplied.
template <int TM, int TE, int RT, int RE>
__global__ void __launch_bounds__((TM / RT) * (TE / RE)) router_logits_tiled_kernel(const RouterArgs a) {
  constexpr int kTx = TE / RE, kNt = (TM / RT) * kTx, kVx = TM * (kBlock / 8) / kNt, kVw = TE * (kBlock / 8) / kNt;
  static_assert(kVx * kNt == TM * (kBlock / 8) && kVw * kNt == TE * (kBlock / 8), "whole vectors per thread");
  extern __shared__ float sm[];
  float* xs = sm;                   // [kBlock][TM]
  float* ws = xs + kBlock * TM;     // [kBlock][TE]
  const int tx = threadIdx.x % kTx, ty = threadIdx.x / kTx;
  const int t0 = blockIdx.x * TM, e0 = blockIdx.y * TE;
  // Vector q of a thread: row (q * kNt + tid) % ROWS, columns ((q * kNt + tid) / ROWS) * 8 .. + 7 of the block.
  uint4 px[kVx], pw[kVw];
  auto fetch = [&](int i0) {  // the whole 128-wide block at i0 (the caller guarantees i0 + 128 <= d)
#pragma unroll
    for (int q = 0; q < kVx; ++q) {
      const int idx = q * kNt + threadIdx.x, r = idx % TM, c8 = idx / TM * 8;
      px[q] = __ldg(reinterpret_cast<const uint4*>(a.x + static_cast<int64_t>(min(t0 + r, a.n - 1)) * a.d + i0 + c8));
    }
#pragma unroll
    for (int q = 0; q < kVw; ++q) {
      const int idx = q * kNt + threadIdx.x, r = idx % TE, c8 = idx / TE * 8;
      pw[q] = __ldg(reinterpret_cast<const uint4*>(a.gate + static_cast<int64_t>(min(e0 + r, a.n_experts - 1)) * a.d +
                                                   i0 + c8));
    }
  };
  // The tail block (d % 128) element by element, zero-filled past d (its chains stop at len anyway).
  auto stage_tail = [&](int i0, int len) {
    for (int idx = threadIdx.x; idx < TM * kBlock; idx += kNt) {
      const int r = idx % TM, c = idx / TM;
      xs[c * TM + r] = c < len ? ld_bf16(a.x + static_cast<int64_t>(min(t0 + r, a.n - 1)) * a.d + i0 + c) : 0.f;
    }
    for (int idx = threadIdx.x; idx < TE * kBlock; idx += kNt) {
      const int r = idx % TE, c = idx / TE;
      ws[c * TE + r] = c < len ? ld_bf16(a.gate + static_cast<int64_t>(min(e0 + r, a.n_experts - 1)) * a.d + i0 + c)
                               : 0.f;
    }
  };
  auto store = [&]() {
#pragma unroll
    for (int q = 0; q < kVx; ++q) {
      const int idx = q * kNt + threadIdx.x, r = idx % TM, c8 = idx / TM * 8;
      const __nv_bfloat162* p2 = reinterpret_cast<const __nv_bfloat162*>(&px[q]);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 f = __bfloat1622float2(p2[e]);
        xs[(c8 + 2 * e) * TM + r] = f.x;
        xs[(c8 + 2 * e + 1) * TM + r] = f.y;
      }
    }
#pragma unroll
    for (int q = 0; q < kVw; ++q) {
      const int idx = q * kNt + threadIdx.x, r = idx % TE, c8 = idx / TE * 8;
      const __nv_bfloat162* p2 = reinterpret_cast<const __nv_bfloat162*>(&pw[q]);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 f = __bfloat1622float2(p2[e]);
        ws[(c8 + 2 * e) * TE + r] = f.x;
        ws[(c8 + 2 * e + 1) * TE + r] = f.y;
      }
    }
  };
  float z[RT][RE];
#pragma unroll
  for (int r = 0; r < RT; ++r)
#pragma unroll
    for (int c = 0; c < RE; ++c) z[r][c] = 0.f;
  const int full = a.d / kBlock;  // whole blocks (vector loads need d % 8 == 0 and aligned rows: checked by the launcher)
  if (full > 0) fetch(0);
  for (int b = 0, i0 = 0; i0 < a.d; ++b, i0 += kBlock) {
    const int len = min(kBlock, a.d - i0);
    __syncthreads();  // the previous block's operands are consumed
    if (b < full) store();
    else stage_tail(i0, len);
    __syncthreads();
    if (b + 1 < full) fetch(i0 + kBlock);
    float s[RT][RE];
#pragma unroll
    for (int r = 0; r < RT; ++r)
#pragma unroll
      for (int c = 0; c < RE; ++c) s[r][c] = 0.f;
#pragma unroll 4
    for (int k = 0; k < len; ++k) {
      float xv[RT], wv[RE];
#pragma unroll
      for (int r = 0; r < RT; r += 4) {
        const float4 v = *reinterpret_cast<const float4*>(xs + k * TM + ty * RT + r);
        xv[r] = v.x, xv[r + 1] = v.y, xv[r + 2] = v.z, xv[r + 3] = v.w;
      }
#pragma unroll
      for (int c = 0; c < RE; c += 4) {
        const float4 v = *reinterpret_cast<const float4*>(ws + k * TE + tx * RE + c);
        wv[c] = v.x, wv[c + 1] = v.y, wv[c + 2] = v.z, wv[c + 3] = v.w;
      }
#pragma unroll
      for (int r = 0; r < RT; ++r)
#pragma unroll
        for (int c = 0; c < RE; ++c) s[r][c] = fmaf(xv[r], wv[c], s[r][c]);
    }
#pragma unroll
    for (int r = 0; r < RT; ++r)
#pragma unroll
      for (int c = 0; c < RE; ++c) z[r][c] = __fadd_rn(z[r][c], s[r][c]);
  }
#pragma unroll
  for (int r = 0; r < RT; ++r) {
    const int t = t0 + ty * RT + r;
    if (t >= a.n) continue;
#pragma unroll
    for (int c = 0; c < RE; ++c) {
      const int e = e0 + tx * RE + c;
      if (e < a.n_experts) a.logits[static_cast<int64_t>(t) * a.n_experts + e] = z[r][c];
    }
  }
}

template <int TM, int TE, int RT, int RE>
void launch_tiled(const RouterArgs& a, cudaStream_t s) {
  static_assert(RT % 4 == 0 && RE % 4 == 0 && TM % RT == 0 && TE % RE == 0, "float4 operand loads");
  const size_t smem = static_cast<size_t>(kBlock) * (TM + TE) * sizeof(float);
  auto* k = router_logits_tiled_kernel<TM, TE, RT, RE>;
  cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  const dim3 grid((a.n + TM - 1) / TM, (a.n_experts + TE - 1) / TE);
  k<<<grid, (TM / RT) * (TE / RE), smem, s>>>(a);
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

// The warp's best (largest value, lowest index among equals) of one candidate per lane (index -1: none).
__device__ __forceinline__ void warp_argmax(int& best, float& bv) {
  for (int off = 16; off > 0; off >>= 1) {
    const int ob = __shfl_xor_sync(0xffffffffu, best, off);
    const float ov = __shfl_xor_sync(0xffffffffu, bv, off);
    const bool take = ob >= 0 && (best < 0 || ov > bv || (!(ov < bv) && ov == bv && ob < best));
    if (take) best = ob, bv = ov;
  }
}

// The selection of token t from its logits (a.logits, read through L2: the fused chain kernel's other blocks wrote
// them). sm: select_smem() bytes of shared memory; every thread of the block calls it.
__device__ void router_select(const RouterArgs& a, int t, float* sm) {
  const int E = a.n_experts, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float* score = sm;                     // [E]
  float* sel = score + E;                // [E]
  float* gscore = sel + E;               // [n_group]
  int* used = reinterpret_cast<int*>(gscore + a.n_group);  // [max(E, n_group)]
  int* gkeep = used + E;                 // [n_group]
  const float* lr = a.logits + static_cast<int64_t>(t) * E;
  for (int j = threadIdx.x; j < E; j += kThreads) {
    float s = __ldcg(lr + j);
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
    // A warp per group. noaux_tc: the sum of the two largest (duplicates counted), as the reference's scan finds
    // them — the top-2 of a multiset, so the lanes' partial top-2s merge in any order. group_limited: the maximum.
    for (int g = warp; g < a.n_group; g += kThreads / 32) {
      const float* s = sel + g * per_group;
      float x = -INFINITY, c = -INFINITY;
      for (int j = lane; j < per_group; j += 32) {
        const float v = s[j];
        if (v > x) {
          c = x;
          x = v;
        } else if (v > c) {
          c = v;
        }
      }
      for (int off = 16; off > 0; off >>= 1) {
        const float ox = __shfl_xor_sync(0xffffffffu, x, off), oc = __shfl_xor_sync(0xffffffffu, c, off);
        const float hi = fmaxf(x, ox), lo = fminf(x, ox);
        c = fmaxf(lo, fmaxf(c, oc));
        x = hi;
      }
      if (lane == 0) {
        gscore[g] = a.method == 0 ? __fadd_rn(x, c) : x;
        gkeep[g] = 0;
      }
    }
    __syncthreads();
    if (warp == 0) {  // keep the topk_group best groups (stable: ties to the lower group index)
      if (a.n_group <= 32) {
        const float gv = lane < a.n_group ? gscore[lane] : 0.f;
        bool taken = false;
        for (int k = 0; k < a.topk_group; ++k) {
          int best = lane < a.n_group && !taken ? lane : -1;
          float bv = gv;
          warp_argmax(best, bv);
          taken = taken || best == lane;
        }
        if (lane < a.n_group) gkeep[lane] = taken;
      } else if (lane == 0) {
        for (int k = 0; k < a.topk_group; ++k) {
          int best = -1;
          for (int g = 0; g < a.n_group; ++g)
            if (gkeep[g] == 0 && (best < 0 || gscore[g] > gscore[best])) best = g;
          gkeep[best] = 1;
        }
      }
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
  if (E <= 32 * kTopkPerLane) {
    // Lane l holds experts l + 32·i in registers; its candidate is its first maximum among the unused (ascending
    // index within the lane), then the warp's argmax over the candidates.
    float v[kTopkPerLane];
#pragma unroll
    for (int i = 0; i < kTopkPerLane; ++i) v[i] = lane + 32 * i < E ? sel[lane + 32 * i] : 0.f;
    uint32_t taken = 0;  // bit i: expert lane + 32·i is chosen
    for (int k = 0; k < a.top_k; ++k) {
      int best = -1;
      float bv = 0.f;
#pragma unroll
      for (int i = 0; i < kTopkPerLane; ++i) {
        const int j = lane + 32 * i;
        if (j < E && !((taken >> i) & 1u) && (best < 0 || v[i] > bv)) best = j, bv = v[i];
      }
      warp_argmax(best, bv);
      if (best >= 0 && (best & 31) == lane) taken |= 1u << (best >> 5);
      if (lane == 0) {
        ids[k] = best;
        wsum = __fadd_rn(wsum, score[best]);
      }
    }
  } else {
    for (int k = 0; k < a.top_k; ++k) {
      const int best = warp_best(sel, used, E);
      if (lane == 0) {
        used[best] = 1;
        ids[k] = best;
        wsum = __fadd_rn(wsum, score[best]);
      }
      __syncwarp();
    }
  }
  if (lane != 0) return;
  for (int k = 0; k < a.top_k; ++k) {
    float w = score[ids[k]];
    if (a.norm_topk_prob) w = __fdiv_rn(w, wsum);
    wts[k] = __fmul_rn(w, a.routed_scaling_factor);
  }
}

__global__ void __launch_bounds__(kThreads) router_select_kernel(const RouterArgs a) {
  extern __shared__ float sm[];
  router_select(a, blockIdx.x, sm);
}

int chain_experts_per_block(int d) { return std::max(1, kThreads / ((d + kBlock - 1) / kBlock)); }
size_t chain_smem(int d) {
  return static_cast<size_t>(chain_experts_per_block(d)) * ((d + kBlock - 1) / kBlock) * sizeof(float);
}
size_t select_smem(int n_experts, int n_group) {
  return (2 * static_cast<size_t>(n_experts) + n_group) * 4 + (static_cast<size_t>(n_experts) + n_group) * 4;
}

}  // namespace

size_t router_smem_bytes(int d, int n_experts, int n_group) {
  return std::max(chain_smem(d), select_smem(n_experts, n_group));
}

// cudaFuncSetAttribute costs a driver call: raise a kernel's dynamic shared-memory limit only past the 48 KB default
// and only when a larger size is asked for than before.
template <typename K>
void allow_smem(K* kernel, std::atomic<int>& allowed, size_t bytes) {
  if (bytes <= 48 * 1024 || static_cast<int>(bytes) <= allowed.load()) return;
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  allowed.store(static_cast<int>(bytes));
}

void launch_router(const RouterArgs& a, cudaStream_t s) {
  if (a.n == 0) return;
  static std::atomic<int> select_allowed{0}, chain_allowed{0};
  const size_t ss = select_smem(a.n_experts, a.n_group);
  // Measured on the H200 (test_ops --perf -o router, d 7168, E 256): see docs/benchmarks.md. The tiled kernels take
  // 16-byte aligned rows (d % 8 == 0); other shapes and small batches the chain kernel, with the selection fused in
  // when a.done is given (n < kRouterFusedMaxTokens).
  const bool vec = a.d % 8 == 0 && (reinterpret_cast<uintptr_t>(a.gate) & 15) == 0 &&
                   (reinterpret_cast<uintptr_t>(a.x) & 15) == 0;
  if (a.n < kTiledFrom || !vec) {
    const int epb = chain_experts_per_block(a.d);
    const bool fused = a.done != nullptr && a.n < kRouterFusedMaxTokens;
    RouterArgs b = a;
    if (!fused) b.done = nullptr;
    const size_t sc = fused ? std::max(chain_smem(a.d), ss) : chain_smem(a.d);
    allow_smem(router_logits_chain_kernel, chain_allowed, sc);
    router_logits_chain_kernel<<<dim3((a.n_experts + epb - 1) / epb, a.n), kThreads, sc, s>>>(b, epb);
    if (fused) return;
  } else if (a.n < 2048) {
    launch_tiled<32, 64, 4, 4>(a, s);  // 128 threads, 48 KB: enough blocks at a few hundred tokens
  } else {
    launch_tiled<64, 128, 4, 8>(a, s);  // 256 threads, 96 KB: two blocks per SM
  }
  allow_smem(router_select_kernel, select_allowed, ss);
  router_select_kernel<<<a.n, kThreads, ss, s>>>(a);
}

}  // namespace dsv3::cuda
