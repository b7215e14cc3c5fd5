#!/usr/bin/env python3
"""make_goldens.py: golden logits for dsv3's CPU reference, from HF transformers and an independent torch model.

Run where torch + transformers + safetensors exist (the H200 machine; CPU is enough):
    python3 scripts/reference/make_goldens.py OUT_DIR
For each small DeepSeek-V3-architecture config below it writes OUT_DIR/<name>/:
    config.json, model.safetensors.index.json, model-0000K-of-00000N.safetensors   the FP8 checkpoint (published layout)
    input_ids.json                                                                 the prompt
    logits_hf.npy      HF transformers DeepseekV3ForCausalLM, fp32, on the dequantized weights (bf16(fp8*scale_inv))
    logits_ref.npy     the torch reference below, fp32, same dequantized weights (cross-checks HF)
    logits_fp8.npy     the torch reference emulating dsv3's fp8 numerics (1x128 act quant, block-scaled GEMM, bf16
                       activations between ops)
    logits_mtp.npy     the MTP layer (row i predicts token i+2 from final hidden i and token i+1), fp32
    report.json        max/rel differences between the references
The torch reference follows shared/docs/model-spec.md §3-§6 and is written independently of the C++ code.
"""
import json
import math
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

torch.manual_seed(0)

CONFIGS = {
    # Sizes that are not multiples of 128, YaRN, q compression, 2 shards, MTP layer.
    "yarn-odd": dict(vocab_size=500, hidden_size=320, intermediate_size=448, moe_intermediate_size=96,
                     num_hidden_layers=3, num_nextn_predict_layers=1, num_attention_heads=3, q_lora_rank=192,
                     kv_lora_rank=160, qk_nope_head_dim=48, qk_rope_head_dim=32, v_head_dim=40,
                     n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=3, n_group=4, topk_group=2,
                     routed_scaling_factor=2.5, first_k_dense_replace=1,
                     rope_scaling=dict(type="yarn", factor=40, original_max_position_embeddings=4096, beta_fast=32,
                                       beta_slow=1, mscale=1.0, mscale_all_dim=1.0),
                     max_position_embeddings=163840, shards=2),
    # No q compression (q_proj), no YaRN, real MLA head dims, multiples of 128.
    "noq-plain": dict(vocab_size=384, hidden_size=256, intermediate_size=512, moe_intermediate_size=128,
                      num_hidden_layers=2, num_nextn_predict_layers=0, num_attention_heads=2, q_lora_rank=None,
                      kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
                      n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2, n_group=2, topk_group=1,
                      routed_scaling_factor=2.5, first_k_dense_replace=1, rope_scaling=None,
                      max_position_embeddings=4096, shards=1),
}
SEQ_LEN = 13


def e4m3(x):
    return x.clamp(-448, 448).to(torch.float8_e4m3fn)


def quant_weight(w):
    """128x128 block quantization as DeepSeek's weights: scale_inv = amax/448 over the real elements of each block."""
    out_f, in_f = w.shape
    br, bc = math.ceil(out_f / 128), math.ceil(in_f / 128)
    q = torch.empty(out_f, in_f, dtype=torch.float8_e4m3fn)
    s = torch.empty(br, bc, dtype=torch.float32)
    for i in range(br):
        for j in range(bc):
            blk = w[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128]
            sc = blk.abs().max().clamp(min=1e-12) / 448.0
            s[i, j] = sc
            q[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128] = e4m3(blk / sc)
    return q, s


def dequant(q, s):
    out_f, in_f = q.shape
    full = s.repeat_interleave(128, 0)[:out_f].repeat_interleave(128, 1)[:, :in_f]
    return (q.float() * full).to(torch.bfloat16).float()


