// json_lines.h: reading JSON-lines input with errors that name the file and line (tools/common).
#pragma once

#include <cstdint>
#include <functional>
#include <istream>
#include <string>

#include <nlohmann/json.hpp>

namespace dsv3 {

// Calls fn(value, line_number) for every non-blank line; a line that is not JSON throws "<name>:<line>: invalid
// JSON: ...".
void for_each_json_line(std::istream& in, const std::string& name,
                        const std::function<void(const nlohmann::json&, int64_t)>& fn);

}  // namespace dsv3
