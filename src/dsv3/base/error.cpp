// error.cpp: the abort path of CHECK (base).
#include "dsv3/base/error.h"

#include <cstdlib>

namespace dsv3::detail {

void check_failed(const char* file, int line, const char* cond, const std::string& msg) {
  std::fprintf(stderr, "dsv3: internal error at %s:%d: CHECK(%s) failed%s%s\n", file, line, cond,
               msg.empty() ? "" : ": ", msg.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace dsv3::detail
