// mla_decode_mma.cu: absorbed-MLA decode attention on the tensor cores (mma.sync m16n8k16 bf16), the default path
// (backend/cuda). Parallelisation: grid = (H/64 head halves, KV splits, rows); 8 warps, one CTA per SM. Each 64-key
// tile of the row's cache (latent ‖ rope, 64 x 576 bf16 = 72 KB) goes through the block table into shared memory by
// 16-byte cp.async, double-buffered, so it is read from HBM once per row (the second head half finds it in L2).
// Q of the CTA's 64 heads stays in shared memory (72 KB). Rows of Q, K and P are XOR-swizzled by 16-byte chunk
// (chunk ^ row % 8), which keeps every ldmatrix and cp.async free of bank conflicts.
//   S = Q·Kᵀ: warp (hq, kh) = 16 heads x 32 keys over all 576 columns; online softmax in fp32 (log2 domain), the
//   two key halves of a head exchange their maxima through shared memory; P split into bf16 hi (the P buffer) and
//   lo = bf16(P - hi) (the tile's rope columns, dead once S is done) in shared memory.
//   O[64 x 512] += P·V: warp w = 64 heads x columns [64w, 64w + 64), 128 fp32 accumulators per thread; V is the
//   first 512 columns of the same staged tile, read with ldmatrix.trans once per 16 keys for hi and lo.
// Splits write partials (m in natural-log units) that mla_decode_combine merges.
// Cost model (per 64-key tile and block): 3200 mma (S 1152, P·V 2 x 1024) against ~624 KB of shared-memory traffic
// (ldmatrix: S 432 KB, P·V 192 KB) — shared-memory bound on paper at ~5k cycles. At H = 128 the op does 242
// FLOPs per KV byte, so even the dense bf16 peak caps it near 90% of HBM; mma.sync reaches well below that peak.
// Precision: bf16 inputs (as the reference), fp32 scores / softmax / sums / accumulators, P enters P·V as hi + lo =
// P (1 + d) with |d| <= 2^-16, one bf16 rounding of the output. kSplitP = false (DSV3_MLA_P_BF16=1) is the former
// kernel: one mma with P rounded to bf16 (|d| <= 2^-8), the sum over the same rounded values (docs/numerics.md).
// Supported: entry 576, rank 512, H a multiple of 64; other shapes take mla_decode_wmma.cu or mla_decode.cu.
// Reference: CpuBackend::mla_decode; checked by tests/ops case "mla_decode ... kernel=mma".
#include <cmath>

#include "dsv3/backend/cuda/mla_decode_common.cuh"
#include "dsv3/backend/cuda/mma_sm80.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kEntry = 576, kRank = 512, kHeads = 64, kKeys = 64, kWarps = 8, kThreads = kWarps * 32;
constexpr int kRowBytes = kEntry * 2;          // 1152 = 72 chunks of 16 bytes; 72 % 8 == 0 keeps the swizzle in-row
constexpr int kRowChunks = kRowBytes / 16;     // 72
constexpr int kPRowBytes = kKeys * 2;          // 128: one P row = 8 chunks
constexpr int kTileBytes = kKeys * kRowBytes;  // 73728
constexpr int kSmemQ = 0;                                // [kHeads][576] bf16, swizzled
constexpr int kSmemK = kSmemQ + kHeads * kRowBytes;      // [2][kKeys][576] bf16, swizzled
constexpr int kSmemP = kSmemK + 2 * kTileBytes;          // [kHeads][kKeys] bf16, swizzled
constexpr int kSmemRed = kSmemP + kHeads * kPRowBytes;   // [2][kHeads] f32: per key half, max (loop) / sum (end)
constexpr int kSmemCorr = kSmemRed + 2 * kHeads * 4;     // [kHeads] f32: this tile's rescale factor of O
constexpr int kSmemM = kSmemCorr + kHeads * 4;           // [kHeads] f32: final running max (log2 units)
constexpr int kSmemL = kSmemM + kHeads * 4;              // [kHeads] f32: final sum
constexpr int kSmemTotal = kSmemL + kHeads * 4;          // 230,656 bytes
static_assert(kSmemTotal <= 227 * 1024, "mla_decode_mma: shared memory");
static_assert(kRowChunks % 8 == 0 && kRowChunks % 4 == 0, "swizzle groups and the loader's 4 threads per row");
static_assert(kRank == kWarps * 64, "P·V: one warp per 64 output columns");
static_assert(kKeys == 64 && kHeads == 64, "S = Q·Kᵀ: 4 x 2 warps of 16 heads x 32 keys; loader: 4 threads per row");

constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;
// P lo of head h (keys 8c..8c+7 in chunk c) lives in row h of the current K stage, chunks kPeChunk + c (the k_pe
// columns 512..575, which only S reads): 64 heads x 64 keys x 2 bytes fill them exactly, with P's swizzle.
constexpr int kPeChunk = kRank / 8;
static_assert(kEntry - kRank == kKeys && kHeads <= kKeys, "P lo: one 128-byte k_pe row per head");

template <bool kSplitP>
__global__ void __launch_bounds__(kThreads, 1) mla_decode_mma_kernel(const MlaDecodeArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  float* red = reinterpret_cast<float*>(smem + kSmemRed);
  float* corr_s = reinterpret_cast<float*>(smem + kSmemCorr);
  float* m_s = reinterpret_cast<float*>(smem + kSmemM);
  float* l_s = reinterpret_cast<float*>(smem + kSmemL);
  const uint32_t q_s = smem_addr(smem + kSmemQ), k_s = smem_addr(smem + kSmemK), p_s = smem_addr(smem + kSmemP);
  const int hg = blockIdx.x, sp = blockIdx.y, t = blockIdx.z;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, tig = lane % 4;  // mma fragment coordinates: row group, thread in group
  const int x7 = lane % 8;                 // the swizzle key (row % 8) of every row this lane addresses in ldmatrix
  const DecodeRow row = decode_row(a, t, sp);

  // Loader: thread = (row ld_r of the 64, chunks ld_c + 4j for j < 18): one block-table lookup per thread per tile;
  // a warp instruction covers 8 rows x 64 contiguous bytes.
  const int ld_r = tid / 4, ld_c = tid % 4;
  // Chunk c = ld_c + 4j sits at 16 * (8 (j / 2) + ((ld_c + 4 (j % 2)) ^ ld_r % 8)) in the swizzled row: two offsets.
  const uint32_t ld_dst[2] = {swz(ld_r, ld_c, kRowBytes), swz(ld_r, ld_c + 4, kRowBytes)};
  {
    const bf16_t* src = a.q + (static_cast<int64_t>(t) * a.heads + hg * kHeads + ld_r) * kEntry + ld_c * 8;
#pragma unroll
    for (int j = 0; j < kRowChunks / 4; ++j) cp_async16(q_s + ld_dst[j % 2] + 128 * (j / 2), src + 32 * j, 16);
  }
  auto load_tile = [&](int k0, int stage) {
    const int pos = k0 + ld_r;
    const bf16_t* src = a.cache;  // a valid address for the zero fill (nothing is read)
    int bytes = 0;
    if (pos < row.end) {
      const int block = a.block_table[static_cast<int64_t>(t) * a.max_blocks + pos / a.block_size];
      if (block >= 0 && block < a.n_blocks) {
        src = a.cache + (static_cast<int64_t>(block) * a.block_size + pos % a.block_size) * kEntry;
        bytes = 16;
      } else {
        set_error(a.err, kErrDecodeLen);
      }
    }
    if (bytes) src += ld_c * 8;
    const uint32_t dst = k_s + stage * kTileBytes;
#pragma unroll
    for (int j = 0; j < kRowChunks / 4; ++j) cp_async16(dst + ld_dst[j % 2] + 128 * (j / 2), src + (bytes ? 32 * j : 0), bytes);
  };
  if (row.begin < row.end) load_tile(row.begin, 0);
  cp_async_commit();

  const int hq = warp / 2, kh = warp % 2;  // S warp tile: heads [16hq, 16hq + 16) x keys [32kh, 32kh + 32)
  const float scale_log2 = a.softmax_scale * kLog2e;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};  // heads 16hq + g + 8i (this thread's keys only: l)
  float o[4][8][4];  // [mt][nt][e]: head 16mt + g + 8(e / 2), column 64 warp + 8nt + 2tig + e % 2
#pragma unroll
  for (int mt = 0; mt < 4; ++mt)
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[mt][nt][e] = 0.f;

  // ldmatrix lane addresses (byte offsets without the chunk): see the fragment layouts of mma.m16n8k16.
  const uint32_t qa_row = q_s + (16 * hq + lane % 16) * kRowBytes;  // A = Q: rows = heads, chunk 2kk + lane/16
  const int qa_hi = lane / 16;
  const int kb_row = 32 * kh + lane % 8 + (lane / 16) * 8;          // B = K: rows = keys, chunk 2kk + (lane/8)%2
  const int kb_hi = (lane / 8) % 2;
  const uint32_t pa_row = p_s + (lane % 16) * kPRowBytes;           // A = P: rows = heads, chunk 2kk + lane/16
  const int vb_row = lane % 8 + ((lane / 8) % 2) * 8;               // B = V (trans): rows = keys, chunk + lane/16

  int stage = 0;
  for (int k0 = row.begin; k0 < row.end; k0 += kKeys, stage ^= 1) {
    cp_async_wait<0>();
    __syncthreads();  // tile k0 is staged for all; the other stage's readers (the previous P·V) are done
    if (k0 + kKeys < row.end) load_tile(k0 + kKeys, stage ^ 1);
    cp_async_commit();
    const uint32_t kt = k_s + stage * kTileBytes;

    // ---- S = Q·Kᵀ: s[nt][e] = head 16hq + g + 8(e/2), key 32kh + 8nt + 2tig + e%2
    float s[4][4];
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nt][e] = 0.f;
    const uint32_t kb0 = kt + kb_row * kRowBytes, kb1 = kb0 + 16 * kRowBytes;
