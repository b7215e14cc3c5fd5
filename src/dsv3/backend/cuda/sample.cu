// sample.cu: next-token sampling on the GPU — steps 3-7 of engine/sampler.h: temperature, greedy argmax, top-k,
// top-p, min-p and the Gumbel-max draw with per-row Philox counters (backend/cuda).
// Parallelisation: v1 (sample_kernel, DSV3_SAMPLE=v1, and rows with top-k under v2): one CTA of kThreads threads
// per row; each pass streams the row's logits (L2-resident) and recomputes z = l / T. v2 (the default, "v2" below):
// grid (rows, chunks) of kThreads2, a few kernels whose per-chunk partials combine exactly, the same cut.
// Top-k and top-p both keep a prefix of the order (z desc, id asc); the prefix's last group of equal z is found by
// a radix search over order-preserving keys of z, restricted each level to the current key interval (256 bins:
// counts for top-k, fixed-point masses for top-p), then the id order inside that group.
// Precision: z = __fdiv_rn(l, T) (fp32, as the host's l / T); e = exp(double(z) - double(z_max)); Gumbel scores fp64
// (base/sampling_rules.h). Top-p masses are floor(e * 2^mass_shift) in integers, summed exactly, so the cut is
// deterministic; it equals the host's sequential fp64 sum unless a prefix sum lies within ~1e-9 of top_p.
// Reference: CpuBackend::sample (= the engine's Sampler, base/sampling.cpp); checked by tests/ops "sample".
#include <algorithm>
#include <climits>

#include "dsv3/backend/cuda/common.cuh"
#include "dsv3/base/sampling_rules.h"

namespace dsv3::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kBins = 256;
constexpr int kBinsPerLane = kBins / 32;
constexpr unsigned kFull = 0xffffffffu;

// Order-preserving key of a non-NaN float: a > b <=> key(a) > key(b). -0 and +0 share a key, as they compare equal.
__device__ __forceinline__ uint32_t order_key(float z) {
  const uint32_t b = __float_as_uint(z == 0.0f ? 0.0f : z);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Is v (key k) inside the prefix that ends at cut (key, id) of the order (z desc, id asc)?
struct Cut {
  uint32_t key;
  int id;
};
__device__ __forceinline__ bool in_cut(const Cut& c, uint32_t k, int v) { return k > c.key || (k == c.key && v <= c.id); }
// Keeps everything (every live key is > 0: key(-inf) = 0x007fffff and live z > -inf).
constexpr Cut kNoCut{0u, INT_MAX};

struct Best {  // argmax of z, ties to the lowest id
  float z;
  int id;
};
struct BestScore {  // argmax of the Gumbel score, ties to the lowest id
  double s;
  int id;
};

__device__ __forceinline__ Best shfl_xor(Best v, int o) {
  return {__shfl_xor_sync(kFull, v.z, o), __shfl_xor_sync(kFull, v.id, o)};
}
__device__ __forceinline__ BestScore shfl_xor(BestScore v, int o) {
  return {__shfl_xor_sync(kFull, v.s, o), __shfl_xor_sync(kFull, v.id, o)};
}
template <typename T>
__device__ __forceinline__ T shfl_xor(T v, int o) {
  return __shfl_xor_sync(kFull, v, o);
}

struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
};
struct MinOp {
  __device__ float operator()(float a, float b) const { return fminf(a, b); }
};
struct BetterOp {
  __device__ Best operator()(Best a, Best b) const { return (a.z > b.z || (a.z == b.z && a.id < b.id)) ? a : b; }
  __device__ BestScore operator()(BestScore a, BestScore b) const {
    return (a.s > b.s || (a.s == b.s && a.id < b.id)) ? a : b;
  }
};

// Reduction over the block; every thread gets the result. `red` is shared, >= (kWarps + 1) * sizeof(T) bytes.
template <typename T, typename Op, int kNW = kWarps>
__device__ T block_reduce(T v, T identity, Op op, void* red_raw) {
  T* red = static_cast<T*>(red_raw);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, shfl_xor(v, o));
  __syncthreads();  // the previous reduction's result has been read by every thread
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T w = lane < kNW ? red[lane] : identity;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) w = op(w, shfl_xor(w, o));
    if (lane == 0) red[kNW] = w;
  }
  __syncthreads();
  return red[kNW];
}

struct Smem {
  alignas(16) unsigned char red[(kWarps + 1) * 16];
  uint32_t cnt[kBins];
  unsigned long long mass[kBins];
  uint32_t warp_cnt[kWarps];
  uint32_t pick;
  unsigned long long pick_before;
  int id;
};

// One row's view: z[v] recomputed from the logits on every pass.
struct Row {
  const float* l;
  int vocab;
  float temperature;
  bool greedy;
  __device__ __forceinline__ float z(int v) const { return greedy ? l[v] : __fdiv_rn(l[v], temperature); }
};

