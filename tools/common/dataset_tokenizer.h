// dataset_tokenizer.h: the little that prepare-dataset (and bench) need from a HF tokenizer folder (tools/common).
// vocab_size and the EOS ids are read from tokenizer.json / tokenizer_config.json directly, as HF defines them, so
// the synthetic generators work without the BPE encoder; `encode` is a callback that only the `dataset` subcommand
// (real prompts) needs. Plug dsv3::Tokenizer in there (see make_dataset_tokenizer in cmd_prepare_dataset.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3::tools {

// HF tokenizer.encode(text, add_special_tokens=...).
using EncodeFn = std::function<std::vector<int32_t>(std::string_view text, bool add_special_tokens)>;

struct DatasetTokenizer {
  std::string dir;
  // HF `tokenizer.vocab_size` of a fast tokenizer: the entries of tokenizer.json's model.vocab (added tokens not in
  // model.vocab are excluded; DeepSeek-V3: 128000, while its added tokens reach id 128814).
  int64_t vocab_size = 0;
  std::string eos_token;        // tokenizer_config.json eos_token (or special_tokens_map.json)
  std::vector<int32_t> eos_ids;  // tokenizer.encode(eos_token, add_special_tokens=False)
  // type(AutoTokenizer.from_pretrained(dir)).__name__, e.g. "LlamaTokenizerFast"; written as the `tokenizer`
  // metadata of the `dataset` workload file.
  std::string class_name;
  EncodeFn encode;  // empty when no encoder is available
};

// Resolves --tokenizer as AutoTokenizer would without network: a local folder, else a hub name ("org/name") found in
// the HF cache ($HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub: models--org--name/snapshots/<refs/main>).
// Throws dsv3::Error naming every place it looked.
std::string resolve_tokenizer_dir(const std::string& name_or_dir);

// Reads vocab_size, eos_token, eos_ids and class_name from `dir`. The EOS is looked up as a single token (added
// tokens, then model.vocab); if it is not one, `encode` (when given) encodes it as HF would.
DatasetTokenizer load_dataset_tokenizer(const std::string& dir, EncodeFn encode = {});

}  // namespace dsv3::tools
