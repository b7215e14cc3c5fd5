#!/usr/bin/env python3
# mla_decode_mma16_emu.py: a numpy emulation of mla_decode_mma16_kernel (src/dsv3/backend/cuda/mla_decode_mma16.cu)
# and of decode_row's per-row split (mla_decode_common.cuh), against an fp64 softmax reference. Shared memory is bytes:
# the loaders' cp.async placement (every chunk of Q and K written exactly once, and in the commit group whose wait
# precedes the k-steps that read it), the XOR swizzle, ldmatrix (.trans) and mma.m16n8k16 by the PTX ISA's fragment
# layouts, the 4-warp softmax exchange, P hi / lo, and the combine's merge of splits; every ldmatrix phase is checked
# for bank conflicts. Keep it in step with the kernel. Run: python3 dev/kernels/mla_decode_mma16_emu.py [seed] (~1 min)
import numpy as np, sys
from mma_emu import bf16_round, bf16_to_f32, swz, ldsm_conflicts, ldsm_regs, mma, combine
kEntry, kRank, kHeads, kKeys, kWarps, kThreads = 576, 512, 16, 64, 4, 128
kRowBytes, kRowChunks, kGroups = 1152, 72, 4
kGroupChunks = kRowChunks // kGroups; kGroupSteps = kGroupChunks // 2
kPRowBytes = 128
kSmemQ = 0; kSmemK = kHeads * kRowBytes; kSmemPh = kSmemK + kKeys * kRowBytes; kSmemPl = kSmemPh + kHeads * kPRowBytes
kSmemRed = kSmemPl + kHeads * kPRowBytes; kSmemTotal = kSmemRed + kWarps * kHeads * 4
kKLoads = kKeys * kGroupChunks // kThreads; kQLoads = (kHeads * kGroupChunks + kThreads - 1) // kThreads
assert kSmemTotal == 96512 and kKLoads == 9 and kQLoads == 3

