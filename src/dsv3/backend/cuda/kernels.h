// kernels.h: the kernel-side Params structs and launchers of the CUDA backend (backend/cuda).
// The .cu files include only this header (no fmt, no C++20-heavy dsv3 headers); cuda_backend.cpp validates the
// backend.h Params on the host, fills these trivially copyable structs and calls the launchers on its stream.
// Every launcher only enqueues work; the caller checks cudaGetLastError() afterwards.
// Device-side input errors (bad token id, bad slot, ...) never trap: they set a bit in `err` (see ErrorBit) that the
// backend reads back at synchronize().
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include "dsv3/backend/cuda/gemv_v2_config.h"
#include "dsv3/base/sampling_rules.h"
#include "dsv3/base/synth_rules.h"

namespace dsv3::cuda {

using bf16_t = __nv_bfloat16;

enum ErrorBit : uint32_t {
  kErrEmbeddingId = 1u << 0,   // token id outside [0, vocab)
  kErrKvSlot = 1u << 1,        // kv_cache_store slot outside the pool
  kErrKvGather = 1u << 2,      // kv_cache_gather position beyond the block table or a bad block id
  kErrPrefillLen = 1u << 3,    // mla_prefill: a sequence with more queries than keys, or cu_q/cu_kv past q/kv
  kErrDecodeLen = 1u << 4,     // mla_decode: seq_len < 1 or beyond the block table, or a bad block id
  kErrExpertId = 1u << 5,      // moe_experts: expert id outside [0, n_experts)
  kErrFillTokens = 1u << 6,    // fill_token_ids: a (row, index) pair outside ids / src
};

// ---- elementwise.cu ----
struct RmsNormArgs {
  const bf16_t* x;       // [n, x_stride]
  bf16_t* residual;      // [n, dim]; may be nullptr
  const bf16_t* weight;  // [dim]
  bf16_t* out;           // [n, out_stride]
  int64_t x_stride, out_stride;
  int n, dim;
  float eps;
};
void launch_rms_norm(const RmsNormArgs& a, cudaStream_t s);

struct EmbeddingArgs {
  const int32_t* ids;   // [n]
  const bf16_t* table;  // [vocab, d]
  bf16_t* out;          // [n, d]
  int n, d, vocab;
  uint32_t* err;
};
void launch_embedding(const EmbeddingArgs& a, cudaStream_t s);

struct RopeArgs {
  bf16_t* x;                 // [n, heads, head_stride]
  const int32_t* positions;  // [n]
  const float* inv_freq;     // [half]
  int n, heads, head_stride, half, offset;
};
void launch_rope(const RopeArgs& a, cudaStream_t s);

struct SiluMulArgs {
  const bf16_t* gate;  // [count]
  const bf16_t* up;    // [count]
  bf16_t* out;         // [count]
  int64_t count;
};
void launch_silu_mul(const SiluMulArgs& a, cudaStream_t s);

struct AddArgs {
  const bf16_t* a;
  const bf16_t* b;
  bf16_t* out;
  int64_t count;
};
void launch_add(const AddArgs& a, cudaStream_t s);

// ---- kv_cache.cu ----
struct KvStoreArgs {
  const bf16_t* kv_new;  // [n, entry]
  bf16_t* cache;         // [n_slots, entry]
  const int32_t* slots;  // [n]
  int n, entry;
  int64_t n_slots;
  uint32_t* err;
};
void launch_kv_cache_store(const KvStoreArgs& a, cudaStream_t s);

struct KvGatherArgs {
  const bf16_t* cache;        // [n_blocks, block_size, rank + rope]
  const int32_t* block_table; // [n_seqs, max_blocks]
  const int32_t* cu_kv;       // [n_seqs + 1]
  bf16_t* latent_out;         // [n_kv, rank]
  bf16_t* pe_out;             // [n_kv, rope]
  int n_seqs, n_kv, max_blocks, block_size, rank, rope;
  int64_t n_blocks;
  uint32_t* err;
};
void launch_kv_cache_gather(const KvGatherArgs& a, cudaStream_t s);

// ---- linear.cu (FP8 activation quantization and the fallback GEMM) ----
// Quantizes x per row in 1x128 groups (model-spec §5.3), exactly as quantize_row_fp8 does on the CPU.
struct QuantArgs {
  const bf16_t* x;   // [n, x_stride]
  uint8_t* codes;    // [n, k] e4m3
  float* scales;     // [kb, n]: group g of row t at g * n + t (the outer-dim-major layout cuBLASLt's VEC128 wants)
  int64_t x_stride;
  int n, k;
  bool ue8m0;
};
void launch_quantize_fp8(const QuantArgs& a, cudaStream_t s);

// out[t, j] = Σ_g (Σ_{i∈g} a[t,i]·w[j,i]) · sa[g,t] · sw[j/128, g] in the CPU reference's summation order.
// fp8: a = codes (scales from QuantArgs), w = e4m3 with scale_inv [ceil(m/128), kb]. bf16: a = x (a_stride), w bf16,
// no scales, one running sum over k. Used for shapes cuBLASLt rejects; bitwise equal to CpuBackend::linear.
struct GemmFallbackArgs {
  const void* a;          // fp8: [n, k] codes; bf16: [n, a_stride] bf16
  const float* sa;        // fp8 only: [kb, n]
  const void* w;          // [m, k] e4m3 or bf16
  const float* sw;        // fp8 only: [ceil(m/128), kb]
  void* out;              // [n, m] bf16 or f32
  int64_t a_stride;
  int n, m, k;
  bool fp8, out_f32;
};
void launch_gemm_fallback(const GemmFallbackArgs& a, cudaStream_t s);

// ---- gemv_fp8.cu (decode-size FP8 GEMM) ----
// The same sum as GemmFallbackArgs' fp8 case for 1..kGemvMaxTokens tokens, streamed at HBM bandwidth with the
// products on the tensor cores; not bitwise equal to the reference (summation order). Any k, any m.
constexpr int kGemvMaxTokens = 16;
struct LinearFp8GemvArgs {
  const uint8_t* codes;  // [n, k] e4m3 activation codes (launch_quantize_fp8)
  const float* sa;       // [kb, n] activation scales, kb = ceil(k/128)
  const uint8_t* w;      // [m, k] e4m3 weight
  const float* sw;       // [ceil(m/128), kb] weight scale_inv
  void* out;             // [n, m] bf16 or f32
  int n, m, k;           // n in 1..kGemvMaxTokens
  bool out_f32;
};
void launch_linear_fp8_gemv(const LinearFp8GemvArgs& a, cudaStream_t s);

// ---- gemv_fp8_v2.cu (decode-size FP8 GEMV with the activation quantization fused in; DSV3_GEMV=v2) ----
// out = linear(x, w) for 1..kGemvV2MaxTokens rows of bf16 x: each CTA quantizes the 128-groups of x it needs itself
// (bitwise as launch_quantize_fp8) and streams the weight through a cp.async (or cp.async.bulk) pipeline; the sum is
// that of LinearFp8GemvArgs up to the order of the fp32 additions (tolerance kTolGemmFp8). No allocation, no host
// sync. The tile / stage / ring / CTAs-per-SM / copy choices come from `cfg` (gemv_v2_config.h).
constexpr int kGemvV2MaxTokens = 8;
struct LinearFp8GemvV2Args {
  const bf16_t* x;        // [n, x_stride] bf16 activations
  const uint8_t* w;       // [m, k] e4m3 weight, 16-byte aligned
  const float* sw;        // [ceil(m/128), kb] weight scale_inv, kb = ceil(k/128)
  void* out;              // [n, m] bf16 or f32
  int64_t x_stride;       // elements between rows of x (>= k)
  int n, m, k;            // n in 1..kGemvV2MaxTokens, k % 16 == 0
  bool ue8m0, out_f32;
  int split;              // K split = cluster size: 0 takes cfg.split (0: the cost model); 1, 2, 4 or 8 forces it
  uint8_t* dbg_codes;     // nullptr, or [n, k]: the fused quantization's e4m3 codes (tests: bitwise vs quantize)
  float* dbg_scales;      // nullptr, or [kb, n]: its scales, in launch_quantize_fp8's layout
  GemvV2Config cfg;       // tile_rows = 0: gemv_v2_default_config(m, k)
  void* out2 = nullptr;   // nullptr, or a stacked weight's second output [n, m - m1] (out is then [n, m1])
  int m1 = 0;             // with out2: the columns that go to out (m1 % 128 == 0 is the caller's business)
};
// Enqueues the GEMV and returns true, or returns false without enqueueing anything when it does not take the shape
// (n outside 1..8, k % 16 != 0, w not 16-byte aligned, x not 2-byte aligned, a forced split that does not fit, or
// a K too long for shared memory); the caller then runs launch_quantize_fp8 + launch_linear_fp8_gemv.
// A cfg whose plan does not fit the shape (shared memory, split > K blocks) runs with the cost model's split, then
// as gemv_v2_default_config, unless the split was forced through `split`; linear_fp8_gemv_v2_plan says what runs.
bool launch_linear_fp8_gemv_v2(const LinearFp8GemvV2Args& a, cudaStream_t s);
// The configuration the launcher runs for (n, m, k, cfg, forced split), split filled in; tile_rows = 0 if it
// refuses the shape. For tests (which variant ran) and perf tables.
GemvV2Config linear_fp8_gemv_v2_plan(int n, int m, int k, const GemvV2Config& cfg = GemvV2Config{}, int split = 0);
// The K split the launcher would pick for (n, m, k): 1, 2, 4 or 8; 0 if it does not take the shape (perf tables).
int linear_fp8_gemv_v2_split(int n, int m, int k, const GemvV2Config& cfg = GemvV2Config{});
// Sets every compiled variant's shared-memory attribute and queries its cluster occupancy on the current device once;
// the launcher does it on first use, the backend calls it early so that it never happens inside a graph capture.
void prepare_linear_fp8_gemv_v2();

// C_b[i, j] = Σ_l A_b[i, l] · B_b[l, j] in fp32 (sequential over l), bf16 out; row-major views with strides, batch b.
// The fallback for mla_absorb_q / mla_absorb_v when cuBLASLt has no algorithm for the strides.
struct BatchedGemmArgs {
  const bf16_t* a;  // A_b[i, l] = a[b * a_batch + i * a_row + l * a_col]
  const bf16_t* b;  // B_b[l, j] = b[b * b_batch + l * b_row + j * b_col]
  bf16_t* c;        // C_b[i, j] = c[b * c_batch + i * c_row + j]
  int64_t a_batch, a_row, a_col, b_batch, b_row, b_col, c_batch, c_row;
  int batch, rows, cols, inner;
};
void launch_batched_gemm_fallback(const BatchedGemmArgs& a, cudaStream_t s);

// ---- mla_absorb.cu ----
struct CopyRowsArgs {  // dst[r, 0:width] = src[r, 0:width], rows r with their own strides
  const bf16_t* src;
  bf16_t* dst;
  int64_t src_stride, dst_stride;
  int rows, width;
};
void launch_copy_rows(const CopyRowsArgs& a, cudaStream_t s);

// q_abs[t, h, :rank] = Σ_d q[t, h, d] · kv_b[h·per_head + d, :] (d < nope), q_abs[t, h, rank:] = q[t, h, nope:].
// Bitwise equal to CpuBackend::mla_absorb_q. Needs 8-byte aligned kv_b and q_abs rows (rank % 4 == 0,
// (rank + rope) % 4 == 0) — see absorb_q_kernel_supported.
struct AbsorbQArgs {
  const bf16_t* q;     // [n, heads, nope + rope]
  const bf16_t* kv_b;  // [heads * per_head, rank]
  bf16_t* q_abs;       // [n, heads, rank + rope]
  int n, heads, nope, rope, rank, per_head;
};
bool absorb_q_kernel_supported(int rank, int nope, int rope);
void launch_absorb_q(const AbsorbQArgs& a, cudaStream_t s);
struct AbsorbVArgs {
  const bf16_t* o;     // [n, heads, rank] the attention output in the latent space
  const bf16_t* kv_b;  // [heads * per_head, rank]; W_UV^h = rows h * per_head + nope .. + vd
  bf16_t* out;         // [n, heads, vd]
  int n, heads, nope, vd, rank, per_head;
};
bool absorb_v_kernel_supported(int rank, int vd);
size_t absorb_v_smem_bytes(int rank, int vd);
void launch_absorb_v(const AbsorbVArgs& a, cudaStream_t s);
// The slice kernels (decode sizes; any n, in token tiles of 8): one CTA per head and 128 output columns (absorb_q)
// or 32 output rows (absorb_v), the slice's weight block staged whole in shared memory; bitwise equal to the CPU
// reference like the kernels above. They need kv_b 16-byte aligned, q_abs 4-byte aligned (absorb_q), and the dims
// that absorb_*_slice_supported accept (DeepSeek-V3: rank 512, nope 128, vd 128).
constexpr int kAbsorbSliceMaxTokens = 8;  // CudaBackend's default: slice kernels up to here, token tiles beyond
bool absorb_q_slice_supported(int rank, int nope, int rope);
bool absorb_v_slice_supported(int rank, int vd);
void launch_absorb_q_slice(const AbsorbQArgs& a, cudaStream_t s);
void launch_absorb_v_slice(const AbsorbVArgs& a, cudaStream_t s);

// ---- mla_prefill.cu ----
struct MlaPrefillArgs {
  const bf16_t* q;      // [n_q, H, nope + rope]
  const bf16_t* kv;     // [n_kv, H, nope + v]
  const bf16_t* k_pe;   // [n_kv, rope]
  const int32_t* cu_q;  // [n_seqs + 1]
  const int32_t* cu_kv; // [n_seqs + 1]
  bf16_t* out;          // [n_q, H, v]
  int n_seqs, n_q, n_kv, heads, nope, rope, v;
  float softmax_scale;
  uint32_t* err;
};
// The CUDA-core kernel: any head dims with v <= 128 (DSV3_MLA_PREFILL=simple, and the fallback).
void launch_mla_prefill(const MlaPrefillArgs& a, cudaStream_t s);
size_t mla_prefill_smem_bytes(int nope, int rope, int v);

// ---- mla_prefill_mma.cu ----
// The tensor-core kernel (mma.sync m16n8k16): nope 128, rope 64, v 128 only; q, kv and k_pe 16-byte aligned, out
// 4-byte aligned, softmax_scale > 0. q_rows = query rows per CTA: 128 (8 warps, the default) or 64 (4 warps).
// p_bf16: P rounded to bf16 for P·V (one mma, DSV3_MLA_P_BF16=1) instead of the hi + lo split (two mma).
bool mla_prefill_mma_supported(int nope, int rope, int v);
void launch_mla_prefill_mma(const MlaPrefillArgs& a, int q_rows, bool p_bf16, cudaStream_t s);

// ---- mla_decode.cu ----
struct MlaDecodeArgs {
  const bf16_t* q;             // [n, H, entry]
  const bf16_t* cache;         // [n_blocks, block_size, entry]
  const int32_t* block_table;  // [n, max_blocks]
  const int32_t* seq_lens;     // [n]
  bf16_t* out;                 // [n, H, rank]
  float* part_o;               // [n, n_splits, H, rank] fp32 partial outputs (n_splits > 1)
  float* part_ml;              // [n, n_splits, H, 2] running max and sum (n_splits > 1)
  int n, heads, entry, rank, block_size, max_blocks, n_splits, split_len;
  int split_align;             // n_splits > 1: a row's split covers whole split_align keys (mla_decode_common.cuh)
  int64_t n_blocks;
  float softmax_scale;
  uint32_t* err;
};
// Partial-buffer sizes for a given split count; the backend provides the workspace. At most kMlaDecodeMaxSplits
// splits (mla_decode_combine's shared weights).
constexpr int kMlaDecodeMaxSplits = 64;
size_t mla_decode_part_o_floats(int n, int heads, int rank, int n_splits);
size_t mla_decode_part_ml_floats(int n, int heads, int n_splits);
// The decode kernels: kMma (mla_decode_mma.cu, mma.sync, 64 heads per block; the default), kWmma
// (mla_decode_wmma.cu, 32 heads per block), kSimple (mla_decode.cu, CUDA cores, any shape). The caller picks a
// supported one (DSV3_MLA_DECODE=mma|wmma|simple) and sizes the splits for its head group. p_bf16 (the tensor-core
// kernels; DSV3_MLA_P_BF16=1): P rounded to bf16 for P·V, one mma, instead of the hi + lo split (two mma).
// kMma16 (mla_decode_mma16.cu, mma.sync, 16 heads per block, 2 blocks per SM) is the small-batch kernel: more CTAs
// over the heads and the sequence when rows x H/64 would leave most SMs idle.
enum class MlaDecodeKernel { kMma, kWmma, kSimple, kMma16 };
bool mla_decode_mma_supported(int entry, int rank, int heads);
bool mla_decode_mma16_supported(int entry, int rank, int heads);
bool mla_decode_wmma_supported(int entry, int rank);
int mla_decode_head_group(MlaDecodeKernel kernel);
void launch_mla_decode(const MlaDecodeArgs& a, MlaDecodeKernel kernel, bool p_bf16, cudaStream_t s);

// ---- router.cu ----
struct RouterArgs {
  const bf16_t* x;        // [n, d]
  const bf16_t* gate;     // [E, d]
  const float* bias;      // [E] or nullptr
  int32_t* topk_ids;      // [n, top_k]
  float* topk_weights;    // [n, top_k]
  float* logits;          // [n, n_experts] f32 scratch between the logit and the selection kernel
  int n, d, n_experts, n_group, topk_group, top_k;
  int scoring;            // 0 sigmoid, 1 softmax
  int method;             // 0 noaux_tc, 1 greedy, 2 group_limited_greedy
  bool norm_topk_prob;
  float routed_scaling_factor;
  // [kRouterFusedMaxTokens] per-token block counters, zero on entry and left zero; nullptr: the selection runs as a
  // second kernel. Below kRouterFusedMaxTokens tokens the logit kernel's last block per token selects (one launch).
  int32_t* done;
};
inline constexpr int kRouterFusedMaxTokens = 256;
void launch_router(const RouterArgs& a, cudaStream_t s);
size_t router_smem_bytes(int d, int n_experts, int n_group);  // the larger of the two kernels' needs

// ---- moe.cu ----
struct MoeCountArgs {
  const int32_t* ids;  // [n * top_k]
  int32_t* counts;     // [n_experts], zeroed by the launcher
  int entries, n_experts;
  uint32_t* err;
};
void launch_moe_count(const MoeCountArgs& a, cudaStream_t s);

struct MoePermuteArgs {
  const int32_t* ids;      // [n * top_k]
  const int32_t* offsets;  // [n_experts] first row of each expert in the permuted buffer
  int32_t* cursor;         // [n_experts] scratch, zeroed by the launcher
  int32_t* row_of;         // [n * top_k] permuted row of entry (t, k)
  const bf16_t* x;         // [n, d]
  bf16_t* x_perm;          // [n * top_k, d]
  int n, top_k, d, n_experts;
};
void launch_moe_permute(const MoePermuteArgs& a, cudaStream_t s);

struct MoeCombineArgs {
  const int32_t* ids;     // [n, top_k]
  const float* weights;   // [n, top_k]
  const int32_t* row_of;  // [n, top_k]
  const bf16_t* y_perm;   // [n * top_k, d]
  bf16_t* out;            // [n, d]
  int n, top_k, d, n_experts;
};
void launch_moe_combine(const MoeCombineArgs& a, cudaStream_t s);

// ---- moe_grouped.cu (decode-size MoE: every expert in one launch per projection, no host read-back) ----
// The grouped path of CudaBackend::moe_experts: route (count, scan, active list, permutation) on the device, x
// quantized once per token (launch_quantize_fp8), then gate/up + SwiGLU + FP8 quantization of h in one launch and
// down in one launch over all experts, then launch_moe_combine. Nothing is read back to the host.
constexpr int kMoeRouteMaxExperts = 4096;  // the route kernel's shared-memory histogram (2 ints per expert)

struct MoeExpertPtrs {     // one expert's FP8 weights in device memory (a device array of these per expert list)
  const uint8_t* gate;     // [f, d] e4m3
  const float* gate_sc;    // [ceil(f/128), ceil(d/128)] scale_inv
  const uint8_t* up;       // [f, d]
  const float* up_sc;      // [ceil(f/128), ceil(d/128)]
  const uint8_t* down;     // [d, f]
  const float* down_sc;    // [ceil(d/128), ceil(f/128)]
};

struct MoeRouteArgs {
  const int32_t* ids;  // [entries] = [n, top_k] expert ids
  int32_t* counts;     // [n_experts] rows per expert
  int32_t* offsets;    // [n_experts] first permuted row of each expert: exclusive scan of counts
  int32_t* active;     // [n_experts] the experts with rows, ascending (the first *n_active are written)
  int32_t* n_active;   // [1]
  int32_t* row_of;     // [entries] permuted row of entry (t, k); -1 for an expert id outside [0, n_experts)
  int32_t* tok_of;     // [entries] token of each permuted row (the first Σ counts are written)
  int entries, top_k, n_experts;  // n_experts <= kMoeRouteMaxExperts
  uint32_t* err;       // kErrExpertId for an id outside [0, n_experts)
};
void launch_moe_route(const MoeRouteArgs& a, cudaStream_t s);

// Both projections' launches share one Args. Expert e's rows are the permuted rows [offsets[e], offsets[e] +
// counts[e]); grid.y = slots = min(n_experts, entries) >= n_active, and slot y serves expert active[y].
struct MoeGroupedArgs {
  const MoeExpertPtrs* experts;  // [n_experts]
  const int32_t* counts;         // [n_experts]     (MoeRouteArgs)
  const int32_t* offsets;        // [n_experts]
  const int32_t* active;         // [n_experts]
  const int32_t* n_active;       // [1]
  const int32_t* tok_of;         // [entries]
  const uint8_t* x_codes;        // [n, d] e4m3 codes of x (launch_quantize_fp8)
  const float* x_scales;         // [ceil(d/128), n]
  uint8_t* h_codes;              // [entries, f] codes of h = bf16(silu(gate)·up), per permuted row
  float* h_scales;               // [ceil(f/128), entries]
  bf16_t* y;                     // [entries, d] down-projection output per permuted row (launch_moe_combine's y_perm)
  int n, d, f, entries, slots;
  bool vec;                      // d % 16 == 0, f % 16 == 0 and every weight 16-byte aligned: 16-byte loads
  bool ue8m0;
};
void launch_moe_gate_up_fp8(const MoeGroupedArgs& a, cudaStream_t s);
void launch_moe_down_fp8(const MoeGroupedArgs& a, cudaStream_t s);

// ---- moe_decode.cu (decode-size MoE in two launches: prep, then one persistent kernel) ----
// The decode path of CudaBackend::moe_experts (n·top_k <= kMoeDecodeMaxEntries, FP8 experts): a prep kernel routes
// (counts, offsets, the active slots, a deterministic permutation, the combine order), quantizes x and zeroes the
// work counters; then one persistent kernel takes work items from a queue: gate/up items (slot, 128-column tile of
// f, K range) whose last finisher reduces the K ranges and writes h (SwiGLU, FP8 in 1x128 groups), then down items
// (slot, 64-row tile of d) that wait for their expert's h and whose last finisher (per tile of d) combines the
// tokens' outputs. No host read-back, no allocation: graph-capturable.
constexpr int kMoeDecodeMaxEntries = 128;  // n·top_k: the prep kernel routes in one block of 256 threads
constexpr int kMoeDecodeMaxSplit = 8;      // K ranges of a gate/up tile

struct MoeDecodeArgs {
  const MoeExpertPtrs* experts;  // [n_experts]
  const int32_t* ids;            // [n, top_k]
  const float* weights;          // [n, top_k]
  const bf16_t* x;               // [n, d]
  bf16_t* out;                   // [n, d]
  void* work;                    // moe_decode_work_bytes(n, top_k, n_experts, d, f, split) bytes, 256-byte aligned
  int n, top_k, n_experts, d, f;
  int split;                     // K ranges per gate/up tile, 1..kMoeDecodeMaxSplit (moe_decode_split: the default)
  int prefetch;                  // L2 prefetch distance of the weight stream in GEMV iterations (0: none; vec only)
  bool vec;                      // d % 16 == 0, f % 16 == 0 and every weight 16-byte aligned: 16-byte loads
  bool ue8m0;
  uint32_t* err;                 // kErrExpertId for an id outside [0, n_experts)
};
// The default split: K ranges until the gate/up items number about four per resident block (at most 8, >= 4
// K-blocks per range).
int moe_decode_split(int n, int top_k, int n_experts, int d, int f, int n_sms);
size_t moe_decode_work_bytes(int n, int top_k, int n_experts, int d, int f, int split);
void launch_moe_decode(const MoeDecodeArgs& a, int n_sms, cudaStream_t s);

// ---- synthetic.cu (--load_format dummy: weights made in device memory, bit-identical to io/synthetic.cpp) ----
enum SynthOut : int { kSynthOutF32, kSynthOutBf16, kSynthOutFp8 };
struct SynthArgs {
  SynthRule rule;
  void* out;          // f32 / bf16: [count]; fp8: [rows, cols] e4m3 codes
  float* scale_inv;   // fp8 only: [ceil(rows/128), ceil(cols/128)]
  int64_t count;      // f32 / bf16
  int64_t rows, cols; // fp8
  int out_kind;       // SynthOut
};
void launch_synthesize(const SynthArgs& a, cudaStream_t s);

// ---- sample.cu (next-token sampling, steps 3-7 of engine/sampler.h; base/sampling_rules.h) ----
// v1: one 1024-thread CTA per row, every pass recomputes z and e (DSV3_SAMPLE=v1). v2 (the default): `chunks` CTAs
// per row and a few short kernels whose per-chunk partials go through `work`; rows with top-k still run v1's kernel
// (v2 skips them), so a batch may launch both.
struct SampleArgs {
  const float* logits;            // [rows, stride] f32
  const SampleRowParams* params;  // [rows] in device memory
  int32_t* tokens;                // [rows]: ids, kSampleInvalidLogits or kSampleAllMasked
  float* logprobs;                // [rows] or nullptr: the drawn token's log_softmax(z)
  int64_t stride;
  int rows, vocab;
  int mass_shift;                 // top-p masses floor(e * 2^mass_shift); vocab * 2^mass_shift <= 2^62
  int version;                    // 1 or 2
  // v2 only. What the host saw in the row parameters (it routes on them; the kernels re-check per row):
  bool any_top_k;                 // a sampled row with top_k > 0 (runs the v1 kernel)
  bool any_top_p;                 // a sampled row without top-k and with top_p < 1 (the radix-level kernels)
  bool any_draw;                  // a sampled row without top-k, or logprobs (the Gumbel / log-sum kernel)
  int chunks;                     // CTAs per row, 1..kSampleMaxChunks
  void* work;                     // sample_work_bytes(rows, chunks) bytes of device scratch, 256-byte aligned
};
inline constexpr int kSampleMaxChunks = 32;
// CTAs per row for v2: about two waves over the SMs, chunks of >= 1024 logits.
int sample_chunks(int rows, int vocab, int n_sms);
size_t sample_work_bytes(int rows, int chunks);
void launch_sample(const SampleArgs& a, cudaStream_t s);

// ---- token_ids.cu (the overlap scheduler's hand-off of sampled ids to the next step's input) ----
struct FillTokenIdsArgs {
  int32_t* ids;         // [n]
  const int32_t* map;   // [m, 2] (row of ids, index into src)
  const int32_t* src;   // [k]
  int n, m, k;
  uint32_t* err;        // kErrFillTokens for a pair out of range
};
void launch_fill_token_ids(const FillTokenIdsArgs& a, cudaStream_t s);

// ---- reference.cu, reference_attention.cu, reference_moe.cu: reference numerics (DSV3_NUMERICS=reference) ----
// Every op's outputs computed by backend/ref_math.h's functions in CpuBackend's order: bitwise CpuBackend's for any
// input. One thread per output element (or per row / (query, head) where the reference reduces over it); slow by
// design, for tiny models. The elementwise ops, rope, absorb_q/v, mla_prefill, mla_decode and the router take the
// fast kernels' Args (mla_decode ignores the split fields, the router its logits scratch).
void launch_ref_rms_norm(const RmsNormArgs& a, cudaStream_t s);
void launch_ref_rope(const RopeArgs& a, cudaStream_t s);
void launch_ref_silu_mul(const SiluMulArgs& a, cudaStream_t s);
void launch_ref_add(const AddArgs& a, cudaStream_t s);
void launch_ref_absorb_q(const AbsorbQArgs& a, cudaStream_t s);
void launch_ref_absorb_v(const AbsorbVArgs& a, cudaStream_t s);

// The 1x128 activation quantization of quantize_row_fp8, scales in the CPU's row-major layout.
struct RefQuantArgs {
  const bf16_t* x;  // [n, x_stride]
  uint8_t* codes;   // [n, k] e4m3
  float* scales;    // [n, kb], kb = ceil(k/128)
  int64_t x_stride;
  int n, k;
  bool ue8m0;
};
void launch_ref_quantize_fp8(const RefQuantArgs& a, cudaStream_t s);

// out[t, j] = CpuBackend::linear's output: fp8 from RefQuantArgs' codes and scales, bf16 from x.
struct RefLinearArgs {
  const void* a;    // fp8: [n, k] codes; bf16: [n, a_stride] bf16
  const float* sa;  // fp8 only: [n, kb]
  const void* w;    // [m, k] e4m3 or bf16
  const float* sw;  // fp8 only: [ceil(m/128), kb]
  void* out;        // [n, m] bf16 or f32
  int64_t a_stride;
  int n, m, k;
  bool fp8, out_f32;
};
void launch_ref_linear(const RefLinearArgs& a, cudaStream_t s);

// Attention: v_head_dim (prefill) and kv_lora_rank (decode) up to this many output columns.
constexpr int kRefAttnMaxCols = 512;
void launch_ref_mla_prefill(const MlaPrefillArgs& a, cudaStream_t s);  // sets kErrPrefillLen as the fast kernels
void launch_ref_mla_decode(const MlaDecodeArgs& a, cudaStream_t s);    // sets kErrDecodeLen as the fast kernels

void launch_ref_router(const RouterArgs& a, cudaStream_t s);
size_t ref_router_smem_bytes(int n_experts, int n_group);

struct RefMoeExpert {    // one expert in device memory; *_sc == nullptr: that projection has bf16 weights
  const void* gate;      // [f, d] e4m3 or bf16
  const float* gate_sc;  // [ceil(f/128), ceil(d/128)] or nullptr
  const void* up;        // [f, d]
  const float* up_sc;
  const void* down;      // [d, f]
  const float* down_sc;  // [ceil(d/128), ceil(f/128)] or nullptr
  int f;                 // this expert's moe_intermediate_size
};
struct RefMoeArgs {
  const RefMoeExpert* experts;  // [n_experts] in device memory
  const int32_t* ids;           // [n, top_k]
  const float* weights;         // [n, top_k]
  const bf16_t* x;              // [n, d]
  uint8_t* x_codes;             // [n, d]        (any_fp8)
  float* x_scales;              // [n, ceil(d/128)]
  bf16_t* h;                    // [n * top_k, f_max] bf16(silu(gate)·up) per entry
  uint8_t* h_codes;             // [n * top_k, f_max]   (any_fp8)
  float* h_scales;              // [n * top_k, ceil(f_max/128)]
  bf16_t* y;                    // [n * top_k, d] the down projection per entry
  bf16_t* out;                  // [n, d]
  int n, d, top_k, n_experts, f_max;  // top_k <= 32
  bool ue8m0, any_fp8;
  uint32_t* err;                // kErrExpertId for an id outside [0, n_experts)
};
void launch_ref_moe(const RefMoeArgs& a, cudaStream_t s);

static_assert(std::is_trivially_copyable_v<RmsNormArgs> && std::is_trivially_copyable_v<MlaDecodeArgs> &&
              std::is_trivially_copyable_v<RefQuantArgs> && std::is_trivially_copyable_v<RefLinearArgs> &&
              std::is_trivially_copyable_v<RefMoeArgs> &&
              std::is_trivially_copyable_v<RouterArgs> && std::is_trivially_copyable_v<GemmFallbackArgs> &&
              std::is_trivially_copyable_v<LinearFp8GemvArgs> && std::is_trivially_copyable_v<SynthArgs> &&
              std::is_trivially_copyable_v<LinearFp8GemvV2Args> &&
              std::is_trivially_copyable_v<SampleArgs> && std::is_trivially_copyable_v<SampleRowParams> &&
              std::is_trivially_copyable_v<MoeRouteArgs> && std::is_trivially_copyable_v<MoeGroupedArgs> &&
              std::is_trivially_copyable_v<MoeDecodeArgs> &&
              std::is_trivially_copyable_v<FillTokenIdsArgs>);

}  // namespace dsv3::cuda
