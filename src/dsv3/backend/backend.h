// backend.h: the op set of dsv3 — one Params struct per op — and the abstract Backend (backend).
// model/ calls only this interface, so the CPU reference runs the whole model and every CUDA kernel is checked
// against it (tests/ops). Conventions: activations bf16 row-major; fp32 for norm statistics, RoPE, attention
// scores/softmax, the router and MoE accumulation (model-spec.md "Decisions"); integer metadata int32.
// Shapes name their dimensions: n = tokens in the step, d = hidden_size, H = heads, E = routed experts.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "dsv3/base/sampling_rules.h"
#include "dsv3/backend/staged_upload.h"
#include "dsv3/base/synth_rules.h"
#include "dsv3/tensor/tensor.h"

namespace dsv3 {

// y = x·wᵀ. FP8 weights: x is quantized per token in 1x128 groups (model-spec §5.3) and the GEMM applies both block
// scales after every 128-K block (§5.4). BF16 weights: bf16 x bf16 with fp32 accumulation.
// With `out2`, w stacks two projections of the same x ([m1 + m2, k], e.g. q_a ‖ kv_a, gate ‖ up): columns [0, m1)
// go to out [n, m1] and [m1, m1 + m2) to out2 [n, m2] — one weight stream (one GEMV launch at decode) instead of
// two. FP8: m1 % 128 == 0, so each part keeps whole scale blocks and equals the linear of its own rows.
struct LinearParams {
  TensorView x;          // [n, k] bf16
  int64_t x_stride = 0;  // elements between rows of x (0: k)
  LinearWeight w;        // [m, k]
  TensorView out;        // [n, m] bf16 or f32; [n, m1] with out2
  bool ue8m0 = false;    // power-of-two activation scales (V3.1 scale_fmt)
  TensorView out2;       // empty, or [n, m - m1] in out's dtype
};
// The two halves of a stacked linear (out2 set) as plain linears over row views of w: for backends (and paths)
// without a native stacked kernel. Both are bit for bit the stacked op's columns.
std::pair<LinearParams, LinearParams> split_stacked_linear(const LinearParams& p);

// out = bf16(w · x · rsqrt(mean(x²) + eps)) in fp32 (rounding variant B, model-spec §3.2). With `residual`:
// residual <- bf16(residual + x) first, then the norm of the new residual (the fused pre-norm add).
struct RmsNormParams {
  TensorView x;             // [n, dim] bf16
  int64_t x_stride = 0;     // 0: dim
  TensorView residual;      // [n, dim] bf16, updated in place; may be empty
  TensorView weight;        // [dim] bf16
  TensorView out;           // [n, dim] bf16
  int64_t out_stride = 0;   // 0: dim
  float eps = 1e-6f;
};

struct EmbeddingParams {
  TensorView ids;    // [n] i32
  TensorView table;  // [vocab, d] bf16
  TensorView out;    // [n, d] bf16
};

// In-place interleaved RoPE (pairs (2i, 2i+1), model-spec §3.4) on dims [offset, offset + rope_dim) of every head.
struct RopeParams {
  TensorView x;          // [n, n_heads, head_stride] bf16
  TensorView positions;  // [n] i32
  TensorView inv_freq;   // [rope_dim / 2] f32 (YaRN-adjusted, §3.6)
  int64_t offset = 0;
};

// out = bf16(silu(gate) * up), computed in fp32.
struct SiluMulParams {
  TensorView gate;  // [n, f] bf16
  TensorView up;    // [n, f] bf16
  TensorView out;   // [n, f] bf16
};

// Writes new tokens' cache entries (normalized latent ‖ rotated k_pe) into their slots.
struct KvCacheStoreParams {
  TensorView kv_new;  // [n, entry] bf16, entry = kv_lora_rank + qk_rope_head_dim
  TensorView cache;   // [n_blocks, block_size, entry] bf16 — one layer
  TensorView slots;   // [n] i32: block_id * block_size + offset
};

// Reads the first cu_kv[s+1]-cu_kv[s] cached entries of each sequence s, split into latent and k_pe.
struct KvCacheGatherParams {
  TensorView cache;        // [n_blocks, block_size, entry] bf16
  TensorView block_table;  // [n_seqs, max_blocks] i32
  TensorView cu_kv;        // [n_seqs + 1] i32 (prefix sums of context lengths)
  TensorView latent_out;   // [n_kv, kv_lora_rank] bf16
  TensorView pe_out;       // [n_kv, qk_rope_head_dim] bf16
};

// Naive (MHA-form) MLA attention for prompt chunks, model-spec §3.5. Query i of sequence s sits at absolute
// position (kv_len_s - q_len_s + i) and sees keys t <= that position (causal, chunk-aware).
struct MlaPrefillParams {
  TensorView q;       // [n_q, H, nope + rope] bf16, RoPE applied
  TensorView kv;      // [n_kv, H, nope + v] bf16 (kv_b_proj of the latents): k_nope ‖ v per head
  TensorView k_pe;    // [n_kv, rope] bf16 rotated, shared by all heads
  TensorView cu_q;    // [n_seqs + 1] i32
  TensorView cu_kv;   // [n_seqs + 1] i32
  TensorView out;     // [n_q, H, v] bf16
  int64_t qk_nope_head_dim = 0, v_head_dim = 0;
  float softmax_scale = 0.f;
};

// Absorbed MLA, step 1 (§3.8): q_abs[h] = [W_UK^hᵀ q_nope^h ; q_pe^h], the query in the cache's own space.
struct MlaAbsorbQParams {
  TensorView q;      // [n, H, nope + rope] bf16, RoPE applied
  TensorView kv_b;   // [H * (nope + v), kv_lora_rank] bf16 (kv_b_proj, dequantized)
  TensorView q_abs;  // [n, H, kv_lora_rank + rope] bf16
  int64_t qk_nope_head_dim = 0, v_head_dim = 0;
};

// Absorbed MLA decode attention over the paged cache: each row is one query with its own context.
struct MlaDecodeParams {
  TensorView q_abs;        // [n, H, entry] bf16
  TensorView cache;        // [n_blocks, block_size, entry] bf16
  TensorView block_table;  // [n, max_blocks] i32
  TensorView seq_lens;     // [n] i32: keys visible to the row (its own position + 1)
  TensorView out;          // [n, H, kv_lora_rank] bf16: Σ_t P·c(t)
  int64_t kv_lora_rank = 0;
  float softmax_scale = 0.f;
};

// Absorbed MLA, last step: o^h = W_UV^h · õ^h.
struct MlaAbsorbVParams {
  TensorView o_latent;  // [n, H, kv_lora_rank] bf16
  TensorView kv_b;      // [H * (nope + v), kv_lora_rank] bf16
  TensorView out;       // [n, H, v] bf16
  int64_t qk_nope_head_dim = 0, v_head_dim = 0;
};

enum class RouterScoring { kSigmoid, kSoftmax };
enum class RouterTopk { kNoauxTc, kGreedy, kGroupLimitedGreedy };

// Expert selection, model-spec §4.2 (noaux_tc) and §9.3 (V2 variants). Logits and scores in fp32.
// Summation order of a logit (every backend, so that they agree bit for bit): the x·w products of each 128-wide
// block of d are summed in order, then the block sums are added in block order — the order a GPU can spread over
// threads (one block sum per thread) without changing a bit.
constexpr int64_t kRouterSumBlock = 128;
struct RouterParams {
  TensorView x;             // [n, d] bf16
  TensorView gate;          // [E, d] bf16
  TensorView bias;          // [E] f32 e_score_correction_bias; empty unless noaux_tc
  TensorView topk_ids;      // [n, top_k] i32
  TensorView topk_weights;  // [n, top_k] f32 (normalized if asked, times routed_scaling_factor)
  RouterScoring scoring = RouterScoring::kSigmoid;
  RouterTopk method = RouterTopk::kNoauxTc;
  int64_t n_group = 1, topk_group = 1, top_k = 1;
  bool norm_topk_prob = true;
  float routed_scaling_factor = 1.f;
};

struct ExpertWeights {
  LinearWeight gate, up, down;  // [f, d], [f, d], [d, f]
};

// out = bf16(Σ_k w_k · Expert_{id_k}(x)), accumulated in fp32 (§4.3).
struct MoeExpertsParams {
  TensorView x;             // [n, d] bf16
  TensorView topk_ids;      // [n, top_k] i32
  TensorView topk_weights;  // [n, top_k] f32
  const ExpertWeights* experts = nullptr;  // [E]
  int64_t n_experts = 0;
  TensorView out;           // [n, d] bf16
  bool ue8m0 = false;
};

// out = bf16(a + b).
struct AddParams {
  TensorView a, b;  // [n, d] bf16
  TensorView out;   // [n, d] bf16
};

// Deterministic synthetic weights made in place in backend memory (--load_format dummy), bit-identical to the host
// generator (io/synthetic.h; rules in base/synth_rules.h). FP8 out: rule.kind must be kUniform, and scale_inv gets
// the 128x128 block scales. Otherwise out is bf16 or f32 and scale_inv is empty.
struct SynthesizeParams {
  SynthRule rule;
  TensorView out;        // [rows, cols] FP8E4M3, or any shape bf16 / f32 (filled as [numel] in row-major order)
  TensorView scale_inv;  // [ceil(rows/128), ceil(cols/128)] f32 for an FP8 out; empty otherwise
};

// Next-token sampling of r logits rows on the backend: steps 3-7 of the sampler algorithm (engine/sampler.h) —
// temperature, greedy argmax, top-k, top-p, min-p, the Gumbel-max draw with per-row Philox counters — the same
// functions as the engine's Sampler (base/sampling.h), so a row's token equals the Sampler's for that row.
// Rule: rows that need steps 1-2 (repetition/frequency/presence penalties with a token history, min_tokens masking)
// or top-n logprobs are not handled here: the engine samples those on the host. A row with a NaN or +inf logit gets
// kSampleInvalidLogits and a row with every token -inf gets kSampleAllMasked (base/sampling_rules.h); no throw, so
// the other rows proceed. Logits must keep l / temperature finite (no fp32 overflow), as on the host.
struct SampleParams {
  TensorView logits;                       // [r, vocab] f32 in backend memory, rows logits_stride apart
  int64_t logits_stride = 0;               // elements between rows (0: vocab)
  const SampleRowParams* rows = nullptr;   // [r] host array, read during the call (the backend copies it)
  TensorView tokens;                       // [r] i32 in backend memory: the drawn ids (or the codes above)
  TensorView logprobs;                     // [r] f32 in backend memory: the drawn token's log_softmax(z); may be empty
};

// Fills the token ids that were not known when a step was built (the engine's overlap scheduler): the previous step
// sampled them on the backend (SampleParams::tokens) and the host has not read them yet. For j < m:
//   ids[map[j][0]] = src[map[j][1]], a negative src value written as 0.
// A negative value is a sampler failure code (kSampleInvalidLogits, kSampleAllMasked): the step still runs, and the
// engine fails that request when it reads the code and drops its row of this step. The caller checks the map on the
// host before the upload (rows distinct and in [0, n), indexes in [0, k)); the CUDA kernel skips a pair out of range
// and reports it as a bug at the next synchronize() or fence.
struct FillTokenIdsParams {
  TensorView ids;  // [n] i32 in backend memory, updated in place
  TensorView map;  // [m, 2] i32 in backend memory: (row of ids, index into src) pairs, m <= n
  TensorView src;  // [k] i32 in backend memory
};

// A point in a backend's stream (a CUDA event). record() marks the work enqueued so far; wait() blocks the host
// until that work has finished, including copies into pinned_host_allocator() memory (asynchronous on a device).
// wait() throws what synchronize() would for a device-side input error in that work. Reusable: record again after
// wait(); wait() without a record returns at once.
class BackendFence {
 public:
  virtual ~BackendFence() = default;
  virtual void record() = 0;
  virtual void wait() = 0;
};

// A recorded sequence of backend ops, replayed by one launch (a CUDA graph). Replays read and write the same
// memory the ops named when they were recorded, so the caller keeps every buffer alive and at the same address.
class BackendGraph {
 public:
  virtual ~BackendGraph() = default;
  virtual void replay() = 0;  // enqueued on the backend's stream, ordered with the ops
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // Where activations live; weights that are host-visible views (mmap) are used in place when host_visible().
  virtual Allocator& allocator() = 0;
  virtual bool host_visible() const = 0;
  // Copies between host and backend memory (either direction), ordered with the ops.
  virtual void copy(const TensorView& dst, const TensorView& src) = 0;
  virtual void synchronize() = 0;
  // Device memory free right now, in bytes; -1 for host backends (whose KV budget is a configured byte count).
  virtual int64_t free_device_memory() { return -1; }
  // Device memory in total, in bytes; -1 for host backends.
  virtual int64_t total_device_memory() { return -1; }
  // Staging buffers for bulk host -> backend uploads (weight loading through StagedUploader, staged_upload.h):
  // n_slots host buffers of slot_bytes the backend reads asynchronously. nullptr: the backend has none (host-visible
  // backends need none; the loader then falls back to copy()).
  virtual std::unique_ptr<StagingSink> make_staging_sink(int n_slots, size_t slot_bytes) { return nullptr; }
  // Host memory that copy() from backend memory fills asynchronously (pinned memory on a GPU: a copy into pageable
  // memory returns only when it is done). The host reads it after waiting on a fence recorded after the copy.
  virtual Allocator& pinned_host_allocator() { return host_allocator(); }
  // A fence on the backend's stream. The default waits with synchronize(), which is exact for host backends (their
  // ops are done when they return) and correct, if coarse, for any other.
  virtual std::unique_ptr<BackendFence> make_fence();

