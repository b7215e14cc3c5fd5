#!/usr/bin/env python3
# gemv_v2_emu.py: a numpy emulation of linear_fp8_gemv_v2_kernel (src/dsv3/backend/cuda/gemv_fp8_v2.cu), thread by
# thread where the index arithmetic lives — the cluster/tile/K-range partition, the fused quantization's thread map
# and swizzled code stores, the weight-scale table, the stage ring of either copy engine (cp: the 16-byte cp.async
# placement with zero fill past m and k; bulk: one row per producer lane at the padded stride, rows past m left stale
# (poisoned here), the producer running as far ahead as its empty barriers allow), every chunk a consumer reads
# coming from the stage it computes, the mma.m16n8k32 fragments by the PTX ISA's layouts (weights as A, codes as B),
# the K-warps' tile-end reduction and the cluster's rank-order sum — for every compiled geometry (tile rows x stage
# K-blocks), against an independent numpy GEMV over codes from an independent quantize_row_fp8; it also checks that
# every LDS.128 phase and every code store is free of bank conflicts, and prints the launcher's split choices for the
# DeepSeek-V3 shapes (plan_for / plan_cost, with the H200's cluster occupancy assumed: 132, 66, 32, 16 clusters of
# 1, 2, 4, 8 per CTA per SM). Keep it in step with the kernel. Run: /usr/bin/python3 dev/kernels/gemv_v2_emu.py
# (a few minutes)
import numpy as np, sys

kThreads, kQGroups, kQBatch, kBulkPad = 256, 16, 8, 64

# ---- e4m3 ----
def e4m3_table():
    v = np.zeros(256, np.float64)
    for c in range(256):
        s, e, m = c >> 7, (c >> 3) & 15, c & 7
        mag = np.nan if (e == 15 and m == 7) else (m / 8 * 2.0**-6 if e == 0 else (1 + m / 8) * 2.0**(e - 7))
        v[c] = -mag if s else mag
    return v
E4M3 = e4m3_table()
POS = E4M3[:127]  # codes 0..0x7e, increasing
def f32_to_e4m3(y):  # RNE, saturating to ±448, NaN -> 0x7f (numeric.h f32_to_fp8e4m3)
    y = np.asarray(y, np.float32).astype(np.float64)
    sign = np.signbit(y).astype(np.uint8) << 7
    a = np.minimum(np.abs(np.nan_to_num(y)), 448.0)
    i = np.clip(np.searchsorted(POS, a), 1, 126)
    lo, hi = POS[i - 1], POS[i]
    pick_hi = (a - lo > hi - a) | ((a - lo == hi - a) & ((i - 1) % 2 == 1))
    code = np.where(a <= POS[0], 0, np.where(pick_hi, i, i - 1)).astype(np.uint8)
    code = np.where(a >= 448.0, 0x7e, code).astype(np.uint8)
    return np.where(np.isnan(y), 0x7f, code | sign).astype(np.uint8)

def group_scale(amax, ue8m0):  # fp8_group_scale / quantize_row_fp8
    amax = np.maximum(np.float32(amax), np.float32(1e-4))
    s = np.float32(amax / np.float32(448.0))
    if ue8m0:
        u = np.array(s, np.float32).view(np.uint32)
        e = int((u >> 23) & 0xff) - 127 + int((u & 0x7fffff) != 0)
        s = np.float32(2.0**e)
    return np.float32(s)

def quantize_row_ref(x, ue8m0):  # x: float32 [k] -> codes [k], scales [kb] (independent of the kernel's map)
    k = len(x); kb = (k + 127) // 128
    codes = np.zeros(k, np.uint8); sc = np.zeros(kb, np.float32)
    for g in range(kb):
        v = x[g * 128:min(k, g * 128 + 128)]
        s = group_scale(np.max(np.abs(v)) if len(v) else 0, ue8m0)
        sc[g] = s
        codes[g * 128:g * 128 + len(v)] = f32_to_e4m3(v / s)
    return codes, sc

