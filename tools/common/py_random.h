// py_random.h: bit-exact C++ copies of the random generators that TensorRT-LLM's prepare_dataset.py draws from
// (tools/common). Python's `random` module (MT19937 + init_by_array), numpy's legacy RandomState normal (MT19937 +
// init_genrand + polar Gaussian) and numpy's Generator(PCG64(SeedSequence)).integers. Same seed -> same numbers as
// CPython 3.11 and numpy 1.24; algorithms in interfaces.md §1.5, checked against the real libraries by
// tests/unit/test_py_random.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace dsv3::tools {

// The 32-bit words of a non-negative integer, least significant first; {0} for 0 (CPython's random.seed and
// numpy's SeedSequence both key on these words).
std::vector<uint32_t> int_to_u32_words(uint64_t value);

// MT19937, the generator behind both CPython's `random` and numpy's legacy RandomState.
class Mt19937 {
 public:
  void init_genrand(uint32_t seed);                    // numpy np.random.seed(int)
  void init_by_array(std::span<const uint32_t> key);   // CPython random.seed(int)
  uint32_t next_u32();
  // 53-bit double in [0, 1) from two outputs a, b: ((a >> 5) * 2^26 + (b >> 6)) / 2^53.
  double next_double();

 private:
  static constexpr int kN = 624;
  std::array<uint32_t, kN> mt_{};
  int pos_ = kN;
};

// numpy's legacy global generator after np.random.seed(seed): normal() is loc + scale * gauss, where gauss is the
// polar (Marsaglia) method that caches its second value.
class NumpyLegacyRandom {
 public:
  explicit NumpyLegacyRandom(uint32_t seed);
  double gauss();
  double normal(double loc, double scale) { return loc + scale * gauss(); }

 private:
  Mt19937 mt_;
  bool has_gauss_ = false;
  double gauss_ = 0.0;
};

// numpy's np.random.default_rng(seed): PCG64 (XSL-RR 128/64) seeded from SeedSequence(seed).generate_state(4, u64).
class NumpyPcg64 {
 public:
  explicit NumpyPcg64(uint64_t seed);
  uint64_t next_u64();
  uint32_t next_u32();  // low half of one u64 output, then its high half (PCG64's has_uint32 buffer)
  // Generator.integers(low, high, size=n) for int64: closed interval [low, high]; Lemire's method as numpy's
  // random_bounded_uint64_fill does it (32-bit path when high - low < 2^32).
  std::vector<int64_t> integers_closed(int64_t low, int64_t high, int64_t n);

 private:
  unsigned __int128 state_ = 0, inc_ = 0;
  bool has_u32_ = false;
  uint32_t u32_ = 0;
};

// CPython's random.Random after random.seed(int).
class PyRandom {
 public:
  explicit PyRandom(uint64_t abs_seed);  // random.seed(n) keys on |n|
  uint64_t getrandbits(int k);           // 1 <= k <= 64
  uint64_t randbelow(uint64_t n);        // _randbelow_with_getrandbits, n >= 1
  double random() { return mt_.next_double(); }
  int64_t randint(int64_t a, int64_t b);  // a + _randbelow(b - a + 1), a <= b
  // random.sample(range(n), k), 0 <= k <= n: the pool branch when n <= setsize, else the set branch.
  std::vector<int32_t> sample_range(int64_t n, int64_t k);
  // random.choices(range(n), k=k): floor(random() * n) each.
  std::vector<int32_t> choices_range(int64_t n, int64_t k);

 private:
  Mt19937 mt_;
  std::vector<uint8_t> selected_;  // set branch scratch, all zero between calls
};

}  // namespace dsv3::tools
