// mla_decode_mma16.cu: absorbed-MLA decode attention for small batches on the tensor cores (mma.sync m16n8k16 bf16),
// 16 heads per CTA (backend/cuda). The 64-head kernel (mla_decode_mma.cu) gives a batch-1 step 2 head groups x a few
// KV splits: ~16 CTAs on 132 SMs, each loading 144 KB and running a 5k-cycle tile. Here a CTA is (16 heads, one
// split of >= 64 keys, row): at batch 1 and 1024 keys 8 x 16 = 128 CTAs, 2 per SM fit (94 KB of shared memory).
// Parallelisation: grid = (H/16, KV splits, rows); 4 warps. Q (16 x 576) and each 64-key tile (latent ‖ rope,
// 64 x 576) go through the block table into shared memory by 16-byte cp.async in 4 commit groups of 144 columns
// each (Q's groups first), so S = Q·Kᵀ starts on the first quarter while the rest lands. Rows of Q, K, P are
// XOR-swizzled by 16-byte chunk (chunk ^ row % 8, mma_sm80.cuh swz): ldmatrix and cp.async free of bank conflicts.
//   S: warp w = 16 heads x keys [16w, 16w + 16) over all 576 columns (two accumulator sets, even / odd k-steps).
//   Online softmax in fp32 (log2 domain): the 4 warps exchange their per-head maxima through shared memory, so every
//   thread holds the running max and rescale factor of its own two heads (g, g + 8: the same rows in S and in O).
//   P split into bf16 hi + lo (two small buffers). O[16 x 512] += P·V: warp w = 16 heads x columns [128w, 128w + 128),
//   64 fp32 accumulators per thread; V is the first 512 columns of the same staged tile (ldmatrix.trans).
// One tile buffer (no double buffer): the next tile's copies start once P·V is done; the second CTA on the SM covers
// the gap. Splits write partials (m in natural-log units) that mla_decode_combine merges, as the other kernels do.
// Precision: as mla_decode_mma.cu — bf16 inputs, fp32 scores / softmax / sums / accumulators, P as hi + lo
// (|d| <= 2^-16; kSplitP = false rounds P to bf16, DSV3_MLA_P_BF16=1), one bf16 rounding of the output.
// Supported: entry 576, rank 512, H a multiple of 16. Reference: CpuBackend::mla_decode; tests/ops "mla_decode
// ... kernel=mma16" (dev/kernels/mla_decode_mma16_emu.py checks this file's index maps in numpy).
#include <cmath>

#include "dsv3/backend/cuda/mla_decode_common.cuh"
#include "dsv3/backend/cuda/mma_sm80.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kEntry = 576, kRank = 512, kHeads = 16, kKeys = 64, kWarps = 4, kThreads = kWarps * 32;
constexpr int kRowBytes = kEntry * 2;              // 1152 = 72 chunks of 16 bytes (9 swizzle groups of 8)
constexpr int kRowChunks = kRowBytes / 16;         // 72
constexpr int kGroups = 4;                         // cp.async commit groups: column quarters
constexpr int kGroupChunks = kRowChunks / kGroups; // 18 chunks = 144 columns = 9 k-steps of 16
constexpr int kGroupSteps = kGroupChunks / 2;      // 9
constexpr int kPRowBytes = kKeys * 2;              // 128: one P row = 8 chunks
constexpr int kSmemQ = 0;                                  // [kHeads][576] bf16, swizzled
constexpr int kSmemK = kSmemQ + kHeads * kRowBytes;        // [kKeys][576] bf16, swizzled
constexpr int kSmemPh = kSmemK + kKeys * kRowBytes;        // [kHeads][kKeys] bf16 P hi, swizzled
constexpr int kSmemPl = kSmemPh + kHeads * kPRowBytes;     // [kHeads][kKeys] bf16 P lo, swizzled
constexpr int kSmemRed = kSmemPl + kHeads * kPRowBytes;    // [kWarps][kHeads] f32: tile maxima (loop), sums (end)
constexpr int kSmemTotal = kSmemRed + kWarps * kHeads * 4; // 96,512 bytes: 2 CTAs per SM
static_assert(2 * kSmemTotal <= 227 * 1024, "mla_decode_mma16: two CTAs per SM");
static_assert(kRowChunks % kGroups == 0 && kGroupChunks % 2 == 0, "k-steps of 16 columns inside one group");
static_assert(kRank == kWarps * 128, "P·V: one warp per 128 output columns");
static_assert(kKeys == kWarps * 16, "S: one warp per 16 keys");
static_assert(kKeys * kGroupChunks % kThreads == 0, "K loader: whole chunks per thread");
constexpr int kKLoads = kKeys * kGroupChunks / kThreads;                  // 9 chunks per thread per group
constexpr int kQLoads = (kHeads * kGroupChunks + kThreads - 1) / kThreads;  // 3 (the last one partly)

constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

template <int kPending>
__device__ __forceinline__ void wait_sync() {
  cp_async_wait<kPending>();
  __syncthreads();
}

template <bool kSplitP>
__global__ void __launch_bounds__(kThreads, 2) mla_decode_mma16_kernel(const MlaDecodeArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  float* red = reinterpret_cast<float*>(smem + kSmemRed);
  const uint32_t q_s = smem_addr(smem + kSmemQ), k_s = smem_addr(smem + kSmemK);
  const uint32_t ph_s = smem_addr(smem + kSmemPh), pl_s = smem_addr(smem + kSmemPl);
  const int hg = blockIdx.x, sp = blockIdx.y, t = blockIdx.z;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, tig = lane % 4;  // mma fragment coordinates: row group, thread in group
  const int x7 = lane % 8;                 // the swizzle key (row % 8) of every row this lane addresses in ldmatrix
  const DecodeRow row = decode_row(a, t, sp);

  // Loader: chunk j = tid + kThreads i of a group's [rows][18] chunks is row j / 18, chunk 18 group + j % 18 (a warp
  // covers ~2 rows x 288 contiguous bytes). A thread's K rows are the same in every group: their cache addresses
  // (block-table lookups) are resolved once per tile.
  const bf16_t* ksrc[kKLoads];
  auto resolve_tile = [&](int k0) {
#pragma unroll
    for (int i = 0; i < kKLoads; ++i) {
      const int pos = k0 + (tid + kThreads * i) / kGroupChunks;
      ksrc[i] = nullptr;
      if (pos < row.end) {
        const int block = a.block_table[static_cast<int64_t>(t) * a.max_blocks + pos / a.block_size];
        if (block >= 0 && block < a.n_blocks) {
          ksrc[i] = a.cache + (static_cast<int64_t>(block) * a.block_size + pos % a.block_size) * kEntry;
        } else {
          set_error(a.err, kErrDecodeLen);
        }
      }
    }
  };
  auto issue_k = [&](int grp) {  // keys past the end (or with a bad block id) are zero-filled: 0 · 0, never NaN
#pragma unroll
    for (int i = 0; i < kKLoads; ++i) {
      const int j = tid + kThreads * i, r = j / kGroupChunks, c = grp * kGroupChunks + j % kGroupChunks;
      cp_async16(k_s + swz(r, c, kRowBytes), ksrc[i] ? ksrc[i] + 8 * c : a.cache, ksrc[i] ? 16 : 0);
    }
  };
  const bf16_t* q_row0 = a.q + (static_cast<int64_t>(t) * a.heads + hg * kHeads) * kEntry;  // 16 contiguous rows
  auto issue_q = [&](int grp) {
#pragma unroll
    for (int i = 0; i < kQLoads; ++i) {
      const int j = tid + kThreads * i;
      if (j < kHeads * kGroupChunks) {
        const int r = j / kGroupChunks, c = grp * kGroupChunks + j % kGroupChunks;
        cp_async16(q_s + swz(r, c, kRowBytes), q_row0 + r * kEntry + 8 * c, 16);
      }
    }
  };
  // Q first (it needs no block-table lookup), as 4 groups, then the first tile's 4 groups: the loop's wait for
  // "at most 3 - g groups pending" then covers all of Q and K groups 0..g here, and K groups 0..g on later tiles.
#pragma unroll
  for (int grp = 0; grp < kGroups; ++grp) {
    issue_q(grp);
    cp_async_commit();
  }
  const bool any = row.begin < row.end;
  if (any) resolve_tile(row.begin);
#pragma unroll
  for (int grp = 0; grp < kGroups; ++grp) {
    if (any) issue_k(grp);
    cp_async_commit();
  }

  const float scale_log2 = a.softmax_scale * kLog2e;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};  // heads g + 8i (l: this thread's keys only)
  float o[16][4];  // [nt][e]: head g + 8(e / 2), column 128 warp + 8nt + 2tig + e % 2