// The id of the n-th (1-based) candidate with key `key`, in id order (one tile of kThreads ids at a time).
template <typename Pred>
__device__ int nth_id_with_key(const Row& row, uint32_t key, uint32_t n, Pred pred, Smem& sh) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  uint32_t seen = 0;  // block-uniform
  for (int base = 0; base < row.vocab; base += kThreads) {
    const int v = base + tid;
    bool f = false;
    if (v < row.vocab) {
      const float z = row.z(v);
      if (z != -INFINITY) {
        const uint32_t k = order_key(z);
        f = k == key && pred(v, k);
      }
    }
    const uint32_t in_tile = static_cast<uint32_t>(__syncthreads_count(f));
    if (seen + in_tile >= n) {
      const unsigned bal = __ballot_sync(kFull, f);
      if (lane == 0) sh.warp_cnt[warp] = static_cast<uint32_t>(__popc(bal));
      __syncthreads();
      uint32_t rank = seen + static_cast<uint32_t>(__popc(bal & ((1u << lane) - 1u))) + 1u;
      for (int w = 0; w < warp; ++w) rank += sh.warp_cnt[w];
      if (f && rank == n) sh.id = v;
      __syncthreads();
      return sh.id;
    }
    seen += in_tile;
  }
  return INT_MAX;  // unreachable: the caller counted at least n such candidates
}

// The cut of "keep the candidates in the order (z desc, id asc) while the mass before them is < target": finds the
// group of equal z that holds the last kept candidate (the lowest key whose mass above is < target), then how many
// of that group are kept, then the id of the last one. Candidates: live, pred(v, key), key in [lo, hi]. mass(z) is
// an integer per candidate (kUnitMass: 1 each, the count, for top-k), target >= 1; the result keeps at least the
// first candidate.
template <bool kUnitMass, typename Pred, typename Mass>
__device__ Cut find_cut(const Row& row, uint32_t lo, uint32_t hi, unsigned long long target, Pred pred, Mass mass,
                        Smem& sh) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  unsigned long long before = 0;  // mass of the candidates with a key above the current interval (block-uniform)
  int nbits = hi == lo ? 0 : 32 - __clz(static_cast<int>(hi - lo));
  uint32_t group_cnt = 0;
  unsigned long long group_mass = 0;
  for (;;) {
    const int shift = nbits > 8 ? nbits - 8 : 0;
    const uint32_t span = nbits >= 32 ? 0xffffffffu : (1u << nbits) - 1u;  // the interval is [lo, lo + span]
    for (int b = tid; b < kBins; b += kThreads) {
      sh.cnt[b] = 0;
      sh.mass[b] = 0;
    }
    __syncthreads();
    for (int v = tid; v < row.vocab; v += kThreads) {
      const float z = row.z(v);
      if (z == -INFINITY) continue;
      const uint32_t k = order_key(z);
      if (k < lo || k - lo > span || !pred(v, k)) continue;
      const uint32_t b = (k - lo) >> shift;
      atomicAdd(&sh.cnt[b], 1u);
      if constexpr (!kUnitMass) {
        const unsigned long long m = mass(z);
        if (m) atomicAdd(&sh.mass[b], m);
      }
    }
    __syncthreads();
    if (warp == 0) {
      // Bins from high to low: the mass before bin b is `before` plus the bins above b. Pick the lowest non-empty bin
      // whose mass before is < target. The highest non-empty bin always qualifies (its mass before is `before`).
      uint32_t c[kBinsPerLane];
      unsigned long long m[kBinsPerLane], lane_sum = 0;
#pragma unroll
      for (int j = 0; j < kBinsPerLane; ++j) {
        c[j] = sh.cnt[lane * kBinsPerLane + j];
        m[j] = kUnitMass ? c[j] : sh.mass[lane * kBinsPerLane + j];
        lane_sum += m[j];
      }
      unsigned long long suffix = lane_sum;  // lanes >= this one
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const unsigned long long y = __shfl_down_sync(kFull, suffix, o);
        if (lane + o < 32) suffix += y;
      }
      unsigned long long acc = before + (suffix - lane_sum);  // bins of the lanes above
      uint32_t pick = 0xffffffffu;
      unsigned long long pick_before = 0;
#pragma unroll
      for (int j = kBinsPerLane - 1; j >= 0; --j) {
        if (c[j] > 0 && acc < target) {
          pick = static_cast<uint32_t>(lane * kBinsPerLane + j);
          pick_before = acc;
        }
        acc += m[j];
      }
      const uint32_t lowest = __reduce_min_sync(kFull, pick);
      if (pick == lowest && pick != 0xffffffffu) {
        sh.pick = pick;
        sh.pick_before = pick_before;
      }
    }
    __syncthreads();
    const uint32_t b = sh.pick;
    before = sh.pick_before;
    lo += b << shift;
    if (shift == 0) {
      group_cnt = sh.cnt[b];
      group_mass = kUnitMass ? group_cnt : sh.mass[b];
      break;
    }
    nbits = shift;
    __syncthreads();  // every thread has read pick and the bin before the next level clears them
  }
  // The group (key lo): group_cnt candidates of equal mass each; keep j = 0, 1, ... while before + j * each < target.
  const unsigned long long each = group_mass / group_cnt;
  unsigned long long keep = group_cnt;
  if (each > 0) {
    const unsigned long long need = (target - before + each - 1) / each;  // >= 1, since before < target
    if (need < keep) keep = need;
  }
  if (keep == group_cnt) return {lo, INT_MAX};
  return {lo, nth_id_with_key(row, lo, static_cast<uint32_t>(keep), pred, sh)};
}