#pragma unroll 4
    for (int kk = 0; kk < kEntry / 16; ++kk) {
      const uint32_t kq = static_cast<uint32_t>((kk / 4) * 128);  // 8 chunks per 128 bytes; the swizzle keeps them there
      uint32_t af[4], b0[4], b1[4];
      ldmatrix_x4(af, qa_row + kq + ((((2 * kk) % 8 + qa_hi) ^ x7) << 4));
      ldmatrix_x4(b0, kb0 + kq + ((((2 * kk) % 8 + kb_hi) ^ x7) << 4));
      ldmatrix_x4(b1, kb1 + kq + ((((2 * kk) % 8 + kb_hi) ^ x7) << 4));
      mma_bf16(s[0], af, b0[0], b0[1]);
      mma_bf16(s[1], af, b0[2], b0[3]);
      mma_bf16(s[2], af, b1[0], b1[1]);
      mma_bf16(s[3], af, b1[2], b1[3]);
    }

    // ---- online softmax (log2 domain); keys past the end score -inf
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = k0 + 32 * kh + 8 * nt + 2 * tig + e % 2;
        s[nt][e] = key < row.end ? s[nt][e] * scale_log2 : -INFINITY;
        mx[e / 2] = fmaxf(mx[e / 2], s[nt][e]);
      }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
      if (tig == 0) red[kh * kHeads + 16 * hq + g + 8 * i] = mx[i];
    }
    __syncthreads();  // both key halves' maxima are in red
    float corr[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int h = 16 * hq + g + 8 * i;
      const float m_new = fmaxf(m_run[i], fmaxf(red[h], red[kHeads + h]));  // finite: key k0 is valid
      corr[i] = exp2f(m_run[i] - m_new);                                     // 0 on the first tile
      m_run[i] = m_new;
      if (kh == 0 && tig == 0) corr_s[h] = corr[i];
    }
    float psum[2] = {0.f, 0.f};
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const float p0 = exp2f(s[nt][2 * i] - m_run[i]), p1 = exp2f(s[nt][2 * i + 1] - m_run[i]);
        const int h = 16 * hq + g + 8 * i;
        unsigned char* p_dst = smem + kSmemP + swz(h, 4 * kh + nt, kPRowBytes) + 4 * tig;
        if constexpr (kSplitP) {  // S is done in every warp (the barrier above): the stage's k_pe columns are free
          uint32_t bh, bl;
          split_bf16x2(p0, p1, bh, bl);
          *reinterpret_cast<uint32_t*>(p_dst) = bh;
          *reinterpret_cast<uint32_t*>(smem + kSmemK + stage * kTileBytes + swz(h, kPeChunk + 4 * kh + nt, kRowBytes) +
                                       4 * tig) = bl;
          psum[i] += p0 + p1;
        } else {
          const __nv_bfloat162 p = __floats2bfloat162_rn(p0, p1);
          *reinterpret_cast<__nv_bfloat162*>(p_dst) = p;
          psum[i] += __low2float(p) + __high2float(p);
        }
      }
