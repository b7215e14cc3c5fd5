#!/usr/bin/env python3
"""test_inspect.py: `dsv3 inspect` as a user runs it on config-only checkpoints (tests/e2e). The printed parameter
counts, weight bytes, workspace and KV pool are checked against a Python reference written here from config.json
(model-spec §8 counts; the workspace terms of one step; TensorRT-LLM's KV rule), and a plan that cannot fit must
exit 1 with one error line. Usage: test_inspect.py DSV3_BIN WORK_DIR. Prints 'N passed, M failed'."""
import json
import math
import os
import re
import subprocess
import sys

DSV3, WORK = sys.argv[1:3]
passed, failed = 0, 0
GB = 1e9
RUNTIME_RESERVE = 750_000_000  # memory_plan.h kRuntimeReserveBytes
GRAPHS = 500_000_000           # memory_plan.h kCudaGraphReserveBytes


def check(cond, what):
    global passed, failed
    passed, failed = (passed + 1, failed) if cond else (passed, failed + 1)
    if not cond:
        print("FAIL:", what)


def cdiv(a, b):
    return -(-a // b)


def run(*args):
    return subprocess.run([DSV3, *args], capture_output=True, text=True)


def make(preset, *extra):
    out = os.path.join(WORK, preset)
    p = run("make-tiny-model", "--preset", preset, "--config_only", "--out", out, *extra)
    assert p.returncode == 0, p.stderr
    with open(os.path.join(out, "config.json")) as f:
        return out, json.load(f)


def layers(c):
    return [("moe" if c["n_routed_experts"] and L >= c["first_k_dense_replace"] and L % c.get("moe_layer_freq", 1) == 0
             else "dense") for L in range(c["num_hidden_layers"])]


def params(c):
    """Parameters by inspect's components (main model + MTP layer unique tensors), model-spec §8.1."""
    d, H = c["hidden_size"], c["num_attention_heads"]
    qk = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
    attn = (d * c["q_lora_rank"] + c["q_lora_rank"] + H * qk * c["q_lora_rank"]
            + d * (c["kv_lora_rank"] + c["qk_rope_head_dim"]) + c["kv_lora_rank"]
            + H * (c["qk_nope_head_dim"] + c["v_head_dim"]) * c["kv_lora_rank"] + d * H * c["v_head_dim"])
    f, E = c["moe_intermediate_size"], c["n_routed_experts"]
    p = {"embedding": c["vocab_size"] * d, "lm_head": c["vocab_size"] * d, "attention": 0, "dense mlp": 0,
         "routed experts": 0, "shared experts": 0, "router": 0, "norms": d}
    for kind in layers(c):
        p["attention"] += attn
        p["norms"] += 2 * d
        if kind == "dense":
            p["dense mlp"] += 3 * d * c["intermediate_size"]
        else:
            p["routed experts"] += E * 3 * d * f
            p["shared experts"] += 3 * d * f * c["n_shared_experts"]
            p["router"] += E * d + E
    # MTP layer (one MoE block + enorm, hnorm, eh_proj, shared_head.norm), its embed/head copies excluded.
    p["mtp"] = attn + 2 * d + E * 3 * d * f + 3 * d * f * c["n_shared_experts"] + E * d + E + 3 * d + 2 * d * d
    return p


def weight_bytes(c):
    """What the engine loads (no MTP), fp8 numerics on an FP8 checkpoint: FP8 linears + fp32 128x128 scales, bf16
    norms / embedding / lm_head / router gate, fp32 router bias, and a bf16 copy of kv_b_proj per layer."""
    d, H = c["hidden_size"], c["num_attention_heads"]

    def lin(o, i):
        return o * i + cdiv(o, 128) * cdiv(i, 128) * 4
    qk = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
    kvb = H * (c["qk_nope_head_dim"] + c["v_head_dim"])
    attn = (lin(c["q_lora_rank"], d) + 2 * c["q_lora_rank"] + lin(H * qk, c["q_lora_rank"])
            + lin(c["kv_lora_rank"] + c["qk_rope_head_dim"], d) + 2 * c["kv_lora_rank"]
            + lin(kvb, c["kv_lora_rank"]) + lin(d, H * c["v_head_dim"]) + kvb * c["kv_lora_rank"] * 2)
    f, E = c["moe_intermediate_size"], c["n_routed_experts"]
    total = 2 * c["vocab_size"] * d * 2 + 2 * d
    for kind in layers(c):
        total += attn + 4 * d
        if kind == "dense":
            fi = c["intermediate_size"]
            total += 2 * lin(fi, d) + lin(d, fi)
        else:
            fs = f * c["n_shared_experts"]
            total += E * (2 * lin(f, d) + lin(d, f)) + 2 * lin(fs, d) + lin(d, fs) + E * d * 2 + E * 4
    return total


def grown(b):
    return cdiv(b + b // 4, 1 << 20) << 20 if b else 0


def workspace(c, n, batch, max_seq, bs):
    """Peak of one step of n tokens (prefill context n), as memory_plan.cpp documents it, re-derived here."""
    d, H, V, k = c["hidden_size"], c["num_attention_heads"], c["vocab_size"], c["num_experts_per_tok"]
    nope, rope, vd, rank = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"], c["kv_lora_rank"]
    entry, mb, r = rank + rope, cdiv(max_seq, bs), min(n, batch)
    meta = 3 * n * 4 + n * mb * 4 + n * 4 + 2 * (n + 1) * 4
    stream = 2 * n * d * 2
    attention = n * H * (nope + rope) * 2 + max(
        n * c["q_lora_rank"] * 2,
        n * entry * 2 + n * H * vd * 2 + max(n * H * (entry + rank) * 2, n * (rank + rope) * 2 + n * H * (nope + vd) * 2))
    fs = c["n_shared_experts"] * c["moe_intermediate_size"]
    ffn = max(2 * n * c["intermediate_size"] * 2, n * k * 8 + 2 * n * d * 2 + 2 * n * fs * 2)
    head = n * d * 2 + r * d * 2 + r * V * 4
    act = meta + stream + max(2 * n * d * 2 + max(attention, ffn), head)
    widths = [d, c["q_lora_rank"], H * vd, c["intermediate_size"], fs, c["moe_intermediate_size"]]
    codes = max([n * w for w in widths] + [n * rank])
    scales = max([n * cdiv(w, 128) * 4 for w in widths] + [n * cdiv(rank, 128) * 4])
    e = n * k
    moe = (cdiv((3 * c["n_routed_experts"] + e) * 4, 256) * 256 + 2 * cdiv(e * d * 2, 256) * 256
           + 2 * cdiv(e * c["moe_intermediate_size"] * 2, 256) * 256)
    hg, chunks, parts = cdiv(H, 32), max(1, cdiv(mb * bs, 128)), 0
    for rows in range(1, min(n, 264) + 1):
        want = min(max(cdiv(264, rows * hg), 1), min(chunks, 64))
        splits = cdiv(chunks, cdiv(chunks, want))
        if splits > 1:
            parts = max(parts, cdiv(rows * splits * H * rank * 4, 256) * 256 + rows * splits * H * 8)
    return act + grown(codes) + grown(scales) + grown(moe) + grown(parts)


def table(out):
    """'name   12.34 GB  note' lines of the plan -> {name: GB}."""
    rows = {}
    for m in re.finditer(r"^  (\S.*?)\s+(-?\d+\.\d\d) GB", out, re.M):
        rows[m.group(1).strip()] = float(m.group(2))
    return rows


def check_plan(c, out, gpu_gb, n, batch, frac, bs, max_seq, kv_max_tokens=0, what=""):
    t = table(out)
    total = int(gpu_gb * GB)
    free = total - RUNTIME_RESERVE
    w, ws = weight_bytes(c), workspace(c, n, batch, max_seq, bs)
    check(t.get("GPU memory") == round(total / GB, 2), f"{what}: GPU memory line")
    check(t.get("free at start") == round(free / GB, 2), f"{what}: free at start = total - runtime reserve")
    check(t.get("weights") == round(w / GB, 2), f"{what}: weights {t.get('weights')} vs {w / GB:.2f}")
    check(t.get("workspace") == round(ws / GB, 2), f"{what}: workspace {t.get('workspace')} vs {ws / GB:.2f}")
    check(t.get("CUDA graphs") == 0.5, f"{what}: graphs reserve")
    left = free - w - ws - GRAPHS
    check(t.get("free for KV cache") == round(left / GB, 2), f"{what}: free for KV {t.get('free for KV cache')}")
    block = c["num_hidden_layers"] * bs * (c["kv_lora_rank"] + c["qk_rope_head_dim"]) * 2
    blocks = math.floor(frac * left) // block
    limited = "free_gpu_memory_fraction"
    if kv_max_tokens and cdiv(kv_max_tokens, bs) < blocks:
        blocks, limited = cdiv(kv_max_tokens, bs), "max_tokens"
    blocks_per_seq = cdiv(max_seq, bs)
    if batch * blocks_per_seq + 1 < blocks:
        blocks, limited = batch * blocks_per_seq + 1, "max_batch_size x max_seq_len"
    m = re.search(r"KV tokens\s+(\d+)\s+(\d+) blocks of (\d+) tokens, (\d+) bytes per token", out)
    check(m is not None and (int(m.group(1)), int(m.group(2)), int(m.group(3))) == (blocks * bs, blocks, bs),
          f"{what}: KV tokens/blocks {m.groups() if m else None} vs {blocks * bs}, {blocks}")
    check(m is not None and int(m.group(4)) * bs == block, f"{what}: bytes per token")
    check(f"limited by {limited}" in out, f"{what}: limited by {limited}")
    check(t.get("KV cache") == round(blocks * block / GB, 2), f"{what}: KV cache GB")
    m = re.search(r"max concurrent sequences\s+(\d+)\s+of max_seq_len (\d+)", out)
    check(m is not None and int(m.group(1)) == blocks // blocks_per_seq and int(m.group(2)) == max_seq,
          f"{what}: max concurrent sequences")


# v3-slice (real DeepSeek-V3 dimensions, 4 layers) on an H200 (150.1 GB, the default), the engine's defaults.
v3s, c = make("v3-slice")
p = run("inspect", "--model_dir", v3s)
check(p.returncode == 0, "inspect runs on a config-only folder: " + p.stderr[-300:])
check("(dummy weights)" in p.stdout, "a folder without safetensors is inspected from config.json alone")
got = {m.group(1).strip(): int(m.group(2)) for m in re.finditer(r"^  (\S[\w ]*?)\s+(\d+)$", p.stdout, re.M)}
ref = params(c)
for k, v in ref.items():
    check(got.get(k) == v, f"parameters of {k}: {got.get(k)} vs {v}")
check(got.get("total") == sum(ref.values()), "total parameters")
check_plan(c, p.stdout, 150.1, 8192, 2048, 0.9, 64, c["max_position_embeddings"], what="v3-slice defaults")

# Every option, in the recipe's spellings and the dashed forms.
p = run("inspect", "--model-dir", v3s, "--gpu_memory_gb", "80", "--max_num_tokens", "2048", "--max-batch-size", "64",
        "--free_gpu_memory_fraction", "0.5", "--tokens_per_block", "32", "--max_seq_len", "8192")
check(p.returncode == 0, "inspect with options: " + p.stderr[-300:])
check_plan(c, p.stdout, 80, 2048, 64, 0.5, 32, 8192, what="options")
p = run("inspect", "--model_dir", v3s, "--kv_cache_free_gpu_mem_fraction", "0.9", "--kv_max_tokens", "10000",
        "--tokens_per_block", "32", "--max_seq_len", "8192")
check(p.returncode == 0, "inspect with max_tokens: " + p.stderr[-300:])
check_plan(c, p.stdout, 150.1, 8192, 2048, 0.9, 32, 8192, kv_max_tokens=10000, what="max_tokens")

# Does not fit: the table is printed, then one error line with the numbers, exit code 1.
p = run("inspect", "--model_dir", v3s, "--gpu_memory_gb", "40")
err = [l for l in p.stderr.splitlines() if l.strip()]
ws = workspace(c, 8192, 2048, c["max_position_embeddings"], 64)
want = (f"dsv3 inspect: error: out of GPU memory: weights {weight_bytes(c) / GB:.2f} GB + workspace {ws / GB:.2f} GB "
        f"+ graphs 0.50 GB exceed the 39.25 GB free of 40.00 GB")
check(p.returncode == 1 and len(err) == 1 and err[0].startswith(want), f"not-fit error: {p.returncode} {err}")
check("free for KV cache" in p.stdout, "the plan is still printed when it does not fit")

# The full DeepSeek-V3 config: model-spec §8.1 counts; 675 GB of weights cannot fit one GPU.
v3, c3 = make("v3")
p = run("inspect", "--model_dir", v3)
got = {m.group(1).strip(): int(m.group(2)) for m in re.finditer(r"^  (\S[\w ]*?)\s+(\d+)$", p.stdout, re.M)}
check(got.get("total") == 671_026_419_200 + 11_610_068_224, f"full V3: main + MTP unique parameters {got.get('total')}")
check(got.get("mtp") == 11_610_068_224, "full V3: MTP unique parameters (model-spec §8.1)")
check(p.returncode == 1 and "out of GPU memory: weights 675.20 GB" in p.stderr, "full V3 does not fit one GPU")
# ...and make-tiny-model refuses to write its 689 GB of tensors unless asked to.
p = run("make-tiny-model", "--preset", "v3", "--out", os.path.join(WORK, "v3-full"))
check(p.returncode == 1 and "--config_only" in p.stderr and "GB of tensors" in p.stderr,
      "make-tiny-model --preset v3 without --config_only is refused: " + p.stderr[-200:])
check(not os.path.exists(os.path.join(WORK, "v3-full", "model.safetensors.index.json")), "nothing written")
# A smaller v3-slice for load tests.
small, cs = make("v3-slice", "--num_hidden_layers", "2", "--n_routed_experts", "16")
check(cs["num_hidden_layers"] == 2 and cs["n_routed_experts"] == 16, "make-tiny-model overrides")
p = run("make-tiny-model", "--preset", "v3-slice", "--config_only", "--n_routed_experts", "12", "--out",
        os.path.join(WORK, "bad"))
check(p.returncode == 1 and "n_group" in p.stderr, "an expert count that breaks the groups is refused")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