// Rows that v2 leaves to the v1 kernel: sampled with top-k.
__device__ __forceinline__ bool top_k_row(const SampleRowParams& p) {
  return !sampling_greedy(p.temperature) && p.top_k > 0;
}

__global__ void __launch_bounds__(kThreads) sample_kernel(const __grid_constant__ SampleArgs a) {
  __shared__ Smem sh;
  const int tid = threadIdx.x;
  const SampleRowParams p = a.params[blockIdx.x];
  if (a.version == 2 && !top_k_row(p)) return;  // v2's kernels draw this row
  const Row row{a.logits + static_cast<int64_t>(blockIdx.x) * a.stride, a.vocab, p.temperature,
                sampling_greedy(p.temperature)};

  // Pass 1: bad logits, live count, argmax (= z_max) and the smallest live z.
  bool bad = false;
  int live = 0;
  Best best{-INFINITY, INT_MAX};
  float z_min = INFINITY;
  for (int v = tid; v < row.vocab; v += kThreads) {
    const float l = row.l[v];
    bad |= isnan(l) || l == INFINITY;
    const float z = row.greedy ? l : __fdiv_rn(l, row.temperature);
    if (z == -INFINITY) continue;
    ++live;
    if (z > best.z) best = {z, v};  // ascending v: the first of equal values keeps the lowest id
    z_min = fminf(z_min, z);
  }
  bad = __syncthreads_or(bad);
  live = block_reduce(live, 0, SumOp{}, sh.red);
  best = block_reduce(best, Best{-INFINITY, INT_MAX}, BetterOp{}, sh.red);
  z_min = block_reduce(z_min, INFINITY, MinOp{}, sh.red);
  if (bad || live == 0) {
    if (tid == 0) {
      a.tokens[blockIdx.x] = bad ? kSampleInvalidLogits : kSampleAllMasked;
      if (a.logprobs) a.logprobs[blockIdx.x] = __int_as_float(0x7fc00000);  // NaN
    }
    return;
  }
  const float z_max = best.z;
  const double z_max_d = static_cast<double>(z_max);
  int token = best.id;

  if (!row.greedy) {
    // Steps 4 and 5: each keeps a prefix of the order (z desc, id asc); top-p's prefix lies inside top-k's.
    uint32_t lo = order_key(z_min);
    const uint32_t hi = order_key(z_max);
    Cut cut_k = kNoCut, cut_p = kNoCut;
    int survivors = live;
    if (p.top_k > 0 && p.top_k < live) {
      cut_k = find_cut<true>(row, lo, hi, static_cast<unsigned long long>(p.top_k), [](int, uint32_t) { return true; },
                       [](float) { return 1ull; }, sh);
      lo = cut_k.key;
      survivors = p.top_k;
    }
    if (p.top_p < 1.0f && survivors > 1) {
      const double scale = ldexp(1.0, a.mass_shift);
      auto mass = [=](float z) { return __double2ull_rz(exp(static_cast<double>(z) - z_max_d) * scale); };
      auto in_k = [=](int v, uint32_t k) { return in_cut(cut_k, k, v); };
      unsigned long long total = 0;
      for (int v = tid; v < row.vocab; v += kThreads) {
        const float z = row.z(v);
        if (z != -INFINITY && in_k(v, order_key(z))) total += mass(z);
      }
      total = block_reduce(total, 0ull, SumOp{}, sh.red);
      // Keep while sum(e before) < top_p * total; with integer masses M: M < ceil(top_p * total).
      const unsigned long long target =
          static_cast<unsigned long long>(ceil(static_cast<double>(p.top_p) * static_cast<double>(total)));
      cut_p = find_cut<false>(row, lo, hi, target > 0 ? target : 1ull, in_k, mass, sh);
    }
    // Steps 6 and 7: min-p against z_max (the first candidate survives 4 and 5), then the Gumbel-max draw.
    const double min_p = p.min_p;
    BestScore bs{-INFINITY, INT_MAX};
    for (int v = tid; v < row.vocab; v += kThreads) {
      const float z = row.z(v);
      if (z == -INFINITY) continue;
      const uint32_t k = order_key(z);
      if (!in_cut(cut_k, k, v) || !in_cut(cut_p, k, v)) continue;
      if (min_p > 0.0 && exp(static_cast<double>(z) - z_max_d) < min_p) continue;
      const double s = gumbel_score(z, sampling_uniform(p.seed, p.seq_index, p.step, static_cast<uint32_t>(v)));
      if (s > bs.s) bs = {s, v};
    }
    bs = block_reduce(bs, BestScore{-INFINITY, INT_MAX}, BetterOp{}, sh.red);
    token = bs.id;
  }

  // The drawn token's log_softmax over all of z (before steps 4-6), fp64.
  float logprob = 0.0f;
  if (a.logprobs) {
    double sum = 0.0;
    for (int v = tid; v < row.vocab; v += kThreads) sum += exp(static_cast<double>(row.z(v)) - z_max_d);
    sum = block_reduce(sum, 0.0, SumOp{}, sh.red);
    logprob = static_cast<float>(static_cast<double>(row.z(token)) - (z_max_d + log(sum)));
  }
  if (tid == 0) {
    a.tokens[blockIdx.x] = token;
    if (a.logprobs) a.logprobs[blockIdx.x] = logprob;
  }
}


