// test_py_random.cpp: tools/common/py_random.h against the real generators (tests, label cpu).
// Each case runs a few lines of Python with CPython's `random` and Debian's numpy 1.24 in /usr/bin/python3 and
// requires the C++ copies to give the same integers and bit-identical doubles (printed with float.hex).
#include <gtest/gtest.h>

#include <cstdlib>
#include <sstream>

#include <fmt/format.h>

#include "common/py_random.h"
#include "unit/subprocess_util.h"

namespace dsv3::tools {
namespace {

// Runs a Python snippet that prints whitespace-separated values; returns them as tokens.
std::vector<std::string> python_values(const std::string& code) {
  test::TempDir tmp;
  const auto script = tmp / "case.py";
  test::write_file(script, "import random, math\nimport numpy as np\n" + code);
  const test::RunResult r = test::run_command("/usr/bin/python3 " + test::shell_quote(script.string()));
  EXPECT_EQ(r.rc, 0) << "python failed:\n" << r.err;
  std::istringstream in(r.out);
  std::vector<std::string> v;
  for (std::string s; in >> s;) v.push_back(s);
  return v;
}

std::vector<int64_t> as_ints(const std::vector<std::string>& v) {
  std::vector<int64_t> out;
  for (const auto& s : v) out.push_back(std::stoll(s));
  return out;
}

std::vector<double> as_doubles(const std::vector<std::string>& v) {
  std::vector<double> out;
  for (const auto& s : v) out.push_back(std::strtod(s.c_str(), nullptr));  // parses float.hex()
  return out;
}

template <typename T>
std::vector<int64_t> widen(const std::vector<T>& v) {
  return std::vector<int64_t>(v.begin(), v.end());
}

TEST(PyRandom, GetrandbitsRandomAndRandbelowMatchCPython) {
  for (const int64_t seed : {int64_t{420}, int64_t{0}, int64_t{-420}, int64_t{(1ll << 32) + 5}, int64_t{1} << 62}) {
    SCOPED_TRACE(seed);
    const auto ref = python_values(fmt::format(
        "r = random.Random({})\n"
        "print(*[r.getrandbits(k) for k in (1, 5, 17, 31, 32, 33, 48, 64)])\n"
        "print(*[r.random().hex() for _ in range(5)])\n"
        "print(*[r.randrange(n) for n in (1, 2, 3, 7, 1000, 128000, 2**31 - 1, 2**32, 2**40 + 3)])\n"
        "print(*[r.randint(-5, 9) for _ in range(20)])\n",
        seed));
    ASSERT_EQ(ref.size(), 8u + 5u + 9u + 20u);
    PyRandom rng(seed < 0 ? static_cast<uint64_t>(-seed) : static_cast<uint64_t>(seed));
    std::vector<int64_t> got;
    for (int k : {1, 5, 17, 31, 32, 33, 48, 64}) got.push_back(static_cast<int64_t>(rng.getrandbits(k)));
    // 2**64-range values do not fit int64; compare the unsigned text.
    std::vector<std::string> got_s;
    for (int64_t v : got) got_s.push_back(std::to_string(static_cast<uint64_t>(v)));
    EXPECT_EQ(got_s, std::vector<std::string>(ref.begin(), ref.begin() + 8));
    std::vector<double> d;
    for (int i = 0; i < 5; ++i) d.push_back(rng.random());
    EXPECT_EQ(d, as_doubles({ref.begin() + 8, ref.begin() + 13}));
    std::vector<int64_t> below;
    for (uint64_t n : {1ull, 2ull, 3ull, 7ull, 1000ull, 128000ull, (1ull << 31) - 1, 1ull << 32, (1ull << 40) + 3})
      below.push_back(static_cast<int64_t>(rng.randbelow(n)));
    EXPECT_EQ(below, as_ints({ref.begin() + 13, ref.begin() + 22}));
    std::vector<int64_t> ri;
    for (int i = 0; i < 20; ++i) ri.push_back(rng.randint(-5, 9));
    EXPECT_EQ(ri, as_ints({ref.begin() + 22, ref.end()}));
  }
}

// random.sample's two branches (pool list when n <= setsize, else a selected set) and random.choices, with the RNG
// state carried from call to call as in the dataset generator.
TEST(PyRandom, SampleAndChoicesMatchCPython) {
  struct Call {
    int64_t n, k;
    bool choices;
  };
  const std::vector<Call> calls = {
      {300, 0, false},   {300, 1, false},   {300, 5, false},  {300, 6, false},  {300, 85, false},
      {300, 86, false},  {300, 299, false}, {21, 20, false},  {22, 2, false},   {300, 300, true},
      {300, 1000, true}, {128000, 1000, false}, {128000, 25000, false}, {128000, 3, true}, {1, 4, true},
  };
  std::string code = "r = random.Random(420)\n";
  for (const Call& c : calls) {
    code += c.choices ? fmt::format("print(*r.choices(range({}), k={}), 'end')\n", c.n, c.k)
                      : fmt::format("print(*r.sample(range({}), {}), 'end')\n", c.n, c.k);
  }
  const auto ref = python_values(code);
  PyRandom rng(420);
  size_t pos = 0;
  for (const Call& c : calls) {
    SCOPED_TRACE(fmt::format("n={} k={} choices={}", c.n, c.k, c.choices));
    const std::vector<int32_t> got = c.choices ? rng.choices_range(c.n, c.k) : rng.sample_range(c.n, c.k);
    std::vector<std::string> want;
    while (pos < ref.size() && ref[pos] != "end") want.push_back(ref[pos++]);
    ++pos;
    EXPECT_EQ(widen(got), as_ints(want));
  }
  EXPECT_EQ(pos, ref.size());
}

TEST(NumpyLegacyRandom, NormalMatchesNumpy) {
  for (const uint32_t seed : {420u, 0u, 1u, 4294967295u}) {
    SCOPED_TRACE(seed);
    // Odd counts leave a cached Gaussian behind; reseeding must drop it.
    const auto ref = python_values(fmt::format(
        "np.random.seed({0})\nprint(*[x.hex() for x in np.random.normal(1000, 300, 7).tolist()])\n"
        "np.random.seed({0})\nprint(*[x.hex() for x in np.random.normal(-3, 0.5, 4).tolist()])\n"
        "np.random.seed({0})\nprint(*[x.hex() for x in np.random.normal(7, 0, 3).tolist()])\n",
        seed));
    std::vector<double> got;
    {
      NumpyLegacyRandom r(seed);
      for (int i = 0; i < 7; ++i) got.push_back(r.normal(1000, 300));
    }
    {
      NumpyLegacyRandom r(seed);
      for (int i = 0; i < 4; ++i) got.push_back(r.normal(-3, 0.5));
    }
    {
      NumpyLegacyRandom r(seed);
      for (int i = 0; i < 3; ++i) got.push_back(r.normal(7, 0));
    }
    EXPECT_EQ(got, as_doubles(ref));
  }
}

// Generator.integers(low, high, endpoint=True, size=n): the 32-bit Lemire path (buffered halves of a PCG64 output),
// the raw 32-bit path (range 2^32 - 1), the 64-bit Lemire path and the full 64-bit path.
TEST(NumpyPcg64, IntegersMatchNumpy) {
  struct Case {
    int64_t low, high, n;
  };
  const std::vector<Case> cases = {{5, 5, 4},
                                   {1, 1000, 9},
                                   {0, 1, 33},
                                   {100, 30000, 17},
                                   {0, 4294967295ll, 5},
                                   {-7, 4294967296ll, 6},
                                   {-(1ll << 62), 1ll << 62, 5},
                                   {INT64_MIN, INT64_MAX, 3}};
  for (const int64_t seed : {int64_t{420}, int64_t{0}, int64_t{123456789012345}}) {
    std::string code;
    for (const Case& c : cases)
      code += fmt::format("print(*np.random.default_rng({}).integers({}, {}, size={}, endpoint=True).tolist())\n", seed,
                          c.low, c.high, c.n);
    const auto ref = as_ints(python_values(code));
    std::vector<int64_t> got;
    for (const Case& c : cases) {
      NumpyPcg64 rng(static_cast<uint64_t>(seed));
      const auto v = rng.integers_closed(c.low, c.high, c.n);
      got.insert(got.end(), v.begin(), v.end());
    }
    EXPECT_EQ(got, ref) << "seed " << seed;
  }
}

TEST(PyRandom, SeedWordsAreLittleEndian32BitChunks) {
  EXPECT_EQ(int_to_u32_words(0), std::vector<uint32_t>{0});
  EXPECT_EQ(int_to_u32_words(420), std::vector<uint32_t>{420});
  EXPECT_EQ(int_to_u32_words((7ull << 32) | 9), (std::vector<uint32_t>{9, 7}));
}

}  // namespace
}  // namespace dsv3::tools