#pragma unroll
  for (int nt = 0; nt < 16; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[nt][e] = 0.f;

  // ldmatrix lane addresses (byte offsets without the chunk); see the fragment layouts of mma.m16n8k16.
  const uint32_t qa_row = q_s + (lane % 16) * kRowBytes;  // A = Q: rows = heads, chunk 2kk + lane / 16
  const int a_hi = lane / 16;
  const uint32_t kb_row = k_s + (16 * warp + lane % 8 + (lane / 16) * 8) * kRowBytes;  // B = K: rows = keys
  const int kb_hi = (lane / 8) % 2;                                                      // chunk 2kk + kb_hi
  const uint32_t pa_off = (lane % 16) * kPRowBytes;  // A = P: rows = heads, chunk 2kk + lane / 16
  const uint32_t vb_row = k_s + (lane % 8 + ((lane / 8) % 2) * 8) * kRowBytes + warp * 256;  // B = V (trans)

  for (int k0 = row.begin; k0 < row.end; k0 += kKeys) {
    // ---- S = Q·Kᵀ: s[nt][e] = head g + 8(e/2), key 16 warp + 8nt + 2tig + e%2; even and odd k-steps apart
    float sa[2][4], sb[2][4];
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) sa[nt][e] = sb[nt][e] = 0.f;
#pragma unroll
    for (int grp = 0; grp < kGroups; ++grp) {
      if (grp == 0) wait_sync<kGroups - 1>();  // this group's Q and K columns are staged, by every thread
      else if (grp == 1) wait_sync<kGroups - 2>();
      else if (grp == 2) wait_sync<kGroups - 3>();
      else wait_sync<0>();
#pragma unroll
      for (int s = 0; s < kGroupSteps; ++s) {
        const int kk = grp * kGroupSteps + s;                    // k-step: columns [16kk, 16kk + 16)
        const uint32_t kq = static_cast<uint32_t>((kk / 4) * 128);  // chunks 2kk, 2kk+1 share the 8-chunk group kk/4
        uint32_t af[4], bfr[4];
        ldmatrix_x4(af, qa_row + kq + ((((2 * kk) % 8 + a_hi) ^ x7) << 4));
        ldmatrix_x4(bfr, kb_row + kq + ((((2 * kk) % 8 + kb_hi) ^ x7) << 4));
        if (kk % 2 == 0) {  // kk is a constant here (both loops unroll)
          mma_bf16(sa[0], af, bfr[0], bfr[1]);
          mma_bf16(sa[1], af, bfr[2], bfr[3]);
        } else {
          mma_bf16(sb[0], af, bfr[0], bfr[1]);
          mma_bf16(sb[1], af, bfr[2], bfr[3]);
        }
      }
    }

    // ---- online softmax (log2 domain); keys past the end score -inf
    float s[2][4], mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = k0 + 16 * warp + 8 * nt + 2 * tig + e % 2;
        s[nt][e] = key < row.end ? (sa[nt][e] + sb[nt][e]) * scale_log2 : -INFINITY;
        mx[e / 2] = fmaxf(mx[e / 2], s[nt][e]);
      }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
      if (tig == 0) red[warp * kHeads + g + 8 * i] = mx[i];
    }
    __syncthreads();  // every warp's maxima are in red
    float corr[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int h = g + 8 * i;
      const float tile_max = fmaxf(fmaxf(red[h], red[kHeads + h]), fmaxf(red[2 * kHeads + h], red[3 * kHeads + h]));
      const float m_new = fmaxf(m_run[i], tile_max);  // finite: key k0 (warp 0) is valid
      corr[i] = exp2f(m_run[i] - m_new);              // 0 on the first tile
      m_run[i] = m_new;
    }
    float psum[2] = {0.f, 0.f};
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const float p0 = exp2f(s[nt][2 * i] - m_run[i]), p1 = exp2f(s[nt][2 * i + 1] - m_run[i]);
        const uint32_t off = swz(g + 8 * i, 2 * warp + nt, kPRowBytes) + 4 * tig;  // keys 8 (2 warp + nt) + 2tig
        if constexpr (kSplitP) {
          uint32_t bh, bl;
          split_bf16x2(p0, p1, bh, bl);
          *reinterpret_cast<uint32_t*>(smem + kSmemPh + off) = bh;
          *reinterpret_cast<uint32_t*>(smem + kSmemPl + off) = bl;
          psum[i] += p0 + p1;
        } else {
          const __nv_bfloat162 p = __floats2bfloat162_rn(p0, p1);
          *reinterpret_cast<__nv_bfloat162*>(smem + kSmemPh + off) = p;
          psum[i] += __low2float(p) + __high2float(p);
        }
      }
