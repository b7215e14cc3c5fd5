// router.cu: MoE expert selection — noaux_tc, greedy, group_limited_greedy with sigmoid or softmax (backend/cuda).
// Parallelisation: one block per token, fused: x in shared memory; thread j computes expert j's logit as a
// sequential fp32 dot product, so logits are bitwise those of the CPU reference. The gate is staged through shared
// memory in tiles of [E, 64] (coalesced 16-byte loads, the next tile's loads in flight while the current one is
// summed): a thread streaming its own row with dependent loads spent ~400 µs per decode token (DSV3_PROFILE, H200).
// Sigmoid scores are elementwise (per thread); softmax, group scores and the top-k run in the CPU's exact order on
// one thread.
// Precision: fp32 throughout; exp in double rounded to fp32 (agrees with glibc's expf); ties go to the lower index
// (the reference's stable sort).
// Reference: CpuBackend::router (model-spec §4.2, §9.3); checked by tests/ops case "router" (every variant, ties).
// NOTE: logits cost E·d sequential MACs per thread; fine for decode, a GEMM + select split is the prefill upgrade.
#include <cfloat>

#include "dsv3/backend/cuda/common.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kTileD = 64;              // gate columns per shared-memory tile
constexpr int kTileLd = kTileD / 2 + 1;  // 32-bit words per staged row: 33, so thread j's reads of row j are
                                         // conflict-free across a warp

__device__ __forceinline__ float exp_f(float x) { return static_cast<float>(exp(static_cast<double>(x))); }