  virtual void linear(const LinearParams& p) = 0;
  virtual void rms_norm(const RmsNormParams& p) = 0;
  virtual void embedding(const EmbeddingParams& p) = 0;
  virtual void rope(const RopeParams& p) = 0;
  virtual void silu_mul(const SiluMulParams& p) = 0;
  virtual void add(const AddParams& p) = 0;
  virtual void kv_cache_store(const KvCacheStoreParams& p) = 0;
  virtual void kv_cache_gather(const KvCacheGatherParams& p) = 0;
  virtual void mla_prefill(const MlaPrefillParams& p) = 0;
  virtual void mla_absorb_q(const MlaAbsorbQParams& p) = 0;
  virtual void mla_decode(const MlaDecodeParams& p) = 0;
  virtual void mla_absorb_v(const MlaAbsorbVParams& p) = 0;
  virtual void router(const RouterParams& p) = 0;
  virtual void moe_experts(const MoeExpertsParams& p) = 0;
  virtual void sample(const SampleParams& p) = 0;
  virtual void fill_token_ids(const FillTokenIdsParams& p) = 0;
  // Fills p.out (and p.scale_inv) on the backend; false when this backend has no generator (the caller then makes
  // the tensor on the host and copies it). Host-visible backends need none: the loader uses host tensors in place.
  virtual bool synthesize(const SynthesizeParams& p) { return false; }

