// mla_prefill_mma.cu: naive-form (MHA) MLA prefill attention on the tensor cores, FlashAttention-2 style
// (backend/cuda). For the DeepSeek-V3 head dims only (nope 128, rope 64, v 128); other dims take mla_prefill.cu.
// Parallelisation: grid = (query tiles, heads); a CTA = kWarps warps = 16·kWarps query rows of one sequence and one
// head, each warp owns 16 rows (its Q fragments, S and O accumulators live in registers). K/V tiles of 64 keys
// stream through two shared-memory stages (cp.async, 16-byte, XOR-swizzled rows): tile j+1 loads while tile j runs.
// Per tile: S = Q·Kᵀ (mma.sync m16n8k16, ldmatrix), online softmax in fp32 (exp2 with scale·log2 e), P split in
// registers into bf16 hi + lo (mma_sm80.cuh split_bf16x2) as the A operands of O += P·V: two mma per V fragment
// (ldmatrix.trans, loaded once). Tiles above the causal diagonal are never loaded.
// Precision: bf16 q/k/v in (as the reference), fp32 scores, softmax, row sums and accumulators; P enters P·V as
// hi + lo = P (1 + d), |d| <= 2^-16; one bf16 rounding of the output. kSplitP = false (DSV3_MLA_P_BF16=1) is the
// former single mma with P rounded to bf16 (|d| <= 2^-8), kept for measurement (docs/numerics.md).
// Reference: CpuBackend::mla_prefill (model-spec §3.5); checked by tests/ops case "mla_prefill" (kernel=mma*).
#include <cmath>

#include "dsv3/backend/cuda/common.cuh"
#include "dsv3/backend/cuda/mma_sm80.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kNope = 128, kRope = 64, kVd = 128, kQk = kNope + kRope;  // DeepSeek-V3 head dims
constexpr int kKvd = kNope + kVd;                                      // per-head width of the kv tensor
constexpr int kKvTile = 64;                                            // keys per tile
constexpr int kQkChunks = kQk / 8;                                      // 16-byte chunks per Q / K row
constexpr int kQkRowBytes = kQk * 2, kVRowBytes = kVd * 2;
constexpr int kKBytes = kKvTile * kQkRowBytes, kVBytes = kKvTile * kVRowBytes, kStageBytes = kKBytes + kVBytes;
constexpr float kLog2e = 1.4426950408889634f;

template <int kWarps>
struct Cfg {
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kRows = kWarps * 16;                        // query rows per CTA
  static constexpr int kQBytes = kRows * kQkRowBytes;
  static constexpr int kSmem = kQBytes + 2 * kStageBytes;          // Q + two K/V stages
  static constexpr int kMinBlocks = 8 / kWarps;                    // 8 warps per SM either way
};
static_assert(Cfg<8>::kSmem <= 227 * 1024 && 2 * Cfg<4>::kSmem <= 227 * 1024, "mla_prefill_mma: shared memory");

// ---- local helpers (the PTX wrappers shared with mla_decode_mma.cu are in mma_sm80.cuh) -------------------------