// ================================================================================================ v2
// The same draw as sample_kernel for rows without top-k, split over `chunks` CTAs per row (contiguous id ranges of
// ceil(vocab / chunks) logits) and a sequence of short kernels on the stream; each writes per-(row, chunk) partials
// that the next one combines. Every combination is exact (integer sums, max / argmax with the id tie rule), or, for
// the fp64 log-sum, summed in chunk order by one thread, so results do not depend on scheduling:
//   stats    chunk: bad logits, live count, argmax (z_max), smallest live z
//   level l  (top-p rows, l = 0..3) pick: from level l-1's histogram (summed over the chunks) the bin that holds the
//            cut -> the next key interval (state l); chunk: the 256-bin histogram (counts, integer masses) of that
//            interval. Level 0's interval is [key(z_min), key(z_max)], so its masses sum to the total.
//   draw     pick of level 3 (the cut's key group is now exact); the group's members before this chunk (from the
//            per-chunk counts of the last histogram) give how many of it this chunk keeps; chunk: min-p, the Gumbel
//            argmax, and the fp64 sum of e for the logprob
//   final    one warp per row: argmax of the chunk scores, the log-sum in chunk order; writes token and logprob.
// e and the mass are computed only for the logits inside the current key interval (all of them once, at level 0);
// the levels and the nucleus are those of find_cut, so v2's cut is v1's bit for bit. Histogram adds are aggregated
// per warp and bin (logits crowd into few bins: one CTA's shared atomics on a handful of addresses made v1's top-p
// ~1.8 ms at vocab 129280).
constexpr int kThreads2 = 512;
constexpr int kWarps2 = kThreads2 / 32;
constexpr int kLevels = 4;  // 8 key bits per level

struct StatsPart {  // one chunk's pass 1
  int bad, live;
  Best best;
  float z_min;
};
struct LevelState {  // the key interval [lo, lo + 2^nbits - 1] of a level; done: lo is the cut's key group
  uint32_t lo;
  int nbits;
  unsigned long long before;  // mass of the candidates above the interval
  unsigned long long target;  // ceil(top_p * total) (from level 0's pick on)
  int done;
  uint32_t bin;  // done: the group's bin in the histogram of level `level` (for the per-chunk counts)
  int level;
  uint32_t group_cnt;
  unsigned long long group_mass;
};
struct DrawPart {  // one chunk's draw
  BestScore best;
  double sum;  // sum of exp(z - z_max) over the chunk (logprobs)
};

// The partials of all rows, carved from SampleArgs::work (sample_work_bytes).
struct Work {
  StatsPart* stats;                // [rows * chunks]
  uint32_t* cnt;                   // [2][rows * chunks][kBins] (level parity)
  unsigned long long* mass;        // [2][rows * chunks][kBins]
  LevelState* state;               // [rows][kLevels]
  DrawPart* draw;                  // [rows * chunks]
};

size_t align256(size_t b) { return (b + 255) & ~size_t{255}; }

Work carve(void* base, int rows, int chunks, size_t* bytes) {
  const size_t slots = static_cast<size_t>(rows) * chunks;
  char* p = static_cast<char*>(base);
  size_t off = 0;
  auto take = [&](size_t b) {
    char* q = p ? p + off : nullptr;
    off += align256(b);
    return q;
  };
  Work w;
  w.stats = reinterpret_cast<StatsPart*>(take(slots * sizeof(StatsPart)));
  w.cnt = reinterpret_cast<uint32_t*>(take(2 * slots * kBins * sizeof(uint32_t)));
  w.mass = reinterpret_cast<unsigned long long*>(take(2 * slots * kBins * sizeof(unsigned long long)));
  w.state = reinterpret_cast<LevelState*>(take(static_cast<size_t>(rows) * kLevels * sizeof(LevelState)));
  w.draw = reinterpret_cast<DrawPart*>(take(slots * sizeof(DrawPart)));
  if (bytes) *bytes = off;
  return w;
}

