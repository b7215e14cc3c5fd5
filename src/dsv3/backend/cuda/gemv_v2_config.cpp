// gemv_v2_config.cpp: reading and printing GemvV2Config strings (backend/cuda), for DSV3_GEMV_V2_CFG and the
// test_ops sweep; bad input throws dsv3::Error naming the source, the key and what it accepts.
#include "dsv3/backend/cuda/gemv_v2_config.h"

#include <charconv>
#include <string_view>

#include "dsv3/base/error.h"

namespace dsv3::cuda {
namespace {

int parse_int(std::string_view v, const std::string& what, std::string_view key, const std::string& text) {
  int out = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  EXPECT(ec == std::errc() && end == v.data() + v.size() && !v.empty(), "{}='{}': {}={} is not an integer", what,
         text, key, v);
  return out;
}

}  // namespace

GemvV2Config parse_gemv_v2_config(const std::string& text, const std::string& what) {
  if (text.empty() || text == "auto") return GemvV2Config{};
  GemvV2Config c = gemv_v2_default_config(0, 0);
  const std::string_view all = text;
  for (size_t pos = 0, comma = 0; comma != std::string_view::npos; pos = comma + 1) {
    comma = all.find(',', pos);
    const std::string_view item = all.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    const size_t eq = item.find('=');
    EXPECT(eq != std::string_view::npos, "{}='{}': '{}' is not key=value (keys: rows, stage_kb, stages, ctas, copy, split)",
           what, text, item);
    const std::string_view key = item.substr(0, eq), v = item.substr(eq + 1);
    if (key == "rows") {
      c.tile_rows = parse_int(v, what, key, text);
      EXPECT(c.tile_rows == 16 || c.tile_rows == 32, "{}='{}': rows={} (expected 16 or 32)", what, text, v);
    } else if (key == "stage_kb") {
      c.stage_kb = parse_int(v, what, key, text);
    } else if (key == "stages") {
      c.stages = parse_int(v, what, key, text);
      EXPECT(c.stages >= 2 && c.stages <= 8, "{}='{}': stages={} (expected 2..8)", what, text, v);
    } else if (key == "ctas") {
      c.ctas_per_sm = parse_int(v, what, key, text);
      EXPECT(c.ctas_per_sm == 1 || c.ctas_per_sm == 2, "{}='{}': ctas={} (expected 1 or 2)", what, text, v);
    } else if (key == "copy") {
      EXPECT(v == "cp" || v == "bulk", "{}='{}': copy={} (expected cp or bulk)", what, text, v);
      c.bulk = v == "bulk";
    } else if (key == "split") {
      c.split = v == "auto" ? 0 : parse_int(v, what, key, text);
      EXPECT(c.split == 0 || c.split == 1 || c.split == 2 || c.split == 4 || c.split == 8,
             "{}='{}': split={} (expected auto, 1, 2, 4 or 8)", what, text, v);
    } else {
      FAIL("{}='{}': unknown key '{}' (keys: rows, stage_kb, stages, ctas, copy, split)", what, text, key);
    }
  }
  EXPECT(gemv_v2_geometry_ok(c.tile_rows, c.stage_kb),
         "{}='{}': rows={} with stage_kb={} is not compiled (rows=32: stage_kb 4 or 8; rows=16: stage_kb 8 or 16)",
         what, text, c.tile_rows, c.stage_kb);
  return c;
}

std::string format_gemv_v2_config(const GemvV2Config& c) {
  if (c.tile_rows == 0) return "auto";
  return fmt::format("rows={},stage_kb={},stages={},ctas={},copy={},split={}", c.tile_rows, c.stage_kb, c.stages,
                     c.ctas_per_sm, c.bulk ? "bulk" : "cp", c.split == 0 ? std::string("auto") : std::to_string(c.split));
}

}  // namespace dsv3::cuda