def make_weights(c):
    """Random checkpoint: dict name -> tensor in checkpoint dtypes (fp8 linears + scale_inv)."""
    H, d = c["num_attention_heads"], c["hidden_size"]
    nope, rope, vd, rank = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"], c["kv_lora_rank"]
    t = {}

    def lin(name, o, i):
        w = (torch.rand(o, i) * 2 - 1) * math.sqrt(3.0 / i)
        q, s = quant_weight(w)
        t[name + ".weight"], t[name + ".weight_scale_inv"] = q, s

    def norm(name, n):
        t[name + ".weight"] = (1 + 0.1 * (torch.rand(n) * 2 - 1)).to(torch.bfloat16)

    def bf16(name, o, i, std):
        t[name] = ((torch.rand(o, i) * 2 - 1) * std * math.sqrt(3)).to(torch.bfloat16)

    def mlp(p, inter):
        lin(p + "gate_proj", inter, d)
        lin(p + "up_proj", inter, d)
        lin(p + "down_proj", d, inter)

    def block(L):
        p = f"model.layers.{L}."
        norm(p + "input_layernorm", d)
        norm(p + "post_attention_layernorm", d)
        a = p + "self_attn."
        if c["q_lora_rank"]:
            lin(a + "q_a_proj", c["q_lora_rank"], d)
            norm(a + "q_a_layernorm", c["q_lora_rank"])
            lin(a + "q_b_proj", H * (nope + rope), c["q_lora_rank"])
        else:
            lin(a + "q_proj", H * (nope + rope), d)
        lin(a + "kv_a_proj_with_mqa", rank + rope, d)
        norm(a + "kv_a_layernorm", rank)
        lin(a + "kv_b_proj", H * (nope + vd), rank)
        lin(a + "o_proj", d, H * vd)
        if L >= c["first_k_dense_replace"]:
            m = p + "mlp."
            bf16(m + "gate.weight", c["n_routed_experts"], d, 1 / math.sqrt(d))
            # Non-negative bias: HF masks dropped groups with 0.0, dsv3 with -inf; equal when all scores are > 0.
            t[m + "gate.e_score_correction_bias"] = torch.rand(c["n_routed_experts"]) * 0.05
            for e in range(c["n_routed_experts"]):
                mlp(f"{m}experts.{e}.", c["moe_intermediate_size"])
            mlp(m + "shared_experts.", c["moe_intermediate_size"] * c["n_shared_experts"])
        else:
            mlp(p + "mlp.", c["intermediate_size"])

    t["model.embed_tokens.weight"] = ((torch.rand(c["vocab_size"], d) * 2 - 1) * math.sqrt(3)).to(torch.bfloat16)
    for L in range(c["num_hidden_layers"]):
        block(L)
    norm("model.norm", d)
    bf16("lm_head.weight", c["vocab_size"], d, 1 / math.sqrt(d))
    for k in range(c["num_nextn_predict_layers"]):
        L = c["num_hidden_layers"] + k
        p = f"model.layers.{L}."
        block(L)
        t[p + "embed_tokens.weight"] = t["model.embed_tokens.weight"].clone()
        norm(p + "enorm", d)
        norm(p + "hnorm", d)
        bf16(p + "eh_proj.weight", d, 2 * d, 1 / math.sqrt(2 * d))
        norm(p + "shared_head.norm", d)
        t[p + "shared_head.head.weight"] = t["lm_head.weight"].clone()
    return t


def hub_config(c, fp8=True):
    j = {k: v for k, v in c.items() if k != "shards"}
    j.update(architectures=["DeepseekV3ForCausalLM"], model_type="deepseek_v3", num_key_value_heads=c["num_attention_heads"],
             scoring_func="sigmoid", topk_method="noaux_tc", norm_topk_prob=True, moe_layer_freq=1, hidden_act="silu",
             rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=0, eos_token_id=1,
             attention_bias=False, attention_dropout=0.0, torch_dtype="bfloat16", initializer_range=0.02)
    if fp8:
        j["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                    "weight_block_size": [128, 128]}
    return j


def write_checkpoint(out, c, t):
    os.makedirs(out, exist_ok=True)
    names = list(t.keys())
    n_shards = c["shards"]
    per = math.ceil(len(names) / n_shards)
    # keep each scale with its weight
    shards, cur = [], []
    for n in names:
        if len(cur) >= per and not n.endswith("_scale_inv"):
            shards.append(cur)
            cur = []
        cur.append(n)
    shards.append(cur)
    wm, total = {}, 0
    for i, sh in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):06d}.safetensors"
        save_file({n: t[n].contiguous() for n in sh}, os.path.join(out, fname), metadata={"format": "pt"})
        for n in sh:
            wm[n] = fname
            total += t[n].numel() * t[n].element_size()
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": wm}, f, indent=2)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(hub_config(c), f, indent=2)


# ---------------------------------------------------------------------------------------------------------------
# Independent torch reference (model-spec.md). emulate=True mirrors dsv3's fp8 numerics: bf16 activations between
# ops, 1x128 activation quantization, block-scaled GEMM with per-block promotion, fp32 inside each op.