struct V2Args {
  SampleArgs a;
  Work w;
  int chunk_len;  // ceil(vocab / chunks)
};

struct Smem2 {
  alignas(16) unsigned char red[(kWarps2 + 1) * 16];
  uint32_t cnt[kBins];
  unsigned long long mass[kBins];
  uint32_t warp_cnt[kWarps2];
  StatsPart row;  // the row's combined stats
  uint32_t pick;
  unsigned long long pick_before, target;
  int id;
};

__device__ __forceinline__ Row make_row(const SampleArgs& a, int row, const SampleRowParams& p) {
  return Row{a.logits + static_cast<int64_t>(row) * a.stride, a.vocab, p.temperature, sampling_greedy(p.temperature)};
}

// The row's pass-1 results from its chunks' partials (exact: or, sum, argmax and min), into sh.row; block-wide.
__device__ void combine_stats(const V2Args& v, int row, Smem2& sh) {
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x, chunks = v.a.chunks;
    StatsPart s{0, 0, Best{-INFINITY, INT_MAX}, INFINITY};
    if (lane < chunks) s = v.w.stats[static_cast<size_t>(row) * chunks + lane];
    const int bad = __any_sync(kFull, s.bad != 0);
    int live = s.live;
    Best best = s.best;
    float z_min = s.z_min;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      live += shfl_xor(live, o);
      best = BetterOp{}(best, shfl_xor(best, o));
      z_min = fminf(z_min, shfl_xor(z_min, o));
    }
    if (lane == 0) sh.row = StatsPart{bad, live, best, z_min};
  }
  __syncthreads();
}

__global__ void __launch_bounds__(kThreads2) sample_stats_kernel(const __grid_constant__ V2Args v) {
  __shared__ Smem2 sh;
  const int row = blockIdx.x, chunk = blockIdx.y, tid = threadIdx.x;
  const SampleRowParams p = v.a.params[row];
  if (top_k_row(p)) return;
  const Row r = make_row(v.a, row, p);
  const int begin = min(r.vocab, chunk * v.chunk_len), end = min(r.vocab, begin + v.chunk_len);
  bool bad = false;
  int live = 0;
  Best best{-INFINITY, INT_MAX};
  float z_min = INFINITY;
  for (int i = begin + tid; i < end; i += kThreads2) {
    const float l = r.l[i];
    bad |= isnan(l) || l == INFINITY;
    const float z = r.greedy ? l : __fdiv_rn(l, r.temperature);
    if (z == -INFINITY) continue;
    ++live;
    if (z > best.z) best = {z, i};
    z_min = fminf(z_min, z);
  }
  bad = __syncthreads_or(bad);
  live = block_reduce<int, SumOp, kWarps2>(live, 0, SumOp{}, sh.red);
  best = block_reduce<Best, BetterOp, kWarps2>(best, Best{-INFINITY, INT_MAX}, BetterOp{}, sh.red);
  z_min = block_reduce<float, MinOp, kWarps2>(z_min, INFINITY, MinOp{}, sh.red);
  if (tid == 0) v.w.stats[static_cast<size_t>(row) * v.a.chunks + chunk] = StatsPart{bad ? 1 : 0, live, best, z_min};
}

// Does this row run top-p in v2? (sampled, no top-k, top_p < 1, more than one live token; as sample_kernel.)
__device__ __forceinline__ bool v2_top_p(const SampleRowParams& p, const StatsPart& s) {
  return !sampling_greedy(p.temperature) && p.top_k <= 0 && p.top_p < 1.0f && !s.bad && s.live > 1;
}

__device__ __forceinline__ unsigned long long top_p_mass(float z, double z_max_d, int mass_shift) {
  return __double2ull_rz(exp(static_cast<double>(z) - z_max_d) * ldexp(1.0, mass_shift));
}

