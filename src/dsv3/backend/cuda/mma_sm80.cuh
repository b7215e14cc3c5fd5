// mma_sm80.cuh: the PTX wrappers of the mma.sync attention kernels (mla_decode_mma.cu, mla_prefill_mma.cu):
// cp.async global -> shared copies, ldmatrix fragment loads, the bf16 m16n8k16 tensor-core MMA, the XOR swizzle
// of 16-byte chunks both kernels lay their shared-memory tiles out with, and the hi/lo bf16 split of the softmax
// probabilities for the P·V product (backend/cuda). Device code only.
#pragma once

#include <cstdint>

#include <cuda_bf16.h>

namespace dsv3::cuda {

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, bypassing L1; src_bytes = 0 writes 16 zero bytes and reads nothing.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most kPending committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

// Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i, register i receives matrix i.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// d[16x8] += a[16x16] · b[16x8]: a = 4 regs (row-major), b = 2 regs (k-major pairs), bf16 inputs, fp32 accumulators.
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Byte offset of 16-byte chunk `chunk` of row `row` in a tile of `row_bytes`-byte rows. Row widths that are multiples
// of 128 B would put the 8 rows an ldmatrix phase reads on the same banks; XOR-ing the chunk index with row % 8
// spreads them over 8 distinct 16-byte bank groups (cp.async writes too).
__device__ __forceinline__ uint32_t swz(int row, int chunk, int row_bytes) {
  return static_cast<uint32_t>(row * row_bytes + ((chunk ^ (row & 7)) << 4));
}

// Two fp32 probabilities as bf16 pairs for the A operand of P·V (x0 -> the low half, the lower column):
// hi = bf16(x), lo = bf16(x - hi). x - hi is exact in fp32 (hi is x rounded to 8 significant bits, within a factor
// of 2 of x), so hi + lo = x (1 + d) with |d| <= 2^-8 · 2^-8 = 2^-16 instead of hi's 2^-8 (docs/numerics.md). The P·V
// product then takes two mma with the same V fragment: bf16 x bf16 products are exact, so only the tensor core's
// fp32 accumulation rounds.
__device__ __forceinline__ void split_bf16x2(float x0, float x1, uint32_t& hi, uint32_t& lo) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);
  const __nv_bfloat162 l = __floats2bfloat162_rn(x0 - __low2float(h), x1 - __high2float(h));
  hi = *reinterpret_cast<const uint32_t*>(&h);
  lo = *reinterpret_cast<const uint32_t*>(&l);
}

}  // namespace dsv3::cuda
