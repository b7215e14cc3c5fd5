// sample.cu: next-token sampling on the GPU — steps 3-7 of engine/sampler.h: temperature, greedy argmax, top-k,
// top-p, min-p and the Gumbel-max draw with per-row Philox counters (backend/cuda).
// Parallelisation: one CTA of kThreads threads per row; each pass streams the row's logits (L2-resident) and
// recomputes z = l / T. Top-k and top-p both keep a prefix of the order (z desc, id asc); the prefix's last group of
// equal z is found by a radix search over order-preserving keys of z, restricted each level to the current key
// interval (256 bins: counts for top-k, fixed-point masses for top-p), then the id order inside that group.
// Precision: z = __fdiv_rn(l, T) (fp32, as the host's l / T); e = exp(double(z) - double(z_max)); Gumbel scores fp64
// (base/sampling_rules.h). Top-p masses are floor(e * 2^mass_shift) in integers, summed exactly, so the cut is
// deterministic; it equals the host's sequential fp64 sum unless a prefix sum lies within ~1e-9 of top_p.
// Reference: CpuBackend::sample (= the engine's Sampler, base/sampling.cpp); checked by tests/ops "sample".
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
template <typename T, typename Op>
__device__ T block_reduce(T v, T identity, Op op, void* red_raw) {
  T* red = static_cast<T*>(red_raw);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, shfl_xor(v, o));
  __syncthreads();  // the previous reduction's result has been read by every thread
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T w = lane < kWarps ? red[lane] : identity;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) w = op(w, shfl_xor(w, o));
    if (lane == 0) red[kWarps] = w;
  }
  __syncthreads();
  return red[kWarps];
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

__global__ void __launch_bounds__(kThreads) sample_kernel(const __grid_constant__ SampleArgs a) {
  __shared__ Smem sh;
  const int tid = threadIdx.x;
  const SampleRowParams p = a.params[blockIdx.x];
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

}  // namespace

void launch_sample(const SampleArgs& a, cudaStream_t s) {
  if (a.rows == 0) return;
  sample_kernel<<<a.rows, kThreads, 0, s>>>(a);
}

}  // namespace dsv3::cuda
