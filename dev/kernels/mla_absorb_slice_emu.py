#!/usr/bin/env python3
# mla_absorb_slice_emu.py: a numpy emulation of absorb_q_slice_kernel and absorb_v_slice_kernel
# (src/dsv3/backend/cuda/mla_absorb.cu), thread by thread: the cp.async placement of the weight slice into shared
# memory (every element once, in the commit group whose wait precedes its use), the token tiles, the thread -> (output,
# tokens) map (every output written exactly once), and the chains in the reference's order, in fp32 — bitwise against
# CpuBackend::mla_absorb_q / mla_absorb_v's loops (bf16 x bf16 products are exact in fp32, so fmaf = add of the product).
# It also checks that the 8 rows a quarter-warp of absorb_v reads with one 16-byte load sit on distinct bank groups.
# Run: python3 dev/kernels/mla_absorb_slice_emu.py  (~20 s)
import numpy as np
kThreads, kGroups, kQCols, kVRows = 128, 4, 128, 32

def bf16(rng, shape, scale):  # random bf16 values as fp32
    x = (rng.standard_normal(shape) * scale).astype(np.float32).view(np.uint32)
    return ((x + 0x7FFF + ((x >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)

def tok_tile(n): return 1 if n <= 1 else 2 if n <= 2 else 4 if n <= 4 else 8

def absorb_q(q, kvb, H, nope, rope, vd, rank):
    n = q.shape[0]; per_head = nope + vd; out = np.full((n, H, rank + rope), np.nan, np.float32)
    written = np.zeros((n, H, rank + rope), int)
    kTok = tok_tile(n); kTpt = max(1, kTok * (kQCols // 2) // kThreads); rows_g = nope // kGroups
    assert nope % (4 * kGroups) == 0 and rank % kQCols == 0
    for h in range(H):
        for cb in range(rank // kQCols):
            c0 = cb * kQCols
            ws = np.full((nope, kQCols), np.nan, np.float32); grp = np.full((nope, kQCols), -1)
            for g in range(kGroups):  # cp.async: row j // 16, chunk j % 16 of the group's rows_g x 16 chunks
                for tid in range(kThreads):
                    for j in range(tid, rows_g * 16, kThreads):
                        d = g * rows_g + j // 16; ch = j % 16
                        assert grp[d, ch*8] == -1, "chunk written twice"
                        ws[d, ch*8:ch*8+8] = kvb[h*per_head + d, c0 + ch*8:c0 + ch*8 + 8]; grp[d, ch*8:ch*8+8] = g
            assert (grp >= 0).all()
            if cb == 0:
                out[:, h, rank:] = q[:, h, nope:]; written[:, h, rank:] += 1
            for t0 in range(0, n, kTok):
                qs = np.zeros((kTok, nope), np.float32)
                for t in range(kTok):
                    if t0 + t < n: qs[t] = q[t0 + t, h, :nope]
                for tid in range(kThreads):
                    p, tg = tid % 64, tid // 64
                    if tg * kTpt >= kTok: continue
                    for i in range(kTpt):
                        tt = tg * kTpt + i; acc = np.zeros(2, np.float32)
                        for g in range(kGroups):
                            for d in range(g * rows_g, (g + 1) * rows_g):
                                if t0 == 0: assert grp[d, 2*p] <= g
                                acc = (acc + qs[tt, d] * ws[d, 2*p:2*p+2]).astype(np.float32)
                        t = t0 + tt
                        if t < n: out[t, h, c0+2*p:c0+2*p+2] = acc; written[t, h, c0+2*p:c0+2*p+2] += 1
    assert (written == 1).all(), "every output exactly once"
    return out

def absorb_v(o, kvb, H, nope, vd, rank):
    n = o.shape[0]; per_head = nope + vd; out = np.full((n, H, vd), np.nan, np.float32); written = np.zeros((n, H, vd), int)
    kTok = tok_tile(n); kTpt = max(1, kTok * kVRows // kThreads); cols_g = rank // kGroups; chunks_g = cols_g // 8
    pitch = rank + 8
    assert rank % (8 * kGroups) == 0 and vd % kVRows == 0
    for lane0 in (0, 8, 16, 24):  # a quarter-warp's 16-byte loads at one column: 8 rows on 8 distinct bank groups
        assert len({((r * pitch * 2) // 16) % 8 for r in range(lane0, lane0 + 8)}) == 8
    for h in range(H):
        for rb in range(vd // kVRows):
            v0 = rb * kVRows
            ws = np.full((kVRows, rank), np.nan, np.float32); grp = np.full((kVRows, rank), -1)
            for g in range(kGroups):
                for tid in range(kThreads):
                    for j in range(tid, kVRows * chunks_g, kThreads):
                        r = j // chunks_g; c = g * cols_g + (j % chunks_g) * 8
                        assert grp[r, c] == -1
                        ws[r, c:c+8] = kvb[h*per_head + nope + v0 + r, c:c+8]; grp[r, c:c+8] = g
            assert (grp >= 0).all()
            for t0 in range(0, n, kTok):
                os_ = np.zeros((kTok, rank), np.float32)
                for t in range(kTok):
                    if t0 + t < n: os_[t] = o[t0 + t, h]
                for tid in range(kThreads):
                    r, tg = tid % kVRows, tid // kVRows
                    if tg * kTpt >= kTok: continue
                    for i in range(kTpt):
                        tt = tg * kTpt + i; acc = np.float32(0)
                        for g in range(kGroups):
                            for c in range(g * cols_g, (g + 1) * cols_g):
                                if t0 == 0: assert grp[r, c] <= g
                                acc = np.float32(acc + ws[r, c] * os_[tt, c])
                        t = t0 + tt
                        if t < n: out[t, h, v0 + r] = acc; written[t, h, v0 + r] += 1
    assert (written == 1).all()
    return out

def ref_q(q, kvb, H, nope, rope, vd, rank):  # CpuBackend::mla_absorb_q, before the bf16 rounding
    n = q.shape[0]; out = np.zeros((n, H, rank + rope), np.float32)
    for t in range(n):
        for h in range(H):
            acc = np.zeros(rank, np.float32)
            for d in range(nope): acc = (acc + q[t, h, d] * kvb[h*(nope+vd) + d]).astype(np.float32)
            out[t, h, :rank] = acc; out[t, h, rank:] = q[t, h, nope:]
    return out

def ref_v(o, kvb, H, nope, vd, rank):
    n = o.shape[0]; out = np.zeros((n, H, vd), np.float32)
    for t in range(n):
        for h in range(H):
            for d in range(vd):
                acc = np.float32(0); w = kvb[h*(nope+vd) + nope + d]
                for c in range(rank): acc = np.float32(acc + w[c] * o[t, h, c])
                out[t, h, d] = acc
    return out

rng = np.random.default_rng(0); ok = True
for (n, H, nope, rope, vd, rank) in [(1, 2, 32, 16, 64, 256), (3, 1, 48, 0, 32, 384), (11, 2, 32, 16, 32, 128),
                                     (8, 1, 16, 8, 64, 128)]:
    kvb = bf16(rng, (H * (nope + vd), rank), 0.05)
    q = bf16(rng, (n, H, nope + rope), 1.0); o = bf16(rng, (n, H, rank), 1.0)
    gq = absorb_q(q, kvb, H, nope, rope, vd, rank); rq = ref_q(q, kvb, H, nope, rope, vd, rank)
    gv = absorb_v(o, kvb, H, nope, vd, rank); rv = ref_v(o, kvb, H, nope, vd, rank)
    good = np.array_equal(gq.view(np.uint32), rq.view(np.uint32)) and np.array_equal(gv.view(np.uint32), rv.view(np.uint32))
    ok &= good
    print(f"n={n} H={H} nope={nope} rope={rope} vd={vd} rank={rank}: absorb_q / absorb_v bitwise", "OK" if good else "FAIL")
raise SystemExit(0 if ok else 1)