__device__ __forceinline__ float fast_exp2(float x) {  // ex2.approx: 2^-22 relative; exp2(-inf) = +0
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {  // lo -> low half (the lower column)
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// One 64-key tile of K (k_nope ‖ k_pe, 64 x 192) and V (64 x 128) into a stage; keys t >= nk are zero-filled.
// A thread always copies the same chunk column of rows r, r + step, ...: step is a multiple of 8, so the swizzled
// destination advances by a constant and the source by step rows (few live registers across the main loop).
template <int kThreads>
__device__ __forceinline__ void load_kv_tile(const bf16_t* dummy, uint32_t stage, const bf16_t* kv_seq,
                                             const bf16_t* pe_seq, int64_t kv_row, int t0, int nk) {
  constexpr int kStep16 = kThreads / 16, kStep8 = kThreads / 8;  // rows per pass: 16 or 8 chunks per row
  static_assert(kStep16 % 8 == 0 && kKvTile % kStep8 == 0);
  {  // k_nope (K chunks 0..15) and v (16 chunks) of the same kv row
    const int c = threadIdx.x % 16, r = threadIdx.x / 16;
    const bf16_t* src = kv_seq + (t0 + r) * kv_row + c * 8;
    const uint32_t dk = stage + swz(r, c, kQkRowBytes), dv = stage + kKBytes + swz(r, c, kVRowBytes);
#pragma unroll
    for (int i = 0; i < kKvTile / kStep16; ++i) {
      const bool ok = t0 + r + i * kStep16 < nk;
      const bf16_t* row = src + i * kStep16 * kv_row;
      cp_async16(dk + i * kStep16 * kQkRowBytes, ok ? row : dummy, ok ? 16 : 0);
      cp_async16(dv + i * kStep16 * kVRowBytes, ok ? row + kNope : dummy, ok ? 16 : 0);
    }
  }
  {  // k_pe (K chunks 16..23), shared by all heads
    const int c = threadIdx.x % 8, r = threadIdx.x / 8;
    const bf16_t* src = pe_seq + static_cast<int64_t>(t0 + r) * kRope + c * 8;
    const uint32_t dk = stage + swz(r, kNope / 8 + c, kQkRowBytes);
#pragma unroll
    for (int i = 0; i < kKvTile / kStep8; ++i) {
      const bool ok = t0 + r + i * kStep8 < nk;
      cp_async16(dk + i * kStep8 * kQkRowBytes, ok ? src + i * kStep8 * kRope : dummy, ok ? 16 : 0);
    }
  }
}

// Tile map without a device-side table: sequence s owns blocks [f(s), f(s) + tiles_s) with
// f(s) = floor(cu_q[s] / kRows) + s, tiles_s = ceil(q_len_s / kRows). f is increasing and f(s+1) - f(s) >= tiles_s
// (floor((c + n) / R) >= floor(c / R) + floor(n / R), and floor(n / R) + 1 >= ceil(n / R)), so the ranges are
// disjoint and all lie below f(n_seqs) = floor(n_q / kRows) + n_seqs, the grid size; a block in no range exits.
// Within a sequence the last (longest) query tiles come first: the heavy tiles start early, light ones fill the tail.
template <int kWarps, bool kSplitP>
__global__ void __launch_bounds__(Cfg<kWarps>::kThreads, Cfg<kWarps>::kMinBlocks)
    mla_prefill_mma_kernel(const __grid_constant__ MlaPrefillArgs a) {
  using C = Cfg<kWarps>;
  extern __shared__ __align__(128) unsigned char smem[];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int H = a.heads, h = blockIdx.y, b = blockIdx.x;

  int lo = 0, hi = a.n_seqs - 1;  // the last s with f(s) <= b
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (__ldg(a.cu_q + mid) / C::kRows + mid <= b) lo = mid;
    else hi = mid - 1;
  }
  const int seq = lo;
  const int q0 = __ldg(a.cu_q + seq), q1 = __ldg(a.cu_q + seq + 1);
  const int k0 = __ldg(a.cu_kv + seq), k1 = __ldg(a.cu_kv + seq + 1);
  const int nq = q1 - q0, nk = k1 - k0;
  if (q0 < 0 || nq < 0 || q1 > a.n_q || k0 < 0 || nk < 0 || k1 > a.n_kv) {  // cu_q / cu_kv not prefix sums of q/kv
    if (tid == 0 && h == 0) set_error(a.err, kErrPrefillLen);
    return;
  }
  const int tiles = (nq + C::kRows - 1) / C::kRows, j = b - (q0 / C::kRows + seq);
  if (j < 0 || j >= tiles) return;
  if (nk < nq) {
    if (tid == 0 && h == 0 && j == 0) set_error(a.err, kErrPrefillLen);
    return;
  }
  const int i0 = (tiles - 1 - j) * C::kRows;   // first query of the tile, within the sequence
  const int rows = min(C::kRows, nq - i0);     // valid rows of the tile
  const int pos0 = nk - nq + i0;               // absolute position of row 0: it sees keys t <= pos0
  const int n_kt = (pos0 + rows - 1) / kKvTile + 1;  // KV tiles up to the last valid row's position

  const uint32_t s_q = smem_addr(smem), s_stage = s_q + C::kQBytes;
  const int64_t q_row = static_cast<int64_t>(H) * kQk, kv_row = static_cast<int64_t>(H) * kKvd;
  const bf16_t* kv_seq = a.kv + static_cast<int64_t>(k0) * kv_row + static_cast<int64_t>(h) * kKvd;
  const bf16_t* pe_seq = a.k_pe + static_cast<int64_t>(k0) * kRope;
  {  // Q tile (rows past the sequence are zeros) and K/V tile 0: one cp.async group
    const bf16_t* q_tile = a.q + static_cast<int64_t>(q0 + i0) * q_row + static_cast<int64_t>(h) * kQk;
    static_assert(C::kRows * kQkChunks % C::kThreads == 0);
#pragma unroll
    for (int i = 0; i < C::kRows * kQkChunks / C::kThreads; ++i) {
      const int e = tid + i * C::kThreads, r = e / kQkChunks, c = e % kQkChunks;
      const bool ok = r < rows;
      cp_async16(s_q + swz(r, c, kQkRowBytes), ok ? q_tile + r * q_row + c * 8 : a.q, ok ? 16 : 0);
    }
    load_kv_tile<C::kThreads>(a.k_pe, s_stage, kv_seq, pe_seq, kv_row, 0, nk);
    cp_async_commit();
  }

  // Fragment layouts (PTX ISA, mma.m16n8k16 bf16): g = lane / 4, tq = lane % 4. A: a[0] (row g, cols 2tq, 2tq+1),
  // a[1] (row g+8, same cols), a[2] (row g, cols 2tq+8, +9), a[3] (row g+8, cols 2tq+8, +9). B: b0 (k 2tq, 2tq+1;
  // n g), b1 (k 2tq+8, +9; n g). C: c[0], c[1] (row g, cols 2tq, 2tq+1), c[2], c[3] (row g+8, same cols).
  const int g = lane >> 2, tq = lane & 3, l7 = lane & 7;
  // ldmatrix row addresses of this lane. Its row is always = lane (mod 8), so the swizzle key is l7, and for a chunk
  // 8u + 2j + c (c = 0, 1) the swizzled chunk is 8u + (2j ^ (c ^ l7)): four lane offsets per operand (j = 0..3), the
  // rest of each address is a compile-time immediate.
  // Q (A operand, non-trans): matrix i = rows +8·(i&1), chunk +(i>>1).
  // K (B operand of S = Q·Kᵀ, non-trans: smem rows are keys = n): matrix i = keys +8·(i>>1), chunk +(i&1);
  // registers {0, 1} are b0, b1 of the n-tile of keys 16p..16p+7, {2, 3} of keys 16p+8..16p+15.
  // V (B operand of O = P·V, .trans: smem rows are keys = k): matrix i = keys +8·(i&1), chunk +(i>>1);
  // registers {0, 1} are b0, b1 of the v columns 16q..16q+7, {2, 3} of columns 16q+8..16q+15.
  const int q_r = warp * 16 + l7 + ((lane >> 3) & 1) * 8, q_x = (lane >> 4) ^ l7;
  const int k_r = l7 + (lane >> 4) * 8, k_x = ((lane >> 3) & 1) ^ l7;
  const int v_r = l7 + ((lane >> 3) & 1) * 8, v_x = (lane >> 4) ^ l7;
  uint32_t k_off[4], v_off[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    k_off[j] = static_cast<uint32_t>(k_r * kQkRowBytes + ((2 * j) ^ k_x) * 16);
    v_off[j] = static_cast<uint32_t>(v_r * kVRowBytes + ((2 * j) ^ v_x) * 16);
  }

  uint32_t qf[kQk / 16][4];  // Q fragments of the warp's 16 rows, 12 k-steps
  float o[kVd / 8][4];       // O accumulators: 16 n-tiles of 8 v columns
#pragma unroll
  for (int n = 0; n < kVd / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY;  // running max (raw scores) of rows g and g+8
  float l0 = 0.f, l1 = 0.f;              // this thread's part of the running sums (its 2 columns per n-tile)
  const float sl2 = a.softmax_scale * kLog2e;
  const int wpos = pos0 + warp * 16;              // position of the warp's first row
  const int rpos0 = wpos + g, rpos1 = rpos0 + 8;  // positions of this thread's two rows
  const bool warp_live = warp * 16 < rows;        // warps of padding rows only skip the math

  for (int kt = 0; kt < n_kt; ++kt) {
    if (kt + 1 < n_kt) {  // prefetch tile kt+1 into the other stage (free: the loop's trailing barrier)
      load_kv_tile<C::kThreads>(a.k_pe, s_stage + ((kt + 1) & 1) * kStageBytes, kv_seq, pe_seq, kv_row,
                                (kt + 1) * kKvTile, nk);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // tile kt (and at kt = 0 the Q tile) is in shared memory for every thread
    if (kt == 0) {
#pragma unroll
      for (int kk = 0; kk < kQk / 16; ++kk)
        ldmatrix_x4(qf[kk], s_q + q_r * kQkRowBytes + (kk / 4) * 128 + ((2 * (kk % 4)) ^ q_x) * 16);
    }
    const int t0 = kt * kKvTile;
    if (warp_live && t0 <= wpos + 15) {  // some row of the warp sees a key of this tile
      const uint32_t sk = s_stage + (kt & 1) * kStageBytes, sv = sk + kKBytes;
      float s[kKvTile / 8][4];  // S: 8 n-tiles of 8 keys
#pragma unroll
      for (int n = 0; n < kKvTile / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < kQk / 16; ++kk) {
#pragma unroll
        for (int p = 0; p < kKvTile / 16; ++p) {
          uint32_t r[4];
          ldmatrix_x4(r, sk + k_off[kk % 4] + (kk / 4) * 128 + 16 * p * kQkRowBytes);
          mma_bf16(s[2 * p], qf[kk], r[0], r[1]);
          mma_bf16(s[2 * p + 1], qf[kk], r[2], r[3]);
        }
      }
      if (t0 + kKvTile - 1 > wpos) {  // the diagonal (or the sequence end) crosses the warp's rows: mask t > pos
#pragma unroll
        for (int n = 0; n < kKvTile / 8; ++n) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int t = t0 + 8 * n + 2 * tq + e;
            if (t > rpos0) s[n][e] = -INFINITY;
            if (t > rpos1) s[n][2 + e] = -INFINITY;
          }
        }
      }
      // Online softmax: a row's 64 scores are spread over the 4 lanes of its quad.
      float mx0 = m0, mx1 = m1;
#pragma unroll
      for (int n = 0; n < kKvTile / 8; ++n) {
        mx0 = fmaxf(mx0, fmaxf(s[n][0], s[n][1]));
        mx1 = fmaxf(mx1, fmaxf(s[n][2], s[n][3]));
      }
#pragma unroll
      for (int off = 1; off <= 2; off <<= 1) {
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
      }
      // p = 2^(s·sl2 - max·sl2); a row with no visible key yet keeps max -inf: base 0 gives p = 0, corr = 0.
      const float base0 = mx0 == -INFINITY ? 0.f : mx0 * sl2, base1 = mx1 == -INFINITY ? 0.f : mx1 * sl2;
      const float corr0 = fast_exp2(m0 * sl2 - base0), corr1 = fast_exp2(m1 * sl2 - base1);
      m0 = mx0;
      m1 = mx1;
      float ps0 = 0.f, ps1 = 0.f;
#pragma unroll
      for (int n = 0; n < kKvTile / 8; ++n) {
        s[n][0] = fast_exp2(fmaf(s[n][0], sl2, -base0));
        s[n][1] = fast_exp2(fmaf(s[n][1], sl2, -base0));
        s[n][2] = fast_exp2(fmaf(s[n][2], sl2, -base1));
        s[n][3] = fast_exp2(fmaf(s[n][3], sl2, -base1));
        ps0 += s[n][0] + s[n][1];
        ps1 += s[n][2] + s[n][3];
      }
      l0 = l0 * corr0 + ps0;
      l1 = l1 * corr1 + ps1;
#pragma unroll
      for (int n = 0; n < kVd / 8; ++n) {
        o[n][0] *= corr0;
        o[n][1] *= corr0;
        o[n][2] *= corr1;
        o[n][3] *= corr1;
      }
      // O += P·V: the C layout of S n-tiles 2kk, 2kk+1 is the A layout of the 16-key k-step kk. pa = bf16(P) and,
      // with kSplitP, pl = bf16(P - pa) go through the tensor cores with the same V fragment.
#pragma unroll
      for (int kk = 0; kk < kKvTile / 16; ++kk) {
        uint32_t pa[4], pl[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {  // a[i]: S n-tile 2kk + i / 2, elements 2 (i % 2), 2 (i % 2) + 1
          const float x0 = s[2 * kk + i / 2][2 * (i % 2)], x1 = s[2 * kk + i / 2][2 * (i % 2) + 1];
          if constexpr (kSplitP) split_bf16x2(x0, x1, pa[i], pl[i]);
          else pa[i] = pack_bf16(x0, x1);
        }
#pragma unroll
        for (int q = 0; q < kVd / 16; ++q) {
          uint32_t r[4];
          ldmatrix_x4_trans(r, sv + v_off[q % 4] + (q / 4) * 128 + 16 * kk * kVRowBytes);
          mma_bf16(o[2 * q], pa, r[0], r[1]);
          mma_bf16(o[2 * q + 1], pa, r[2], r[3]);
          if constexpr (kSplitP) {
            mma_bf16(o[2 * q], pl, r[0], r[1]);
            mma_bf16(o[2 * q + 1], pl, r[2], r[3]);
          }
        }
      }
    }
    __syncthreads();  // every warp is done with this stage before iteration kt+1 refills it
  }

  // Epilogue: the quad's partial sums, one division, one bf16 rounding.
#pragma unroll
  for (int off = 1; off <= 2; off <<= 1) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, off);
    l1 += __shfl_xor_sync(0xffffffffu, l1, off);
  }
  const float inv0 = l0 > 0.f ? 1.f / l0 : 0.f, inv1 = l1 > 0.f ? 1.f / l1 : 0.f;
  const int r0 = warp * 16 + g, r1 = r0 + 8;
  const int64_t out_row = static_cast<int64_t>(H) * kVd;
  bf16_t* out0 = a.out + static_cast<int64_t>(q0 + i0 + r0) * out_row + static_cast<int64_t>(h) * kVd + 2 * tq;
  bf16_t* out1 = out0 + 8 * out_row;
#pragma unroll
  for (int n = 0; n < kVd / 8; ++n) {
    if (r0 < rows)
      *reinterpret_cast<__nv_bfloat162*>(out0 + 8 * n) = __floats2bfloat162_rn(o[n][0] * inv0, o[n][1] * inv0);
    if (r1 < rows)
      *reinterpret_cast<__nv_bfloat162*>(out1 + 8 * n) = __floats2bfloat162_rn(o[n][2] * inv1, o[n][3] * inv1);
  }
}

template <int kWarps, bool kSplitP>
void launch(const MlaPrefillArgs& a, cudaStream_t s) {
  using C = Cfg<kWarps>;
  auto* kernel = mla_prefill_mma_kernel<kWarps, kSplitP>;
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmem);
  const dim3 grid(static_cast<unsigned>(a.n_q / C::kRows + a.n_seqs), static_cast<unsigned>(a.heads));
  kernel<<<grid, C::kThreads, C::kSmem, s>>>(a);
}

}  // namespace

bool mla_prefill_mma_supported(int nope, int rope, int v) { return nope == kNope && rope == kRope && v == kVd; }

void launch_mla_prefill_mma(const MlaPrefillArgs& a, int q_rows, bool p_bf16, cudaStream_t s) {
  if (a.n_q == 0 || a.n_seqs == 0 || a.heads == 0) return;
  if (q_rows == 64 && p_bf16) launch<4, false>(a, s);
  else if (q_rows == 64) launch<4, true>(a, s);
  else if (p_bf16) launch<8, false>(a, s);
  else launch<8, true>(a, s);
}

}  // namespace dsv3::cuda
