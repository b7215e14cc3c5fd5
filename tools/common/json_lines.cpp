// json_lines.cpp: the JSON-lines reader shared by tokenize, detokenize and the benchmark text (tools/common).
#include "common/json_lines.h"

#include "dsv3/base/error.h"

namespace dsv3 {

void for_each_json_line(std::istream& in, const std::string& name,
                        const std::function<void(const nlohmann::json&, int64_t)>& fn) {
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      FAIL("{}:{}: invalid JSON: {}", name, n, e.what());
    }
    fn(j, n);
  }
}

}  // namespace dsv3
