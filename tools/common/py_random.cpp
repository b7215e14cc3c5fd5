// py_random.cpp: CPython `random`, numpy legacy RandomState and numpy PCG64/SeedSequence, bit for bit (tools/common).
// Sources of truth: CPython Modules/_randommodule.c + Lib/random.py (3.11), numpy random/src/mt19937,
// random/src/legacy/legacy-distributions.c, random/src/pcg64, random/bit_generator.pyx and
// random/src/distributions/distributions.c (1.24). Built with -ffp-contract=off: a fused multiply-add would change
// the last bit of the Gaussian and hence, rarely, a ceil()ed length.
#include "common/py_random.h"

#include <cmath>

#include "dsv3/base/error.h"

namespace dsv3::tools {

std::vector<uint32_t> int_to_u32_words(uint64_t value) {
  std::vector<uint32_t> words;
  do {
    words.push_back(static_cast<uint32_t>(value & 0xffffffffu));
    value >>= 32;
  } while (value != 0);
  return words;
}

// ---- MT19937 ----

void Mt19937::init_genrand(uint32_t seed) {
  mt_[0] = seed;
  for (int i = 1; i < kN; ++i) mt_[i] = 1812433253u * (mt_[i - 1] ^ (mt_[i - 1] >> 30)) + static_cast<uint32_t>(i);
  pos_ = kN;
}

void Mt19937::init_by_array(std::span<const uint32_t> key) {
  CHECK(!key.empty());
  init_genrand(19650218u);
  size_t i = 1, j = 0;
  for (size_t k = std::max<size_t>(kN, key.size()); k > 0; --k) {
    mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1664525u)) + key[j] + static_cast<uint32_t>(j);
    ++i, ++j;
    if (i >= kN) mt_[0] = mt_[kN - 1], i = 1;
    if (j >= key.size()) j = 0;
  }
  for (size_t k = kN - 1; k > 0; --k) {
    mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1566083941u)) - static_cast<uint32_t>(i);
    ++i;
    if (i >= kN) mt_[0] = mt_[kN - 1], i = 1;
  }
  mt_[0] = 0x80000000u;  // MSB set: a non-zero initial state
  pos_ = kN;
}

