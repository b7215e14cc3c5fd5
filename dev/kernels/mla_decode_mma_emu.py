#!/usr/bin/env python3
# mla_decode_mma_emu.py: a line-by-line numpy emulation of one block of mla_decode_mma_kernel
# (src/dsv3/backend/cuda/mla_decode_mma.cu) — shared memory as bytes, the XOR swizzle, cp.async placement, ldmatrix
# (.trans) and mma.m16n8k16 by the PTX ISA's fragment layouts — against an fp64 softmax reference, with and without
# splits (the combine's merge), for both template variants: kSplitP (P hi in the P buffer, P lo in the stage's k_pe
# columns, two mma per V fragment) and P in bf16 (DSV3_MLA_P_BF16=1). It checks the kernel's index arithmetic and that
# every ldmatrix phase is free of bank conflicts on a machine without a GPU; keep it in step with the kernel when
# either changes. Run: python3 dev/kernels/mla_decode_mma_emu.py [seed]  (about 30 s)
import numpy as np, sys
from mma_emu import bf16_round, bf16_to_f32, swz, ldsm_conflicts, ldsm_regs, mma, combine
kEntry, kRank, kHeads, kKeys = 576, 512, 64, 64
kRowBytes, kPRowBytes = 1152, 128
kTileBytes = kKeys * kRowBytes
kSmemQ = 0; kSmemK = kHeads * kRowBytes; kSmemP = kSmemK + 2 * kTileBytes
kSmemRed = kSmemP + kHeads * kPRowBytes; kSmemCorr = kSmemRed + 2*kHeads*4; kSmemM = kSmemCorr + kHeads*4
kSmemL = kSmemM + kHeads*4; kSmemTotal = kSmemL + kHeads*4
kPeChunk = kRank // 8  # P lo: chunks 64..71 (the k_pe columns) of row h of the current stage

conflicts = [0]
class Smem:
    def __init__(s): s.b = np.zeros(kSmemTotal, np.uint8)
    def u16(s, addr, n): return s.b[addr:addr+2*n].view(np.uint16)
    def ldsm(s, addrs, trans=False):
        addrs = [int(a) for a in addrs]
        conflicts[0] += ldsm_conflicts(addrs)  # one phase per 8x8 matrix: its 8 rows in distinct 16-byte bank groups
        return ldsm_regs([s.u16(a, 8) for a in addrs], trans)