class Ref:
    def __init__(self, c, t, emulate):
        self.c, self.t, self.emulate = c, t, emulate

    def bf(self, x):
        return x.to(torch.bfloat16).float() if self.emulate else x

    def w(self, name):
        return self.t[name].float()

    def linear(self, x, name):
        q, s = self.t[name + ".weight"], self.t.get(name + ".weight_scale_inv")
        if s is None:
            return self.bf(x @ q.float().T)
        if not self.emulate:
            return x @ dequant(q, s).T
        # act quant per token per 128 (partial last group), block GEMM with promotion per K block
        n, k = x.shape
        out = torch.zeros(n, q.shape[0], dtype=torch.float64)
        wf = q.float()
        sfull = s.repeat_interleave(128, 0)[: q.shape[0]]  # [out, kb]
        for g in range(math.ceil(k / 128)):
            xs = x[:, g * 128:(g + 1) * 128]
            amax = xs.abs().amax(dim=1, keepdim=True).clamp(min=1e-4)
            sa = amax / 448.0
            xq = e4m3(xs / sa).float()
            blk = (xq.double() @ wf[:, g * 128:(g + 1) * 128].double().T)
            out += blk * (sa.double() * sfull[:, g].double()[None, :])
        return self.bf(out.float())

    def rms(self, x, name):
        x = x.float()
        r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
        return self.bf(x * r * self.w(name + ".weight"))

    def inv_freq(self):
        c = self.c
        dim = c["qk_rope_head_dim"]
        f = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        rs = c["rope_scaling"]
        if rs:
            def corr(r):
                return dim * math.log(rs["original_max_position_embeddings"] / (r * 2 * math.pi)) / (2 * math.log(10000.0))
            low = max(math.floor(corr(rs["beta_fast"])), 0)
            high = min(math.ceil(corr(rs["beta_slow"])), dim - 1)
            if low == high:
                high += 0.001
            ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
            smooth = 1 - ramp
            f = f / rs["factor"] * (1 - smooth) + f * smooth
        return f

    def rope(self, x, pos):  # x [..., rope] interleaved pairs
        f = self.inv_freq()
        ang = pos[:, None].float() * f[None, :]
        cos, sin = torch.cos(ang), torch.sin(ang)
        while cos.dim() < x.dim():
            cos, sin = cos[:, None], sin[:, None]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        y = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2)
        return self.bf(y)

    def scale(self):
        c = self.c
        s = (c["qk_nope_head_dim"] + c["qk_rope_head_dim"]) ** -0.5
        rs = c["rope_scaling"]
        if rs and rs.get("mscale_all_dim"):
            m = 0.1 * rs["mscale_all_dim"] * math.log(rs["factor"]) + 1.0
            s *= m * m
        return s

    def attn(self, x, p, pos):
        c = self.c
        n = x.shape[0]
        H, nope, rope, vd, rank = (c["num_attention_heads"], c["qk_nope_head_dim"], c["qk_rope_head_dim"],
                                   c["v_head_dim"], c["kv_lora_rank"])
        a = p + "self_attn."
        if c["q_lora_rank"]:
            q = self.linear(self.rms(self.linear(x, a + "q_a_proj"), a + "q_a_layernorm"), a + "q_b_proj")
        else:
            q = self.linear(x, a + "q_proj")
        q = q.view(n, H, nope + rope)
        q = torch.cat([q[..., :nope], self.rope(q[..., nope:], pos)], -1)
        kva = self.linear(x, a + "kv_a_proj_with_mqa")
        k_pe = self.rope(kva[:, rank:], pos)
        lat = self.rms(kva[:, :rank], a + "kv_a_layernorm")
        kv = self.linear(lat, a + "kv_b_proj").view(n, H, nope + vd)
        k_nope, v = kv[..., :nope], kv[..., nope:]
        sc = (torch.einsum("shd,thd->hst", q[..., :nope], k_nope) + torch.einsum("shd,td->hst", q[..., nope:], k_pe))
        sc = sc * self.scale()
        mask = torch.full((n, n), float("-inf")).triu(1)
        pr = torch.softmax(sc + mask, -1)
        o = self.bf(torch.einsum("hst,thd->shd", pr, v)).reshape(n, H * vd)
        return self.linear(o, a + "o_proj")

    def mlp(self, x, p):
        g, u = self.linear(x, p + "gate_proj"), self.linear(x, p + "up_proj")
        return self.linear(self.bf(torch.nn.functional.silu(g) * u), p + "down_proj")

    def moe(self, x, p):
        c = self.c
        m = p + "mlp."
        z = x @ self.w(m + "gate.weight").T
        s = torch.sigmoid(z)
        b = s + self.t[m + "gate.e_score_correction_bias"][None, :]
        E, G = c["n_routed_experts"], c["n_group"]
        gs = b.view(-1, G, E // G).topk(2, dim=-1).values.sum(-1)
        keep = gs.topk(c["topk_group"], dim=-1).indices
        gmask = torch.zeros_like(gs, dtype=torch.bool).scatter_(1, keep, True)
        bm = b.masked_fill(~gmask.repeat_interleave(E // G, dim=1), float("-inf"))
        idx = bm.topk(c["num_experts_per_tok"], dim=-1).indices
        w = s.gather(1, idx)
        w = w / w.sum(-1, keepdim=True) * c["routed_scaling_factor"]
        acc = torch.zeros_like(x)
        for e in range(E):
            rows, slot = (idx == e).nonzero(as_tuple=True)
            if rows.numel():
                acc[rows] += w[rows, slot][:, None] * self.mlp(x[rows], f"{m}experts.{e}.")
        return self.bf(self.bf(acc) + self.mlp(x, m + "shared_experts."))

    def block(self, h, L, pos):
        p = f"model.layers.{L}."
        h = self.bf(h + self.attn(self.rms(h, p + "input_layernorm"), p, pos))
        x = self.rms(h, p + "post_attention_layernorm")
        f = self.moe(x, p) if L >= self.c["first_k_dense_replace"] else self.mlp(x, p + "mlp.")
        return self.bf(h + f)

    def forward(self, ids):
        pos = torch.arange(len(ids))
        h = self.t["model.embed_tokens.weight"][ids].float()
        for L in range(self.c["num_hidden_layers"]):
            h = self.block(h, L, pos)
        hn = self.rms(h, "model.norm")
        return hn @ self.w("lm_head.weight").T, hn

    def mtp(self, ids, hn):
        L = self.c["num_hidden_layers"]
        p = f"model.layers.{L}."
        e = self.t["model.embed_tokens.weight"][ids[1:]].float()
        cat = torch.cat([self.rms(e, p + "enorm"), self.rms(hn[:-1], p + "hnorm")], -1)
        u = self.bf(cat @ self.w(p + "eh_proj.weight").T)
        g = self.block(u, L, torch.arange(len(ids) - 1))
        return self.rms(g, p + "shared_head.norm") @ self.w("lm_head.weight").T


def hf_logits(c, t, ids, tmp):
    from transformers import AutoModelForCausalLM
    deq = {}
    for n, v in t.items():
        if n.endswith("_scale_inv") or n.startswith(f"model.layers.{c['num_hidden_layers']}."):
            continue
        if v.dtype == torch.float8_e4m3fn:
            v = dequant(v, t[n + "_scale_inv"]).to(torch.bfloat16)
        deq[n] = v.contiguous()
    os.makedirs(tmp, exist_ok=True)
    save_file(deq, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(hub_config(c, fp8=False), f, indent=2)
    model, info = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32, output_loading_info=True)
    print("  HF loading info:", {k: v for k, v in info.items() if v})
    assert not info.get("missing_keys"), info["missing_keys"]
    model.eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def main():
    out_root = sys.argv[1]
    report_all = {}
    for name, c in CONFIGS.items():
        print(f"== {name}")
        torch.manual_seed(1234 + len(name))
        t = make_weights(c)
        out = os.path.join(out_root, name)
        write_checkpoint(out, c, t)
        ids = [0] + torch.randint(2, c["vocab_size"], (SEQ_LEN - 1,)).tolist()
        with open(os.path.join(out, "input_ids.json"), "w") as f:
            json.dump(ids, f)
        ids_t = torch.tensor(ids)
        with torch.no_grad():
            ref, hn = Ref(c, t, emulate=False).forward(ids_t)
            fp8, _ = Ref(c, t, emulate=True).forward(ids_t)
            np.save(os.path.join(out, "logits_ref.npy"), ref.numpy().astype(np.float32))
            np.save(os.path.join(out, "logits_fp8.npy"), fp8.numpy().astype(np.float32))
            rep = {"fp8_vs_ref_rel": float((fp8 - ref).norm() / ref.norm())}
            if c["num_nextn_predict_layers"]:
                mtp = Ref(c, t, emulate=False).mtp(ids_t, hn)
                np.save(os.path.join(out, "logits_mtp.npy"), mtp.numpy().astype(np.float32))
        try:
            hf = hf_logits(c, t, ids, os.path.join("/tmp/dsv3_hf", name))
            np.save(os.path.join(out, "logits_hf.npy"), hf.numpy().astype(np.float32))
            rep["hf_vs_ref_max"] = float((hf - ref).abs().max())
            rep["hf_vs_ref_rel"] = float((hf - ref).norm() / hf.norm())
        except Exception as e:  # keep the torch goldens even if HF cannot load this config
            rep["hf_error"] = repr(e)
        print("  ", rep)
        report_all[name] = rep
        with open(os.path.join(out, "report.json"), "w") as f:
            json.dump(rep, f, indent=2)
    print(json.dumps(report_all, indent=2))


if __name__ == "__main__":
    main()
