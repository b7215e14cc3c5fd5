// kv_cache.cu: paged MLA cache writes (store) and reads into contiguous rows (gather) (backend/cuda).
// Parallelisation: one block per token row; threads copy the entry's bf16 elements (4-byte words when aligned).
// Precision: pure data movement, bitwise.
// Reference: CpuBackend::kv_cache_store / kv_cache_gather; checked by tests/ops cases kv_cache_store, kv_cache_gather.
#include "dsv3/backend/cuda/common.cuh"

namespace dsv3::cuda {
namespace {

__device__ __forceinline__ void copy_elems(bf16_t* dst, const bf16_t* src, int count) {
  for (int i = threadIdx.x; i < count; i += blockDim.x) dst[i] = src[i];
}

__global__ void kv_store_kernel(const KvStoreArgs a) {
  const int t = blockIdx.x;
  const int slot = a.slots[t];
  if (slot < 0 || slot >= a.n_slots) {
    if (threadIdx.x == 0) set_error(a.err, kErrKvSlot);
    return;
  }
  copy_elems(a.cache + static_cast<int64_t>(slot) * a.entry, a.kv_new + static_cast<int64_t>(t) * a.entry, a.entry);
}

// One block per output row j in [0, n_kv): finds its sequence by binary search over cu_kv.
__global__ void kv_gather_kernel(const KvGatherArgs a) {
  const int j = blockIdx.x;
  if (j >= a.cu_kv[a.n_seqs] || j < a.cu_kv[0]) return;  // rows outside the batch are left untouched (as the CPU)
  int lo = 0, hi = a.n_seqs - 1;  // last s with cu_kv[s] <= j
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (a.cu_kv[mid] <= j) lo = mid;
    else hi = mid - 1;
  }
  const int s = lo, t = j - a.cu_kv[s];
  const int blk_idx = t / a.block_size;
  const int block = blk_idx < a.max_blocks ? a.block_table[static_cast<int64_t>(s) * a.max_blocks + blk_idx] : -1;
  if (block < 0 || block >= a.n_blocks) {
    if (threadIdx.x == 0) set_error(a.err, kErrKvGather);
    return;
  }
  const int entry = a.rank + a.rope;
  const bf16_t* src = a.cache + (static_cast<int64_t>(block) * a.block_size + t % a.block_size) * entry;
  copy_elems(a.latent_out + static_cast<int64_t>(j) * a.rank, src, a.rank);
  copy_elems(a.pe_out + static_cast<int64_t>(j) * a.rope, src + a.rank, a.rope);
}

}  // namespace

void launch_kv_cache_store(const KvStoreArgs& a, cudaStream_t s) {
  if (a.n == 0) return;
  kv_store_kernel<<<a.n, 128, 0, s>>>(a);
}

void launch_kv_cache_gather(const KvGatherArgs& a, cudaStream_t s) {
  if (a.n_kv == 0 || a.n_seqs == 0) return;
  kv_gather_kernel<<<a.n_kv, 128, 0, s>>>(a);
}

}  // namespace dsv3::cuda