__global__ void __launch_bounds__(kThreads) router_kernel(const RouterArgs a) {
  extern __shared__ float sm[];
  float* xs = sm;                   // [d]
  float* score = xs + a.d;          // [E]
  float* sel = score + a.n_experts; // [E]
  float* gscore = sel + a.n_experts;  // [n_group]
  int* used = reinterpret_cast<int*>(gscore + a.n_group);  // [E] selection flags
  const int t = blockIdx.x, E = a.n_experts;
  const bf16_t* xr = a.x + static_cast<int64_t>(t) * a.d;
  for (int i = threadIdx.x; i < a.d; i += kThreads) xs[i] = ld_bf16(xr + i);
  __syncthreads();
  const bool tiled = a.d % kTileD == 0 && E <= kThreads && (reinterpret_cast<uintptr_t>(a.gate) & 15) == 0;
  if (tiled) {
    // Staged tiles: [2][E][kTileLd] words after the selection flags. Each 16-byte load covers 8 columns of a row.
    uint32_t* tiles = reinterpret_cast<uint32_t*>(used + E);
    const int n_tiles = a.d / kTileD, chunks = E * (kTileD / 8);  // 16-byte chunks per tile
    constexpr int kMaxChunks = 8;                                 // E <= 256: at most 8 chunks per thread
    uint4 reg[kMaxChunks];
    auto load = [&](int tile) {
#pragma unroll
      for (int r = 0; r < kMaxChunks; ++r) {
        const int idx = threadIdx.x + r * kThreads;
        if (idx < chunks) {
          const int row = idx / (kTileD / 8), part = idx % (kTileD / 8);
          reg[r] = __ldg(reinterpret_cast<const uint4*>(a.gate + static_cast<int64_t>(row) * a.d + tile * kTileD +
                                                        part * 8));
        }
      }
    };
    auto store = [&](int buf) {
      uint32_t* dst = tiles + buf * E * kTileLd;
#pragma unroll
      for (int r = 0; r < kMaxChunks; ++r) {
        const int idx = threadIdx.x + r * kThreads;
        if (idx < chunks) {
          const int row = idx / (kTileD / 8), part = idx % (kTileD / 8);
          uint32_t* w = dst + row * kTileLd + part * 4;
          w[0] = reg[r].x, w[1] = reg[r].y, w[2] = reg[r].z, w[3] = reg[r].w;
        }
      }
    };
    float z[(256 + kThreads - 1) / kThreads] = {};
    load(0);
    store(0);
    __syncthreads();
    for (int tile = 0; tile < n_tiles; ++tile) {
      if (tile + 1 < n_tiles) load(tile + 1);
      const uint32_t* src = tiles + (tile & 1) * E * kTileLd;
      const float* xt = xs + tile * kTileD;
      for (int j = threadIdx.x, s = 0; j < E; j += kThreads, ++s) {
        const uint32_t* row = src + j * kTileLd;
        float acc = z[s];
#pragma unroll 8
        for (int i = 0; i < kTileD / 2; ++i) {
          const uint32_t wv = row[i];
          const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&wv));
          acc = __fadd_rn(acc, __fmul_rn(xt[2 * i], f.x));
          acc = __fadd_rn(acc, __fmul_rn(xt[2 * i + 1], f.y));
        }
        z[s] = acc;
      }
      if (tile + 1 < n_tiles) store((tile + 1) & 1);
      __syncthreads();
    }
    for (int j = threadIdx.x, s = 0; j < E; j += kThreads, ++s) {
      score[j] = z[s];
      used[j] = 0;
    }
  } else {
    for (int j = threadIdx.x; j < E; j += kThreads) {
      const bf16_t* w = a.gate + static_cast<int64_t>(j) * a.d;
      float z = 0.f;
      for (int i = 0; i < a.d; ++i) z = __fadd_rn(z, __fmul_rn(xs[i], ld_bf16(w + i)));
      score[j] = z;
      used[j] = 0;
    }
  }
  // Sigmoid is elementwise: every thread scores its own experts (the same operations as the reference).
  if (a.scoring == 0)
    for (int j = threadIdx.x; j < E; j += kThreads) score[j] = __fdiv_rn(1.0f, __fadd_rn(1.0f, exp_f(-score[j])));
  __syncthreads();
  if (threadIdx.x != 0) return;
  // The rest is O(E · top_k) and runs on one thread, in the reference's order.
  if (a.scoring != 0) {
    float mx = score[0];
    for (int j = 1; j < E; ++j) mx = score[j] > mx ? score[j] : mx;  // std::max_element: first maximum
    float sum = 0.f;
    for (int j = 0; j < E; ++j) {
      score[j] = exp_f(__fsub_rn(score[j], mx));
      sum = __fadd_rn(sum, score[j]);
    }
    for (int j = 0; j < E; ++j) score[j] = __fdiv_rn(score[j], sum);
  }
  for (int j = 0; j < E; ++j) sel[j] = a.bias ? __fadd_rn(score[j], a.bias[j]) : score[j];
  if (a.method != 1 && a.n_group > 1) {
    const int per_group = E / a.n_group;
    for (int g = 0; g < a.n_group; ++g) {
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
    }
    // Keep the topk_group best groups (stable: ties to the lower group index); mask the rest with -inf.
    for (int k = 0; k < a.topk_group; ++k) {
      int best = -1;
      for (int g = 0; g < a.n_group; ++g)
        if (used[g] == 0 && (best < 0 || gscore[g] > gscore[best])) best = g;
      used[best] = 1;
    }
    for (int g = 0; g < a.n_group; ++g) {
      if (used[g] == 0)
        for (int j = 0; j < per_group; ++j) sel[g * per_group + j] = -INFINITY;
      used[g] = 0;
    }
  }
  // Top-k of sel (stable descending: ties to the lower expert index).
  int32_t* ids = a.topk_ids + static_cast<int64_t>(t) * a.top_k;
  float* wts = a.topk_weights + static_cast<int64_t>(t) * a.top_k;
  float wsum = 0.f;
  for (int k = 0; k < a.top_k; ++k) {
    int best = -1;
    for (int j = 0; j < E; ++j)
      if (used[j] == 0 && (best < 0 || sel[j] > sel[best])) best = j;
    used[best] = 1;
    ids[k] = best;
    wsum = __fadd_rn(wsum, score[best]);
  }
  for (int k = 0; k < a.top_k; ++k) {
    float w = score[ids[k]];
    if (a.norm_topk_prob) w = __fdiv_rn(w, wsum);
    wts[k] = __fmul_rn(w, a.routed_scaling_factor);
  }
}

}  // namespace

size_t router_smem_bytes(int d, int n_experts, int n_group) {
  const size_t base = (static_cast<size_t>(d) + 2 * n_experts + n_group) * sizeof(float) +
                      static_cast<size_t>(n_experts) * 4;
  const bool tiled = d % kTileD == 0 && n_experts <= kThreads;  // the gate tiles (router_kernel's `tiled` path)
  return base + (tiled ? 2 * static_cast<size_t>(n_experts) * kTileLd * 4 : 0);
}

void launch_router(const RouterArgs& a, cudaStream_t s) {
  if (a.n == 0) return;
  const size_t smem = router_smem_bytes(a.d, a.n_experts, a.n_group);
  cudaFuncSetAttribute(router_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  router_kernel<<<a.n, kThreads, smem, s>>>(a);
}

}  // namespace dsv3::cuda