  // Records the ops `body` enqueues into a graph instead of running them. nullptr when this backend cannot record
  // (host backends) or when an op inside needed the host (a read-back, growing a scratch buffer): the caller then
  // runs the ops eagerly. Run `body` once eagerly first, so that every buffer it needs has reached its size.
  virtual std::unique_ptr<BackendGraph> capture(const std::function<void()>& body) { return nullptr; }
};

// Host-side validation shared by every backend (shapes and dtypes); throws dsv3::Error naming the op and field.
void validate(const LinearParams& p);
void validate(const RmsNormParams& p);
void validate(const MlaPrefillParams& p);
void validate(const MlaDecodeParams& p);
void validate(const RouterParams& p);
void validate(const MoeExpertsParams& p);
void validate(const SampleParams& p);
void validate(const FillTokenIdsParams& p);

// How a backend's ops compute. kFast: the CUDA backend's fast kernels (tensor cores, parallel reductions), within the
// tolerances tests/ops states against the CPU. kReference: every CUDA op computes CpuBackend's outputs bit for bit
// (backend/ref_math.h, backend/cuda/reference*.cu; slow, for numerics checks on tiny models; docs/numerics.md).
// CpuBackend is the reference either way. kFromEnv: DSV3_NUMERICS (unset, empty or "fast": kFast; "reference").
enum class OpNumerics { kFromEnv, kFast, kReference };
// "fast" | "reference" (empty: kFromEnv); anything else is a dsv3::Error naming `what` (an option or variable).
OpNumerics parse_op_numerics(const std::string& s, const char* what);

// "cpu" always; "cuda" when built with DSV3_CUDA and a GPU is present. `numerics` reaches the CUDA backend's options
// (CudaBackendOptions::reference_numerics); the CPU backend ignores it.
std::unique_ptr<Backend> make_backend(const std::string& name, OpNumerics numerics = OpNumerics::kFromEnv);
bool cuda_available();

}  // namespace dsv3
