#!/usr/bin/env python3
# mla_p_split_numerics.py: the arithmetic of the tensor-core MLA kernels (mla_prefill_mma.cu; mla_decode_mma.cu, whose
# numerics mla_decode_wmma.cu shares) next to that of the CPU reference (CpuBackend::mla_prefill / mla_decode:
# sequential fp32 sums), both rounded to bf16 as the ops' outputs are (dev/kernels lab; numpy, no GPU). It sizes the
# tests/ops tolerances of the P hi + lo split and shows which cases the former P-in-bf16 kernels (DSV3_MLA_P_BF16=1)
# fail. The lane-level index checks of the kernels are mla_prefill_mma_model.py and mla_decode_mma_emu.py.
# Usage: python3 dev/kernels/mla_p_split_numerics.py [prefill|decode|all] [rn|tc]   (all, tc: ~10 min)
import math, sys
import numpy as np

LOG2E = 1.4426950408889634
TC = "tc"  # tensor-core accumulation model: "tc" (pessimistic) or "rn" (one rounding per mma)


def bf16(x):  # fp32 -> bf16 (round to nearest even), returned as float32
    x = np.ascontiguousarray(x, dtype=np.float32)
    b = x.view(np.uint32).astype(np.uint64)
    r = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return r.astype(np.uint32).view(np.float32)


def f32(x):
    return np.asarray(x, dtype=np.float64).astype(np.float32)


def tc_acc(c, prods):
    """d = c + Σ prods on the tensor core: bf16 x bf16 products are exact; c [...] fp32, prods [..., k] float64.
    "tc": every term truncated to the 24-bit grid of the largest one, the sum truncated to fp32 (no guard bits, round
    toward zero: the worst behaviour reported for NVIDIA tensor cores; real ones keep a few extra bits). "rn": the
    exact sum rounded once to fp32."""
    if TC == "rn":
        return f32(c.astype(np.float64) + prods.sum(-1))
    terms = np.concatenate([c.astype(np.float64)[..., None], prods], -1)
    _, e = np.frexp(np.abs(terms).max(-1, keepdims=True))
    q = np.ldexp(1.0, e - 24)
    s = (np.trunc(terms / q) * q).sum(-1)
    _, e2 = np.frexp(s)
    q2 = np.ldexp(1.0, e2 - 24)
    return (np.trunc(s / q2) * q2).astype(np.float32)


def tc_matmul(A, B):
    """A [m, K] bf16 values · B [n, K]ᵀ -> [m, n] fp32 by mma steps of 16 along K."""
    d = np.zeros((A.shape[0], B.shape[0]), np.float32)
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    for k in range(0, A.shape[1], 16):
        d = tc_acc(d, A64[:, None, k:k + 16] * B64[None, :, k:k + 16])
    return d


def seq_dot(A, B):
    """CPU reference: d += a_c · b_c for c = 0.. in fp32 (the products of bf16 values are exact)."""
    d = np.zeros((A.shape[0], B.shape[0]), np.float32)
    for c in range(A.shape[1]):
        d = f32(d + A[:, None, c].astype(np.float32) * B[None, :, c].astype(np.float32))
    return d


def split_p(p, split):  # mma_sm80.cuh split_bf16x2: hi = bf16(p), lo = bf16(p - hi) (exact difference)
    hi = bf16(p)
    return (hi, bf16(f32(p - hi))) if split else (hi, None)


def pv_step(o, p16, v16, split):
    """o [rows, vd] += P[rows, 16 keys] · V[16, vd] as the kernels issue it: mma(hi), then mma(lo)."""
    hi, lo = split_p(p16, split)
    vt = v16.astype(np.float64).T[None]  # [1, vd, 16]
    o = tc_acc(o, hi.astype(np.float64)[:, None, :] * vt)
    if lo is not None:
        o = tc_acc(o, lo.astype(np.float64)[:, None, :] * vt)
    return o


def ex2_approx(x, rng):  # ex2.approx.ftz.f32: max relative error 2^-22 (PTX ISA); modelled as random within it
    y = np.exp2(x.astype(np.float64))
    return f32(y * (1 + rng.uniform(-2.0 ** -22, 2.0 ** -22, y.shape)))


def ref_attention(S_raw, scale, V, last):
    """CPU reference on scores S_raw [rows, nk] (fp32 dot products): sc = d·scale, exp(sc - max), sequential fp32
    sum, w = e / sum, acc += w·v over t <= last[row] in key order; out = bf16(acc). Also Σ w|v| (float64)."""
    rows, nk = S_raw.shape
    sc = f32(S_raw * np.float32(scale))
    vis = np.arange(nk)[None, :] <= last[:, None]
    mx = np.where(vis, sc, -np.inf).max(1)
    e = np.where(vis, f32(np.exp(f32(sc - mx[:, None]).astype(np.float64))), np.float32(0))
    s = np.zeros(rows, np.float32)
    for t in range(nk):
        s = f32(s + e[:, t])
    w = f32(e / s[:, None])
    acc = np.zeros((rows, V.shape[1]), np.float32)
    for t in range(nk):
        acc = f32(acc + f32(w[:, t:t + 1] * V[t][None, :]))
    abs_wv = w.astype(np.float64) @ np.abs(V.astype(np.float64))
    return bf16(acc), abs_wv


