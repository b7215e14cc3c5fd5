// cuda_backend.h: the public entry points of the CUDA backend (backend/cuda).
// Deliberately free of CUDA headers, so that host code (factory.cpp, tools, tests) stays CUDA-free; everything that
// needs the toolkit lives behind these two functions.
#pragma once

#include <memory>

#include "dsv3/backend/backend.h"
#include "dsv3/backend/cuda/gemv_v2_config.h"

namespace dsv3 {

// Number of visible CUDA devices; 0 when there is no driver or no device (never throws).
int cuda_device_count();

// The mla_decode kernel the backend prefers; a shape it does not support falls back (mma16 ->) mma -> wmma -> simple.
// kAuto: mma16 (16 heads per block) for small batches, mma (64 heads per block) beyond (CudaBackend::mla_decode).
enum class MlaDecodeImpl { kAuto, kMma, kMma16, kWmma, kSimple };

// The mla_absorb_q / mla_absorb_v kernels (mla_absorb.cu): kAuto runs the slice kernels up to kAbsorbSliceMaxTokens
// tokens and the token-tile kernels beyond; kSlice / kTile force one of them at every token count (comparisons).
enum class MlaAbsorbImpl { kAuto, kSlice, kTile };

// How moe_experts runs FP8 experts: kAuto picks by batch size (cuda_backend.cpp, CudaBackend::moe_experts).
enum class CudaMoePath {
  kAuto,     // decode kernels at n·top_k <= 64, grouped up to 16 rows per expert, the per-expert loop beyond
  kLoop,     // DSV3_MOE=loop: counts read back to the host, linear() per active expert (cuBLASLt / decode GEMV)
  kGrouped,  // DSV3_MOE=grouped: the grouped kernels (moe_grouped.cu) at every batch size; bf16 experts still loop
  kDecode,   // DSV3_MOE=decode: the two-launch decode kernels (moe_decode.cu) wherever they apply (n·top_k <= 128)
};

struct CudaBackendOptions {
  bool sync_each_op = false;        // DSV3_CUDA_SYNC=1: synchronize after every op and name the op that failed
  bool force_gemm_fallback = false; // DSV3_CUDA_GEMM=fallback: own GEMM kernels instead of cuBLASLt (tests)
  bool fp8_gemm_fallback = false;   // DSV3_CUDA_FP8_GEMM=fallback: own FP8 kernel, cuBLASLt for bf16 only
  bool no_fp8_gemv = false;         // DSV3_CUDA_FP8_GEMV=0: no decode GEMV; 1..16 rows go to cuBLASLt/fallback
  // FP8 linears with 1..8 rows run gemv_fp8_v2.cu (activation quantization fused into a pipelined, persistent GEMV;
  // one launch; ~1.3% faster decode at batch 1, docs/benchmarks.md); DSV3_GEMV=v1: the quantize kernel + gemv_fp8.cu.
  bool gemv_v2 = true;
  // DSV3_GEMV_V2_CFG="rows=16,stage_kb=16,stages=4,ctas=1,copy=bulk,split=auto" (gemv_v2_config.h): the v2 GEMV's
  // tile, stage, ring, CTAs per SM, copy engine and K split for every shape; unset or "auto": the per-shape default
  // (gemv_v2_default_config). For sweeps (scripts/device/gemv3.sh).
  cuda::GemvV2Config gemv_v2_cfg;
  // DSV3_GEMV_V2_CFG_SMALL (same syntax): for weights under cuda::kGemvV2SmallWeightBytes (32 MiB) instead of
  // gemv_v2_cfg, so that a sweep's best small-shape and big-shape configurations can run together.
  cuda::GemvV2Config gemv_v2_cfg_small;
  MlaDecodeImpl mla_decode = MlaDecodeImpl::kAuto;  // DSV3_MLA_DECODE=auto|mma|mma16|wmma|simple (tests, comparisons)
  // DSV3_MLA_DECODE_SPLIT=N (a multiple of 64): every mla_decode row split into pieces of at most N keys, instead of
  // the launcher's choice (0); for sweeps of the split size.
  int mla_decode_split_keys = 0;
  MlaAbsorbImpl mla_absorb = MlaAbsorbImpl::kAuto;  // DSV3_MLA_ABSORB=auto|slice|tile (tests, comparisons)
  bool profile = false;             // DSV3_PROFILE=1: time every op with events, print a table when the backend dies
  CudaMoePath moe_path = CudaMoePath::kAuto;  // DSV3_MOE=loop|grouped|decode (tests, benchmarks)
  // The decode MoE kernels (moe_decode.cu): DSV3_MOE_SPLIT=1..8 forces the K ranges per gate/up tile (0: the
  // launcher's choice); DSV3_MOE_PREFETCH=0..8 sets the L2 prefetch distance of the weight stream in GEMV iterations.
  int moe_decode_split = 0;
  int moe_decode_prefetch = 2;
  // DSV3_ROUTER_FUSED=0: below 256 tokens the router's selection runs as a second kernel (the former launch pair)
  // instead of in the logit kernel's last block per token (comparisons).
  bool router_fused = true;
  // DSV3_MOE_STREAMS=1..8: streams the per-expert loop (prefill) spreads experts over; one expert's GEMMs fill only a
  // quarter of an H200 at 256 rows, so 4 run side by side by default.
  int moe_streams = 4;
  // DSV3_MLA_PREFILL=simple: the CUDA-core prefill kernel instead of the tensor-core one (tests); =mma64: the
  // tensor-core kernel with 64 query rows per CTA instead of 128 (=mma, the default).
  bool simple_mla_prefill = false;
  int mla_prefill_q_rows = 128;     // 128 or 64
  // DSV3_MLA_P_BF16=1: the tensor-core MLA kernels (prefill mma, decode mma and wmma) round the softmax probabilities
  // to bf16 for P·V (one mma) instead of splitting them into bf16 hi + lo (two mma, ~2^-16 relative): the former
  // numerics, for measurement (docs/numerics.md).
  bool mla_p_bf16 = false;
  // DSV3_SAMPLE=v1: the sample op's former kernel, one CTA per row recomputing z and e on every pass (comparisons);
  // v2 (the default) splits a row over several CTAs and computes e once per radix level (sample.cu).
  int sample_version = 2;
  // DSV3_NUMERICS=reference (or make_backend's OpNumerics::kReference, `--cuda_numerics reference`): every op runs
  // the reference-numerics kernels (reference*.cu) and equals CpuBackend bit for bit; slow, tiny models. The
  // kernel-choice options above then have no effect, except that sample, embedding, the KV cache ops and
  // fill_token_ids keep their kernels (bitwise equal to the CPU already: tests/ops "refnum").
  bool reference_numerics = false;
  static CudaBackendOptions from_env();
};

// A backend on the current device with its own stream, cuBLASLt handle and workspace; options from the environment.
std::unique_ptr<Backend> make_cuda_backend();
std::unique_ptr<Backend> make_cuda_backend(const CudaBackendOptions& options);

}  // namespace dsv3
