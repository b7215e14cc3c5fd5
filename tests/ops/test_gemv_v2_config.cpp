// test_gemv_v2_config.cpp: DSV3_GEMV_V2_CFG strings (backend/cuda gemv_v2_config.cpp) read and printed on the CPU:
// every key, defaults for missing keys, round trips of the sweep's configurations, and each bad input rejected with
// a message that names the variable and the offending key. Needs no GPU (label cpu; built with the CUDA backend).
#include <gtest/gtest.h>

#include <string>

#include "dsv3/backend/cuda/cuda_backend.h"
#include "dsv3/backend/cuda/gemv_v2_config.h"
#include "dsv3/base/error.h"

namespace dsv3::cuda {
namespace {

std::string error_of(const std::string& text) {
  try {
    (void)parse_gemv_v2_config(text, "DSV3_GEMV_V2_CFG");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(GemvV2Config, EmptyAndAutoMeanThePerShapeDefault) {
  EXPECT_EQ(parse_gemv_v2_config("", "X").tile_rows, 0);
  EXPECT_EQ(parse_gemv_v2_config("auto", "X").tile_rows, 0);
  EXPECT_EQ(format_gemv_v2_config(GemvV2Config{}), "auto");
}

TEST(GemvV2Config, EveryKey) {
  const GemvV2Config c = parse_gemv_v2_config("split=4,copy=bulk,ctas=2,stages=3,stage_kb=16,rows=16", "X");
  EXPECT_EQ(c.tile_rows, 16);
  EXPECT_EQ(c.stage_kb, 16);
  EXPECT_EQ(c.stages, 3);
  EXPECT_EQ(c.ctas_per_sm, 2);
  EXPECT_TRUE(c.bulk);
  EXPECT_EQ(c.split, 4);
  EXPECT_EQ(format_gemv_v2_config(c), "rows=16,stage_kb=16,stages=3,ctas=2,copy=bulk,split=4");
}

TEST(GemvV2Config, MissingKeysTakeTheDefault) {
  const GemvV2Config d = gemv_v2_default_config(0, 0);
  GemvV2Config want = d;
  want.stages = 7;
  EXPECT_EQ(parse_gemv_v2_config("stages=7", "X"), want);
  want = d;
  want.bulk = true;
  want.split = 0;
  EXPECT_EQ(parse_gemv_v2_config("copy=bulk,split=auto", "X"), want);
}

TEST(GemvV2Config, RoundTrips) {
  for (const char* s : {"rows=32,stage_kb=4,stages=5,ctas=1,copy=cp,split=auto",
                        "rows=32,stage_kb=8,stages=2,ctas=2,copy=bulk,split=8",
                        "rows=16,stage_kb=8,stages=8,ctas=1,copy=cp,split=1"})
    EXPECT_EQ(format_gemv_v2_config(parse_gemv_v2_config(s, "X")), s);
}

TEST(GemvV2Config, BadInputNamesTheProblem) {
  EXPECT_NE(error_of("rows=24").find("rows=24 (expected 16 or 32)"), std::string::npos) << error_of("rows=24");
  EXPECT_NE(error_of("rows=16,stage_kb=4").find("rows=16 with stage_kb=4 is not compiled"), std::string::npos);
  EXPECT_NE(error_of("stage_kb=5").find("stage_kb=5 is not compiled"), std::string::npos);
  EXPECT_NE(error_of("stages=9").find("stages=9 (expected 2..8)"), std::string::npos);
  EXPECT_NE(error_of("stages=1").find("stages=1"), std::string::npos);
  EXPECT_NE(error_of("ctas=3").find("ctas=3 (expected 1 or 2)"), std::string::npos);
  EXPECT_NE(error_of("copy=tma").find("copy=tma (expected cp or bulk)"), std::string::npos);
  EXPECT_NE(error_of("split=3").find("split=3 (expected auto, 1, 2, 4 or 8)"), std::string::npos);
  EXPECT_NE(error_of("stages=four").find("stages=four is not an integer"), std::string::npos);
  EXPECT_NE(error_of("stages=").find("is not an integer"), std::string::npos);
  EXPECT_NE(error_of("tiles=4").find("unknown key 'tiles'"), std::string::npos);
  EXPECT_NE(error_of("rows").find("'rows' is not key=value"), std::string::npos);
  EXPECT_NE(error_of("rows=16,stage_kb=8,").find("'' is not key=value"), std::string::npos);
  EXPECT_NE(error_of("ctas=3").find("DSV3_GEMV_V2_CFG='ctas=3'"), std::string::npos);
}

// The backend reads the variable once, in CudaBackendOptions::from_env, and rejects bad values there.
TEST(GemvV2Config, FromEnv) {
  ::setenv("DSV3_GEMV_V2_CFG", "rows=16,stage_kb=16,copy=bulk", 1);
  GemvV2Config want = gemv_v2_default_config(0, 0);
  want.tile_rows = 16;
  want.stage_kb = 16;
  want.bulk = true;
  EXPECT_EQ(CudaBackendOptions::from_env().gemv_v2_cfg, want);
  ::setenv("DSV3_GEMV_V2_CFG", "ctas=4", 1);
  EXPECT_THROW(CudaBackendOptions::from_env(), Error);
  ::unsetenv("DSV3_GEMV_V2_CFG");
  EXPECT_EQ(CudaBackendOptions::from_env().gemv_v2_cfg.tile_rows, 0);
  ::setenv("DSV3_GEMV_V2_CFG_SMALL", "stages=3,ctas=2", 1);
  const CudaBackendOptions o = CudaBackendOptions::from_env();
  EXPECT_EQ(o.gemv_v2_cfg.tile_rows, 0);
  EXPECT_EQ(o.gemv_v2_cfg_small.stages, 3);
  EXPECT_EQ(o.gemv_v2_cfg_small.ctas_per_sm, 2);
  ::setenv("DSV3_GEMV_V2_CFG_SMALL", "copy=dma", 1);
  try {
    (void)CudaBackendOptions::from_env();
    ADD_FAILURE() << "copy=dma accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("DSV3_GEMV_V2_CFG_SMALL='copy=dma': copy=dma"), std::string::npos) << e.what();
  }
  ::unsetenv("DSV3_GEMV_V2_CFG_SMALL");
}

}  // namespace
}  // namespace dsv3::cuda
