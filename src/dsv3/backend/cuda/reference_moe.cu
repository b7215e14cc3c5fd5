// reference_moe.cu: reference-numerics router and routed experts (backend/cuda; DSV3_NUMERICS=reference). Outputs
// are CpuBackend::router's and CpuBackend::moe_experts' bit for bit: backend/ref_math.h's functions in their order.
// Parallelisation: router one block per token (threads: one logit each; thread 0: ref::router_select). Experts, per
// (token, k) entry and without a host read-back (capturable in a CUDA graph): x quantized per row once (reference.cu),
// gate/up one thread per (entry, column) with SwiGLU -> h (bf16), h quantized per (entry, 128-group), down one thread
// per (entry, output), then the combine one thread per (token, output): w·y summed in fp32 in (expert id, k) order —
// the reference's expert-index order — and rounded once. Every expert's rows are independent rows of its linears,
// so computing them per entry instead of per expert batch changes no bit. Slow by design; built with --fmad=false.
// Reference: CpuBackend::router / moe_experts (cpu_moe.cpp); tests/ops cases "refnum router|moe_experts".
#include "dsv3/backend/cuda/common.cuh"
#include "dsv3/backend/ref_math.h"

namespace dsv3::cuda {
namespace {

constexpr int kThreads = 256, kMaxTopK = 32;

__device__ __forceinline__ const uint16_t* u16(const bf16_t* p) { return reinterpret_cast<const uint16_t*>(p); }
__device__ __forceinline__ uint16_t* u16(bf16_t* p) { return reinterpret_cast<uint16_t*>(p); }

// Dynamic shared memory: score[E], sel[E], gscore[n_group] floats, then used[max(E, n_group)] ints.
__global__ void ref_router_kernel(const RouterArgs a) {
  extern __shared__ float sm[];
  const int E = a.n_experts, t = blockIdx.x;
  float* score = sm;
  float* sel = score + E;
  float* gscore = sel + E;
  int32_t* used = reinterpret_cast<int32_t*>(gscore + a.n_group);
  const uint16_t* x = u16(a.x) + static_cast<int64_t>(t) * a.d;
  for (int j = threadIdx.x; j < E; j += blockDim.x)
    score[j] = ref::router_logit(x, u16(a.gate) + static_cast<int64_t>(j) * a.d, a.d);
  __syncthreads();
  if (threadIdx.x == 0)
    ref::router_select(score, sel, gscore, used, a.bias, E, a.scoring == 0, a.method, a.n_group, a.topk_group,
                       a.top_k, a.norm_topk_prob, a.routed_scaling_factor, a.topk_ids + static_cast<int64_t>(t) * a.top_k,
                       a.topk_weights + static_cast<int64_t>(t) * a.top_k);
}

// The expert of entry i, or nullptr for an id outside [0, n_experts) (reported once per entry by gate_up).
__device__ __forceinline__ const RefMoeExpert* expert_of(const RefMoeArgs& a, int64_t i) {
  const int e = a.ids[i];
  return e >= 0 && e < a.n_experts ? a.experts + e : nullptr;
}

// One output of a linear for activation row `row`: FP8 (scale_inv given) from the row's codes and scales, bf16
// otherwise from the bf16 row.
__device__ __forceinline__ float expert_linear(const void* w, const float* sw, int64_t j, int k, const uint8_t* codes,
                                               const float* scales, const uint16_t* row) {
  if (sw) {
    const int kb = (k + 127) / 128;
    return ref::linear_fp8(codes, static_cast<const uint8_t*>(w) + j * k, scales, sw + (j / 128) * kb, k);
  }
  return ref::dot(row, static_cast<const uint16_t*>(w) + j * k, k);
}

// h[i, j] = bf16(silu(bf16(gate_j · x_t)) · bf16(up_j · x_t)) for entry i = (t, k), j < f of its expert.
__global__ void ref_moe_gate_up_kernel(const RefMoeArgs a) {
  const int64_t entries = static_cast<int64_t>(a.n) * a.top_k, total = entries * a.f_max;
  const int kbd = (a.d + 127) / 128;
  for (int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; o < total;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = o / a.f_max;
    const int j = static_cast<int>(o % a.f_max);
    const RefMoeExpert* ex = expert_of(a, i);
    if (!ex) {
      if (j == 0) set_error(a.err, kErrExpertId);
      continue;
    }
    if (j >= ex->f) continue;
    const int64_t t = i / a.top_k;
    const uint8_t* codes = a.x_codes + t * a.d;
    const float* scales = a.x_scales + t * kbd;
    const uint16_t* row = u16(a.x) + t * a.d;
    const uint16_t g = ref::f32_to_bf16(expert_linear(ex->gate, ex->gate_sc, j, a.d, codes, scales, row));
    const uint16_t u = ref::f32_to_bf16(expert_linear(ex->up, ex->up_sc, j, a.d, codes, scales, row));
    u16(a.h)[o] = ref::silu_mul(g, u);
  }
}

// h's FP8 quantization per (entry, 128-group) over its expert's f columns.
__global__ void ref_moe_quantize_h_kernel(const RefMoeArgs a) {
  const int kbf = (a.f_max + 127) / 128;
  const int64_t entries = static_cast<int64_t>(a.n) * a.top_k, total = entries * kbf;
  for (int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; o < total;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = o / kbf;
    const int g = static_cast<int>(o % kbf), lo = g * 128;
    const RefMoeExpert* ex = expert_of(a, i);
    if (!ex || lo >= ex->f) continue;
    a.h_scales[o] = ref::quantize_group(u16(a.h) + i * a.f_max + lo, min(128, ex->f - lo), a.ue8m0,
                                        a.h_codes + i * a.f_max + lo);
  }
}

// y[i, c] = bf16(down_c · h_i).
__global__ void ref_moe_down_kernel(const RefMoeArgs a) {
  const int kbf = (a.f_max + 127) / 128;
  const int64_t entries = static_cast<int64_t>(a.n) * a.top_k, total = entries * a.d;
  for (int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; o < total;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = o / a.d;
    const int c = static_cast<int>(o % a.d);
    const RefMoeExpert* ex = expert_of(a, i);
    if (!ex) continue;
    u16(a.y)[o] = ref::f32_to_bf16(expert_linear(ex->down, ex->down_sc, c, ex->f, a.h_codes + i * a.f_max,
                                                 a.h_scales + i * kbf, u16(a.h) + i * a.f_max));
  }
}

// out[t, c] = bf16(Σ w_k · y[(t, k), c]) over the token's entries in (expert id, k) order.
__global__ void ref_moe_combine_kernel(const RefMoeArgs a) {
  const int64_t total = static_cast<int64_t>(a.n) * a.d;
  for (int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; o < total;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = o / a.d;
    const int c = static_cast<int>(o % a.d);
    const int32_t* ids = a.ids + t * a.top_k;
    int order[kMaxTopK];
    int cnt = 0;
    for (int k = 0; k < a.top_k; ++k) {  // insertion by expert id; equal ids keep k order
      if (ids[k] < 0 || ids[k] >= a.n_experts) continue;
      int pos = cnt++;
      while (pos > 0 && ids[order[pos - 1]] > ids[k]) {
        order[pos] = order[pos - 1];
        --pos;
      }
      order[pos] = k;
    }
    float acc = 0.f;
    for (int q = 0; q < cnt; ++q) {
      const int k = order[q];
      acc = ref::mac(acc, a.weights[t * a.top_k + k], ref::bf16_to_f32(u16(a.y)[(t * a.top_k + k) * a.d + c]));
    }
    u16(a.out)[o] = ref::f32_to_bf16(acc);
  }
}

unsigned grid_of(int64_t n) { return grid_for(n, kThreads, 132LL * 64); }

}  // namespace

size_t ref_router_smem_bytes(int n_experts, int n_group) {
  return (2 * static_cast<size_t>(n_experts) + n_group) * sizeof(float) +
         static_cast<size_t>(n_experts > n_group ? n_experts : n_group) * sizeof(int32_t);
}

void launch_ref_router(const RouterArgs& a, cudaStream_t s) {
  if (a.n == 0) return;
  const size_t smem = ref_router_smem_bytes(a.n_experts, a.n_group);
  if (smem > 48 * 1024)
    cudaFuncSetAttribute(ref_router_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  ref_router_kernel<<<a.n, kThreads, smem, s>>>(a);
}

void launch_ref_moe(const RefMoeArgs& a, cudaStream_t s) {
  const int64_t entries = static_cast<int64_t>(a.n) * a.top_k;
  if (entries == 0) return;
  if (a.any_fp8) launch_ref_quantize_fp8({a.x, a.x_codes, a.x_scales, a.d, a.n, a.d, a.ue8m0}, s);
  ref_moe_gate_up_kernel<<<grid_of(entries * a.f_max), kThreads, 0, s>>>(a);
  if (a.any_fp8) ref_moe_quantize_h_kernel<<<grid_of(entries * ((a.f_max + 127) / 128)), kThreads, 0, s>>>(a);
  ref_moe_down_kernel<<<grid_of(entries * a.d), kThreads, 0, s>>>(a);
  ref_moe_combine_kernel<<<grid_of(static_cast<int64_t>(a.n) * a.d), kThreads, 0, s>>>(a);
}

}  // namespace dsv3::cuda
