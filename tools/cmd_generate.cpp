// cmd_generate.cpp: `dsv3 generate` — the quickstart (TensorRT-LLM's quickstart_advanced.py, every era's flags):
// prompts in, one `[i] Prompt: '...', Generated text: '...'` line per prompt out, after a progress bar (tools).
#include <fstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common/llm_args.h"
#include "common/progress.h"
#include "common/py_repr.h"
#include "dsv3/base/log.h"
#include "dsv3/engine/engine.h"
#include "dsv3/tokenizer/chat_template.h"

namespace dsv3::tools {

int cmd_generate(int argc, char** argv) {
  CLI::App app{"Generate text for a few prompts (the quickstart of the TensorRT-LLM DeepSeek-V3 recipe)",
               "dsv3 generate"};
  std::string model_dir, backend = cuda_available() ? "cuda" : "cpu", numerics = "fp8", load_format = "auto",
      cuda_numerics;
  std::vector<std::string> prompts;
  int max_tokens = 64, max_batch_size = 2048, max_num_tokens = 8192, max_seq_len = 0, top_k = 0,
      tokens_per_block = 64, tp_size = 1, pp_size = 1, moe_ep_size = -1, moe_tp_size = -1, mtp_nextn = 0,
      spec_nextn = 0;
  std::optional<float> temperature, top_p;
  std::optional<uint64_t> seed;
  double kv_cache_fraction = 0.9, kv_cache_cpu_gb = 1.0;
  int64_t kv_cache_max_tokens = 0;
  bool reuse_flag = false, disable_reuse = false, chunked = false, chat = false, attention_dp = false,
       print_iter_log = false, use_cuda_graph = false, disable_cuda_graph = false, graph_padding = false,
       disable_overlap = false;
  std::vector<int> graph_sizes;
  std::string spec_algo, kv_cache_dtype = "auto", attention_backend = "TRTLLM", output_json;
  app.add_option("--model_dir,--model-dir", model_dir, "HF checkpoint folder")->required();
  app.add_option("--prompt", prompts, "prompt (repeatable); default: the recipe's four prompts");
  app.add_option("--max_tokens,--max-tokens", max_tokens, "tokens to generate per prompt")->capture_default_str();
  app.add_option("--temperature", temperature, "sampling temperature (default: greedy)");
  app.add_option("--top_k,--top-k", top_k, "top-k (0: off)");
  app.add_option("--top_p,--top-p", top_p, "top-p");
  app.add_option("--seed", seed, "sampling seed");
  app.add_option("--max_batch_size,--max-batch-size", max_batch_size)->capture_default_str();
  app.add_option("--max_num_tokens,--max-num-tokens", max_num_tokens)->capture_default_str();
  app.add_option("--max_seq_len,--max-seq-len", max_seq_len, "default: the model's max_position_embeddings");
  app.add_option("--kv_cache_fraction,--kv-cache-fraction", kv_cache_fraction,
                 "share of free GPU memory for the KV cache")->capture_default_str();
  app.add_option("--kv_cache_max_tokens,--kv-cache-max-tokens", kv_cache_max_tokens,
                 "KV pool size in tokens (kv_cache_config.max_tokens); 0: from memory");
  app.add_option("--kv_cache_cpu_gb,--kv-cache-cpu-gb", kv_cache_cpu_gb,
                 "CPU backend: KV pool byte budget in GB when --kv_cache_max_tokens is 0")->capture_default_str();
  app.add_flag("--kv_cache_enable_block_reuse,--kv-cache-enable-block-reuse", reuse_flag,
               "E1/E2 spelling: passing it DISABLES block reuse (as in the recipe)");
  app.add_flag("--disable_kv_cache_reuse,--disable-kv-cache-reuse", disable_reuse, "disable KV block reuse");
  app.add_flag("--enable_chunked_prefill,--enable-chunked-prefill", chunked, "split long prompts across steps");
  app.add_flag("--apply_chat_template,--apply-chat-template", chat, "wrap each prompt as a user turn");
  app.add_option("--backend", backend, "cpu or cuda (default: cuda when a GPU is present)")->capture_default_str();
  app.add_option("--numerics", numerics, "fp8 or bf16")->capture_default_str();
  app.add_option("--cuda_numerics,--cuda-numerics", cuda_numerics,
                 "fast or reference: every CUDA op bit for bit the CPU reference's (slow; default: DSV3_NUMERICS, "
                 "else fast)");
  app.add_option("--load_format,--load-format", load_format, "auto or dummy")->capture_default_str();
  app.add_option("--tokens_per_block,--tokens-per-block", tokens_per_block)->capture_default_str();
  app.add_option("--kv_cache_dtype,--kv-cache-dtype", kv_cache_dtype, "auto (bf16)")->capture_default_str();
  app.add_option("--attention_backend,--attention-backend", attention_backend, "accepted for compatibility");
  app.add_flag("--print_iter_log,--print-iter-log", print_iter_log, "log every engine step");
  // CUDA graphs for decode steps are on by default here (quickstart's --use_cuda_graph is accepted; it changes
  // nothing); the list and padding follow cuda_graph_config (interfaces.md §3.1).
  app.add_flag("--use_cuda_graph,--use-cuda-graph", use_cuda_graph, "CUDA graphs for decode steps (default: on)");
  app.add_flag("--disable_cuda_graph,--disable-cuda-graph", disable_cuda_graph, "run every step eagerly");
  app.add_flag("--cuda_graph_padding_enabled,--cuda-graph-padding-enabled", graph_padding,
               "pad decode batches up to the next captured size");
  app.add_option("--cuda_graph_batch_sizes,--cuda-graph-batch-sizes", graph_sizes, "captured batch sizes");
  // The overlap scheduler is on by default (as in the LLM API): the next step is launched before the tokens of the
  // previous one are read back.
  app.add_flag("--disable_overlap_scheduler,--disable-overlap-scheduler", disable_overlap,
               "process each step's tokens before launching the next step");
  app.add_option("--output_json,--output-json", output_json,
                 "also write [{prompt, prompt_token_ids, text, token_ids, finish_reason}] to this file");
  // Parallelism and speculative decoding: accepted spellings, refused until they work.
  app.add_option("--tp_size,--tp-size", tp_size);
  app.add_option("--pp_size,--pp-size", pp_size);
  app.add_option("--moe_ep_size,--moe-ep-size", moe_ep_size);
  app.add_option("--moe_tp_size,--moe-tp-size", moe_tp_size);
  app.add_flag("--enable_attention_dp,--enable-attention-dp", attention_dp);
  app.add_option("--mtp_nextn,--mtp-nextn", mtp_nextn);
  app.add_option("--spec_decode_algo,--spec-decode-algo", spec_algo);
  app.add_option("--spec_decode_nextn,--spec-decode-nextn,--spec_decode_max_draft_len,--spec-decode-max-draft-len",
                 spec_nextn);
  CLI11_PARSE(app, argc, argv);

  EXPECT(tp_size == 1 && pp_size == 1 && (moe_ep_size == -1 || moe_ep_size == 1) &&
             (moe_tp_size == -1 || moe_tp_size == 1) && !attention_dp,
         "tensor/pipeline/expert parallelism and attention DP are not implemented yet: run with --tp_size 1 "
         "--pp_size 1 (got tp {}, pp {}, moe_ep {}, moe_tp {}, attention_dp {})",
         tp_size, pp_size, moe_ep_size, moe_tp_size, attention_dp);
  EXPECT(mtp_nextn == 0 && spec_algo.empty() && spec_nextn == 0,
         "MTP speculative decoding (--mtp_nextn / --spec_decode_algo) is not implemented yet");
  EXPECT(kv_cache_dtype == "auto" || kv_cache_dtype == "bf16", "--kv_cache_dtype '{}' is not supported (auto)",
         kv_cache_dtype);
  if (prompts.empty())
    prompts = {"Hello, my name is", "The president of the United States is", "The capital of France is",
               "The future of AI is"};

  EngineConfig ec;
  ec.model_dir = model_dir;
  ec.backend = backend;
  ec.numerics = parse_numerics(numerics);
  ec.op_numerics = parse_op_numerics(cuda_numerics, "--cuda_numerics");
  ec.load_format = parse_load_format(load_format);
  ec.max_batch_size = max_batch_size;
  ec.max_num_tokens = max_num_tokens;
  ec.max_seq_len = max_seq_len;
  ec.enable_chunked_prefill = chunked;
  ec.enable_block_reuse = !(reuse_flag || disable_reuse);
  ec.kv_free_gpu_mem_fraction = kv_cache_fraction;
  ec.kv_max_tokens = kv_cache_max_tokens;
  EXPECT(kv_cache_cpu_gb > 0, "--kv_cache_cpu_gb must be > 0");
  ec.kv_cpu_bytes = static_cast<int64_t>(kv_cache_cpu_gb * 1e9);
  ec.tokens_per_block = tokens_per_block;
  if (!disable_cuda_graph) {
    LlmArgs ga;
    ga.use_cuda_graph = true;
    ga.cuda_graph_config.batch_sizes.assign(graph_sizes.begin(), graph_sizes.end());
    ga.cuda_graph_config.enable_padding = graph_padding;
    for (int64_t s : cuda_graph_batch_sizes(ga, max_batch_size)) ec.cuda_graph_batch_sizes.push_back(static_cast<int>(s));
    ec.cuda_graph_padding = graph_padding;
  }
  ec.overlap_scheduler = !disable_overlap;
  LLM llm(ec);
  EXPECT(llm.tokenizer(), "{} has no tokenizer.json: generate needs a tokenizer (dsv3 make-tiny-model copies one "
         "in when models/tokenizers/deepseek-v3 exists; run `bash scripts/setup.sh` to fetch it)", model_dir);

  SamplingParams sp;
  sp.max_tokens = max_tokens;
  sp.temperature = temperature.value_or(0.0f);
  sp.top_k = top_k;
  sp.top_p = top_p.value_or(1.0f);
  sp.seed = seed;
  std::vector<std::shared_ptr<RequestHandle>> handles;
  for (const auto& p : prompts) {
    Prompt pr;
    if (chat) {
      ChatTemplate tmpl = ChatTemplate::from_tokenizer_dir(model_dir);
      pr.token_ids = llm.tokenizer()->encode(tmpl.render({ChatMessage{.role = "user", .content = p}}, true), false);
    } else {
      pr.text = p;
    }
    handles.push_back(llm.generate_async(pr, sp, false));
  }
  ProgressBar bar(static_cast<int64_t>(handles.size()), "Processed requests");
  std::vector<RequestOutput> outs;
  for (auto& h : handles) {
    outs.push_back(h->wait());
    bar.advance();
  }
  bar.finish();
  if (print_iter_log)
    for (const auto& s : llm.engine().take_iteration_stats())
      log_info("iter {}: {:.1f} ms, batch {}, decode {} + prefill {} tokens, KV blocks used {} free {}{}", s.step,
               (s.end - s.start) * 1e3, s.sched.batch_size, s.sched.n_decode_tokens, s.sched.n_prefill_tokens,
               s.sched.n_blocks_used, s.sched.n_blocks_free, s.overlapped ? ", overlapped" : "");
  if (!output_json.empty()) {
    nlohmann::json j = nlohmann::json::array();
    for (size_t i = 0; i < outs.size(); ++i)
      j.push_back({{"prompt", prompts[i]}, {"prompt_token_ids", outs[i].prompt_token_ids}, {"text", outs[i].text},
                   {"token_ids", outs[i].token_ids}, {"finish_reason", finish_reason_name(outs[i].finish_reason)}});
    std::ofstream f(output_json);
    f << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    EXPECT(f.good(), "--output_json {}: cannot write", output_json);
  }
  for (size_t i = 0; i < outs.size(); ++i) {
    EXPECT(outs[i].error.empty(), "prompt {}: {}", i, outs[i].error);
    std::printf("[%zu] Prompt: %s, Generated text: %s\n", i, py_repr(prompts[i]).c_str(),
                py_repr(outs[i].text).c_str());
  }
  return 0;
}

}  // namespace dsv3::tools
