// run_model.h: test helper — runs a checkpoint on the CPU backend over a prompt, whole or piecewise (tests/model).
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/model/deepseek_v3.h"

namespace dsv3::test {

struct RunOptions {
  Numerics numerics = Numerics::kFp8;
  int64_t decode_from = 0;  // > 0: tokens from here on go one per step through the absorbed path
  int64_t chunk = 0;        // > 0: prompt chunks of this many tokens
  bool mtp = false;         // also return MTP logits
};

struct RunResult {
  std::vector<float> logits;  // [n, vocab]
  std::vector<float> mtp;     // [n - 1, vocab]
  int64_t vocab = 0;
};

inline RunResult run_model(WeightSource& src, const std::vector<int32_t>& ids, const RunOptions& opt) {
  CpuBackend be;
  const ModelConfig& c = src.config();
  DeepseekV3 model(c, load_model_weights(src, be, opt.numerics, opt.mtp), be, opt.numerics);
  const int64_t n = static_cast<int64_t>(ids.size()), bs = 64, nb = (n + bs - 1) / bs + 1;
  KvCache cache(model.n_cache_layers(), nb, bs, c.kv_entry_dim(), be.allocator());
  std::vector<int32_t> blocks;
  for (int64_t i = nb - 1; i >= 0; --i) blocks.push_back(static_cast<int32_t>(i));  // a shuffled table
  RunResult r;
  r.vocab = c.vocab_size;
  Tensor hidden(DType::kBF16, {n, c.hidden_size});
  const int64_t prompt_len = opt.decode_from > 0 ? opt.decode_from : n;
  int64_t done = 0;
  while (done < n) {
    const bool prompt = done < prompt_len;
    int64_t len = prompt ? prompt_len - done : 1;
    if (prompt && opt.chunk > 0) len = std::min(len, opt.chunk);
    ForwardBatch b;
    b.token_ids.assign(ids.begin() + done, ids.begin() + done + len);
    b.seqs.push_back({static_cast<int32_t>(len), static_cast<int32_t>(done), !prompt, blocks});
    for (int64_t i = 0; i < len; ++i) b.logit_rows.push_back(static_cast<int32_t>(i));
    b.want_hidden = opt.mtp;
    ForwardOutput o = model.forward(b, cache);
    r.logits.insert(r.logits.end(), o.logits.begin(), o.logits.end());
    if (opt.mtp) std::copy_n(o.hidden.as<bf16>(), len * c.hidden_size, hidden.as<bf16>() + done * c.hidden_size);
    done += len;
  }
  if (opt.mtp) {
    ForwardBatch b;
    b.token_ids.assign(ids.begin() + 1, ids.end());
    b.seqs.push_back({static_cast<int32_t>(n - 1), 0, false, blocks});
    for (int64_t i = 0; i < n - 1; ++i) b.logit_rows.push_back(static_cast<int32_t>(i));
    r.mtp = model.forward_mtp(b, hidden.view().rows(0, n - 1), cache).logits;
  }
  return r;
}

// ||a - b|| / ||b||
inline double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

inline std::vector<int64_t> argmax_rows(const std::vector<float>& x, int64_t cols) {
  std::vector<int64_t> out;
  for (size_t r = 0; r * cols < x.size(); ++r)
    out.push_back(std::max_element(x.begin() + r * cols, x.begin() + (r + 1) * cols) - (x.begin() + r * cols));
  return out;
}

}  // namespace dsv3::test