// Level `level`'s pick, as in find_cut: sums the chunks' histograms of state s's interval, picks the lowest non-empty
// bin whose mass before is < target, and returns the next state (done when the bins were single keys). Block-wide;
// every CTA of the row computes the same state.
__device__ LevelState pick_level(const V2Args& v, int row, const LevelState& s, int level, float top_p, Smem2& sh) {
  if (s.done) return s;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, chunks = v.a.chunks;
  const size_t slots = static_cast<size_t>(v.a.rows) * chunks, first = static_cast<size_t>(row) * chunks;
  const size_t par = static_cast<size_t>(level & 1) * slots;
  for (int b = tid; b < kBins; b += kThreads2) {
    uint32_t c = 0;
    unsigned long long m = 0;
    for (int ch = 0; ch < chunks; ++ch) {
      const size_t at = (par + first + ch) * kBins + b;
      c += v.w.cnt[at];
      m += v.w.mass[at];
    }
    sh.cnt[b] = c;
    sh.mass[b] = m;
  }
  __syncthreads();
  if (warp == 0) {
    uint32_t c[kBinsPerLane];
    unsigned long long m[kBinsPerLane], lane_sum = 0;
#pragma unroll
    for (int j = 0; j < kBinsPerLane; ++j) {
      c[j] = sh.cnt[lane * kBinsPerLane + j];
      m[j] = sh.mass[lane * kBinsPerLane + j];
      lane_sum += m[j];
    }
    unsigned long long target = s.target;
    if (level == 0) {  // the interval holds every live token: the bins sum to the total mass
      unsigned long long total = lane_sum;
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) total += shfl_xor(total, o);
      // Keep while sum(e before) < top_p * total; with integer masses M: M < ceil(top_p * total).
      target = static_cast<unsigned long long>(ceil(static_cast<double>(top_p) * static_cast<double>(total)));
      if (target == 0) target = 1;
    }
    unsigned long long suffix = lane_sum;  // lanes >= this one
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const unsigned long long y = __shfl_down_sync(kFull, suffix, o);
      if (lane + o < 32) suffix += y;
    }
    unsigned long long acc = s.before + (suffix - lane_sum);
    uint32_t pick = 0xffffffffu;
    unsigned long long pick_before = 0;
#pragma unroll
    for (int j = kBinsPerLane - 1; j >= 0; --j) {
      if (c[j] > 0 && acc < target) {
        pick = static_cast<uint32_t>(lane * kBinsPerLane + j);
        pick_before = acc;
      }
      acc += m[j];
    }
    const uint32_t lowest = __reduce_min_sync(kFull, pick);
    if (pick == lowest && pick != 0xffffffffu) {
      sh.pick = pick;
      sh.pick_before = pick_before;
    }
    if (lane == 0) sh.target = target;
  }
  __syncthreads();
  const uint32_t b = sh.pick;
  const int shift = s.nbits > 8 ? s.nbits - 8 : 0;
  LevelState n = s;
  n.target = sh.target;
  n.before = sh.pick_before;
  n.lo = s.lo + (b << shift);
  if (shift == 0) {
    n.done = 1;
    n.bin = b;
    n.level = level;
    n.group_cnt = sh.cnt[b];
    n.group_mass = sh.mass[b];
  } else {
    n.nbits = shift;
  }
  __syncthreads();  // every thread has read the bins before the caller reuses them
  return n;
}

// This chunk's histogram of state s's interval (counts and masses of the live logits with a key inside it), into
// level `level`'s partial. Adds are aggregated per warp: one shared atomic per distinct bin of the warp's 32 logits.
__device__ void build_hist(const V2Args& v, const Row& r, int row, int chunk, const LevelState& s, int level,
                           double z_max_d, Smem2& sh) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int shift = s.nbits > 8 ? s.nbits - 8 : 0;
  const uint32_t span = s.nbits >= 32 ? 0xffffffffu : (1u << s.nbits) - 1u;
  for (int b = tid; b < kBins; b += kThreads2) {
    sh.cnt[b] = 0;
    sh.mass[b] = 0;
  }
  __syncthreads();
  const int begin = min(r.vocab, chunk * v.chunk_len), end = min(r.vocab, begin + v.chunk_len);
  for (int base = begin + warp * 32; base < end; base += kThreads2) {  // warp-uniform trip count
    const int i = base + lane;
    bool has = false;
    uint32_t b = 0;
    unsigned long long m = 0;
    if (i < end) {
      const float z = r.z(i);
      if (z != -INFINITY) {
        const uint32_t k = order_key(z);
        if (k >= s.lo && k - s.lo <= span) {
          has = true;
          b = (k - s.lo) >> shift;
          m = top_p_mass(z, z_max_d, v.a.mass_shift);
        }
      }
    }
    unsigned todo = __ballot_sync(kFull, has);
    while (todo) {
      const int leader = __ffs(todo) - 1;
      const uint32_t bl = __shfl_sync(kFull, b, leader);
      const bool mine = has && b == bl;
      const unsigned group = __ballot_sync(kFull, mine);
      todo &= ~group;
      unsigned long long sum = mine ? m : 0ull;
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) sum += shfl_xor(sum, o);
      if (lane == leader) {
        atomicAdd(&sh.cnt[bl], static_cast<uint32_t>(__popc(group)));
        if (sum) atomicAdd(&sh.mass[bl], sum);
      }
    }
  }
  __syncthreads();
  const size_t slots = static_cast<size_t>(v.a.rows) * v.a.chunks;
  const size_t at = (static_cast<size_t>(level & 1) * slots + static_cast<size_t>(row) * v.a.chunks + chunk) * kBins;
  for (int b = tid; b < kBins; b += kThreads2) {
    v.w.cnt[at + b] = sh.cnt[b];
    v.w.mass[at + b] = sh.mass[b];
  }
}