def prefill_kernel(S_raw, scale, V, pos, split, rng):
    """mla_prefill_mma.cu per row: 64-key tiles up to the row's diagonal, running max on raw scores, p =
    ex2(fma(s, scale·log2e, -max·scale·log2e)), fp32 row sums, O *= corr, P·V per 16 keys; out = bf16(o · (1/l))."""
    rows, nk = S_raw.shape
    sl2 = f32(np.float32(scale) * np.float32(LOG2E))
    m = np.full(rows, -np.inf, np.float32); l = np.zeros(rows, np.float32)
    o = np.zeros((rows, V.shape[1]), np.float32)
    n_kt = (pos.max()) // 64 + 1
    for kt in range(n_kt):
        t0 = kt * 64
        St = S_raw[:, t0:t0 + 64]
        if St.shape[1] < 64:
            St = np.concatenate([St, np.zeros((rows, 64 - St.shape[1]), np.float32)], 1)
        t = t0 + np.arange(64)
        St = np.where(t[None, :] > pos[:, None], np.float32(-np.inf), St)
        mx = np.maximum(m, St.max(1))
        base = np.where(mx == -np.inf, np.float32(0), f32(mx * sl2))
        with np.errstate(invalid="ignore"):
            corr = ex2_approx(np.where(m == -np.inf, -np.inf, m.astype(np.float64) * sl2 - base), rng)
        m = mx
        p = ex2_approx(f32(St.astype(np.float64) * sl2 - base[:, None]), rng)  # fmaf: one rounding
        ps = np.zeros(rows, np.float32)
        for j in range(64):
            ps = f32(ps + p[:, j])
        l = f32(l * corr + ps)
        o = f32(o * corr[:, None])
        Vt = V[t0:t0 + 64]
        if Vt.shape[0] < 64:
            Vt = np.concatenate([Vt, np.zeros((64 - Vt.shape[0], V.shape[1]), np.float32)], 0)
        for kk in range(4):
            o = pv_step(o, p[:, 16 * kk:16 * kk + 16], Vt[16 * kk:16 * kk + 16], split)
    inv = f32(np.where(l > 0, 1 / np.where(l > 0, l, 1).astype(np.float64), 0))
    return bf16(f32(o * inv[:, None]))


def decode_kernel(S_raw, scale, V, length, split, split_len, rng):
    """mla_decode_mma.cu for one row (all heads share the keys): per split of split_len keys, 64-key tiles, s =
    s_raw·scale·log2e, p = exp2(s - m), fp32 sums, O *= corr, P·V per 16 keys; several splits merge as
    mla_decode_combine does (natural-log maxima)."""
    heads = S_raw.shape[0]
    sl2 = f32(np.float32(scale) * np.float32(LOG2E))
    s_all = f32(S_raw * sl2)
    parts = []
    for b in range(0, length, split_len):
        e = min(length, b + split_len)
        m = np.full(heads, -np.inf, np.float32); l = np.zeros(heads, np.float32)
        o = np.zeros((heads, V.shape[1]), np.float32)
        for k0 in range(b, e, 64):
            n = min(64, e - k0)
            st = np.full((heads, 64), -np.inf, np.float32); st[:, :n] = s_all[:, k0:k0 + n]
            m_new = np.maximum(m, st.max(1))
            corr = f32(np.exp2(f32(m - m_new).astype(np.float64)))
            m = m_new
            p = f32(np.exp2(f32(st - m[:, None]).astype(np.float64)))
            ps = np.zeros(heads, np.float32)
            for j in range(64):
                ps = f32(ps + (bf16(p[:, j]) if not split else p[:, j]))  # the former kernel summed the bf16 P
            l = f32(l * corr + ps)
            o = f32(o * corr[:, None])
            Vt = np.zeros((64, V.shape[1]), np.float32); Vt[:n] = V[k0:k0 + n]
            for kk in range(4):
                o = pv_step(o, p[:, 16 * kk:16 * kk + 16], Vt[16 * kk:16 * kk + 16], split)
        parts.append((o, f32(m * np.float32(0.6931471805599453)), l))
    if len(parts) == 1:
        o, _, l = parts[0]
        inv = f32(np.where(l > 0, 1 / np.where(l > 0, l, 1).astype(np.float64), 0))
        return bf16(f32(o * inv[:, None]))
    M = np.max([p_[1] for p_ in parts], 0)
    w = [f32(np.exp(f32(p_[1] - M).astype(np.float64))) for p_ in parts]
    L = np.zeros(heads, np.float32); acc = np.zeros((heads, V.shape[1]), np.float32)
    for (o, _, l), wi in zip(parts, w):
        L = f32(L + f32(l * wi))
        acc = f32(acc + f32(wi[:, None] * o))
    inv = f32(1 / L.astype(np.float64))
    return bf16(f32(acc * inv[:, None]))