conflicts = [0]
class Smem:
    def __init__(s):
        s.b = np.zeros(kSmemTotal, np.uint8)
        s.group = np.full(kSmemTotal // 16, -1)  # commit group of the last cp.async into each 16-byte chunk
        s.writes = np.zeros(kSmemTotal // 16, int)
    def u16(s, addr, n): return s.b[addr:addr+2*n].view(np.uint16)
    def ldsm(s, addrs, trans=False, max_group=None):
        addrs = [int(a) for a in addrs]
        conflicts[0] += ldsm_conflicts(addrs)  # one phase per 8x8 matrix: its 8 rows in distinct 16-byte bank groups
        if max_group is not None:  # the k-steps of group g may only read chunks that group <= g brought in
            for a in addrs: assert 0 <= s.group[a // 16] <= max_group, ("read before its wait", a, s.group[a // 16], max_group)
        return ldsm_regs([s.u16(a, 8) for a in addrs], trans)

def decode_row(length, sp, n_splits, split_len, split_align):  # mla_decode_common.cuh
    piece = split_len
    if n_splits > 1:
        per = (length + n_splits - 1) // n_splits
        piece = min(piece, (per + split_align - 1) // split_align * split_align)
    b = sp * piece
    return b, min(length, b + piece)

def run_cta(q, cache, bt_row, bs, begin, end, scale, split_p=True):
    """q: [16,576] bf16 bits (this CTA's heads); cache: [n_blocks, bs, 576] bf16 bits; returns (o, m, l) unnormalised."""
    sm = Smem(); cache_b = cache.view(np.uint8).reshape(cache.shape[0], bs, kRowBytes)
    q_b = q.view(np.uint8).reshape(kHeads, kRowBytes)
    group_now = [0]
    def cp(dst, src16):
        sm.b[dst:dst+16] = src16; sm.group[dst // 16] = group_now[0]; sm.writes[dst // 16] += 1
    def resolve(k0):  # per thread: the cache row of each of its kKLoads chunks (or None)
        out = {}
        for tid in range(kThreads):
            rows = []
            for i in range(kKLoads):
                pos = k0 + (tid + kThreads * i) // kGroupChunks
                rows.append((bt_row[pos // bs], pos % bs) if pos < end else None)
            out[tid] = rows
        return out
    def issue_k(src, grp):
        for tid in range(kThreads):
            for i in range(kKLoads):
                j = tid + kThreads * i; r = j // kGroupChunks; c = grp * kGroupChunks + j % kGroupChunks
                s = src[tid][i]
                cp(kSmemK + swz(r, c, kRowBytes), cache_b[s[0], s[1], 16*c:16*c+16] if s else np.zeros(16, np.uint8))
    def issue_q(grp):
        for tid in range(kThreads):
            for i in range(kQLoads):
                j = tid + kThreads * i
                if j < kHeads * kGroupChunks:
                    r = j // kGroupChunks; c = grp * kGroupChunks + j % kGroupChunks
                    cp(kSmemQ + swz(r, c, kRowBytes), q_b[r, 16*c:16*c+16])
    any_ = begin < end
    for grp in range(kGroups):  # Q's 4 groups are committed before K's: the first wait already covers all of Q
        group_now[0] = 0; issue_q(grp)
    src = resolve(begin) if any_ else None
    for grp in range(kGroups):
        group_now[0] = grp
        if any_: issue_k(src, grp)
    # every Q chunk (and, with keys, every K chunk) written exactly once per tile
    assert (sm.writes[kSmemQ // 16:kSmemK // 16] == 1).all()
    if any_: assert (sm.writes[kSmemK // 16:kSmemPh // 16] == 1).all()
    red = np.zeros(kWarps * kHeads, np.float32)
    lanes = np.arange(32); g = lanes // 4; tig = lanes % 4; x7 = lanes % 8; a_hi = lanes // 16; kb_hi = (lanes // 8) % 2
    m_run = {w: np.full((32, 2), -np.inf, np.float32) for w in range(kWarps)}
    l_run = {w: np.zeros((32, 2), np.float32) for w in range(kWarps)}
    o = {w: np.zeros((16, 32, 4), np.float32) for w in range(kWarps)}
    sl2 = np.float32(scale) * np.float32(1.4426950408889634)
    qa_row = kSmemQ + (lanes % 16) * kRowBytes
    pa_off = (lanes % 16) * kPRowBytes
    k0 = begin
    while k0 < end:
        S = {}
        for w in range(kWarps):
            sa = np.zeros((2, 32, 4), np.float32); sb = np.zeros((2, 32, 4), np.float32)
            kb_row = kSmemK + (16*w + lanes % 8 + (lanes // 16) * 8) * kRowBytes
            for grp in range(kGroups):
                for s_ in range(kGroupSteps):
                    kk = grp * kGroupSteps + s_; kq = (kk // 4) * 128
                    af = sm.ldsm(qa_row + kq + ((((2*kk) % 8 + a_hi) ^ x7) << 4), max_group=grp)
                    bfr = sm.ldsm(kb_row + kq + ((((2*kk) % 8 + kb_hi) ^ x7) << 4), max_group=grp)
                    acc = sa if kk % 2 == 0 else sb
                    mma(acc[0], af, bfr[:, 0], bfr[:, 1]); mma(acc[1], af, bfr[:, 2], bfr[:, 3])
            s = np.zeros((2, 32, 4), np.float32); mx = np.full((32, 2), -np.inf, np.float32)
            for nt in range(2):
                for e in range(4):
                    key = k0 + 16*w + 8*nt + 2*tig + e % 2
                    s[nt][:, e] = np.where(key < end, (sa[nt][:, e] + sb[nt][:, e]) * sl2, -np.inf).astype(np.float32)
                    mx[:, e//2] = np.maximum(mx[:, e//2], s[nt][:, e])
            for i in range(2):
                m = mx[:, i].reshape(8, 4).max(axis=1)
                for G in range(8): red[w*kHeads + G + 8*i] = m[G]
            S[w] = s
        corr_of = {}
        for w in range(kWarps):  # after the barrier: every warp's maxima in red
            s = S[w]; corr = np.zeros((32, 2), np.float32)
            for i in range(2):
                h = g + 8*i
                tile_max = np.maximum(np.maximum(red[h], red[kHeads + h]), np.maximum(red[2*kHeads + h], red[3*kHeads + h]))
                m_new = np.maximum(m_run[w][:, i], tile_max)
                corr[:, i] = np.exp2(m_run[w][:, i] - m_new); m_run[w][:, i] = m_new
            psum = np.zeros((32, 2), np.float32)
            for nt in range(2):
                for i in range(2):
                    f0 = np.exp2(s[nt][:, 2*i] - m_run[w][:, i]).astype(np.float32)
                    f1 = np.exp2(s[nt][:, 2*i+1] - m_run[w][:, i]).astype(np.float32)
                    p0 = bf16_round(f0); p1 = bf16_round(f1)
                    l0 = bf16_round(f0 - bf16_to_f32(p0)); l1 = bf16_round(f1 - bf16_to_f32(p1))
                    for T in range(32):
                        off = swz(g[T] + 8*i, 2*w + nt, kPRowBytes) + 4*tig[T]
                        sm.u16(kSmemPh + off, 2)[:] = [p0[T], p1[T]]
                        if split_p: sm.u16(kSmemPl + off, 2)[:] = [l0[T], l1[T]]
                    psum[:, i] += (f0 + f1) if split_p else (bf16_to_f32(p0) + bf16_to_f32(p1))
            for i in range(2): l_run[w][:, i] = l_run[w][:, i] * corr[:, i] + psum[:, i]
            corr_of[w] = corr
        for w in range(kWarps):  # after the barrier: P complete
            corr = corr_of[w]
            o[w][:, :, 0] *= corr[None, :, 0]; o[w][:, :, 1] *= corr[None, :, 0]
            o[w][:, :, 2] *= corr[None, :, 1]; o[w][:, :, 3] *= corr[None, :, 1]
            vb_row = kSmemK + (lanes % 8 + ((lanes // 8) % 2) * 8) * kRowBytes + w * 256
            for kk in range(kKeys // 16):
                ph = sm.ldsm(kSmemPh + pa_off + (((2*kk + a_hi) ^ x7) << 4))
                pl = sm.ldsm(kSmemPl + pa_off + (((2*kk + a_hi) ^ x7) << 4)) if split_p else None
                for np_ in range(8):
                    vf = sm.ldsm(vb_row + kk*16*kRowBytes + (((2*np_ + a_hi) ^ x7) << 4), trans=True)
                    mma(o[w][2*np_], ph, vf[:, 0], vf[:, 1]); mma(o[w][2*np_+1], ph, vf[:, 2], vf[:, 3])
                    if split_p:
                        mma(o[w][2*np_], pl, vf[:, 0], vf[:, 1]); mma(o[w][2*np_+1], pl, vf[:, 2], vf[:, 3])
        k0 += kKeys
        if k0 < end:
            sm.writes[:] = 0; src = resolve(k0)
            for grp in range(kGroups):
                group_now[0] = grp; issue_k(src, grp)
            assert (sm.writes[kSmemK // 16:kSmemPh // 16] == 1).all()
    for w in range(kWarps):
        for i in range(2):
            l = l_run[w][:, i].reshape(8, 4).sum(axis=1)
            for G in range(8): red[w*kHeads + G + 8*i] = l[G]
    L = np.zeros(kHeads, np.float32); M = np.zeros(kHeads, np.float32)
    for h in range(kHeads):
        L[h] = np.float32(np.float32(np.float32(red[h] + red[kHeads + h]) + red[2*kHeads + h]) + red[3*kHeads + h])
        i = h // 8; M[h] = m_run[0][4*(h % 8), i]
    O = np.zeros((kHeads, kRank), np.float32)
    for w in range(kWarps):
        for i in range(2):
            for nt in range(16):
                for T in range(32):
                    hl = g[T] + 8*i; c = w*128 + 8*nt + 2*tig[T]
                    O[hl, c] = o[w][nt, T, 2*i]; O[hl, c+1] = o[w][nt, T, 2*i+1]
    return O, M * np.float32(0.6931471805599453), L

def reference(q, cache, bt_row, length, bs, scale):
    qf = bf16_to_f32(q).astype(np.float64)
    keys = np.stack([bf16_to_f32(cache[bt_row[p // bs], p % bs]) for p in range(length)]).astype(np.float64)
    s = qf @ keys.T * scale; s -= s.max(axis=1, keepdims=True); p = np.exp(s); p /= p.sum(axis=1, keepdims=True)
    return p @ keys[:, :512]

rng = np.random.default_rng(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
ok = True
# (length, block size, table width in blocks, n_splits, split_len, split_align): one split, the per-row pieces of a
# wide (graph-like) table, pieces that leave trailing splits empty, 16-key blocks, a forced 192-key piece.
for (length, bs, width, n_splits, split_len, align) in [(1, 64, 1, 1, 64, 64), (65, 16, 8, 1, 128, 64),
                                                        (150, 64, 40, 5, 512, 64), (200, 16, 13, 4, 64, 64),
                                                        (300, 64, 5, 2, 192, 192), (63, 64, 2560, 33, 4992, 64)]:
    nb = (length + bs - 1) // bs + 3
    cache = bf16_round(rng.standard_normal((nb, bs, 576)).astype(np.float32))
    q = bf16_round((0.5 * rng.standard_normal((kHeads, 576))).astype(np.float32))
    bt = np.zeros(width, int); bt[:(length + bs - 1) // bs] = rng.permutation(nb)[: (length + bs - 1) // bs]
    scale = 1 / np.sqrt(192)
    ref = reference(q, cache, bt, length, bs, scale)
    ranges = [decode_row(length, sp, n_splits, split_len, align) for sp in range(n_splits)]
    covered = sorted(k for b, e in ranges for k in range(b, e))
    assert covered == list(range(length)), "decode_row: the splits must cover every key exactly once"
    for split_p in (True, False):
        if n_splits == 1:
            O, m, l = run_cta(q, cache, bt, bs, 0, length, scale, split_p)
            out = O / np.where(l > 0, l, 1)[:, None]
        else:
            out = combine([run_cta(q, cache, bt, bs, b, e, scale, split_p) for b, e in ranges])
        rel = np.sqrt(((out - ref)**2).mean() / (ref**2).mean())
        good = rel < (2e-5 if split_p else 1e-2) and conflicts[0] == 0
        ok &= good
        live = sum(1 for b, e in ranges if b < e)
        print(f"len={length} bs={bs} splits={n_splits} ({live} non-empty) {'split P' if split_p else 'P bf16 '}: "
              f"rel rms {rel:.3e}, bank conflicts {conflicts[0]}", "OK" if good else "FAIL")
sys.exit(0 if ok else 1)
