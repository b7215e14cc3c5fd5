// ops_cases.h: the case builders of tests/ops that more than one file calls (register_refnum_cases runs every op
// family's builders on the reference-numerics backend; the perf tables reuse the GEMV sweep's configurations), their
// parameter types, and each family's register_*_cases. register_cases (test_ops.cpp) calls the families in the order
// of the case list, which is part of the output people compare.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "dsv3/backend/backend.h"
#include "dsv3/backend/cuda/gemv_v2_config.h"
#include "ops_env.h"

namespace dsv3::ops_test {

// cases_elementwise.cpp: rms_norm, embedding, rope, silu_mul + add, the KV cache ops, fill_token_ids.
void rms_norm_case(int n, int dim, bool residual, int x_stride, int out_stride, bool quick, bool refnum = false,
                   bool in_place = false);
void embedding_case(int n, int vocab, int dim, bool refnum = false);
void rope_case(int n, int heads, int stride, int offset, int rope_dim, int max_pos, bool refnum = false);
void silu_add_case(int rows, int cols, bool refnum = false, float gate_std = 3.f);
void kv_store_case(int n, int n_blocks, int bs, int entry, bool refnum = false);
void kv_gather_case(std::vector<int> lens, int bs, int rank, int rope, bool refnum = false);
void fill_token_ids_case(int n, int m, int k, bool refnum = false);
void register_elementwise_cases();

// cases_linear.cpp: linear on every path, linear_stacked, the v2 GEMV called directly, in a graph and per sweep
// configuration.
// Linear: `which` picks the backend (0 production with DSV3_GEMV=v1, 1 fallback kernels, 2 reference numerics, 3
// production with DSV3_GEMV=v2, the default). Production
// runs FP8 weights with at most kGemvRows rows through the decode GEMV (gemv_fp8.cu), larger ones through cuBLASLt
// (or the fallback it rejects); with v2, FP8 weights with at most 8 rows and k % 16 == 0 run gemv_fp8_v2.cu.
constexpr int kGemvRows = 16;
void linear_case(int n, int m, int k, bool fp8, bool out_f32, int x_stride, bool ue8m0, int which, bool quick);
std::vector<cuda::GemvV2Config> gemv2_sweep_configs();
void register_linear_cases();

// cases_attention.cpp: mla_absorb_q / mla_absorb_v, mla_prefill, mla_decode.
void absorb_case(int n, int H, int nope, int rope, int vd, int rank, int which, bool quick);
void prefill_case(std::vector<std::pair<int, int>> seqs, int H, int nope, int rope, int vd, int which, bool quick,
                  float q_std = 1.f);
// The backend (kernel) a decode case runs on: see decode_case in cases_attention.cpp.
enum class DecodeWhich { kDefault, kSimple, kWmma, kPBf16, kWmmaPBf16, kMma64, kMma16, kMma16Split64, kMma16Split192,
                         kMma16PBf16, kReference };
void decode_case(std::vector<int> lens, int H, int rank, int rope, int bs, DecodeWhich which, bool quick,
                 int extra_blocks = 0);
void register_attention_cases();

// cases_moe.cpp: router, moe_experts.
struct RouterCfg {
  const char* name;
  int n, d, E, n_group, topk_group, top_k;
  RouterScoring scoring;
  RouterTopk method;
  bool norm;
  float scale;
  bool ties;  // duplicate gate rows (and biases): exact ties that must go to the lower index
};
void router_case(RouterCfg c, bool refnum = false);

// MoE: `path` picks the backend — production (auto: with FP8 experts the grouped kernels for n·top_k <= 16·E, the
// per-expert loop beyond), fallback kernels (always the loop),
// DSV3_MOE=loop, DSV3_MOE=grouped, DSV3_MOE=decode (n·top_k <= 128; with split / prefetch set: a backend of its own
// with DSV3_MOE_SPLIT / DSV3_MOE_PREFETCH), reference numerics (refnum, bitwise).
enum class MoePath { kAuto, kFallback, kLoop, kGrouped, kDecode, kReference };
// Routing: kRandom: top_k distinct experts per token, experts with id % 7 == 3 never chosen (zero rows) when
// enough remain. kHot (grouped chunking): expert 5 in every token (n rows: chunks of 16 and a remainder), expert 2
// in tokens 0..16 (17 rows: 16 + 1), expert E-1 in tokens 0..15 (exactly 16 rows), the rest random as kRandom.
enum class MoeRouting { kRandom, kHot };
struct MoeCfg {
  int n, d, f, E, top_k;
  bool fp8 = true, ue8m0 = false;
  MoePath path = MoePath::kAuto;
  MoeRouting routing = MoeRouting::kRandom;
  bool hit_only = false;  // real dims: distinct weights for the routed experts only, one shared set for the others
  bool quick = true;
  int split = 0;      // kDecode: forced K ranges per gate/up tile (0: the launcher's choice)
  int prefetch = -1;  // kDecode: forced L2 prefetch distance (-1: the default)
};
void moe_case(MoeCfg c);
void register_moe_cases();

// cases_load.cpp: synthesize, dummy_load, staged_upload, checkpoint_load, device_oom, graph_scratch_growth.
void register_load_cases();

// cases_sample.cpp: sample.
struct SampleSpec {
  std::string name;
  int rows = 1, vocab = 1;
  int stride = 0;                      // 0: vocab
  std::vector<SampleRowParams> kinds;  // row i uses kinds[i % size] (seed and step vary per row)
  float mask_frac = 0.f;               // fraction of -inf logits in every row
  bool ties = false;                   // exact ties: 3 ids share the maximum, 20 share the value at rank 45
  bool quantized = false;              // logits rounded to multiples of 1/4: ties everywhere (and -0 / +0)
  bool bad_rows = false;               // row 0 holds a NaN, row 1 is all -inf
  bool tie_cut = false;                // 2 ids at max + 4.5, 40 at max + 4: top-p cuts inside the group of 40
  bool logprobs = false;
  bool quick = false;
  bool refnum = false;                 // on the reference-numerics backend
};
void sample_case(SampleSpec spec);
void register_sample_cases();

// cases_refnum.cpp: every op on the reference-numerics backend, bit for bit, and the whole model.
void register_refnum_cases();

}  // namespace dsv3::ops_test
