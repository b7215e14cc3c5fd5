// cases_elementwise.cpp: test_ops cases of the elementwise and data-movement ops: rms_norm (and in place),
// embedding, rope, silu_mul + add, kv_cache_store, kv_cache_gather, fill_token_ids. Each compares the CUDA backend
// with the CPU reference under the tolerance it states (ops_env.h); refnum variants run bit for bit.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "dsv3/base/sampling_rules.h"
#include "ops_cases.h"
#include "ops_env.h"

namespace dsv3::ops_test {

// ------------------------------------------------------------------------------------------------- cases

// in_place (refnum only): out is x itself (x_stride == out_stride), as the model's q_a / kv_a norms run.
void rms_norm_case(int n, int dim, bool residual, int x_stride, int out_stride, bool quick, bool refnum,
                   bool in_place) {
  add_case("rms_norm", fmt::format("{}n={},dim={},residual={},x_stride={},out_stride={}{}", refnum_tag(refnum), n, dim,
                                   residual, x_stride, out_stride, in_place ? ",in_place" : ""),
           quick, [=](Env& env) {
             Backend& gpu = refnum ? *env.gpu_ref : *env.gpu;
             Rng rng(1000 + n * 7 + dim + (refnum ? 50000 : 0));
             const int xs = x_stride ? x_stride : dim, os = out_stride ? out_stride : dim;
             Tensor x = rand_bf16(rng, {n, xs}), w = rand_bf16(rng, {dim}, 0.5f);
             Tensor res = residual ? rand_bf16(rng, {n, dim}) : Tensor();
             Tensor out = rand_bf16(rng, {n, os});  // rows wider than dim keep their other columns
             Dev d(gpu);
             TensorView dx = d.up(x, "x"), dw = d.up(w, "weight"), dres = residual ? d.up(res, "residual") : TensorView{};
             TensorView dout = in_place ? dx : out_stride ? d.up(out, "out") : d.out(DType::kBF16, {n, os}, "out");
             env.cpu->rms_norm({.x = x, .x_stride = x_stride, .residual = res.view(), .weight = w,
                                .out = in_place ? x.view() : out.view(), .out_stride = out_stride});
             gpu.rms_norm({.x = dx, .x_stride = x_stride, .residual = dres, .weight = dw, .out = dout,
                           .out_stride = out_stride});
             bool ok = compare("out", in_place ? x : out, d.get(dout), refnum ? kBitwise : kTolBf16Ulp);
             if (residual) ok &= compare("residual", res, d.get(dres), kBitwise);  // bf16(res + x): one rounding
             return ok && d.guards_ok;
           });
}

namespace {

// out = x (the model normalizes q_a's output in place): the register-resident kernel reads the whole row before
// its block-wide sum, so no element is overwritten before it is read.
void rms_norm_inplace_case(int n, int dim) {
  add_case("rms_norm", fmt::format("n={},dim={},in_place", n, dim), true, [=](Env& env) {
    Rng rng(1500 + n + dim);
    Tensor x = rand_bf16(rng, {n, dim}), w = rand_bf16(rng, {dim}, 0.5f);
    Dev d(*env.gpu);
    TensorView dx = d.up(x, "x"), dw = d.up(w, "weight");
    env.cpu->rms_norm({.x = x, .weight = w, .out = x});
    env.gpu->rms_norm({.x = dx, .weight = dw, .out = dx});
    return compare("out", x, d.get(dx), kTolBf16Ulp) && d.guards_ok;
  });
}

}  // namespace

void embedding_case(int n, int vocab, int dim, bool refnum) {
  add_case("embedding", fmt::format("{}n={},vocab={},d={}", refnum_tag(refnum), n, vocab, dim), true, [=](Env& env) {
    Backend& gpu = refnum ? *env.gpu_ref : *env.gpu;
    Rng rng(2000 + n);
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (auto& id : ids) id = rng.uniform_int(0, vocab - 1);
    if (n > 2) ids[1] = ids[0];  // repeated ids
    Tensor tid = host_i32({n}, ids), table = rand_bf16(rng, {vocab, dim}), out(DType::kBF16, {n, dim});
    Dev d(gpu);
    TensorView dout = d.out(DType::kBF16, {n, dim}, "out");
    env.cpu->embedding({.ids = tid, .table = table, .out = out});
    gpu.embedding({.ids = d.up(tid, "ids"), .table = d.up(table, "table"), .out = dout});
    return compare("out", out, d.get(dout), kBitwise) && d.guards_ok;  // a row copy
  });
}

void rope_case(int n, int heads, int stride, int offset, int rope_dim, int max_pos, bool refnum) {
  add_case("rope", fmt::format("{}n={},heads={},stride={},offset={},rope_dim={},max_pos={}", refnum_tag(refnum), n,
                               heads, stride, offset, rope_dim, max_pos),
           true, [=](Env& env) {
             Backend& gpu = refnum ? *env.gpu_ref : *env.gpu;
             Rng rng(3000 + n + heads);
             Tensor x = rand_bf16(rng, {n, heads, stride});
             std::vector<int32_t> pos(static_cast<size_t>(n));
             for (auto& p : pos) p = rng.uniform_int(0, max_pos);
             std::vector<float> f(static_cast<size_t>(rope_dim / 2));
             for (size_t i = 0; i < f.size(); ++i)  // 10000^(-2i/d), YaRN-like damping on the low frequencies
               f[i] = static_cast<float>(std::pow(10000.0, -2.0 * static_cast<double>(i) / rope_dim) / (i < 4 ? 40.0 : 1.0));
             Tensor tpos = host_i32({n}, pos), tf = make_host_tensor(DType::kF32, {rope_dim / 2}, f.data());
             Dev d(gpu);
             TensorView dx = d.up(x, "x");
             env.cpu->rope({.x = x, .positions = tpos, .inv_freq = tf, .offset = offset});
             gpu.rope({.x = dx, .positions = d.up(tpos, "positions"), .inv_freq = d.up(tf, "inv_freq"),
                       .offset = offset});
             // Both use ref::sincos; the fast kernel's products may round differently: one bf16 step at most.
             return compare("x", x, d.get(dx), refnum ? kBitwise : kTolBf16Ulp) && d.guards_ok;
           });
}

// gate_std: 3 in the model's range; refnum adds 40 (exp far into its tails: e^-g overflows for g < -88.7, underflows
// to subnormals and 0 for g > 87).
void silu_add_case(int rows, int cols, bool refnum, float gate_std) {
  add_case("silu_mul", fmt::format("{}rows={},cols={},gate_std={}", refnum_tag(refnum), rows, cols, gate_std), true,
           [=](Env& env) {
    Backend& gpu = refnum ? *env.gpu_ref : *env.gpu;
    Rng rng(4000 + rows);
    Tensor g = rand_bf16(rng, {rows, cols}, gate_std), u = rand_bf16(rng, {rows, cols}), out(DType::kBF16, {rows, cols});
    Dev d(gpu);
    TensorView dout = d.out(DType::kBF16, {rows, cols}, "out");
    env.cpu->silu_mul({.gate = g, .up = u, .out = out});
    gpu.silu_mul({.gate = d.up(g, "gate"), .up = d.up(u, "up"), .out = dout});
    return compare("out", out, d.get(dout), refnum ? kBitwise : kTolBf16Ulp) && d.guards_ok;  // fast: an exp ulp
  });
  add_case("add", fmt::format("{}rows={},cols={}", refnum_tag(refnum), rows, cols), true, [=](Env& env) {
    Backend& gpu = refnum ? *env.gpu_ref : *env.gpu;
    Rng rng(4500 + rows);
    Tensor a = rand_bf16(rng, {rows, cols}), b = rand_bf16(rng, {rows, cols}), out(DType::kBF16, {rows, cols});
    Dev d(gpu);
    TensorView dout = d.out(DType::kBF16, {rows, cols}, "out");
    env.cpu->add({.a = a, .b = b, .out = out});
    gpu.add({.a = d.up(a, "a"), .b = d.up(b, "b"), .out = dout});
    return compare("out", out, d.get(dout), kBitwise) && d.guards_ok;  // one fp32 add, one rounding
  });
}

void kv_store_case(int n, int n_blocks, int bs, int entry, bool refnum) {
  add_case("kv_cache_store", fmt::format("{}n={},n_blocks={},block_size={},entry={}", refnum_tag(refnum), n, n_blocks,
                                         bs, entry),
           true, [=](Env& env) {
             Backend& gpu = refnum ? *env.gpu_ref : *env.gpu;
             Rng rng(5000 + n);
             Tensor kv = rand_bf16(rng, {n, entry}), cache = rand_bf16(rng, {n_blocks, bs, entry});
             std::vector<int32_t> perm = shuffled(rng, n_blocks * bs);
             perm.resize(static_cast<size_t>(n));  // distinct slots in shuffled blocks
             Tensor slots = host_i32({n}, perm);
             Dev d(gpu);
             TensorView dcache = d.up(cache, "cache");
             env.cpu->kv_cache_store({.kv_new = kv, .cache = cache, .slots = slots});
             gpu.kv_cache_store({.kv_new = d.up(kv, "kv_new"), .cache = dcache, .slots = d.up(slots, "slots")});
             return compare("cache", cache, d.get(dcache), kBitwise) && d.guards_ok;  // data movement
           });
}

void kv_gather_case(std::vector<int> lens, int bs, int rank, int rope, bool refnum) {
  std::string v;
  for (int l : lens) v += fmt::format("{}{}", v.empty() ? "" : "/", l);
  const bool quick = std::accumulate(lens.begin(), lens.end(), 0) < 2000;
  add_case("kv_cache_gather", fmt::format("{}lens={},block_size={},rank={},rope={}", refnum_tag(refnum), v, bs, rank,
                                          rope),
           quick, [=](Env& env) {
             Backend& gpu = refnum ? *env.gpu_ref : *env.gpu;
             Rng rng(6000 + bs);
             const int n_seqs = static_cast<int>(lens.size());
             int max_blocks = 0, total_blocks = 0;
             std::vector<int32_t> cu{0};
             for (int l : lens) {
               max_blocks = std::max(max_blocks, (l + bs - 1) / bs);
               total_blocks += (l + bs - 1) / bs;
               cu.push_back(cu.back() + l);
             }
             const int n_blocks = total_blocks + 3;
             std::vector<int32_t> pool = shuffled(rng, n_blocks), table(static_cast<size_t>(n_seqs * max_blocks), -1);
             int next = 0;
             for (int s = 0; s < n_seqs; ++s)
               for (int b = 0; b < (lens[static_cast<size_t>(s)] + bs - 1) / bs; ++b)
                 table[static_cast<size_t>(s * max_blocks + b)] = pool[static_cast<size_t>(next++)];
             Tensor cache = rand_bf16(rng, {n_blocks, bs, rank + rope}), bt = host_i32({n_seqs, max_blocks}, table);
             Tensor tcu = host_i32({n_seqs + 1}, cu);
             const int n_kv = cu.back();
             Tensor lat(DType::kBF16, {n_kv, rank}), pe(DType::kBF16, {n_kv, rope});
             Dev d(gpu);
             TensorView dlat = d.out(DType::kBF16, {n_kv, rank}, "latent_out"), dpe = d.out(DType::kBF16, {n_kv, rope}, "pe_out");
             env.cpu->kv_cache_gather({.cache = cache, .block_table = bt, .cu_kv = tcu, .latent_out = lat, .pe_out = pe});
             gpu.kv_cache_gather({.cache = d.up(cache, "cache"), .block_table = d.up(bt, "block_table"),
                                       .cu_kv = d.up(tcu, "cu_kv"), .latent_out = dlat, .pe_out = dpe});
             bool ok = compare("latent_out", lat, d.get(dlat), kBitwise);
             ok &= compare("pe_out", pe, d.get(dpe), kBitwise);
             return ok && d.guards_ok;
           });
}

// fill_token_ids, the overlap scheduler's hand-off: ids[map[j][0]] = src[map[j][1]], a negative source (a sampler
// failure code) written as 0. Rows distinct and shuffled, sources repeated, ~10% failure codes; one pair, a subset,
// every row, more pairs than one thread block. The expected ids are worked out here, and both backends must give
// them bit for bit; rows outside the map keep their ids (and the guards catch a write beyond ids).
void fill_token_ids_case(int n, int m, int k, bool refnum) {
  add_case("fill_token_ids", fmt::format("{}n={},m={},k={}", refnum_tag(refnum), n, m, k), true, [=](Env& env) {
    Backend& gpu = refnum ? *env.gpu_ref : *env.gpu;
    Rng rng(9000 + static_cast<uint64_t>(n) * 7 + m);
    std::vector<int32_t> ids(static_cast<size_t>(n)), src(static_cast<size_t>(k)), map;
    for (auto& v : ids) v = rng.uniform_int(0, 129279);
    for (auto& v : src) {
      const int c = rng.uniform_int(0, 19);
      v = c == 0 ? kSampleInvalidLogits : c == 1 ? kSampleAllMasked : rng.uniform_int(0, 129279);
    }
    const std::vector<int32_t> rows = shuffled(rng, n);
    std::vector<int32_t> want = ids;
    for (int j = 0; j < m; ++j) {
      const int32_t row = rows[static_cast<size_t>(j)], idx = rng.uniform_int(0, k - 1);
      map.push_back(row);
      map.push_back(idx);
      want[static_cast<size_t>(row)] = std::max(src[static_cast<size_t>(idx)], 0);
    }
    Tensor tids = host_i32({n}, ids), tsrc = host_i32({k}, src), tmap = host_i32({m, 2}, map);
    Tensor twant = host_i32({n}, want);
    Dev d(gpu);
    TensorView dids = d.up(tids, "ids");
    gpu.fill_token_ids({.ids = dids, .map = d.up(tmap, "map"), .src = d.up(tsrc, "src")});
    env.cpu->fill_token_ids({.ids = tids, .map = tmap, .src = tsrc});
    bool ok = compare("ids (cpu)", twant, tids, kBitwise);
    ok &= compare("ids", twant, d.get(dids), kBitwise);  // data movement
    return ok && d.guards_ok;
  });
}

void register_elementwise_cases() {
  for (int n : {1, 7, 64}) rms_norm_case(n, 7168, n == 7, 0, 0, n < 64);
  rms_norm_case(5, 512, false, 576, 0, true);    // kv_a output: the latent part of a wider row
  rms_norm_case(3, 1536, false, 0, 2112, true);  // output into a wider row
  rms_norm_case(9, 100, true, 0, 0, true);
  // the register-resident kernel's 1, 2 and 4 vectors per thread, and rows it hands to the shared-memory kernel
  // (more than 4096 vectors; a stride that is not a multiple of 8)
  rms_norm_case(1, 7168, true, 0, 0, true);
  rms_norm_case(2, 16384, true, 0, 0, true);
  rms_norm_case(3, 20000, false, 0, 0, true);
  rms_norm_case(2, 40000, true, 0, 0, true);
  rms_norm_case(4, 512, false, 577, 0, true);
  rms_norm_case(2, 64, true, 0, 0, true);
  rms_norm_inplace_case(1, 1536);
  rms_norm_inplace_case(5, 7168);
  embedding_case(1, 1000, 7168);
  embedding_case(17, 129280, 64);
  embedding_case(5, 37, 33);
  rope_case(1, 128, 192, 128, 64, 100);
  rope_case(33, 16, 192, 128, 64, 32768);
  rope_case(7, 1, 576, 512, 64, 4095);
  rope_case(3, 3, 20, 4, 10, 500);
  rope_case(1, 1, 576, 512, 64, 1023);   // decode k_pe
  rope_case(2, 128, 192, 128, 64, 70000);
  silu_add_case(5, 18432);
  silu_add_case(3, 1001);
  kv_store_case(1, 37, 64, 576);
  kv_store_case(100, 37, 64, 576);
  kv_store_case(13, 9, 16, 40);
  kv_gather_case({1, 130, 64}, 64, 512, 64);
  kv_gather_case({8192}, 64, 512, 64);
  kv_gather_case({5, 17, 3}, 16, 24, 8);
  fill_token_ids_case(1, 1, 1);
  fill_token_ids_case(7, 3, 5);
  fill_token_ids_case(128, 128, 128);   // every row, one block
  fill_token_ids_case(1000, 333, 500);
  fill_token_ids_case(4096, 2048, 2048);  // 16 blocks of 128 pairs
}

}  // namespace dsv3::ops_test