// Level `level` of the top-p search: the pick from level - 1 (level 0: the interval from the stats), then this
// chunk's histogram. Chunk 0 records the state for the next kernel (a slot per level: no kernel overwrites a state
// that another CTA of the same kernel still reads).
__global__ void __launch_bounds__(kThreads2) sample_level_kernel(const __grid_constant__ V2Args v, int level) {
  __shared__ Smem2 sh;
  const int row = blockIdx.x, chunk = blockIdx.y;
  const SampleRowParams p = v.a.params[row];
  if (top_k_row(p)) return;
  combine_stats(v, row, sh);
  if (!v2_top_p(p, sh.row)) return;  // block-uniform
  LevelState s;
  if (level == 0) {
    const uint32_t lo = order_key(sh.row.z_min), hi = order_key(sh.row.best.z);
    s = LevelState{lo, hi == lo ? 0 : 32 - __clz(static_cast<int>(hi - lo)), 0ull, 0ull, 0, 0u, 0, 0u, 0ull};
  } else {
    s = pick_level(v, row, v.w.state[static_cast<size_t>(row) * kLevels + level - 1], level - 1, p.top_p, sh);
  }
  if (chunk == 0 && threadIdx.x == 0) v.w.state[static_cast<size_t>(row) * kLevels + level] = s;
  if (s.done) return;
  build_hist(v, make_row(v.a, row, p), row, chunk, s, level, static_cast<double>(sh.row.best.z), sh);
}

// The id of the n-th (1-based) live logit with key `key` in [begin, end), in id order.
__device__ int nth_id_in_range(const Row& r, int begin, int end, uint32_t key, uint32_t n, Smem2& sh) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  uint32_t seen = 0;  // block-uniform
  for (int base = begin; base < end; base += kThreads2) {
    const int i = base + tid;
    bool f = false;
    if (i < end) {
      const float z = r.z(i);
      f = z != -INFINITY && order_key(z) == key;
    }
    const uint32_t in_tile = static_cast<uint32_t>(__syncthreads_count(f));
    if (seen + in_tile >= n) {
      const unsigned bal = __ballot_sync(kFull, f);
      if (lane == 0) sh.warp_cnt[warp] = static_cast<uint32_t>(__popc(bal));
      __syncthreads();
      uint32_t rank = seen + static_cast<uint32_t>(__popc(bal & ((1u << lane) - 1u))) + 1u;
      for (int w = 0; w < warp; ++w) rank += sh.warp_cnt[w];
      if (f && rank == n) sh.id = i;
      __syncthreads();
      return sh.id;
    }
    seen += in_tile;
  }
  return INT_MAX;  // unreachable: the caller counted at least n of them in the range
}

// Steps 6 and 7 on this chunk (and the fp64 sum of e for the logprob): the top-p cut of the last level, restricted
// to this chunk's ids, then min-p and the Gumbel argmax.
__global__ void __launch_bounds__(kThreads2) sample_draw_kernel(const __grid_constant__ V2Args v) {
  __shared__ Smem2 sh;
  const int row = blockIdx.x, chunk = blockIdx.y, tid = threadIdx.x;
  const SampleRowParams p = v.a.params[row];
  if (top_k_row(p)) return;
  combine_stats(v, row, sh);
  const StatsPart st = sh.row;
  if (st.bad || st.live == 0) return;  // the final kernel writes the code
  const Row r = make_row(v.a, row, p);
  const int begin = min(r.vocab, chunk * v.chunk_len), end = min(r.vocab, begin + v.chunk_len);
  const double z_max_d = static_cast<double>(st.best.z);
  BestScore bs{-INFINITY, INT_MAX};
  if (!r.greedy) {
    Cut cut = kNoCut;
    if (v2_top_p(p, st)) {
      const LevelState s =
          pick_level(v, row, v.w.state[static_cast<size_t>(row) * kLevels + kLevels - 1], kLevels - 1, p.top_p, sh);
      // The group (key s.lo) keeps its first `keep` members in id order (as find_cut); this chunk's share of them
      // follows from the members in the chunks before it (the last histogram's per-chunk counts of the group's bin).
      const unsigned long long each = s.group_mass / s.group_cnt;
      unsigned long long keep = s.group_cnt;
      if (each > 0) {
        const unsigned long long need = (s.target - s.before + each - 1) / each;  // >= 1, since before < target
        if (need < keep) keep = need;
      }
      const size_t slots = static_cast<size_t>(v.a.rows) * v.a.chunks;
      const size_t first = static_cast<size_t>(s.level & 1) * slots + static_cast<size_t>(row) * v.a.chunks;
      const uint32_t* cnt = v.w.cnt + first * kBins + s.bin;  // [chunks] with stride kBins
      unsigned long long prior = 0;
      for (int ch = 0; ch < chunk; ++ch) prior += cnt[static_cast<size_t>(ch) * kBins];
      const unsigned long long mine = cnt[static_cast<size_t>(chunk) * kBins];
      const unsigned long long here = keep > prior ? min(keep - prior, mine) : 0ull;
      if (here == mine) cut = Cut{s.lo, INT_MAX};
      else if (here == 0) cut = Cut{s.lo, -1};  // only keys above the group
      else cut = Cut{s.lo, nth_id_in_range(r, begin, end, s.lo, static_cast<uint32_t>(here), sh)};
    }
    const double min_p = p.min_p;
    for (int i = begin + tid; i < end; i += kThreads2) {
      const float z = r.z(i);
      if (z == -INFINITY) continue;
      if (!in_cut(cut, order_key(z), i)) continue;
      if (min_p > 0.0 && exp(static_cast<double>(z) - z_max_d) < min_p) continue;
      const double sc = gumbel_score(z, sampling_uniform(p.seed, p.seq_index, p.step, static_cast<uint32_t>(i)));
      if (sc > bs.s) bs = {sc, i};
    }
    bs = block_reduce<BestScore, BetterOp, kWarps2>(bs, BestScore{-INFINITY, INT_MAX}, BetterOp{}, sh.red);
  }
  double sum = 0.0;
  if (v.a.logprobs) {
    for (int i = begin + tid; i < end; i += kThreads2) sum += exp(static_cast<double>(r.z(i)) - z_max_d);
    sum = block_reduce<double, SumOp, kWarps2>(sum, 0.0, SumOp{}, sh.red);
  }
  if (tid == 0) v.w.draw[static_cast<size_t>(row) * v.a.chunks + chunk] = DrawPart{bs, sum};
}

