// gemm.cpp: cuBLASLt plans and launches (backend/cuda). See gemm.h.
// Layout rules (cuBLASLt 13.x, Hopper): FP8 needs the TN form (A transposed) with ld multiples of 16 bytes; block
// scaling takes VEC128_32F for the activations (B) and BLK128x128_32F for the weights (A), fp32 compute, no fast
// accumulation (it would skip the per-block promotion that the reference does).
#include "dsv3/backend/cuda/gemm.h"

#include <cstdlib>

#include "dsv3/base/log.h"

namespace dsv3::cuda {
namespace {

constexpr size_t kWorkspaceBytes = 32u << 20;

int alignment_of(const void* p, int64_t stride_elems, int elem_bytes, int batch) {
  uintptr_t v = reinterpret_cast<uintptr_t>(p);
  if (batch > 1) v |= static_cast<uintptr_t>(stride_elems * elem_bytes);
  int a = 256;
  while (a > 1 && (v % static_cast<uintptr_t>(a)) != 0) a >>= 1;
  return a;
}

int type_bytes(cudaDataType_t t) { return t == CUDA_R_8F_E4M3 ? 1 : t == CUDA_R_32F ? 4 : 2; }

LtLayout make_layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld, int batch, int64_t stride) {
  cublasLtMatrixLayout_t l = nullptr;
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, type, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols), ld));
  LtLayout out(l);
  if (batch > 1) {
    int32_t b = batch;
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &b, sizeof(b)));
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                  sizeof(stride)));
  }
  return out;
}

}  // namespace

LtGemm::LtGemm() : handle_(make_lt_handle()), workspace_(kWorkspaceBytes) {}

LtGemm::Plan& LtGemm::plan(const GemmProblem& p, int align_a, int align_b, int align_d, const float* a_scale,
                           const float* b_scale) {
  const Key key{static_cast<int>(p.ab_type), static_cast<int>(p.d_type), p.trans_a, p.trans_b, p.m, p.n, p.k,
                p.lda, p.ldb, p.ldd, p.batch, p.stride_a, p.stride_b, p.stride_d, p.block_scaled,
                align_a, align_b, align_d};
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  Plan& pl = plans_[key];
  cublasLtMatmulDesc_t op = nullptr;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  pl.op = LtMatmulDesc(op);
  const cublasOperation_t ta = p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  if (p.block_scaled) {
    const int32_t mode_a = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F, mode_b = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode_a, sizeof(mode_a)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode_b, sizeof(mode_b)));
    const int8_t fast = 0;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, sizeof(fast)));
    // NOTE: the scale pointers must be set before the heuristic query: with block scale modes and null pointers,
    // cublasLtMatmulAlgoGetHeuristic answered CUBLAS_STATUS_INVALID_VALUE for every shape on the H200 (2026-11-29).
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a_scale, sizeof(a_scale)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scale, sizeof(b_scale)));
  }
  pl.a = make_layout(p.ab_type, p.trans_a ? p.k : p.m, p.trans_a ? p.m : p.k, p.lda, p.batch, p.stride_a);
  pl.b = make_layout(p.ab_type, p.trans_b ? p.n : p.k, p.trans_b ? p.k : p.n, p.ldb, p.batch, p.stride_b);
  pl.d = make_layout(p.d_type, p.m, p.n, p.ldd, p.batch, p.stride_d);

  cublasLtMatmulPreference_t pref_raw = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref_raw));
  LtPreference pref(pref_raw);
  const uint64_t ws = kWorkspaceBytes;
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref_raw, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  const uint32_t aa = align_a, ab = align_b, ad = align_d;
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref_raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof(aa)));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref_raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof(ab)));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref_raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ad, sizeof(ad)));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref_raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ad, sizeof(ad)));
  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(handle_.get(), op, pl.a.get(), pl.b.get(), pl.d.get(),
                                                           pl.d.get(), pref_raw, 1, &result, &returned);
  pl.ok = st == CUBLAS_STATUS_SUCCESS && returned > 0 && result.state == CUBLAS_STATUS_SUCCESS;
  if (pl.ok) pl.algo = result.algo;
  else
    log_info("cuBLASLt: no algorithm (status {}) for {} m={} n={} k={} lda={} ldb={} ldd={} batch={}; the fallback kernel runs",
              static_cast<int>(st), p.block_scaled ? "fp8 block-scaled" : "bf16", p.m, p.n, p.k, p.lda, p.ldb,
              p.ldd, p.batch);
  return pl;
}

bool LtGemm::run(const GemmProblem& p, const void* a, const void* b, void* d, const float* a_scale,
                 const float* b_scale, cudaStream_t stream) {
  const int ab = type_bytes(p.ab_type), db = type_bytes(p.d_type);
  Plan& pl = plan(p, alignment_of(a, p.stride_a, ab, p.batch), alignment_of(b, p.stride_b, ab, p.batch),
                  alignment_of(d, p.stride_d, db, p.batch), a_scale, b_scale);
  if (!pl.ok) return false;
  if (p.block_scaled) {
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(pl.op.get(), CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a_scale,
                                                sizeof(a_scale)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(pl.op.get(), CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scale,
                                                sizeof(b_scale)));
  }
  const float alpha = 1.f, beta = 0.f;
  const cublasStatus_t st = cublasLtMatmul(handle_.get(), pl.op.get(), &alpha, a, pl.a.get(), b, pl.b.get(), &beta, d,
                                           pl.d.get(), d, pl.d.get(), &pl.algo, workspace_.data(), kWorkspaceBytes,
                                           stream);
  if (st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE) {
    log_warn("cuBLASLt rejected a planned matmul (status {}), m={} n={} k={}: using the fallback kernel",
             static_cast<int>(st), p.m, p.n, p.k);
    pl.ok = false;
    return false;
  }
  CUBLAS_CHECK(st);
  return true;
}

}  // namespace dsv3::cuda
