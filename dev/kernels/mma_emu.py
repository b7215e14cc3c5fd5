# mma_emu.py: what the numpy emulations of the mma.sync decode kernels share (mla_decode_mma_emu.py,
# mla_decode_mma16_emu.py), as src/dsv3/backend/cuda/mma_sm80.cuh is shared by the kernels: bf16 rounding, the
# 16-byte-chunk XOR swizzle, ldmatrix (.trans) and mma.m16n8k16 by the PTX ISA's fragment layouts, the bank-conflict
# check of one ldmatrix, and the combine's merge of split partials.
import numpy as np

def bf16_round(x):  # fp32 -> bf16 bits (RNE)
    x = np.asarray(x, np.float32); u = x.view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
def bf16_to_f32(b): return (np.asarray(b, np.uint16).astype(np.uint32) << 16).view(np.float32)
def swz(row, chunk, rb): return row * rb + ((chunk ^ (row & 7)) << 4)

def ldsm_conflicts(addrs):
    """Phases of one ldmatrix.x4 (lane row addresses `addrs`) whose 8 rows do not lie in distinct 16-byte bank groups."""
    return sum(len({(a // 16) % 8 for a in addrs[8*i:8*i+8]}) != 8 for i in range(4))

def ldsm_regs(R, trans=False):
    """The [32 lanes][4] u32 registers of ldmatrix.x4 (.trans) given R, the [32 rows][8] u16 rows the lanes point at."""
    R = np.asarray(R).astype(np.uint32)
    T = np.arange(32); regs = np.zeros((32, 4), np.uint32)
    for i in range(4):
        M = R[8*i:8*i+8]
        if not trans: e0, e1 = M[T//4, 2*(T%4)], M[T//4, 2*(T%4)+1]
        else: e0, e1 = M[2*(T%4), T//4], M[2*(T%4)+1, T//4]
        regs[:, i] = e0 | (e1 << 16)
    return regs

def unpack(r):
    r = np.asarray(r, np.uint32)
    return ((r & 0xFFFF) << 16).view(np.float32).astype(np.float64), ((r >> 16) << 16).astype(np.uint32).view(np.float32).astype(np.float64)

_T = np.arange(32); _g = _T // 4; _t = _T % 4
def mma(d, a, b0, b1):  # d [32][4] f32 (in place), a [32][4] u32, b0,b1 [32] u32
    A = np.zeros((16, 16)); B = np.zeros((16, 8)); C = np.zeros((16, 8))
    for ri, (r, c) in enumerate([(_g, 2*_t), (_g+8, 2*_t), (_g, 2*_t+8), (_g+8, 2*_t+8)]):
        lo, hi = unpack(a[:, ri]); A[r, c] = lo; A[r, c+1] = hi
    lo, hi = unpack(b0); B[2*_t, _g] = lo; B[2*_t+1, _g] = hi
    lo, hi = unpack(b1); B[2*_t+8, _g] = lo; B[2*_t+9, _g] = hi
    C[_g, 2*_t] = d[:, 0]; C[_g, 2*_t+1] = d[:, 1]; C[_g+8, 2*_t] = d[:, 2]; C[_g+8, 2*_t+1] = d[:, 3]
    D = (A @ B + C).astype(np.float32)
    d[:, 0] = D[_g, 2*_t]; d[:, 1] = D[_g, 2*_t+1]; d[:, 2] = D[_g+8, 2*_t]; d[:, 3] = D[_g+8, 2*_t+1]

def combine(parts):
    """mla_decode_combine_kernel's merge of split partials (o, m, l), each [heads, ...]: splits with l = 0 are skipped."""
    live = [p for p in parts if (p[2] > 0).all()]
    M = np.max([p[1] for p in live], axis=0); w = [np.exp(p[1] - M) for p in live]
    L = sum(p[2] * wi for p, wi in zip(live, w))
    return sum(p[0] * wi[:, None] for p, wi in zip(live, w)) / L[:, None]