// One warp per row: the token (argmax of z for greedy rows, of the chunks' Gumbel scores otherwise) and its logprob
// from the chunks' sums, added in chunk order.
__global__ void __launch_bounds__(32) sample_final_kernel(const __grid_constant__ V2Args v) {
  __shared__ Smem2 sh;
  const int row = blockIdx.x, lane = threadIdx.x, chunks = v.a.chunks;
  const SampleRowParams p = v.a.params[row];
  if (top_k_row(p)) return;
  combine_stats(v, row, sh);
  const StatsPart st = sh.row;
  if (st.bad || st.live == 0) {
    if (lane == 0) {
      v.a.tokens[row] = st.bad ? kSampleInvalidLogits : kSampleAllMasked;
      if (v.a.logprobs) v.a.logprobs[row] = __int_as_float(0x7fc00000);  // NaN
    }
    return;
  }
  const Row r = make_row(v.a, row, p);
  const size_t first = static_cast<size_t>(row) * chunks;
  int token = st.best.id;
  if (!r.greedy) {
    BestScore bs = lane < chunks ? v.w.draw[first + lane].best : BestScore{-INFINITY, INT_MAX};
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) bs = BetterOp{}(bs, shfl_xor(bs, o));
    token = bs.id;
  }
  if (lane == 0) {
    v.a.tokens[row] = token;
    if (v.a.logprobs) {
      double sum = 0.0;
      for (int ch = 0; ch < chunks; ++ch) sum += v.w.draw[first + ch].sum;
      const double z_max_d = static_cast<double>(st.best.z);
      v.a.logprobs[row] = static_cast<float>(static_cast<double>(r.z(token)) - (z_max_d + log(sum)));
    }
  }
}

}  // namespace

int sample_chunks(int rows, int vocab, int n_sms) {
  const int by_sms = rows > 0 ? 2 * n_sms / rows : 1;
  const int by_len = (vocab + 1023) / 1024;
  return std::max(1, std::min({kSampleMaxChunks, by_sms, by_len}));
}

size_t sample_work_bytes(int rows, int chunks) {
  size_t bytes = 0;
  carve(nullptr, rows, chunks, &bytes);
  return bytes;
}

void launch_sample(const SampleArgs& a, cudaStream_t s) {
  if (a.rows == 0) return;
  if (a.version == 1 || a.any_top_k) sample_kernel<<<a.rows, kThreads, 0, s>>>(a);
  if (a.version == 1) return;
  const V2Args v{a, carve(a.work, a.rows, a.chunks, nullptr), (a.vocab + a.chunks - 1) / a.chunks};
  const dim3 grid(a.rows, a.chunks);
  sample_stats_kernel<<<grid, kThreads2, 0, s>>>(v);
  if (a.any_top_p)
    for (int level = 0; level < kLevels; ++level) sample_level_kernel<<<grid, kThreads2, 0, s>>>(v, level);
  if (a.any_draw) sample_draw_kernel<<<grid, kThreads2, 0, s>>>(v);
  sample_final_kernel<<<a.rows, 32, 0, s>>>(v);
}

}  // namespace dsv3::cuda
