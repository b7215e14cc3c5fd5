// cmd_prepare_dataset.cpp: `dsv3 prepare-dataset` — TensorRT-LLM's benchmarks/cpp/prepare_dataset.py, byte for byte
// (tools). Root options before the subcommand (token-norm-dist | token-unif-dist | dataset), as in the click tool;
// --stdout prints the JSON lines that `dsv3 bench` reads, otherwise one gptManagerBenchmark JSON goes to --output.
// Spec: interfaces.md §1. The generators live in common/dataset_gen.h, the RNG copies in common/py_random.h.
#include <cstdio>
#include <filesystem>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "dsv3/tokenizer/tokenizer.h"
#include "common/dataset_gen.h"
#include "dsv3/base/error.h"
#include "dsv3/base/log.h"

namespace dsv3::tools {
namespace {

// The `dataset` subcommand encodes prompts with the real tokenizer (tokenizer.encode, special tokens as asked).
EncodeFn make_encoder(const std::string& dir) {
  std::shared_ptr<Tokenizer> t(Tokenizer::load(dir));
  return [t](std::string_view s, bool special) { return t->encode(s, special); };
}

void write_all(std::FILE* f, const std::string& data, const std::string& what) {
  EXPECT(std::fwrite(data.data(), 1, data.size(), f) == data.size() && std::fflush(f) == 0, "cannot write {}",
         what);
}

}  // namespace

int cmd_prepare_dataset(int argc, char** argv) {
  CLI::App app{"Generate a benchmark dataset exactly as TensorRT-LLM's prepare_dataset.py does (same options, seed "
               "and bytes)",
               "dsv3 prepare-dataset"};
  app.require_subcommand(1);
  std::string tokenizer, output = "preprocessed_dataset.json", lora_dir, log_level = "info";
  bool to_stdout = false, trust_remote_code = false;
  GenOptions gen;
  std::vector<int64_t> rand_task_id;
  app.add_option("--tokenizer", tokenizer, "HF tokenizer folder (or a hub name already in the HF cache)")->required();
  app.add_option("--output", output, "output JSON file (without --stdout)")->capture_default_str();
  app.add_flag("--stdout", to_stdout, "print one JSON object per line to stdout (the format `dsv3 bench` reads)");
  app.add_option("--random-seed,--random_seed", gen.random_seed, "seed for the lengths and the token ids")
      ->capture_default_str();
  app.add_option("--task-id,--task_id", gen.task_id, "LoRA task id (file output only)")->capture_default_str();
  app.add_option("--rand-task-id,--rand_task_id", rand_task_id, "random LoRA task ids in [MIN, MAX]")
      ->expected(2)
      ->type_name("MIN MAX");
  app.add_option("--lora-dir,--lora_dir", lora_dir, "LoRA adapters folder (accepted; unused by this format)");
  app.add_option("--log-level,--log_level", log_level, "info | debug")
      ->check(CLI::IsMember({"info", "debug"}))
      ->capture_default_str();
  app.add_flag("--trust-remote-code,--trust_remote_code", trust_remote_code, "accepted for compatibility");

  NormDistOptions norm;
  CLI::App* norm_cmd = app.add_subcommand("token-norm-dist", "random token ids, normally distributed lengths");
  norm_cmd->add_option("--num-requests,--num_requests", norm.num_requests, "number of requests")->required();
  norm_cmd->add_option("--input-mean,--input_mean", norm.input_mean, "input length mean")->required();
  norm_cmd->add_option("--input-stdev,--input_stdev", norm.input_stdev, "input length stdev")->required();
  norm_cmd->add_option("--output-mean,--output_mean", norm.output_mean, "output length mean")->required();
  norm_cmd->add_option("--output-stdev,--output_stdev", norm.output_stdev, "output length stdev")->required();

  UnifDistOptions unif;
  CLI::App* unif_cmd = app.add_subcommand("token-unif-dist", "random token ids, uniformly distributed lengths");
  unif_cmd->add_option("--num-requests,--num_requests", unif.num_requests, "number of requests")->required();
  unif_cmd->add_option("--input-min,--input_min", unif.input_min, "input length min (inclusive)")->required();
  unif_cmd->add_option("--input-max,--input_max", unif.input_max, "input length max (inclusive)")->required();
  unif_cmd->add_option("--output-min,--output_min", unif.output_min, "output length min (inclusive)")->required();
  unif_cmd->add_option("--output-max,--output_max", unif.output_max, "output length max (inclusive)")->required();

  std::string ds_name, ds_config, ds_split, ds_input_key, ds_image_key = "image", ds_prompt_key, ds_prompt,
                                                          ds_output_key, ds_output_len_dist;
  int64_t ds_num_requests = 0, ds_max_input_len = 0;
  CLI::App* ds_cmd = app.add_subcommand("dataset", "prompts from a local JSON / JSON-lines / CSV file");
  ds_cmd->add_option("--dataset-name,--dataset_name", ds_name, "path of the local dataset file")->required();
  auto* ds_config_opt = ds_cmd->add_option("--dataset-config-name,--dataset_config_name", ds_config,
                                           "HF dataset config (not applicable to a local file)");
  ds_cmd->add_option("--dataset-split,--dataset_split", ds_split, "split; a local file has only 'train'")->required();
  auto* ds_input_opt = ds_cmd->add_option("--dataset-input-key,--dataset_input_key", ds_input_key, "key of the input");
  ds_cmd->add_option("--dataset-image-key,--dataset_image_key", ds_image_key, "key of images (multimodal; unsupported)");
  auto* ds_prompt_key_opt =
      ds_cmd->add_option("--dataset-prompt-key,--dataset_prompt_key", ds_prompt_key, "key of the prompt");
  auto* ds_prompt_opt = ds_cmd->add_option("--dataset-prompt,--dataset_prompt", ds_prompt, "fixed prompt string");
  auto* ds_output_key_opt =
      ds_cmd->add_option("--dataset-output-key,--dataset_output_key", ds_output_key, "key of the golden output");
  auto* ds_num_opt = ds_cmd->add_option("--num-requests,--num_requests", ds_num_requests, "cap on the request count");
  auto* ds_max_in_opt =
      ds_cmd->add_option("--max-input-len,--max_input_len", ds_max_input_len, "drop prompts longer than this");
  auto* ds_dist_opt = ds_cmd->add_option("--output-len-dist,--output_len_dist", ds_output_len_dist,
                                         "output lengths ~ normal(mean, stdev), given as \"mean,stdev\"");

  CLI11_PARSE(app, argc, argv);

  set_log_level(log_level == "debug" ? LogLevel::kDebug : LogLevel::kInfo);
  if (!rand_task_id.empty()) gen.rand_task_id = std::make_pair(rand_task_id[0], rand_task_id[1]);
  const std::string tok_dir = resolve_tokenizer_dir(tokenizer);

  Workload w;
  if (*norm_cmd) {
    w = token_norm_dist(load_dataset_tokenizer(tok_dir), gen, norm);
  } else if (*unif_cmd) {
    w = token_unif_dist(load_dataset_tokenizer(tok_dir), gen, unif);
  } else {
    EXPECT(ds_config_opt->count() == 0, "--dataset-config-name '{}': a local dataset file has no configs", ds_config);
    RealDatasetOptions o;
    o.name = ds_name;
    if (ds_input_opt->count()) o.input_key = ds_input_key;
    if (ds_prompt_key_opt->count()) o.prompt_key = ds_prompt_key;
    if (ds_prompt_opt->count()) o.prompt = ds_prompt;
    if (ds_output_key_opt->count()) o.output_key = ds_output_key;
    if (ds_num_opt->count()) o.num_requests = ds_num_requests;
    if (ds_max_in_opt->count()) o.max_input_len = ds_max_input_len;
    if (ds_dist_opt->count()) o.output_len_dist = parse_output_len_dist(ds_output_len_dist);
    const LocalDataset data = read_local_dataset(ds_name, ds_split);
    w = real_dataset(load_dataset_tokenizer(tok_dir, make_encoder(tok_dir)), gen, o, data.rows);
    EXPECT(to_stdout || !w.input_ids.empty(), "dataset {}: no requests left to write", ds_name);
  }
  if (log_level == "debug") {
    std::string in, out;
    for (const auto& ids : w.input_ids) in += (in.empty() ? "" : ", ") + std::to_string(ids.size());
    for (const int64_t n : w.output_lens) out += (out.empty() ? "" : ", ") + std::to_string(n);
    log_debug("Input lengths: [{}]", in);
    log_debug("Output lengths: [{}]", out);
  }

  if (to_stdout) {
    write_all(stdout, write_dataset_lines(w), "stdout");
    return 0;
  }
  const std::filesystem::path out_path(output);
  if (out_path.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(out_path.parent_path(), ec);
    EXPECT(!ec, "cannot create folder {}: {}", out_path.parent_path().string(), ec.message());
  }
  std::FILE* f = std::fopen(output.c_str(), "wb");
  EXPECT(f != nullptr, "cannot open {} for writing", output);
  const std::string doc = workload_file_json(w);
  const bool ok = std::fwrite(doc.data(), 1, doc.size(), f) == doc.size();
  EXPECT(std::fclose(f) == 0 && ok, "cannot write {}", output);
  log_info("wrote {} requests to {}", w.input_ids.size(), output);
  return 0;
}

}  // namespace dsv3::tools