#pragma unroll
    for (int i = 0; i < 2; ++i) l_run[i] = l_run[i] * corr[i] + psum[i];
    __syncthreads();  // P complete (and red read by all)

    // ---- O = O * corr + P·V over this warp's 128 columns (heads g, g + 8: the same as in S, so corr is ours)
#pragma unroll
    for (int nt = 0; nt < 16; ++nt) {
      o[nt][0] *= corr[0];
      o[nt][1] *= corr[0];
      o[nt][2] *= corr[1];
      o[nt][3] *= corr[1];
    }
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      uint32_t ph[4], pl[4];
      ldmatrix_x4(ph, ph_s + pa_off + (((2 * kk + a_hi) ^ x7) << 4));
      if constexpr (kSplitP) ldmatrix_x4(pl, pl_s + pa_off + (((2 * kk + a_hi) ^ x7) << 4));
#pragma unroll
      for (int np = 0; np < 8; ++np) {  // columns 128 warp + 16np + 0..15: chunks 16 warp + 2np, + 1
        uint32_t vf[4];
        ldmatrix_x4_trans(vf, vb_row + kk * 16 * kRowBytes + (((2 * np + a_hi) ^ x7) << 4));
        mma_bf16(o[2 * np], ph, vf[0], vf[1]);
        mma_bf16(o[2 * np + 1], ph, vf[2], vf[3]);
        if constexpr (kSplitP) {
          mma_bf16(o[2 * np], pl, vf[0], vf[1]);
          mma_bf16(o[2 * np + 1], pl, vf[2], vf[3]);
        }
      }
    }
    __syncthreads();  // every warp is done with this tile's K, P and red: the next tile may overwrite them
    if (k0 + kKeys < row.end) {
      resolve_tile(k0 + kKeys);
#pragma unroll
      for (int grp = 0; grp < kGroups; ++grp) {
        issue_k(grp);
        cp_async_commit();
      }
    }
  }

  cp_async_wait<0>();  // an empty split's Q copy may still be in flight

  // ---- per-head sums: quad, then the 4 warps' key quarters in a fixed order (deterministic)
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l_run[i] += __shfl_xor_sync(0xffffffffu, l_run[i], 1);
    l_run[i] += __shfl_xor_sync(0xffffffffu, l_run[i], 2);
    if (tig == 0) red[warp * kHeads + g + 8 * i] = l_run[i];  // red's last readers passed the loop's barriers
  }
  __syncthreads();
  float l[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int h = g + 8 * i;
    l[i] = ((red[h] + red[kHeads + h]) + red[2 * kHeads + h]) + red[3 * kHeads + h];
    if (warp == 0 && tig == 0) store_decode_ml(a, t, sp, hg * kHeads + h, m_run[i] * kLn2, l[i]);
  }
  // An empty split leaves its partial unread (the combine skips l = 0); a whole row always stores (zeros).
  if (a.n_splits > 1 && row.begin >= row.end) return;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int h = hg * kHeads + g + 8 * i;
    const float inv = l[i] > 0.f ? 1.f / l[i] : 0.f;
#pragma unroll
    for (int nt = 0; nt < 16; ++nt) {
      const int c = warp * 128 + 8 * nt + 2 * tig;
      const float v0 = o[nt][2 * i], v1 = o[nt][2 * i + 1];
      if (a.n_splits == 1) {
        *reinterpret_cast<__nv_bfloat162*>(a.out + (static_cast<int64_t>(t) * a.heads + h) * kRank + c) =
            __floats2bfloat162_rn(v0 * inv, v1 * inv);
      } else {
        *reinterpret_cast<float2*>(a.part_o + ((static_cast<int64_t>(t) * a.n_splits + sp) * a.heads + h) * kRank +
                                   c) = make_float2(v0, v1);
      }
    }
  }
}

}  // namespace

bool mla_decode_mma16_supported(int entry, int rank, int heads) {
  return entry == kEntry && rank == kRank && heads % kHeads == 0;
}

void launch_mla_decode_mma16(const MlaDecodeArgs& a, bool p_bf16, cudaStream_t s) {
  auto* kernel = p_bf16 ? mla_decode_mma16_kernel<false> : mla_decode_mma16_kernel<true>;
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemTotal);
  const dim3 grid(a.heads / kHeads, a.n_splits, a.n);
  kernel<<<grid, kThreads, kSmemTotal, s>>>(a);
}

}  // namespace dsv3::cuda
