// cmd_forward.cpp: `dsv3 forward` — token ids in, float32 logits of every position out as .npy (tools).
// For checking numerics: the whole prompt in the naive (prompt) form by default; `--decode_from K` runs the first K
// tokens as a prompt and then one token per step through the absorbed (decode) form over the paged cache;
// `--chunk N` splits the prompt into chunks of N tokens. `--mtp_out` adds the MTP layer's logits.
#include <algorithm>
#include <sstream>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "dsv3/base/log.h"
#include "dsv3/base/timer.h"
#include "dsv3/io/npy.h"
#include "dsv3/model/deepseek_v3.h"

namespace dsv3::tools {
namespace {

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.empty()) continue;
    size_t used = 0;
    long v = 0;
    try {
      v = std::stol(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    EXPECT(used == item.size() && v >= 0 && v <= INT32_MAX, "--input_ids: '{}' is not a token id", item);
    ids.push_back(static_cast<int32_t>(v));
  }
  EXPECT(!ids.empty(), "--input_ids: no token ids given");
  return ids;
}

}  // namespace

int cmd_forward(int argc, char** argv) {
  CLI::App app{"Run token ids through the model and write the float32 logits of every position ([n_tokens, "
               "vocab_size] .npy)",
               "dsv3 forward"};
  std::string model_dir, ids_str, out, numerics = "fp8", backend_name = "cpu", load_format = "auto", mtp_out,
      cuda_numerics;
  int decode_from = 0, chunk = 0;
  uint64_t seed = 0;
  app.add_option("--model_dir,--model-dir", model_dir, "HF checkpoint folder")->required();
  app.add_option("--input_ids,--input-ids", ids_str, "comma-separated token ids, e.g. 0,17,42")->required();
  app.add_option("--out,--output", out, "output .npy file")->required();
  app.add_option("--numerics", numerics, "fp8 (1x128 activation quantization, block-scaled GEMM) or bf16 "
                                         "(dequantized weights)")->capture_default_str();
  app.add_option("--backend", backend_name, "cpu or cuda")->capture_default_str();
  app.add_option("--cuda_numerics,--cuda-numerics", cuda_numerics,
                 "fast or reference: every CUDA op bit for bit the CPU reference's (slow; default: DSV3_NUMERICS, "
                 "else fast)");
  app.add_option("--load_format,--load-format", load_format, "auto or dummy (random weights from config.json)")
      ->capture_default_str();
  app.add_option("--seed", seed, "seed of --load_format dummy weights")->capture_default_str();
  app.add_option("--decode_from,--decode-from", decode_from,
                 "process the first K tokens as a prompt, then one token per step (absorbed decode path)");
  app.add_option("--chunk", chunk, "split the prompt into chunks of N tokens (chunked prefill)");
  app.add_option("--mtp_out,--mtp-out", mtp_out,
                 "also write the MTP layer's logits: row i predicts token i+2 from hidden i and token i+1");
  CLI11_PARSE(app, argc, argv);

  const std::vector<int32_t> ids = parse_ids(ids_str);
  const int64_t n = static_cast<int64_t>(ids.size());
  EXPECT(decode_from >= 0 && decode_from <= n, "--decode_from {} outside [0, {}]", decode_from, n);
  EXPECT(chunk >= 0, "--chunk must be >= 0");
  auto backend = make_backend(backend_name, parse_op_numerics(cuda_numerics, "--cuda_numerics"));
  auto src = WeightSource::open(model_dir, parse_load_format(load_format), seed);
  const ModelConfig& c = src->config();
  for (int32_t id : ids) EXPECT(id < c.vocab_size, "--input_ids: token id {} >= vocab_size {}", id, c.vocab_size);
  const double t0 = now_seconds();
  DeepseekV3 model(c, load_model_weights(*src, *backend, parse_numerics(numerics), !mtp_out.empty()), *backend,
                   parse_numerics(numerics));
  EXPECT(mtp_out.empty() || model.has_mtp(), "--mtp_out: {} has no MTP layer", model_dir);
  log_info("{} ({} backend)", weight_load_summary(model.weights(), now_seconds() - t0), backend->name());

  const int64_t bs = 64, n_blocks = (n + bs - 1) / bs;
  KvCache cache(model.n_cache_layers(), n_blocks, bs, c.kv_entry_dim(), backend->allocator());
  std::vector<int32_t> blocks(static_cast<size_t>(n_blocks));
  for (int64_t i = 0; i < n_blocks; ++i) blocks[i] = static_cast<int32_t>(n_blocks - 1 - i);  // not the identity
  std::vector<float> logits;
  logits.reserve(static_cast<size_t>(n * c.vocab_size));
  Tensor hidden(DType::kBF16, {n, c.hidden_size});  // final-normed hidden states, host (MTP input)
  const int64_t prompt_len = decode_from > 0 ? decode_from : n;
  int64_t done = 0;
  while (done < n) {
    const bool prompt = done < prompt_len;
    int64_t len = prompt ? prompt_len - done : 1;
    if (prompt && chunk > 0) len = std::min<int64_t>(len, chunk);
    ForwardBatch b;
    b.token_ids.assign(ids.begin() + done, ids.begin() + done + len);
    b.seqs.push_back({static_cast<int32_t>(len), static_cast<int32_t>(done), !prompt, blocks});
    for (int64_t i = 0; i < len; ++i) b.logit_rows.push_back(static_cast<int32_t>(i));
    b.want_hidden = !mtp_out.empty();
    ForwardOutput o = model.forward(b, cache);
    logits.insert(logits.end(), o.logits.begin(), o.logits.end());
    if (b.want_hidden) backend->copy(hidden.view().rows(done, done + len), o.hidden.view());
    done += len;
  }
  write_npy_f32(out, logits.data(), {n, c.vocab_size});
  if (!mtp_out.empty()) {
    EXPECT(n >= 2, "--mtp_out needs at least 2 tokens");
    ForwardBatch b;
    b.token_ids.assign(ids.begin() + 1, ids.end());
    b.seqs.push_back({static_cast<int32_t>(n - 1), 0, false, blocks});
    for (int64_t i = 0; i < n - 1; ++i) b.logit_rows.push_back(static_cast<int32_t>(i));
    Tensor h = Tensor(DType::kBF16, {n - 1, c.hidden_size}, backend->allocator());
    backend->copy(h.view(), hidden.view().rows(0, n - 1));
    ForwardOutput o = model.forward_mtp(b, h.view(), cache);
    write_npy_f32(mtp_out, o.logits.data(), {n - 1, c.vocab_size});
  }
  log_info("forward of {} tokens in {:.2f} s", n, now_seconds() - t0);
  std::printf("wrote %s: logits [%ld, %ld]%s%s\n", out.c_str(), (long)n, (long)c.vocab_size,
              mtp_out.empty() ? "" : ", MTP logits to ", mtp_out.c_str());
  return 0;
}

}  // namespace dsv3::tools