#pragma unroll
    for (int i = 0; i < 2; ++i) l_run[i] = l_run[i] * corr[i] + psum[i];
    __syncthreads();  // P and corr_s complete; red is free again

    // ---- O = O * corr + P·V over this warp's 64 columns
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const float c = corr_s[16 * mt + g + 8 * i];
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
          o[mt][nt][2 * i] *= c;
          o[mt][nt][2 * i + 1] *= c;
        }
      }
    const uint32_t vb = kt + vb_row * kRowBytes + warp * 128;  // chunk 8 warp + ((2np + lane/16) ^ x7)
    if constexpr (kSplitP) {
      // Per 16 keys: the warp's 4 V fragments once, then per 16 heads P hi and P lo, 2 x 8 mma (the 8 between an
      // accumulator's hi and lo product cover the tensor core's latency). Unrolled by 2, not 4: the full unroll
      // prefetches the next step's V fragments too and spills (ptxas: 255 registers + 16 bytes; by 2: 245, none).
      const uint32_t pl_row = kt + (lane % 16) * kRowBytes + kPeChunk * 16;  // A = P lo: rows = heads, as pa_row
#pragma unroll 2
      for (int kk = 0; kk < kKeys / 16; ++kk) {
        uint32_t vf[4][4];  // [np]: b0, b1 of columns 64 warp + 16np + 0..7, then of + 8..15
#pragma unroll
        for (int np = 0; np < 4; ++np)
          ldmatrix_x4_trans(vf[np], vb + kk * 16 * kRowBytes + (((2 * np + qa_hi) ^ x7) << 4));
#pragma unroll
        for (int mt = 0; mt < 4; ++mt) {
          uint32_t ph[4], pl[4];
          ldmatrix_x4(ph, pa_row + mt * 16 * kPRowBytes + (((2 * kk + qa_hi) ^ x7) << 4));
#pragma unroll
          for (int np = 0; np < 4; ++np) {
            mma_bf16(o[mt][2 * np], ph, vf[np][0], vf[np][1]);
            mma_bf16(o[mt][2 * np + 1], ph, vf[np][2], vf[np][3]);
          }
          ldmatrix_x4(pl, pl_row + mt * 16 * kRowBytes + (((2 * kk + qa_hi) ^ x7) << 4));
#pragma unroll
          for (int np = 0; np < 4; ++np) {
            mma_bf16(o[mt][2 * np], pl, vf[np][0], vf[np][1]);
            mma_bf16(o[mt][2 * np + 1], pl, vf[np][2], vf[np][3]);
          }
        }
      }
    } else {  // P in bf16: per 16 keys the P fragments of all 64 heads, then one V fragment at a time
#pragma unroll
      for (int kk = 0; kk < kKeys / 16; ++kk) {
        uint32_t pf[4][4];
#pragma unroll
        for (int mt = 0; mt < 4; ++mt)
          ldmatrix_x4(pf[mt], pa_row + mt * 16 * kPRowBytes + (((2 * kk + qa_hi) ^ x7) << 4));
#pragma unroll
        for (int np = 0; np < 4; ++np) {
          uint32_t vf[4];
          ldmatrix_x4_trans(vf, vb + kk * 16 * kRowBytes + (((2 * np + qa_hi) ^ x7) << 4));
#pragma unroll
          for (int mt = 0; mt < 4; ++mt) {
            mma_bf16(o[mt][2 * np], pf[mt], vf[0], vf[1]);
            mma_bf16(o[mt][2 * np + 1], pf[mt], vf[2], vf[3]);
          }
        }
      }
    }
  }

  cp_async_wait<0>();  // an empty split's Q copy may still be in flight

  // ---- per-head sums: quad, then the two key halves (fixed order: deterministic)
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l_run[i] += __shfl_xor_sync(0xffffffffu, l_run[i], 1);
    l_run[i] += __shfl_xor_sync(0xffffffffu, l_run[i], 2);
    const int h = 16 * hq + g + 8 * i;
    if (tig == 0) red[kh * kHeads + h] = l_run[i];  // red's last readers passed the loop's final barrier
    if (tig == 0 && kh == 0) m_s[h] = m_run[i];
  }
  __syncthreads();
  if (tid < kHeads) {
    const float l = red[tid] + red[kHeads + tid];
    l_s[tid] = l;
    store_decode_ml(a, t, sp, hg * kHeads + tid, m_s[tid] * kLn2, l);
  }
  __syncthreads();
  // An empty split leaves its partial unread (the combine skips l = 0); a whole row always stores (zeros).
  if (a.n_splits > 1 && row.begin >= row.end) return;
#pragma unroll
  for (int mt = 0; mt < 4; ++mt)
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int hl = 16 * mt + g + 8 * i, h = hg * kHeads + hl;
      const float l = l_s[hl], inv = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        const int c = warp * 64 + 8 * nt + 2 * tig;
        const float v0 = o[mt][nt][2 * i], v1 = o[mt][nt][2 * i + 1];
        if (a.n_splits == 1) {
          *reinterpret_cast<__nv_bfloat162*>(a.out + (static_cast<int64_t>(t) * a.heads + h) * kRank + c) =
              __floats2bfloat162_rn(v0 * inv, v1 * inv);
        } else {
          *reinterpret_cast<float2*>(a.part_o + ((static_cast<int64_t>(t) * a.n_splits + sp) * a.heads + h) * kRank + c) =
              make_float2(v0, v1);
        }
      }
    }
}

}  // namespace

bool mla_decode_mma_supported(int entry, int rank, int heads) {
  return entry == kEntry && rank == kRank && heads % kHeads == 0;
}

void launch_mla_decode_mma(const MlaDecodeArgs& a, bool p_bf16, cudaStream_t s) {
  auto* kernel = p_bf16 ? mla_decode_mma_kernel<false> : mla_decode_mma_kernel<true>;
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemTotal);
  const dim3 grid(a.heads / kHeads, a.n_splits, a.n);
  kernel<<<grid, kThreads, kSmemTotal, s>>>(a);
}

}  // namespace dsv3::cuda
