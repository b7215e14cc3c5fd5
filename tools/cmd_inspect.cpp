// cmd_inspect.cpp: `dsv3 inspect` — a checkpoint's config, parameter counts by component, bytes by dtype, and the
// predicted GPU memory plan (engine/memory_plan.h, the function the engine runs at start-up) (tools).
#include <filesystem>
#include <map>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "dsv3/engine/engine_config.h"
#include "dsv3/engine/memory_plan.h"
#include "dsv3/io/weight_source.h"

namespace dsv3::tools {
namespace {

std::string component_of(const TensorSpec& s, const ModelConfig& c) {
  if (s.mtp) return "mtp";
  const std::string& n = s.name;
  if (n.rfind("model.embed_tokens", 0) == 0) return "embedding";
  if (n.rfind("lm_head", 0) == 0) return "lm_head";
  if (n.find("self_attn") != std::string::npos) return "attention";
  if (n.find(".mlp.experts.") != std::string::npos) return "routed experts";
  if (n.find(".mlp.shared_experts.") != std::string::npos) return "shared experts";
  if (n.find(".mlp.gate.") != std::string::npos) return "router";
  if (n.find(".mlp.") != std::string::npos) return "dense mlp";
  return "norms";
}

}  // namespace

int cmd_inspect(int argc, char** argv) {
  CLI::App app{"Print a checkpoint's config summary, parameter counts by component, bytes by dtype and the GPU "
               "memory plan the engine would make at start-up",
               "dsv3 inspect"};
  std::string model_dir, load_format = "auto", numerics = "fp8";
  const EngineConfig defaults;
  double gpu_memory_gb = 150.1;  // what an H200 reports to CUDA (cudaMemGetInfo total: 150.11e9 bytes)
  MemoryPlanOptions po;
  po.max_num_tokens = defaults.max_num_tokens;
  po.max_batch_size = defaults.max_batch_size;
  po.tokens_per_block = defaults.tokens_per_block;
  po.kv_free_gpu_mem_fraction = defaults.kv_free_gpu_mem_fraction;
  app.add_option("--model_dir,--model-dir,--model_path,--model-path", model_dir, "HF checkpoint folder")->required();
  app.add_option("--load_format,--load-format", load_format,
                 "auto | dummy (config.json only; auto falls back to it when the folder has no safetensors)")
      ->capture_default_str();
  app.add_option("--gpu_memory_gb,--gpu-memory-gb", gpu_memory_gb,
                 "GPU memory for the plan, GB (1e9 bytes); free at start = this minus a runtime reserve of 0.75 GB")
      ->capture_default_str();
  app.add_option("--numerics", numerics, "fp8 | bf16 (FP8 linears dequantized at load)")->capture_default_str();
  app.add_option("--max_num_tokens,--max-num-tokens", po.max_num_tokens, "tokens per step (sizes the workspace)")
      ->capture_default_str();
  app.add_option("--max_batch_size,--max-batch-size", po.max_batch_size, "requests per step")->capture_default_str();
  app.add_option("--free_gpu_memory_fraction,--free-gpu-memory-fraction,--kv_cache_free_gpu_mem_fraction,"
                 "--kv-cache-free-gpu-mem-fraction",
                 po.kv_free_gpu_mem_fraction, "KV pool share of the memory left")
      ->capture_default_str();
  app.add_option("--kv_max_tokens,--kv-max-tokens", po.kv_max_tokens,
                 "kv_cache_config.max_tokens (0: memory only); the smaller of both wins")
      ->capture_default_str();
  app.add_option("--tokens_per_block,--tokens-per-block", po.tokens_per_block, "KV block size")->capture_default_str();
  app.add_option("--max_seq_len,--max-seq-len", po.max_seq_len, "longest sequence (0: max_position_embeddings)")
      ->capture_default_str();
  app.add_flag("--enable_chunked_prefill,--enable-chunked-prefill", po.enable_chunked_prefill,
               "a prompt chunk may read up to max_seq_len cached tokens (larger workspace)");
  CLI11_PARSE(app, argc, argv);

  LoadFormat format = parse_load_format(load_format);
  const bool has_tensors = std::filesystem::exists(model_dir + "/model.safetensors.index.json") ||
                           std::filesystem::exists(model_dir + "/model.safetensors");
  if (format == LoadFormat::kAuto && std::filesystem::is_directory(model_dir) && !has_tensors)
    format = LoadFormat::kDummy;  // config.json only: parameter counts and the plan need no tensor data
  EXPECT(gpu_memory_gb > 0, "--gpu_memory_gb must be > 0, got {}", gpu_memory_gb);
  auto src = WeightSource::open(model_dir, format);
  const ModelConfig& c = src->config();
  std::printf("model_dir            %s%s\n", model_dir.c_str(), src->is_dummy() ? " (dummy weights)" : "");
  std::printf("model_type           %s\n", c.model_type.c_str());
  std::printf("layers               %ld (%ld dense + %ld MoE), MTP layers %ld (%s)\n", (long)c.num_hidden_layers,
              (long)std::min(c.first_k_dense_replace, c.num_hidden_layers),
              (long)(c.num_hidden_layers - std::min(c.first_k_dense_replace, c.num_hidden_layers)),
              (long)c.num_nextn_predict_layers, src->has_mtp() ? "loaded" : "absent");
  std::printf("hidden / heads       %ld / %ld\n", (long)c.hidden_size, (long)c.num_attention_heads);
  std::printf("MLA                  q_lora_rank %ld, kv_lora_rank %ld, nope %ld, rope %ld, v %ld\n",
              (long)c.q_lora_rank, (long)c.kv_lora_rank, (long)c.qk_nope_head_dim, (long)c.qk_rope_head_dim,
              (long)c.v_head_dim);
  std::printf("experts              %ld routed (top %ld, %ld groups, keep %ld) + %ld shared, width %ld\n",
              (long)c.n_routed_experts, (long)c.num_experts_per_tok, (long)c.n_group, (long)c.topk_group,
              (long)c.n_shared_experts, (long)c.moe_intermediate_size);
  std::printf("vocab                %ld\n", (long)c.vocab_size);
  std::printf("rope                 theta %g, %s\n", c.rope.rope_theta,
              c.rope.yarn ? fmt::format("yarn factor {} (orig {})", c.rope.factor,
                                        c.rope.original_max_position_embeddings).c_str()
                          : "no scaling");
  std::printf("softmax scale        %.10f\n", c.softmax_scale());
  std::printf("weights              %s\n", c.quant.fp8 ? "FP8 e4m3, 128x128 block scales" : "bf16");
  const int64_t kv_layer = c.kv_entry_dim() * 2;
  std::printf("KV cache per token   %ld bytes (bf16, %ld layers; the engine, without the MTP layer: %ld)\n",
              (long)(kv_layer * (c.num_hidden_layers + (src->has_mtp() ? 1 : 0))),
              (long)(c.num_hidden_layers + (src->has_mtp() ? 1 : 0)), (long)(kv_layer * c.num_hidden_layers));

  std::map<std::string, int64_t> params;
  std::map<std::string, int64_t> bytes;
  int64_t total = 0, total_bytes = 0;
  for (const auto& s : src->schema()) {
    if (s.mtp_copy) continue;
    if (s.mtp && !src->has_mtp()) continue;
    const int64_t n = s.shape.numel(), b = n * static_cast<int64_t>(dtype_size(s.dtype));
    if (s.role != TensorRole::kScaleInv) params[component_of(s, c)] += n, total += n;
    bytes[dtype_name(s.dtype)] += b;
    total_bytes += b;
  }
  std::printf("\nparameters by component\n");
  for (const auto& [k, v] : params) std::printf("  %-18s %16ld\n", k.c_str(), (long)v);
  std::printf("  %-18s %16ld\n", "total", (long)total);
  std::printf("\nbytes by dtype (MTP copies of embed/head excluded)\n");
  for (const auto& [k, v] : bytes) std::printf("  %-18s %16ld  (%.2f GB)\n", k.c_str(), (long)v, v / 1e9);
  std::printf("  %-18s %16ld  (%.2f GB)\n", "total", (long)total_bytes, total_bytes / 1e9);

  // The engine's start-up plan for one GPU of this size (the engine loads the model without its MTP layer).
  po.numerics = parse_numerics(numerics);
  po.fp8_checkpoint = c.quant.fp8;
  po.mtp = false;
  DeviceMemory dev;
  dev.total = static_cast<int64_t>(gpu_memory_gb * 1e9);
  dev.free = dev.total - kRuntimeReserveBytes;
  const MemoryPlan plan = plan_memory(c, po, dev);
  std::printf("\nmemory plan (one GPU of %.2f GB; free at start predicted as total - %.2f GB runtime reserve)\n",
              gpu_memory_gb, kRuntimeReserveBytes / 1e9);
  std::fputs(format_memory_plan(plan, true).c_str(), stdout);
  std::fflush(stdout);
  expect_fits(plan);
  return 0;
}

}  // namespace dsv3::tools
