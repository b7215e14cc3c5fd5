// error.h: the two kinds of error in dsv3 (base).
// CHECK: a broken invariant is a bug in dsv3 -> print file:line, condition, message, then std::abort().
// EXPECT: bad input or a bad environment -> throw dsv3::Error with a readable message and the source location.
#pragma once

#include <cstdio>
#include <source_location>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace dsv3 {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg, std::source_location loc = std::source_location::current())
      : std::runtime_error(msg), loc_(loc) {}
  const std::source_location& where() const { return loc_; }

 private:
  std::source_location loc_;
};

namespace detail {
[[noreturn]] void check_failed(const char* file, int line, const char* cond, const std::string& msg);
}  // namespace detail

}  // namespace dsv3

#ifndef CHECK
#define CHECK(cond, ...)                                                                          \
  do {                                                                                            \
    if (!(cond)) [[unlikely]]                                                                     \
      ::dsv3::detail::check_failed(__FILE__, __LINE__, #cond, ::fmt::format("" __VA_ARGS__));     \
  } while (0)
#endif

#ifndef EXPECT
#define EXPECT(cond, ...)                                                                         \
  do {                                                                                            \
    if (!(cond)) [[unlikely]]                                                                     \
      throw ::dsv3::Error(::fmt::format(__VA_ARGS__));                                            \
  } while (0)
#endif

// FAIL: unconditional input error.
#ifndef FAIL
#define FAIL(...) throw ::dsv3::Error(::fmt::format(__VA_ARGS__))
#endif
