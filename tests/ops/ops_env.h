// ops_env.h: what every file of the CPU-vs-CUDA op tests (tests/ops, test_ops) shares: the backends under test
// (Env), one case's device tensors (Dev), the tolerances with their reasons, the case registry (add_case) and
// refnum_tag / shuffled. The case builders live in cases_*.cpp (declared in ops_cases.h), the perf tables in
// perf_*.cpp (ops_perf.h).
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "dsv3/backend/backend.h"
#include "dsv3/base/error.h"
#include "ops_harness.h"

namespace dsv3::ops_test {

struct Env {
  Backend* cpu = nullptr;
  Backend* gpu = nullptr;         // cuBLASLt + mma.sync decode (the production configuration, but DSV3_GEMV=v1)
  Backend* gpu_fb = nullptr;      // own GEMM kernels (DSV3_CUDA_GEMM=fallback)
  Backend* gpu_simple = nullptr;  // CUDA-core mla_decode, mla_prefill (DSV3_MLA_DECODE=simple, DSV3_MLA_PREFILL=simple)
  Backend* gpu_nogemv = nullptr;  // production without the FP8 decode GEMV (DSV3_CUDA_FP8_GEMV=0), for --perf
  Backend* gpu_wmma = nullptr;    // WMMA mla_decode (DSV3_MLA_DECODE=wmma)
  Backend* gpu_moe_loop = nullptr;     // production with DSV3_MOE=loop (per-expert linear() calls)
  Backend* gpu_moe_grouped = nullptr;  // production with DSV3_MOE=grouped (moe_grouped.cu at every batch size)
  Backend* gpu_prefill64 = nullptr;  // tensor-core mla_prefill with 64 query rows per CTA (DSV3_MLA_PREFILL=mma64)
  Backend* gpu_p_bf16 = nullptr;       // P in bf16 in the tensor-core MLA kernels (DSV3_MLA_P_BF16=1), 64-head decode
  Backend* gpu_wmma_p_bf16 = nullptr;  // WMMA mla_decode with P in bf16
  bool p_bf16 = false;                 // DSV3_MLA_P_BF16=1 was set: every backend above rounds P to bf16
  Backend* gpu_gemv2 = nullptr;        // production (DSV3_GEMV=v2, the default: gemv_fp8_v2.cu for FP8 linears of 1..8 rows)
  Backend* gpu_moe_decode = nullptr;   // production with DSV3_MOE=decode (moe_decode.cu up to 128 entries)
  Backend* gpu_ref = nullptr;          // reference numerics (DSV3_NUMERICS=reference): bitwise the CPU's
  Backend* gpu_mma16 = nullptr;        // mla_decode: the 16-head kernel at every batch size (DSV3_MLA_DECODE=mma16)
  Backend* gpu_mma64 = nullptr;        // mla_decode: the 64-head kernel at every batch size (DSV3_MLA_DECODE=mma)
  Backend* gpu_mma16_split64 = nullptr;   // mma16 with pieces of 64 keys (DSV3_MLA_DECODE_SPLIT=64)
  Backend* gpu_mma16_split192 = nullptr;  // mma16 with pieces of 192 keys (3 tiles per CTA)
  Backend* gpu_mma16_p_bf16 = nullptr;    // mma16 with P rounded to bf16 (DSV3_MLA_P_BF16=1)
  Backend* gpu_absorb_slice = nullptr;    // mla_absorb_q/v: the slice kernels at every token count (DSV3_MLA_ABSORB=slice)
  Backend* gpu_absorb_tile = nullptr;     // ... the token-tile kernels at every token count (DSV3_MLA_ABSORB=tile)
};

// One case's device tensors; a deque keeps references stable.
struct Dev {
  Backend& gpu;
  std::deque<DevTensor> keep;
  bool guards_ok = true;
  explicit Dev(Backend& g) : gpu(g) {}
  TensorView up(const TensorView& h, const std::string& name) {
    keep.push_back(upload(gpu, h, name));
    return keep.back().view;
  }
  TensorView out(DType dt, Shape s, const std::string& name) {
    keep.push_back(poisoned(gpu, dt, s, name));
    return keep.back().view;
  }
  Tensor get(const TensorView& v) {
    for (auto& t : keep)
      if (t.view.data == v.data) return download(gpu, t, &guards_ok);
    CHECK(false, "Dev::get of an unknown tensor");
    return {};
  }
  LinearWeight weight(const HostLinear& w) {
    LinearWeight lw{up(w.weight.view(), "weight"), {}};
    if (!w.scale_inv.empty()) lw.scale_inv = up(w.scale_inv.view(), "scale_inv");
    return lw;
  }
};

// Tolerances, with their reasons.
// bf16 elementwise results computed in fp32 with the reference's operation order: at most one bf16 rounding step
// apart where a reduction order differs (rms_norm's sum of squares) or a libm value differs by an ulp.
inline const Tol kTolBf16Ulp{.atol = 1e-6, .rtol = 1.0 / 128, .min_cos = 0.99999};
// bf16 x bf16 GEMMs with fp32 accumulation (cuBLASLt): only the summation order differs from the reference, so the
// fp32 results agree to ~1e-6 relative; after the bf16 rounding, one ulp (2^-7 relative) plus a little absolute
// slack for outputs near zero (cancellation).
inline const Tol kTolGemmBf16{.atol = 0, .rtol = 1.0 / 128, .atol_rms = 2e-3, .min_cos = 0.99999, .max_nmse = 1e-5};
// FP8 block-scaled GEMM on the tensor cores: the hardware accumulates each 128-K block with reduced precision
// before the fp32 promotion (DeepSeek-V3 report §3.3.2; measured ~1.7e-3 relative error in performance.md), so a
// few bf16 ulps per element, and up to ~1% of the output rms where an element cancels.
inline const Tol kTolGemmFp8{.atol = 0, .rtol = 1.0 / 32, .atol_rms = 2e-2, .min_cos = 0.9999, .max_nmse = 2e-5};
// Attention: fp32 online softmax (a different but exact-in-fp32 summation order) vs the reference's two passes.
inline const Tol kTolAttn{.atol = 0, .rtol = 1.0 / 64, .atol_rms = 4e-3, .min_cos = 0.99999, .max_nmse = 2e-5};
// Tensor-core attention (mla_prefill_mma.cu, mla_decode_mma.cu, mla_decode_wmma.cu) with P split into bf16 hi + lo:
// P enters P·V as P (1 + d), |d| <= 2^-16 (mma_sm80.cuh), the products with bf16 V are exact, and everything else is
// fp32 in another order than the reference's sequential sums. Both outputs are then rounded to bf16, so per element
// (within_attn_bound) |got - ref| <= ulp(max(|got|, |ref|)) + 2^-12 · Σ_t w_t |v_t|: one bf16 step where the two
// fp32 values straddle a rounding boundary, plus their difference, which is relative to Σ w|v| (not to |out|: an
// output that cancels keeps the absolute error of its terms): 2^-16 from P, the rest from fp32 sums over up to 8192
// keys, random-walk ~sqrt(n) · 2^-24 each (n · 2^-24 only if every rounding had the same sign). 2^-12 = 16x the
// split's own 2^-16. dev/kernels/mla_p_split_numerics.py (both computations in numpy, the tensor core's accumulation
// modelled pessimistically: every term truncated to the largest one's 24-bit grid) measures at 300 to 8192 keys at
// most 0.2 · 2^-16 Σ w|v| beyond one step, 0.1-0.3% of the outputs one step apart, NMSE 3e-9 .. 1.5e-8 — and for P
// rounded to bf16 (DSV3_MLA_P_BF16=1) 6-150 · 2^-16, 18-41% of the outputs apart (4-12% by 2+ steps), NMSE 1.3-6e-6.
// This Tol: one bf16 step (2^-7 relative) plus 0.4% of the rms per element; NMSE 3e-7, 20x the model's worst split
// and 4x below its best P in bf16 (1 - cos is half the NMSE).
inline const Tol kTolAttnSplit{.atol = 0, .rtol = 1.0 / 128, .atol_rms = 4e-3, .min_cos = 0.99999985, .max_nmse = 3e-7};
// The same kernels with P rounded to bf16 (DSV3_MLA_P_BF16=1: the former numerics, kept for measurement).
// Decode (mma and wmma): relative 2^-9 per weight, averaging out over the keys; measured in a numpy emulation of the
// mma kernel: ~1.4e-3 relative rms against an fp64 softmax.
inline const Tol kTolDecodePBf16{.atol = 0, .rtol = 1.0 / 32, .atol_rms = 1e-2, .min_cos = 0.9999, .max_nmse = 1e-4};
// Prefill: the row sum keeps the fp32 values, so out = Σ_t w_t (1 + δ_t) v_t with |δ_t| <= u = 2^-8, rounded once to
// bf16 like the reference: per element |got - ref| <= u · (Σ_t w_t |v_t| + 2 |ref|), which prefill_case checks
// exactly (within_attn_bound). On top, this Tol's statistics: NMSE 1-6e-6 (mla_p_split_numerics.py) from 300 to
// 4096 tokens. Its per-element slack is 5% of the rms, not 1%: the first rows of a long prompt see few keys, so their
// outputs (and their ~u·|o| errors) are several times the tensor's rms.
inline const Tol kTolPrefillPBf16{.atol = 0, .rtol = 1.0 / 32, .atol_rms = 5e-2, .min_cos = 0.99999, .max_nmse = 2e-5};
// MoE: two GEMMs in a chain with bf16 intermediates. Where the first GEMM's result differs by a bf16 ulp, the FP8
// re-quantization of the down projection's input can move a code by one e4m3 step (12.5%) — for ~1-2% of the
// inputs, so ~1% relative error in the output is expected from a correct kernel; bf16 weights flip only bf16 ulps.
inline const Tol kTolMoeFp8{.atol = 0, .rtol = 0.1, .atol_rms = 0.1, .min_cos = 0.999, .max_nmse = 5e-4};
inline const Tol kTolMoeBf16{.atol = 0, .rtol = 1.0 / 32, .atol_rms = 1e-2, .min_cos = 0.9999, .max_nmse = 1e-4};
inline const Tol kBitwise{.bitwise = true};

// Reference numerics (CudaBackendOptions::reference_numerics, DSV3_NUMERICS=reference): every op must give the CPU
// reference's outputs BIT FOR BIT — bf16, fp32 and i32 outputs compared as bits (kBitwise: max |gpu - cpu| == 0), no
// tolerance — because both sides run the same functions (backend/ref_math.h) in the same order. The cases take
// random inputs (never zero), odd sizes, one token, shuffled block tables, FP8 and bf16 weights; their vars start
// with "refnum", so `test_ops -p refnum` runs exactly them. The ops that keep their kernels in this mode (embedding,
// the KV cache ops, fill_token_ids, greedy sample) are checked on the same backend.
inline const char* refnum_tag(bool refnum) { return refnum ? "refnum," : ""; }

struct Case {
  std::string op, vars;
  bool quick;
  std::function<bool(Env&)> run;
};
inline std::vector<Case>& registry() {
  static std::vector<Case> c;
  return c;
}
inline void add_case(std::string op, std::string vars, bool quick, std::function<bool(Env&)> run) {
  registry().push_back({std::move(op), std::move(vars), quick, std::move(run)});
}

// 0 .. n-1 in a random order (shuffled block pools, slots, expert picks).
inline std::vector<int32_t> shuffled(Rng& rng, int n) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  std::shuffle(v.begin(), v.end(), rng.gen());
  return v;
}

}  // namespace dsv3::ops_test