def run_cta(q, cache, bt_row, length, bs, begin, end, scale, n_splits, split_p=True):
    """q: [64,576] bf16 bits; cache: [n_blocks, bs, 576] bf16 bits; returns out-or-part (o, m, l)."""
    sm = Smem(); cache_b = cache.view(np.uint8).reshape(cache.shape[0], bs, kRowBytes); q_b = q.view(np.uint8).reshape(64, kRowBytes)
    def cp(dst, src_bytes): sm.b[dst:dst+16] = src_bytes
    for tid in range(256):
        ld_r, ld_c = tid // 4, tid % 4
        ld_dst = [swz(ld_r, ld_c, kRowBytes), swz(ld_r, ld_c + 4, kRowBytes)]
        for j in range(18): cp(kSmemQ + ld_dst[j % 2] + 128*(j//2), q_b[ld_r, (ld_c*8 + 32*j)*2:(ld_c*8+32*j)*2+16])
    def load_tile(k0, stage):
        for tid in range(256):
            ld_r, ld_c = tid // 4, tid % 4
            ld_dst = [swz(ld_r, ld_c, kRowBytes), swz(ld_r, ld_c + 4, kRowBytes)]
            pos = k0 + ld_r
            for j in range(18):
                dst = kSmemK + stage*kTileBytes + ld_dst[j % 2] + 128*(j//2)
                if pos < end:
                    blk = bt_row[pos // bs]; e = (ld_c*8 + 32*j)*2
                    cp(dst, cache_b[blk, pos % bs, e:e+16])
                else: cp(dst, np.zeros(16, np.uint8))
    if begin < end: load_tile(begin, 0)
    red = np.zeros(128, np.float32); corr_s = np.zeros(64, np.float32)
    lanes = np.arange(32); g = lanes // 4; tig = lanes % 4; x7 = lanes % 8
    m_run = {w: np.full((32, 2), -np.inf, np.float32) for w in range(8)}
    l_run = {w: np.zeros((32, 2), np.float32) for w in range(8)}
    o = {w: np.zeros((4, 8, 32, 4), np.float32) for w in range(8)}
    sl2 = np.float32(scale) * np.float32(1.4426950408889634)
    stage = 0; k0 = begin
    while k0 < end:
        if k0 + kKeys < end: load_tile(k0 + kKeys, stage ^ 1)
        kt = kSmemK + stage * kTileBytes
        S = {}
        for w in range(8):
            hq, kh = w // 2, w % 2
            s = np.zeros((4, 32, 4), np.float32)
            qa_row = kSmemQ + (16*hq + lanes % 16) * kRowBytes; qa_hi = lanes // 16
            kb_row = 32*kh + lanes % 8 + (lanes // 16) * 8; kb_hi = (lanes // 8) % 2
            kb0 = kt + kb_row * kRowBytes; kb1 = kb0 + 16*kRowBytes
            for kk in range(36):
                kq = (kk // 4) * 128
                af = sm.ldsm(qa_row + kq + ((((2*kk) % 8 + qa_hi) ^ x7) << 4))
                b0 = sm.ldsm(kb0 + kq + ((((2*kk) % 8 + kb_hi) ^ x7) << 4))
                b1 = sm.ldsm(kb1 + kq + ((((2*kk) % 8 + kb_hi) ^ x7) << 4))
                mma(s[0], af, b0[:, 0], b0[:, 1]); mma(s[1], af, b0[:, 2], b0[:, 3])
                mma(s[2], af, b1[:, 0], b1[:, 1]); mma(s[3], af, b1[:, 2], b1[:, 3])
            mx = np.full((32, 2), -np.inf, np.float32)
            for nt in range(4):
                for e in range(4):
                    key = k0 + 32*kh + 8*nt + 2*tig + e % 2
                    s[nt][:, e] = np.where(key < end, s[nt][:, e] * sl2, -np.inf).astype(np.float32)
                    mx[:, e//2] = np.maximum(mx[:, e//2], s[nt][:, e])
            for i in range(2):
                m = mx[:, i].reshape(8, 4).max(axis=1)  # quad max
                for G in range(8): red[kh*64 + 16*hq + G + 8*i] = m[G]
            S[w] = s
        for w in range(8):  # after barrier B
            hq, kh = w // 2, w % 2; s = S[w]
            corr = np.zeros((32, 2), np.float32)
            for i in range(2):
                h = 16*hq + g + 8*i
                m_new = np.maximum(m_run[w][:, i], np.maximum(red[h], red[64 + h]))
                corr[:, i] = np.exp2(m_run[w][:, i] - m_new); m_run[w][:, i] = m_new
                if kh == 0:
                    for T in range(32):
                        if tig[T] == 0: corr_s[h[T]] = corr[T, i]
            psum = np.zeros((32, 2), np.float32)
            for nt in range(4):
                for i in range(2):
                    f0 = np.exp2(s[nt][:, 2*i] - m_run[w][:, i]).astype(np.float32)
                    f1 = np.exp2(s[nt][:, 2*i+1] - m_run[w][:, i]).astype(np.float32)
                    p0 = bf16_round(f0); p1 = bf16_round(f1)  # hi
                    h = 16*hq + g + 8*i
                    for T in range(32):
                        a = kSmemP + swz(h[T], 4*kh + nt, kPRowBytes) + 4*tig[T]
                        sm.u16(a, 2)[:] = [p0[T], p1[T]]
                    if split_p:  # lo = bf16(p - hi) into row h of the stage, chunks 64.. (the k_pe columns)
                        l0 = bf16_round(f0 - bf16_to_f32(p0)); l1 = bf16_round(f1 - bf16_to_f32(p1))
                        for T in range(32):
                            a = kSmemK + stage*kTileBytes + swz(h[T], kPeChunk + 4*kh + nt, kRowBytes) + 4*tig[T]
                            assert (a - kSmemK) % kRowBytes >= 2 * kRank, "P lo outside the k_pe columns"
                            sm.u16(a, 2)[:] = [l0[T], l1[T]]
                        psum[:, i] += f0 + f1
                    else:
                        psum[:, i] += bf16_to_f32(p0) + bf16_to_f32(p1)
            for i in range(2): l_run[w][:, i] = l_run[w][:, i] * corr[:, i] + psum[:, i]
        for w in range(8):  # after barrier C
            for mt in range(4):
                for i in range(2):
                    c = corr_s[16*mt + g + 8*i]
                    o[w][mt, :, :, 2*i] *= c[None, :]; o[w][mt, :, :, 2*i+1] *= c[None, :]
            pa_row = kSmemP + (lanes % 16) * kPRowBytes; qa_hi = lanes // 16
            vb_row = lanes % 8 + ((lanes // 8) % 2) * 8
            vb = kt + vb_row * kRowBytes + w * 128
            pl_row = kt + (lanes % 16) * kRowBytes + kPeChunk * 16
            for kk in range(4):
                if split_p:
                    vf = [sm.ldsm(vb + kk*16*kRowBytes + (((2*np_ + qa_hi) ^ x7) << 4), trans=True) for np_ in range(4)]
                    for mt in range(4):
                        ph = sm.ldsm(pa_row + mt*16*kPRowBytes + (((2*kk + qa_hi) ^ x7) << 4))
                        for np_ in range(4):
                            mma(o[w][mt, 2*np_], ph, vf[np_][:, 0], vf[np_][:, 1]); mma(o[w][mt, 2*np_+1], ph, vf[np_][:, 2], vf[np_][:, 3])
                        pl = sm.ldsm(pl_row + mt*16*kRowBytes + (((2*kk + qa_hi) ^ x7) << 4))
                        for np_ in range(4):
                            mma(o[w][mt, 2*np_], pl, vf[np_][:, 0], vf[np_][:, 1]); mma(o[w][mt, 2*np_+1], pl, vf[np_][:, 2], vf[np_][:, 3])
                    continue
                pf = [sm.ldsm(pa_row + mt*16*kPRowBytes + (((2*kk + qa_hi) ^ x7) << 4)) for mt in range(4)]
                for np_ in range(4):
                    vf = sm.ldsm(vb + kk*16*kRowBytes + (((2*np_ + qa_hi) ^ x7) << 4), trans=True)
                    for mt in range(4):
                        mma(o[w][mt, 2*np_], pf[mt], vf[:, 0], vf[:, 1]); mma(o[w][mt, 2*np_+1], pf[mt], vf[:, 2], vf[:, 3])
        k0 += kKeys; stage ^= 1
    # end
    m_s = np.zeros(64, np.float32); l_s = np.zeros(64, np.float32)
    for w in range(8):
        hq, kh = w // 2, w % 2
        for i in range(2):
            l = l_run[w][:, i].reshape(8, 4).sum(axis=1)
            for G in range(8):
                red[kh*64 + 16*hq + G + 8*i] = l[G]
                if kh == 0: m_s[16*hq + G + 8*i] = m_run[w][4*G, i]
    l_s = red[:64] + red[64:]
    O = np.zeros((64, 512), np.float32)
    for w in range(8):
        for mt in range(4):
            for i in range(2):
                for nt in range(8):
                    for T in range(32):
                        hl = 16*mt + g[T] + 8*i; c = w*64 + 8*nt + 2*tig[T]
                        O[hl, c] = o[w][mt, nt, T, 2*i]; O[hl, c+1] = o[w][mt, nt, T, 2*i+1]
    return O, m_s * np.float32(0.6931471805599453), l_s

def reference(q, cache, bt_row, length, bs, scale):
    qf = bf16_to_f32(q).astype(np.float64)
    keys = np.stack([bf16_to_f32(cache[bt_row[p // bs], p % bs]) for p in range(length)]).astype(np.float64)
    s = qf @ keys.T * scale; s -= s.max(axis=1, keepdims=True); p = np.exp(s); p /= p.sum(axis=1, keepdims=True)
    return p @ keys[:, :512]

rng = np.random.default_rng(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
ok = True
for (length, bs, split_len) in [(1, 64, 0), (65, 16, 0), (150, 64, 0), (200, 16, 128)]:
    nb = (length + bs - 1) // bs + 3
    cache = bf16_round(rng.standard_normal((nb, bs, 576)).astype(np.float32))
    q = bf16_round((0.5 * rng.standard_normal((64, 576))).astype(np.float32))
    bt = rng.permutation(nb)[: (length + bs - 1) // bs]
    scale = 1 / np.sqrt(192)
    ref = reference(q, cache, bt, length, bs, scale)
    for split_p in (True, False):
        if split_len == 0:
            O, m, l = run_cta(q, cache, bt, length, bs, 0, length, scale, 1, split_p)
            out = O / np.where(l > 0, l, 1)[:, None]
        else:
            parts = [run_cta(q, cache, bt, length, bs, b, min(length, b + split_len), scale, 2, split_p) for b in range(0, length, split_len)]
            out = combine(parts)
        err = np.abs(out - ref).max(); rel = np.sqrt(((out - ref)**2).mean() / (ref**2).mean())
        # P hi + lo: |d| <= 2^-16 per weight, fp32 sums: ~1e-6 relative; P in bf16: 2^-8 per weight, ~1e-3
        good = rel < (2e-5 if split_p else 1e-2) and conflicts[0] == 0
        ok &= good
        print(f"len={length} bs={bs} split_len={split_len} {'split P' if split_p else 'P bf16 '}: max abs err {err:.3e}, "
              f"rel rms {rel:.3e}, bank conflicts {conflicts[0]}", "OK" if good else "FAIL")
sys.exit(0 if ok else 1)