# ---- bank-conflict bookkeeping ----
conflicts = {"lds": 0, "sts": 0}
def check_lds128(addrs):  # 32 lane addresses of one LDS.128: 4 phases of 8 lanes, distinct 16-byte bank groups
    for ph in range(4):
        a = addrs[8 * ph:8 * ph + 8]
        uniq = sorted(set(int(v) for v in a))
        if len({(v // 16) % 8 for v in uniq}) != len(uniq): conflicts["lds"] += 1
def check_sts64(addrs):  # 32 lane addresses of one STS.64: 2 phases of 16 lanes, distinct 8-byte bank pairs
    for ph in range(2):
        a = [int(v) for v in addrs[16 * ph:16 * ph + 16]]
        if len({(v // 8) % 16 for v in a}) != len(a): conflicts["sts"] += 1

def swz(r, c, stride): return r * stride + ((c ^ ((r & 1) << 2)) << 4)

def mma_m16n8k32(a_regs, b_regs):
    """a_regs [32 lanes][4] 4-byte arrays (a0..a3), b_regs [32][2]: D [32 lanes][4] by the PTX fragment layouts."""
    A = np.zeros((16, 32)); B = np.zeros((32, 8))
    for lane in range(32):
        g, q = lane >> 2, lane & 3
        A[g, 4 * q:4 * q + 4] = E4M3[a_regs[lane][0]]
        A[g + 8, 4 * q:4 * q + 4] = E4M3[a_regs[lane][1]]
        A[g, 16 + 4 * q:16 + 4 * q + 4] = E4M3[a_regs[lane][2]]
        A[g + 8, 16 + 4 * q:16 + 4 * q + 4] = E4M3[a_regs[lane][3]]
        B[4 * q:4 * q + 4, g] = E4M3[b_regs[lane][0]]
        B[16 + 4 * q:16 + 4 * q + 4, g] = E4M3[b_regs[lane][1]]
    D = A @ B
    out = np.zeros((32, 4))
    for lane in range(32):
        g, q = lane >> 2, lane & 3
        out[lane] = [D[g, 2 * q], D[g, 2 * q + 1], D[g + 8, 2 * q], D[g + 8, 2 * q + 1]]
    return out

def emulate(x, w, sw, n, m, k, S, C, ue8m0, rows=32, stage_kb=4, stages=5, bulk=False):
    """x: float32 [n, k] (bf16 values), w: uint8 [m, k], sw: float32 [ceil(m/128), kb]. Returns out [n, m] f64,
    codes [n, k], scales [kb, n] as the kernel's cluster 0 writes them (dbg)."""
    RG = rows // 16; KW = 8 // RG; BPW = stage_kb // KW
    row_bytes = stage_kb * 128; row_stride = row_bytes + (kBulkPad if bulk else 0)
    stage_bytes = rows * row_stride; tile_out = 8 * rows
    assert stage_kb % KW == 0 and BPW >= 1 and (not bulk or k % 128 == 0)
    kb = (k + 127) // 128; T = (m + rows - 1) // rows
    kbr_max = (kb + S - 1) // S; stride = kbr_max * 128
    tpc_max = (T + C - 1) // C; srows_max = (tpc_max * rows + 127) // 128 + 1
    out = np.full((n, m), np.nan); dbg_codes = np.full((n, k), 0xFF, np.uint8); dbg_sc = np.full((kb, n), np.nan, np.float32)
    written = np.zeros((n, m), int)
    parts = {}
    for cid in range(C):
        for rank in range(S):
            t_begin, t_end = cid * T // C, (cid + 1) * T // C
            b_begin, b_end = rank * kb // S, (rank + 1) * kb // S
            kbr = b_end - b_begin; n_chunks = (kbr + stage_kb - 1) // stage_kb; n_stages = (t_end - t_begin) * n_chunks
            assert kbr >= 1 and t_end > t_begin and kbr <= kbr_max and t_end - t_begin <= tpc_max
            srow0 = t_begin * rows // 128
            codes = np.full(n * stride, 0x7f, np.uint8)  # poisoned: NaN codes
            sa = np.full(kbr_max * 8, np.nan, np.float32)
            # ---- the weight-scale table ----
            sws = np.full(srows_max * kbr_max, np.nan, np.float32)
            n_srows = (m + 127) // 128
            for e in range(srows_max * kbr_max):
                r, bl = e // kbr_max, e % kbr_max
                sws[e] = sw[srow0 + r, b_begin + bl] if srow0 + r < n_srows and bl < kbr else 0
            # ---- quantize_range ----
            for e in range(kbr_max * 8):  # the loop over e = tid, tid + 256, ...
                if (e & 7) >= n: sa[e] = 0
            n_groups = n * kbr
            for base in range(0, n_groups, kQGroups * kQBatch):
                for u in range(kQBatch):
                    tids = np.arange(kThreads); warp = tids >> 5; sub = tids & 15
                    skip = base + u * kQGroups + 2 * warp >= n_groups  # the warp-uniform break
                    gi = base + u * kQGroups + (tids >> 4)
                    t = gi // kbr; bl = gi - t * kbr
                    kk = (b_begin + bl) * 128 + sub * 8
                    v = np.zeros((kThreads, 8), np.float32)
                    for tid in range(kThreads):
                        if gi[tid] < n_groups and kk[tid] < k: v[tid] = x[t[tid], kk[tid]:kk[tid] + 8]
                    amax16 = np.abs(v).max(axis=1).reshape(16, 16).max(axis=1)  # 16-lane shuffle groups
                    addrs = []
                    for tid in range(kThreads):
                        if skip[tid]: addrs.append(None); continue
                        s = group_scale(amax16[tid >> 4], ue8m0)
                        y = (v[tid] / s).astype(np.float32)  # the kernel's division equals x/s for every code
                        if gi[tid] < n_groups:
                            a = swz(t[tid], bl[tid] * 8 + (sub[tid] >> 1), stride) + 8 * (sub[tid] & 1)
                            codes[a:a + 8] = f32_to_e4m3(y); addrs.append(a)
                            if sub[tid] == 0: sa[bl[tid] * 8 + t[tid]] = s
                        else: addrs.append(None)
                    for wp in range(8):  # bank check of each warp's STS.64 (lanes with a store)
                        la = addrs[32 * wp:32 * wp + 32]
                        if all(a is not None for a in la): check_sts64(la)
            if cid == 0:  # dbg
                for e in range(n * kbr * 8):
                    t_, c_ = e // (kbr * 8), e % (kbr * 8)
                    kk_ = b_begin * 128 + c_ * 16
                    if kk_ < k: dbg_codes[t_, kk_:kk_ + 16] = codes[swz(t_, c_, stride):swz(t_, c_, stride) + 16]
                for e in range(n * kbr):
                    t_, bl_ = e // kbr, e % kbr
                    dbg_sc[b_begin + bl_, t_] = sa[bl_ * 8 + t_]
            # ---- the stage ring ----
            ring = np.full((stages, stage_bytes), 0x7f, np.uint8)  # stale shared memory: NaN codes
            tag = np.full((stages, stage_bytes // 16), -1, int)  # which stage wrote each 16-byte chunk
            computed = set()
            def issue(i):
                if i >= n_stages: return
                assert i < stages or (i - stages) in computed, "refilling a slot that is still to be consumed"
                tile = t_begin + i // n_chunks; kb0 = b_begin + (i % n_chunks) * stage_kb
                row0 = tile * rows; nkb = min(stage_kb, b_end - kb0); slot = i % stages
                if bulk:  # producer lane r: row r's run, rows < m only, whole blocks
                    for r in range(min(rows, m - row0)):
                        a = r * row_stride
                        ring[slot, a:a + nkb * 128] = w[row0 + r, kb0 * 128:kb0 * 128 + nkb * 128]
                        tag[slot, a // 16:(a + nkb * 128) // 16] = i
                    for r in range(min(rows, m - row0), rows):  # stale rows: poison again, mark them stale
                        ring[slot, r * row_stride:(r + 1) * row_stride] = 0x7f
                        tag[slot, r * row_stride // 16:(r + 1) * row_stride // 16] = -2
                    return
                for tid in range(kThreads):
                    for u in range(rows * stage_kb * 8 // kThreads):
                        e = tid + kThreads * u; row = e // (stage_kb * 8); c = e % (stage_kb * 8)
                        if (c >> 3) >= nkb: continue
                        kbyte = kb0 * 128 + c * 16
                        ok = row0 + row < m and kbyte < k
                        a = swz(row, c, row_bytes)
                        ring[slot, a:a + 16] = w[row0 + row, kbyte:kbyte + 16] if ok else 0
                        tag[slot, a // 16] = i
            acc = np.zeros((8, 32, 4))
            red = np.full((2, KW * tile_out), np.nan); part = np.full(tpc_max * tile_out, np.nan)
            issued = 0
            for i in range(n_stages):
                # cp: stages - 1 ahead (stage i + stages - 1 issued after stage i - 1 was computed);
                # bulk: the producer as far ahead as the empty barriers let it (stage j once j - stages is computed).
                ahead = i + stages - 1 if not bulk else i - 1 + stages
                while issued <= min(ahead, n_stages - 1): issue(issued); issued += 1
                chunk = i % n_chunks; slot = i % stages; tile = t_begin + i // n_chunks
                for warp in range(8):
                    kw, rg = warp % KW, warp // KW
                    swr = ((tile * rows + 16 * rg) // 128 - srow0) * kbr_max
                    assert 0 <= (tile * rows + 16 * rg) // 128 - srow0 < srows_max
                    for u in range(BPW):
                        kbi = kw + KW * u; bl = chunk * stage_kb + kbi
                        if bl >= kbr: continue
                        lanes = np.arange(32); g = lanes >> 2; q = lanes & 3
                        tg = np.minimum(g, n - 1); rlo = 16 * rg + g
                        wl, wh, cv = [], [], []
                        for j in range(2):
                            c = kbi * 8 + 4 * j + q
                            if bulk:
                                alo = rlo * row_stride + (c << 4); ahi = (rlo + 8) * row_stride + (c << 4)
                            else:
                                alo = rlo * row_stride + ((c ^ ((g & 1) << 2)) << 4)
                                ahi = (rlo + 8) * row_stride + ((c ^ ((g & 1) << 2)) << 4)
                            ac = tg * stride + (((bl * 8 + 4 * j + q) ^ ((tg & 1) << 2)) << 4)
                            for arr in (alo, ahi): check_lds128(arr)
                            check_lds128(ac)
                            for arr, rr in ((alo, rlo), (ahi, rlo + 8)):
                                for L in range(32):  # rows past m may be stale (bulk); all else from stage i
                                    tg_ = tag[slot, arr[L] // 16]
                                    assert tg_ == i or (tg_ == -2 and tile * rows + rr[L] >= m), "chunk from another stage"
                            wl.append([ring[slot, a:a + 16] for a in alo]); wh.append([ring[slot, a:a + 16] for a in ahi])
                            cv.append([codes[a:a + 16] for a in ac])
                        blk = np.zeros((32, 4))
                        with np.errstate(invalid="ignore"):
                            for j in range(2):
                                for h in range(2):
                                    a_regs = [[wl[j][L][8 * h:8 * h + 4], wh[j][L][8 * h:8 * h + 4], wl[j][L][8 * h + 4:8 * h + 8],
                                               wh[j][L][8 * h + 4:8 * h + 8]] for L in range(32)]
                                    b_regs = [[cv[j][L][8 * h:8 * h + 4], cv[j][L][8 * h + 4:8 * h + 8]] for L in range(32)]
                                    blk += mma_m16n8k32(a_regs, b_regs)
                            swv = sws[swr + bl]
                            s0 = sa[bl * 8 + 2 * q] * swv; s1 = sa[bl * 8 + 2 * q + 1] * swv
                            acc[warp, :, 0] += blk[:, 0] * s0; acc[warp, :, 1] += blk[:, 1] * s1
                            acc[warp, :, 2] += blk[:, 2] * s0; acc[warp, :, 3] += blk[:, 3] * s1
                computed.add(i)
                if chunk == n_chunks - 1:
                    lt = i // n_chunks; rb = red[lt & 1]
                    rb[:] = np.nan
                    for warp in range(8):
                        kw, rg = warp % KW, warp // KW
                        for lane in range(32):
                            g, q = lane >> 2, lane & 3; row = 16 * rg + g; r0 = kw * tile_out
                            rb[r0 + (2 * q) * rows + row] = acc[warp, lane, 0]
                            rb[r0 + (2 * q + 1) * rows + row] = acc[warp, lane, 1]
                            rb[r0 + (2 * q) * rows + row + 8] = acc[warp, lane, 2]
                            rb[r0 + (2 * q + 1) * rows + row + 8] = acc[warp, lane, 3]
                    acc[:] = 0
                    v = rb[0:tile_out].copy()
                    for kw in range(1, KW): v = v + rb[kw * tile_out:(kw + 1) * tile_out]
                    for e in range(tile_out):  # every sum a stored output needs was written (rows past m may be NaN)
                        if e // rows < n and tile * rows + e % rows < m: assert not np.isnan(v[e]), "a red slot was not written"
                    if S == 1:
                        for e in range(tile_out):
                            t_, j_ = e // rows, tile * rows + e % rows
                            if t_ < n and j_ < m: out[t_, j_] = v[e]; written[t_, j_] += 1
                    else:
                        part[lt * tile_out:(lt + 1) * tile_out] = v
            if S > 1: parts[(cid, rank)] = (part, t_begin, t_end)
    if S > 1:
        for cid in range(C):
            for rank in range(S):
                _, t_begin, t_end = parts[(cid, rank)]
                for tl in range(rank, t_end - t_begin, S):
                    v = parts[(cid, 0)][0][tl * tile_out:(tl + 1) * tile_out].copy()
                    for r in range(1, S): v = v + parts[(cid, r)][0][tl * tile_out:(tl + 1) * tile_out]
                    for e in range(tile_out):
                        t_, j_ = e // rows, (t_begin + tl) * rows + e % rows
                        if t_ < n and j_ < m:
                            assert not np.isnan(v[e]); out[t_, j_] = v[e]; written[t_, j_] += 1
    assert (written == 1).all(), "every output written exactly once"
    return out, dbg_codes, dbg_sc

def bf16(v):  # round float32 to bf16 (RNE), back to float32
    u = np.asarray(v, np.float32).view(np.uint32).astype(np.uint64)
    return ((((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32)).view(np.float32)

def run_case(n, m, k, S, C, ue8m0, seed, cfg=(32, 4, 5, False)):
    rng = np.random.default_rng(seed)
    kb = (k + 127) // 128
    x = bf16(rng.standard_normal((n, k)).astype(np.float32))
    x[0, :min(k, 128)] = 0; x[n - 1, 128:256] = bf16(rng.standard_normal(len(x[n - 1, 128:256])) * 1e-6)
    w = f32_to_e4m3(rng.standard_normal((m, k)) * 60)
    w = np.where((w & 0x7f) == 0, 0x38, w).astype(np.uint8)
    sw = rng.uniform(2e-4, 6e-4, ((m + 127) // 128, kb)).astype(np.float32)
    rows, stage_kb, stages, bulk = cfg
    out, codes, scales = emulate(x, w, sw, n, m, k, S, C, ue8m0, rows, stage_kb, stages, bulk and k % 128 == 0)
    ref_codes = np.zeros((n, k), np.uint8); ref_sc = np.zeros((kb, n), np.float32)
    for t in range(n):
        c, s = quantize_row_ref(x[t], ue8m0); ref_codes[t] = c; ref_sc[:, t] = s
    # the GEMV in float64 over the reference codes: Σ_b (Σ_i a·w) · sa · sw
    a = E4M3[ref_codes]; wf = E4M3[w]
    ref = np.zeros((n, m))
    for b in range(kb):
        blk = a[:, b * 128:(b + 1) * 128] @ wf[:, b * 128:(b + 1) * 128].T
        ref += blk * ref_sc[b][:, None] * sw[np.arange(m) // 128, b][None, :]
    err = np.abs(out - ref).max() / (np.abs(ref).max() + 1e-30)
    ok = (codes == ref_codes).all() and (scales == ref_sc).all() and err < 1e-5
    print(f"rows={rows} stage_kb={stage_kb} stages={stages} {'bulk' if bulk and k % 128 == 0 else 'cp'} "
          f"n={n} m={m} k={k} split={S} clusters={C} ue8m0={ue8m0}: codes {'ok' if (codes == ref_codes).all() else 'DIFFER'}, "
          f"scales {'ok' if (scales == ref_sc).all() else 'DIFFER'}, max rel err {err:.2e} -> {'ok' if ok else 'FAIL'}")
    return ok

# ---- the launcher's plan (plan_for / plan_cost / choose_plan) ----
def plan(n, m, k, S, max_clusters, rows=32, stage_kb=4, stages=5, bulk=False, ctas=1, n_sms=132):
    smem = 227 * 1024 if ctas == 1 else 113 * 1024
    kb = (k + 127) // 128; T = (m + rows - 1) // rows
    mc = max_clusters[S] * ctas
    if S > kb or mc <= 0 or (bulk and k % 128): return None
    C = min(mc, T); kbr = (kb + S - 1) // S; tpc = (T + C - 1) // C; srows = (tpc * rows + 127) // 128 + 1
    a128 = lambda v: (v + 127) // 128 * 128
    ring = stages * rows * (stage_kb * 128 + (kBulkPad if bulk else 0))
    used = a128(ring) + 128 + a128(srows * kbr * 4) + n * kbr * 128 + a128(kbr * 32) + 8192 + (tpc * 8 * rows * 4 if S > 1 else 0)
    if used > smem: return None
    nctas = C * S; bytes_ = tpc * rows * kbr * 128
    bw = min(4540 / nctas, 2 * 4540 / (n_sms * ctas))
    cost = bytes_ / bw + max(0, n * kbr * 128 / 20 - 1000) + (500 if S > 1 else 0)
    return dict(S=S, C=C, kbr=kbr, tpc=tpc, smem=used, cost=cost)

SWEEP = [  # tests/ops/cases_linear.cpp gemv2_sweep_configs: (rows, stage_kb, stages, bulk, ctas)
    (32, 4, 5, False, 1), (32, 4, 8, False, 1), (32, 4, 4, False, 2), (32, 8, 4, False, 1), (32, 8, 2, False, 2),
    (16, 8, 6, False, 1), (16, 8, 4, False, 2), (16, 16, 4, False, 1), (16, 16, 2, False, 2),
    (32, 4, 6, True, 1), (32, 4, 4, True, 2), (32, 8, 4, True, 1), (32, 8, 2, True, 2),
    (16, 8, 8, True, 1), (16, 8, 4, True, 2), (16, 16, 4, True, 1), (16, 16, 2, True, 2)]

def plan_table():
    mc = {1: 132, 2: 66, 4: 32, 8: 16}
    shapes = [("q_a_proj", 1536, 7168), ("kv_a_proj", 576, 7168), ("q_b_proj", 24576, 1536), ("kv_b_proj", 32768, 512),
              ("o_proj", 7168, 16384), ("dense_gate_up", 18432, 7168), ("dense_down", 7168, 18432),
              ("expert_gate_up", 2048, 7168), ("expert_down", 7168, 2048)]
    print("plan of the default (assumed max clusters 132/66/32/16): estimated µs per split, * = chosen; floor = bytes / 4.54 TB/s")
    for name, m, k in shapes:
        for n in (1, 8):
            ps = {S: plan(n, m, k, S, mc) for S in (1, 2, 4, 8)}
            best = min((p for p in ps.values() if p), key=lambda p: p["cost"])
            fmt = lambda p: "     -" if p is None else "%6.1f" % (p["cost"] / 1e3)
            cells = "  ".join(f"s{S}: {fmt(p)}{'*' if p is best else ' '}" for S, p in ps.items())
            print(f"  {name:<15} n={n}  {cells}   floor {m * k / 4540 / 1e3:5.1f}")
    # Every sweep configuration must fit every decode shape at some split (else the sweep cell is a fallback).
    for c in SWEEP:
        for name, m, k in shapes:
            for n in (1, 8):
                if not any(plan(n, m, k, S, mc, *c) for S in (1, 2, 4, 8)):
                    print(f"  sweep config {c} does not fit {name} at n={n}")

if __name__ == "__main__":
    plan_table()
    cases = [(3, 100, 1040, 2, 2, False), (8, 70, 656, 4, 1, True), (1, 33, 128, 1, 2, False), (5, 64, 512, 2, 2, False),
             (8, 200, 2064, 8, 1, False), (2, 130, 1024, 1, 3, True), (7, 96, 1536, 4, 2, False), (4, 160, 768, 2, 3, False)]
    ok = all(run_case(*c, seed=i) for i, c in enumerate(cases))
    # Each compiled geometry with each copy engine: partial tiles, several tiles per cluster, partial stages, a ring
    # that wraps within a tile, k % 128 != 0 (bulk then runs the cp twin, as the launcher does).
    geo_cases = [(3, 100, 1024, 2, 2, False), (1, 70, 2048, 1, 2, True), (8, 40, 1664, 4, 1, False), (2, 48, 640, 1, 1, False)]
    for rows, stage_kb in ((32, 4), (32, 8), (16, 8), (16, 16)):
        for bulk in (False, True):
            for i, c in enumerate(geo_cases):
                ok &= run_case(*c, seed=100 + i, cfg=(rows, stage_kb, 2 + (i + rows // 16) % 3, bulk))
    print(f"bank conflicts: {conflicts['lds']} LDS.128 phases, {conflicts['sts']} STS.64 phases")
    ok &= conflicts["lds"] == 0 and conflicts["sts"] == 0
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)
