// test_memory_plan.cpp: the start-up memory plan against numbers worked out by hand (tests/unit/engine).
// Weights: the parameter counts and byte totals of model-spec §8.1-8.2 (independent of dsv3's code), and the bytes
// the weight loader really places (CPU loads of small configs). Workspace: each term of one v3-slice step by hand.
// KV pool: TensorRT-LLM's rule (fraction of what is left, max_tokens too when set: the smaller wins), the fit error.
#include <algorithm>
#include <cmath>
#include <filesystem>

#include <gtest/gtest.h>

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/engine/memory_plan.h"
#include "dsv3/io/tiny_model.h"
#include "dsv3/io/weight_source.h"

namespace dsv3 {
namespace {

int64_t item(const std::vector<PlanItem>& items, const std::string& name) {
  for (const auto& i : items)
    if (i.name == name) return i.bytes;
  return -1;
}

int64_t total(const std::vector<PlanItem>& items) {
  int64_t s = 0;
  for (const auto& i : items) s += i.bytes;
  return s;
}

// The preset's config.json as `dsv3 make-tiny-model --preset NAME --config_only` writes it, read back.
ModelConfig config_of(const std::string& preset) {
  const std::string dir = ::testing::TempDir() + "/dsv3_memory_plan_" + preset;
  std::filesystem::remove_all(dir);
  TinyModelOptions o;
  o.out_dir = dir;
  o.config_only = true;
  write_tiny_model(tiny_model_preset(preset), o);
  return load_model_config(dir);
}

// --- Bytes of the DeepSeek-V3 building blocks, worked out from model-spec §8.1 (parameters) and the 128x128 scale
// grids. An FP8 linear [out, in] holds out·in bytes + ceil(out/128)·ceil(in/128) fp32 scales.
//   attention: linears 11,010,048 (q_a) + 37,748,736 (q_b) + 4,128,768 (kv_a) + 16,777,216 (kv_b) + 117,440,512 (o)
//              = 187,105,280 B; q_a / kv_a norms 1536 + 512 bf16 = 4,096 B; scales 12·56 + 192·12 + 5·56 + 256·4 +
//              56·128 = 11,448 floats = 45,792 B                                                  -> 187,155,168 B
//   kv_b_proj bf16 copy: 32768 x 512 x 2                                                           -> 33,554,432 B
//   dense MLP: 396,361,728 + 3 x 144·56 scales x 4 = 96,768                                       -> 396,458,496 B
//   expert:     44,040,192 + 3 x 16·56 scales x 4 = 10,752                                         ->  44,050,944 B
//   router: gate 256 x 7168 bf16 = 3,670,016 + bias 256 fp32 = 1,024                               ->   3,671,040 B
//   layer norms 2 x 7168 x 2 = 28,672 B; final norm 14,336 B; embedding = lm_head 926,679,040 x 2 = 1,853,358,080 B
constexpr int64_t kAttn = 187'155'168, kKvbCopy = 33'554'432, kDense = 396'458'496, kExpert = 44'050'944;
constexpr int64_t kRouter = 3'671'040, kLayerNorms = 28'672, kFinalNorm = 14'336, kEmbed = 1'853'358'080;

TEST(MemoryPlan, V3SliceWeightsFromTheParameterCounts) {
  const ModelConfig c = config_of("v3-slice");  // 4 layers: 1 dense + 3 MoE, 256 experts + 1 shared
  const auto w = plan_weight_bytes(c, {.numerics = Numerics::kFp8, .fp8_checkpoint = true, .mtp = false});
  EXPECT_EQ(item(w, "embedding"), kEmbed);
  EXPECT_EQ(item(w, "lm_head"), kEmbed);
  EXPECT_EQ(item(w, "attention"), 4 * kAttn);
  EXPECT_EQ(item(w, "kv_b_proj bf16 copies"), 4 * kKvbCopy);
  EXPECT_EQ(item(w, "dense MLP"), kDense);
  EXPECT_EQ(item(w, "router"), 3 * kRouter);
  EXPECT_EQ(item(w, "routed experts"), 3 * 256 * kExpert);
  EXPECT_EQ(item(w, "shared experts"), 3 * kExpert);
  EXPECT_EQ(item(w, "norms"), 4 * kLayerNorms + kFinalNorm);
  EXPECT_EQ(item(w, "MTP layer"), -1);
  EXPECT_EQ(total(w), 38'960'433'024);  // the "39.0 GB" of docs/benchmarks.md
}

TEST(MemoryPlan, FullDeepSeekV3MatchesModelSpecBytes) {
  const ModelConfig c = config_of("v3");  // 61 layers: 3 dense + 58 MoE
  ASSERT_EQ(c.num_hidden_layers, 61);
  ASSERT_EQ(c.first_k_dense_replace, 3);
  // §8.2: "FP8 checkpoint tensors: main model 673,150,611,808 B" — plus dsv3's bf16 kv_b_proj copy per layer.
  auto w = plan_weight_bytes(c, {.numerics = Numerics::kFp8, .fp8_checkpoint = true, .mtp = false});
  EXPECT_EQ(item(w, "kv_b_proj bf16 copies"), 61 * kKvbCopy);
  EXPECT_EQ(total(w) - 61 * kKvbCopy, 673'150'611'808);
  EXPECT_EQ(total(w), 3 * (kAttn + kKvbCopy + kDense + kLayerNorms) +
                          58 * (kAttn + kKvbCopy + kRouter + 257 * kExpert + kLayerNorms) + 2 * kEmbed + kFinalNorm);
  // §8.2: "MTP 15,424,227,552 B" includes its copies of embed_tokens and shared_head.head, which are never loaded.
  w = plan_weight_bytes(c, {.numerics = Numerics::kFp8, .fp8_checkpoint = true, .mtp = true});
  EXPECT_EQ(item(w, "MTP layer"), 15'424'227'552 - 2 * kEmbed + kKvbCopy);
  // bf16 numerics: every parameter as bf16 — §8.1 "main model 671,026,419,200" — except the fp32 router biases
  // (2 more bytes each, 58 layers x 256), and no scales, no extra kv_b copy.
  w = plan_weight_bytes(c, {.numerics = Numerics::kBf16, .fp8_checkpoint = true, .mtp = false});
  EXPECT_EQ(total(w), 2 * 671'026'419'200 + 58 * 256 * 2);
  EXPECT_EQ(item(w, "kv_b_proj bf16 copies"), -1);
  // A bf16 checkpoint run with fp8 numerics holds the same bytes as bf16 numerics.
  EXPECT_EQ(total(plan_weight_bytes(c, {.numerics = Numerics::kFp8, .fp8_checkpoint = false})), total(w));
}

// The plan's weight bytes are what load_model_weights places: CPU loads of small presets, every option combination
// (q_lora or plain q_proj, MTP or not, FP8 or bf16 checkpoint, fp8 or bf16 numerics).
TEST(MemoryPlan, WeightBytesEqualWhatTheLoaderPlaces) {
  for (const char* preset : {"micro", "tiny-v2"}) {
    for (bool fp8_ckpt : {true, false}) {
      ModelConfig c = tiny_model_preset(preset);
      c.quant.fp8 = fp8_ckpt;
      for (Numerics num : {Numerics::kFp8, Numerics::kBf16}) {
        for (bool mtp : {false, true}) {
          auto src = WeightSource::dummy(c, 2);
          CpuBackend cpu;
          const ModelWeights mw = load_model_weights(*src, cpu, num, mtp);
          const bool has_mtp = mtp && c.num_nextn_predict_layers > 0;
          EXPECT_EQ(mw.mtp.has_value(), has_mtp);
          const auto w = plan_weight_bytes(c, {.numerics = num, .fp8_checkpoint = fp8_ckpt, .mtp = mtp});
          EXPECT_EQ(static_cast<uint64_t>(total(w)), mw.bytes_loaded)
              << preset << (fp8_ckpt ? " fp8" : " bf16") << " checkpoint, "
              << (num == Numerics::kFp8 ? "fp8" : "bf16") << " numerics, mtp " << mtp;
        }
      }
    }
  }
}

// One v3-slice step of 8192 tokens (max_batch_size 2048, max_seq_len 163840 -> 2560 blocks of 64), term by term
// from model/deepseek_v3.cpp and backend/cuda/cuda_backend.cpp.
TEST(MemoryPlan, V3SliceWorkspaceByHand) {
  const ModelConfig c = config_of("v3-slice");
  const MemoryPlanOptions o{.max_num_tokens = 8192, .max_batch_size = 2048, .max_seq_len = 163840,
                            .tokens_per_block = 64};
  const auto ws = plan_workspace_bytes(c, o);
  // metadata: ids/positions/slots 3·n·4 + block tables n·2560·4 + seq_lens n·4 + cu_q/cu_kv 2·(n+1)·4
  const int64_t meta = 98'304 + 83'886'080 + 32'768 + 65'544;
  // residual + delta, and a layer's xn + attn: 2 x [n, 7168] bf16 each = 234,881,024
  const int64_t stream = 234'881'024, layer_io = 234'881'024;
  // attention: q [n, 128·192] = 402,653,184; kva [n, 576] = 9,437,184; o [n, 128·128] = 268,435,456; decode form
  // (the larger) q_abs [n, 128, 576] 1,207,959,552 + o_lat [n, 128, 512] 1,073,741,824; prefill form would be
  // 8,388,608 + 1,048,576 + 536,870,912 (kv [n, 128·256]).
  const int64_t attention = int64_t{402'653'184} + 9'437'184 + 268'435'456 + 1'207'959'552 + 1'073'741'824;
  EXPECT_EQ(item(ws, "activations"), meta + stream + layer_io + attention);
  EXPECT_EQ(item(ws, "activations"), 3'516'071'944);
  // Backend scratch, grown to 1.25x and rounded up to MB: codes of the dense down_proj n x 18432 = 144 MB -> 180 MB;
  // its scales n x 144 x 4 = 4.5 MB -> 5.625 -> 6 MB; MoE: ints (3·256 + 65536)·4 = 265,216 + x/y_perm 2 x 65536 x
  // 7168 x 2 + g/u 2 x 65536 x 2048 x 2 = 2,416,184,320 -> x1.25 = 2880.25 MB -> 2881 MB; decode partials: the most
  // rows x splits is 65 rows x 2 splits (2 splits while ceil(264 / (4 head groups x rows)) >= 2) = 130 ->
  // 130·128·512·4 + 130·128·2·4 = 34,211,840 -> 40.8 MB -> 41 MB.
  EXPECT_EQ(item(ws, "FP8 activation codes"), 180ll << 20);
  EXPECT_EQ(item(ws, "FP8 activation scales"), 6ll << 20);
  EXPECT_EQ(item(ws, "MoE permutation buffers"), 2881ll << 20);
  EXPECT_EQ(item(ws, "MLA decode partials"), 41ll << 20);
  EXPECT_EQ(total(ws), 6'775'046'152);

  // bf16 numerics quantize no activations.
  MemoryPlanOptions b = o;
  b.numerics = Numerics::kBf16;
  const auto wsb = plan_workspace_bytes(c, b);
  EXPECT_EQ(item(wsb, "FP8 activation codes"), -1);
  EXPECT_EQ(total(wsb), total(ws) - (186ll << 20));

  // Chunked prefill: a chunk reads up to max_seq_len cached tokens, n_kv = 8192 + 163840 = 172,032: the prefill form
  // 172032·(512 + 64)·2 + 172032·32768·2 = 11,472,470,016 becomes the peak.
  MemoryPlanOptions ch = o;
  ch.enable_chunked_prefill = true;
  EXPECT_EQ(item(plan_workspace_bytes(c, ch), "activations"),
            meta + stream + layer_io + 402'653'184 + 9'437'184 + 268'435'456 + 11'472'470'016);
}

TEST(MemoryPlan, KvPoolIsTheFractionOfWhatIsLeftOrMaxTokensWhicheverIsSmaller) {
  const ModelConfig c = config_of("v3-slice");
  MemoryPlanOptions o{.max_num_tokens = 8192, .max_batch_size = 2048, .max_seq_len = 0, .tokens_per_block = 64};
  const DeviceMemory dev{.total = 150'000'000'000, .free = 149'500'000'000};
  MemoryPlan p = plan_memory(c, o, dev);
  ASSERT_TRUE(p.fits()) << p.error;
  EXPECT_EQ(p.weight_bytes, 38'960'433'024);
  EXPECT_EQ(p.workspace_bytes, 6'775'046'152);
  EXPECT_EQ(p.graph_bytes, 500'000'000);
  EXPECT_EQ(p.free_after_weights, 149'500'000'000 - 38'960'433'024);
  EXPECT_EQ(p.free_for_kv, 103'264'520'824);
  // A block: 4 cache layers x 64 tokens x 576 x 2 B = 294,912 B. floor(0.9 x 103,264,520,824) / 294,912 = 315,138.
  EXPECT_EQ(p.kv_block_bytes, 294'912);
  EXPECT_EQ(p.kv_bytes_per_token, 4'608);
  EXPECT_EQ(p.kv_blocks_by_memory, 315'138);
  EXPECT_EQ(p.kv_blocks, 315'138);
  EXPECT_EQ(p.kv_tokens, 315'138 * 64);
  EXPECT_EQ(p.kv_limited_by, "free_gpu_memory_fraction");
  EXPECT_EQ(p.max_seq_len, 163'840);  // max_position_embeddings
  EXPECT_EQ(p.max_concurrent_seqs, 315'138 / 2560);

  o.kv_max_tokens = 100'000;  // ceil(100000 / 64) = 1563 blocks < 315,138: max_tokens wins
  p = plan_memory(c, o, dev);
  EXPECT_EQ(p.kv_blocks_by_max_tokens, 1563);
  EXPECT_EQ(p.kv_blocks, 1563);
  EXPECT_EQ(p.kv_limited_by, "max_tokens");
  o.kv_max_tokens = 1'000'000'000;  // 15,625,000 blocks: the memory fraction wins
  p = plan_memory(c, o, dev);
  EXPECT_EQ(p.kv_blocks, 315'138);
  EXPECT_EQ(p.kv_limited_by, "free_gpu_memory_fraction");
  o.kv_max_tokens = 0;
  o.kv_free_gpu_mem_fraction = 0.5;  // floor(0.5 x 103,264,520,824) / 294,912 = 175,076
  EXPECT_EQ(plan_memory(c, o, dev).kv_blocks, 175'076);
  // Never more blocks than every request can use at once: 8 x ceil(4096 / 64) + 1.
  o.max_batch_size = 8;
  o.max_seq_len = 4096;
  p = plan_memory(c, o, dev);
  EXPECT_EQ(p.kv_blocks, 8 * 64 + 1);
  EXPECT_EQ(p.kv_limited_by, "max_batch_size x max_seq_len");
  EXPECT_EQ(p.max_concurrent_seqs, 8);
  // MTP adds a cache layer (5 x 64 x 576 x 2 per block).
  o.mtp = true;
  EXPECT_EQ(plan_memory(c, o, dev).kv_block_bytes, 368'640);

  // Measured after loading: the KV pool comes from the measured free memory, the table shows the measured use.
  o = MemoryPlanOptions{.max_num_tokens = 8192, .max_batch_size = 2048};
  DeviceMemory m = dev;
  m.free_after_weights = 110'000'000'000;
  p = plan_memory(c, o, m);
  EXPECT_EQ(p.weights_used, 39'500'000'000);
  EXPECT_EQ(p.free_for_kv, 110'000'000'000 - 6'775'046'152 - 500'000'000);
  EXPECT_EQ(p.kv_blocks, static_cast<int64_t>(std::floor(0.9 * p.free_for_kv)) / 294'912);

  EXPECT_THROW(plan_memory(c, MemoryPlanOptions{.kv_free_gpu_mem_fraction = 1.0}, dev), Error);
  EXPECT_THROW(plan_memory(c, MemoryPlanOptions{.max_num_tokens = 0}, dev), Error);
}

TEST(MemoryPlan, WeightsAndWorkspaceThatDoNotFitAreAStartUpErrorWithTheNumbers) {
  const ModelConfig c = config_of("v3-slice");
  const MemoryPlanOptions o{.max_num_tokens = 8192, .max_batch_size = 2048};
  MemoryPlan p = plan_memory(c, o, {.total = 50'000'000'000, .free = 12'000'000'000});
  ASSERT_FALSE(p.fits());
  const std::string want = "out of GPU memory: weights 38.96 GB + workspace 6.78 GB + graphs 0.50 GB exceed the 12.00 GB "
                           "free of 50.00 GB";
  EXPECT_EQ(p.error.substr(0, want.size()), want) << p.error;
  try {
    expect_fits(p);
    ADD_FAILURE() << "expect_fits must throw";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), p.error);
  }
  // Weights + workspace + graphs fit, but 90% of the rest holds no block: also refused, naming the block.
  const int64_t need = 38'960'433'024 + 6'775'046'152 + 500'000'000;
  p = plan_memory(c, o, {.total = 50'000'000'000, .free = need + 300'000});  // 0.9 x 300,000 < 294,912
  ASSERT_FALSE(p.fits());
  EXPECT_NE(p.error.find("holds no KV block of 64 tokens (294912 bytes)"), std::string::npos) << p.error;
  p = plan_memory(c, o, {.total = 50'000'000'000, .free = need + 400'000});  // 360,000 >= 294,912: one block
  EXPECT_TRUE(p.fits()) << p.error;
  EXPECT_EQ(p.kv_blocks, 1);
}

TEST(MemoryPlan, TableHasOneLinePerItemInGb) {
  const ModelConfig c = config_of("v3-slice");
  const MemoryPlan p = plan_memory(c, {.max_num_tokens = 8192, .max_batch_size = 2048},
                                   {.total = 150'000'000'000, .free = 149'500'000'000});
  const std::string t = format_memory_plan(p);
  EXPECT_NE(t.find("  weights                       38.96 GB"), std::string::npos) << t;
  EXPECT_NE(t.find("  workspace                      6.78 GB"), std::string::npos) << t;
  EXPECT_NE(t.find("  CUDA graphs                    0.50 GB"), std::string::npos) << t;
  EXPECT_NE(t.find("  free for KV cache            103.26 GB"), std::string::npos) << t;
  EXPECT_NE(t.find("  KV cache                      92.94 GB"), std::string::npos) << t;  // 315,138 x 294,912
  EXPECT_NE(t.find("  KV tokens                  20168832    315138 blocks of 64 tokens"), std::string::npos) << t;
  EXPECT_NE(t.find("  max concurrent sequences        123    of max_seq_len 163840"), std::string::npos) << t;
  EXPECT_EQ(std::count(t.begin(), t.end(), '\n'), 9);
}

TEST(MemoryPlan, OutOfMemoryMessagesSayHowMuchForWhatAndWhatWasFree) {
  EXPECT_EQ(out_of_memory_message("CUDA out of memory on device 0", 1'200'000'000, "the KV cache pool", 500'000'000,
                                  150'110'000'000),
            "CUDA out of memory on device 0: cannot allocate 1.20 GB (1200000000 bytes) for the KV cache pool; "
            "0.50 GB (500000000 bytes) free of 150.11 GB");
  EXPECT_EQ(out_of_memory_message("out of pinned host memory", 64 << 20, "", -1, -1),
            "out of pinned host memory: cannot allocate 0.07 GB (67108864 bytes)");
  EXPECT_EQ(AllocationPurpose::current(), "");
  {
    AllocationPurpose outer("weights");
    AllocationPurpose inner("weight lm_head.weight");
    EXPECT_EQ(AllocationPurpose::current(), "weight lm_head.weight");
  }
  EXPECT_EQ(AllocationPurpose::current(), "");
  // The host allocator reports a failed allocation the same way (dsv3::Error, not an abort).
  AllocationPurpose why("a test tensor");
  try {
    Tensor t(DType::kU8, {int64_t{1} << 60});
    ADD_FAILURE() << "a 2^60-byte allocation succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of host memory: cannot allocate"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("for a test tensor"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dsv3