def ulp_bf16(x):  # spacing of bf16 values at |x| (8 significant bits)
    _, e = np.frexp(np.maximum(np.abs(x).astype(np.float64), 2.0 ** -126))
    return np.ldexp(1.0, e - 8)


def stats(name, ref, got, abs_wv):
    """What tests/ops checks, in its terms: the share of unequal elements and of those more than one bf16 step apart;
    the worst excess beyond one step relative to Σ w|v| (in units of 2^-16) and the worst ratio to within_attn_bound's
    split bound ulp(max(|got|, |ref|)) + 2^-12 Σ w|v|; NMSE; the worst ratio to kTolAttnSplit's per-element limit
    (|ref| / 128 + 0.4% of the rms)."""
    ref = ref.astype(np.float64); got = got.astype(np.float64)
    d = np.abs(got - ref)
    one = ulp_bf16(np.maximum(np.abs(got), np.abs(ref)))
    excess = np.maximum(d - one, 0) / abs_wv
    bound = (d / (one + 2.0 ** -12 * abs_wv)).max()
    nmse = (d ** 2).sum() / (ref ** 2).sum()
    rms = math.sqrt((ref ** 2).mean())
    tol_ratio = (d / (2 ** -7 * np.abs(ref) + 4e-3 * rms)).max()
    print(f"  {name:<7} unequal {np.mean(d > 0):6.4f}  >1 step {np.mean(d > one):.5f}  excess {excess.max() / 2 ** -16:7.3f}"
          f"·2^-16 Σw|v|  split bound {bound:6.3f}x  nmse {nmse:.2e} (Tol 3e-7)  Tol per element {tol_ratio:.3f}x",
          flush=True)
    return excess.max(), np.mean(d > 0), nmse


def prefill_case(nq, nk, heads, q_std=1.0, rows=None, seed=0):
    """A chunk of nq queries over nk keys (kv = nk tokens of one sequence, the query i at position nk - nq + i), for
    `rows` sampled rows (all when None): rows are independent in both computations."""
    rng = np.random.default_rng(seed)
    scale = 1 / math.sqrt(192)
    sel = np.arange(nq) if rows is None or rows >= nq else np.sort(rng.choice(nq, rows, replace=False))
    pos = (nk - nq + sel).astype(np.int64)
    print(f"prefill q={nq} kv={nk} heads={heads} q_std={q_std} rows={len(sel)} ({TC})", flush=True)
    out = {True: [], False: []}
    for h in range(heads):
        Q = bf16(rng.normal(0, q_std, (nq, 192)))[sel]
        K = bf16(rng.normal(0, 1, (nk, 192))); V = bf16(rng.normal(0, 1, (nk, 128)))
        ref, abs_wv = ref_attention(seq_dot(Q, K), scale, V, pos)
        S_gpu = tc_matmul(Q, K)
        for split in (True, False):
            out[split].append((ref, prefill_kernel(S_gpu, scale, V, pos, split, rng), abs_wv))
    res = {}
    for split in (True, False):
        ref, got, awv = (np.concatenate([x[i] for x in out[split]]) for i in range(3))
        res[split] = stats("split" if split else "P bf16", ref, got, awv)
    return res


def decode_case(length, heads, split_len=None, seed=0):
    rng = np.random.default_rng(seed)
    scale = 1 / math.sqrt(192)
    split_len = split_len or length
    print(f"decode len={length} heads={heads} split_len={split_len} ({TC})", flush=True)
    Q = bf16(rng.normal(0, 0.5, (heads, 576))); K = bf16(rng.normal(0, 1, (length, 576)))
    V = K[:, :512]
    last = np.full(heads, length - 1)
    ref, abs_wv = ref_attention(seq_dot(Q, K), scale, V, last)
    S_gpu = tc_matmul(Q, K)
    res = {}
    for split in (True, False):
        res[split] = stats("split" if split else "P bf16", ref, decode_kernel(S_gpu, scale, V, length, split, split_len,
                                                                                rng), abs_wv)
    return res


def prefill():
    prefill_case(300, 300, 2, q_std=4.0)
    prefill_case(1024, 1024, 2, rows=256)
    prefill_case(4096, 4096, 2, rows=192)
    prefill_case(512, 4096, 2, rows=192)


def decode():
    decode_case(1000, 64)
    decode_case(8192, 64, split_len=128)
    decode_case(8192, 64)
    decode_case(3000, 64, split_len=1536)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if len(sys.argv) > 2:
        TC = sys.argv[2]
    if what in ("prefill", "all"):
        prefill()
    if what in ("decode", "all"):
        decode()