uint32_t Mt19937::next_u32() {
  constexpr int kM = 397;
  constexpr uint32_t kUpper = 0x80000000u, kLower = 0x7fffffffu, kMatrixA = 0x9908b0dfu;
  if (pos_ >= kN) {
    auto twist = [&](int k, int k1, int km) {
      const uint32_t y = (mt_[k] & kUpper) | (mt_[k1] & kLower);
      mt_[k] = mt_[km] ^ (y >> 1) ^ ((y & 1u) ? kMatrixA : 0u);
    };
    int k = 0;
    for (; k < kN - kM; ++k) twist(k, k + 1, k + kM);
    for (; k < kN - 1; ++k) twist(k, k + 1, k + kM - kN);
    twist(kN - 1, 0, kM - 1);
    pos_ = 0;
  }
  uint32_t y = mt_[pos_++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

double Mt19937::next_double() {
  const uint32_t a = next_u32() >> 5, b = next_u32() >> 6;
  return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

// ---- numpy legacy RandomState ----

NumpyLegacyRandom::NumpyLegacyRandom(uint32_t seed) { mt_.init_genrand(seed); }

double NumpyLegacyRandom::gauss() {
  if (has_gauss_) {
    has_gauss_ = false;
    return gauss_;
  }
  double x1, x2, r2;
  do {
    x1 = 2.0 * mt_.next_double() - 1.0;
    x2 = 2.0 * mt_.next_double() - 1.0;
    r2 = x1 * x1 + x2 * x2;
  } while (r2 >= 1.0 || r2 == 0.0);
  const double f = std::sqrt(-2.0 * std::log(r2) / r2);
  gauss_ = f * x1;
  has_gauss_ = true;
  return f * x2;
}

// ---- numpy SeedSequence + PCG64 ----

namespace {

using u128 = unsigned __int128;

// SeedSequence(entropy).generate_state(n_words32), pool size 4 (numpy bit_generator.pyx).
std::vector<uint32_t> seed_sequence_state(std::span<const uint32_t> entropy, int n_words) {
  constexpr uint32_t kInitA = 0x43b0d7e5u, kMultA = 0x931e8875u, kInitB = 0x8b51f9ddu, kMultB = 0x58f38dedu;
  constexpr uint32_t kMixMultL = 0xca01f9ddu, kMixMultR = 0x4973f715u;
  constexpr int kPool = 4, kXShift = 16;
  uint32_t hash_const = kInitA;
  auto hashmix = [&](uint32_t value) {
    value ^= hash_const;
    hash_const *= kMultA;
    value *= hash_const;
    value ^= value >> kXShift;
    return value;
  };
  auto mix = [](uint32_t x, uint32_t y) {
    uint32_t r = kMixMultL * x - kMixMultR * y;
    return r ^ (r >> kXShift);
  };
  std::array<uint32_t, kPool> pool{};
  for (int i = 0; i < kPool; ++i) pool[i] = hashmix(i < static_cast<int>(entropy.size()) ? entropy[i] : 0u);
  for (int src = 0; src < kPool; ++src)
    for (int dst = 0; dst < kPool; ++dst)
      if (src != dst) pool[dst] = mix(pool[dst], hashmix(pool[src]));
  for (size_t src = kPool; src < entropy.size(); ++src)
    for (int dst = 0; dst < kPool; ++dst) pool[dst] = mix(pool[dst], hashmix(entropy[src]));

  std::vector<uint32_t> out(n_words);
  uint32_t hc = kInitB;
  for (int i = 0; i < n_words; ++i) {
    uint32_t v = pool[i % kPool];
    v ^= hc;
    hc *= kMultB;
    v *= hc;
    v ^= v >> kXShift;
    out[i] = v;
  }
  return out;
}

constexpr u128 kPcgMult = (static_cast<u128>(2549297995355413924ull) << 64) | 4865540595714422341ull;

}  // namespace

NumpyPcg64::NumpyPcg64(uint64_t seed) {
  const std::vector<uint32_t> entropy = int_to_u32_words(seed);
  const std::vector<uint32_t> w = seed_sequence_state(entropy, 8);
  uint64_t v[4];
  for (int i = 0; i < 4; ++i) v[i] = w[2 * i] | (static_cast<uint64_t>(w[2 * i + 1]) << 32);  // '<u4' -> '<u8'
  const u128 initstate = (static_cast<u128>(v[0]) << 64) | v[1];
  const u128 initseq = (static_cast<u128>(v[2]) << 64) | v[3];
  // pcg_setseq_128_srandom_r
  state_ = 0;
  inc_ = (initseq << 1) | 1u;
  state_ = state_ * kPcgMult + inc_;
  state_ += initstate;
  state_ = state_ * kPcgMult + inc_;
}

uint64_t NumpyPcg64::next_u64() {
  state_ = state_ * kPcgMult + inc_;
  // XSL-RR output of the new state.
  const uint64_t x = static_cast<uint64_t>(state_ >> 64) ^ static_cast<uint64_t>(state_);
  const unsigned rot = static_cast<unsigned>(state_ >> 122);
  return (x >> rot) | (x << ((-rot) & 63u));
}

uint32_t NumpyPcg64::next_u32() {
  if (has_u32_) {
    has_u32_ = false;
    return u32_;
  }
  const uint64_t next = next_u64();
  has_u32_ = true;
  u32_ = static_cast<uint32_t>(next >> 32);
  return static_cast<uint32_t>(next & 0xffffffffu);
}

std::vector<int64_t> NumpyPcg64::integers_closed(int64_t low, int64_t high, int64_t n) {
  CHECK(low <= high && n >= 0);
  const uint64_t rng = static_cast<uint64_t>(high) - static_cast<uint64_t>(low);
  const uint64_t off = static_cast<uint64_t>(low);
  std::vector<int64_t> out(n);
  auto put = [&](int64_t i, uint64_t v) { out[i] = static_cast<int64_t>(off + v); };
  if (rng == 0) {
    for (int64_t i = 0; i < n; ++i) put(i, 0);
  } else if (rng <= 0xffffffffull) {
    if (rng == 0xffffffffull) {
      for (int64_t i = 0; i < n; ++i) put(i, next_u32());
      return out;
    }
    const uint32_t rng_excl = static_cast<uint32_t>(rng) + 1u;
    for (int64_t i = 0; i < n; ++i) {
      uint64_t m = static_cast<uint64_t>(next_u32()) * rng_excl;
      uint32_t leftover = static_cast<uint32_t>(m & 0xffffffffu);
      if (leftover < rng_excl) {
        const uint32_t threshold = (UINT32_MAX - static_cast<uint32_t>(rng)) % rng_excl;
        while (leftover < threshold) {
          m = static_cast<uint64_t>(next_u32()) * rng_excl;
          leftover = static_cast<uint32_t>(m & 0xffffffffu);
        }
      }
      put(i, m >> 32);
    }
  } else if (rng == UINT64_MAX) {
    for (int64_t i = 0; i < n; ++i) put(i, next_u64());
  } else {
    const uint64_t rng_excl = rng + 1;
    for (int64_t i = 0; i < n; ++i) {
      u128 m = static_cast<u128>(next_u64()) * rng_excl;
      uint64_t leftover = static_cast<uint64_t>(m);
      if (leftover < rng_excl) {
        const uint64_t threshold = (UINT64_MAX - rng) % rng_excl;
        while (leftover < threshold) {
          m = static_cast<u128>(next_u64()) * rng_excl;
          leftover = static_cast<uint64_t>(m);
        }
      }
      put(i, static_cast<uint64_t>(m >> 64));
    }
  }
  return out;
}

// ---- CPython random ----

PyRandom::PyRandom(uint64_t abs_seed) {
  const std::vector<uint32_t> key = int_to_u32_words(abs_seed);
  mt_.init_by_array(key);
}

uint64_t PyRandom::getrandbits(int k) {
  CHECK(k >= 1 && k <= 64, "getrandbits({})", k);
  if (k <= 32) return mt_.next_u32() >> (32 - k);
  // Words are filled least significant first; the last one keeps its top (k mod 32) bits.
  const uint64_t lo = mt_.next_u32();
  const uint64_t hi = mt_.next_u32() >> (64 - k);
  return lo | (hi << 32);
}

uint64_t PyRandom::randbelow(uint64_t n) {
  CHECK(n >= 1);
  const int k = 64 - __builtin_clzll(n);  // n.bit_length()
  uint64_t r = getrandbits(k);
  while (r >= n) r = getrandbits(k);
  return r;
}

int64_t PyRandom::randint(int64_t a, int64_t b) {
  CHECK(a <= b);
  const uint64_t width = static_cast<uint64_t>(b) - static_cast<uint64_t>(a) + 1u;
  CHECK(width != 0, "randint range too wide");
  return static_cast<int64_t>(static_cast<uint64_t>(a) + randbelow(width));
}

std::vector<int32_t> PyRandom::sample_range(int64_t n, int64_t k) {
  CHECK(k >= 0 && k <= n && n <= INT32_MAX + int64_t{1}, "sample(range({}), {})", n, k);
  std::vector<int32_t> result(k);
  int64_t setsize = 21;
  if (k > 5) {
    // 4 ** ceil(log(k * 3, 4)) with math.log's float division, as random.py computes it.
    const double e = std::ceil(std::log(static_cast<double>(k * 3)) / std::log(4.0));
    setsize += int64_t{1} << (2 * static_cast<int>(e));
  }
  if (n <= setsize) {
    std::vector<int32_t> pool(n);
    for (int64_t i = 0; i < n; ++i) pool[i] = static_cast<int32_t>(i);
    for (int64_t i = 0; i < k; ++i) {
      const int64_t j = static_cast<int64_t>(randbelow(static_cast<uint64_t>(n - i)));
      result[i] = pool[j];
      pool[j] = pool[n - i - 1];
    }
  } else {
    if (static_cast<int64_t>(selected_.size()) < n) selected_.assign(n, 0);
    for (int64_t i = 0; i < k; ++i) {
      uint64_t j = randbelow(static_cast<uint64_t>(n));
      while (selected_[j]) j = randbelow(static_cast<uint64_t>(n));
      selected_[j] = 1;
      result[i] = static_cast<int32_t>(j);
    }
    for (int32_t j : result) selected_[j] = 0;
  }
  return result;
}

std::vector<int32_t> PyRandom::choices_range(int64_t n, int64_t k) {
  CHECK(k >= 0 && n >= 1 && n <= INT32_MAX + int64_t{1});
  std::vector<int32_t> result(k);
  const double nf = static_cast<double>(n);
  for (int64_t i = 0; i < k; ++i) result[i] = static_cast<int32_t>(std::floor(random() * nf));
  return result;
}

}  // namespace dsv3::tools
