#!/usr/bin/env python3
# sample_v2_emu.py: the top-p cut of sample.cu's v2 kernels (several CTAs per row, per-chunk 256-bin histograms of
# integer masses combined level by level, the cut's tie group split over chunks by per-chunk counts) emulated in
# numpy, next to the host Sampler's apply_top_p (sequential fp64 sum of e / total over the sorted order) and v1's
# single-CTA find_cut (chunks = 1) (dev/kernels lab; no GPU). Checks the indexing of the combination (chunk ranges,
# level intervals, the per-chunk share of the group) and that the kept set does not depend on the chunk count.
# Usage: python3 dev/kernels/sample_v2_emu.py [n_rows]
import math, sys
import numpy as np

BINS, LEVELS = 256, 4


def order_key(z):  # float32 array -> uint32 order-preserving keys (-0 and +0 share one)
    z = np.where(z == 0, np.float32(0), z).astype(np.float32)
    b = z.view(np.uint32)
    return np.where(b & 0x80000000, ~b, b | 0x80000000).astype(np.uint32)


def host_top_p(z, top_p):  # base/sampling.cpp apply_top_p: the kept ids
    live = np.nonzero(z != -np.inf)[0]
    if len(live) <= 1:
        return set(live.tolist())
    zmax = float(z[live].max())
    e = np.exp(z[live].astype(np.float64) - zmax)
    total = 0.0
    for x in e:  # id order
        total += x
    order = sorted(live.tolist(), key=lambda v: (-z[v], v))
    before, keep = 0.0, 0
    for v in order:
        if before >= top_p:
            break
        before += math.exp(float(z[v]) - zmax) / total
        keep += 1
    return set(order[:keep])


def v2_top_p(z, top_p, chunks, mass_shift):
    """The v2 kernels' kept set: stats, levels 0..3 (pick from the previous level, then per-chunk histograms),
    the draw kernel's pick and per-chunk cut. Returns (kept ids, number of levels that built histograms)."""
    V = len(z)
    clen = (V + chunks - 1) // chunks
    ranges = [(min(V, c * clen), min(V, min(V, c * clen) + clen)) for c in range(chunks)]
    live = z != -np.inf
    if live.sum() <= 1:
        return set(np.nonzero(live)[0].tolist()), 0
    zmax = np.float32(z[live].max())
    key = order_key(z)
    mass = np.zeros(V, dtype=np.uint64)
    with np.errstate(over="ignore"):
        m = np.floor(np.exp(z[live].astype(np.float64) - float(zmax)) * 2.0 ** mass_shift)
    mass[live] = m.astype(np.uint64)
    # per-chunk stats, combined (exact)
    lo = int(min(order_key(np.array([z[a:b][live[a:b]].min()], np.float32))[0] for a, b in ranges if live[a:b].any()))
    hi = int(order_key(np.array([zmax], np.float32))[0])
    state = dict(lo=lo, nbits=0 if hi == lo else (hi - lo).bit_length(), before=0, target=0, done=False)
    hist = {}  # level parity -> (cnt [chunks, BINS], mass [chunks, BINS])
    built = 0

    def build(level, s):
        shift = max(s["nbits"] - 8, 0)
        span = 0xFFFFFFFF if s["nbits"] >= 32 else (1 << s["nbits"]) - 1
        cnt = np.zeros((chunks, BINS), np.uint64)
        ms = np.zeros((chunks, BINS), np.uint64)
        for c, (a, b) in enumerate(ranges):
            k = key[a:b].astype(np.int64)
            sel = live[a:b] & (k >= s["lo"]) & (k - s["lo"] <= span)
            bins = (k[sel] - s["lo"]) >> shift
            assert bins.size == 0 or (bins.min() >= 0 and bins.max() < BINS), "bin out of range"
            np.add.at(cnt[c], bins, 1)
            np.add.at(ms[c], bins, mass[a:b][sel])
        hist[level & 1] = (cnt, ms, level)

    def pick(s, level):
        if s["done"]:
            return s
        cnt, ms, lvl = hist[level & 1]
        assert lvl == level
        c, m = cnt.sum(0), ms.sum(0)  # over the chunks
        target = s["target"]
        if level == 0:
            total = int(m.sum())
            target = max(1, math.ceil(top_p * total))
        acc = s["before"]
        pick_b, pick_before = None, 0
        for b in range(BINS - 1, -1, -1):  # high to low: the lowest non-empty bin with mass before < target
            if c[b] > 0 and acc < target:
                pick_b, pick_before = b, acc
            acc += int(m[b])
        assert pick_b is not None
        shift = max(s["nbits"] - 8, 0)
        n = dict(s, target=target, before=pick_before, lo=s["lo"] + (pick_b << shift))
        if shift == 0:
            n.update(done=True, bin=pick_b, level=level, group_cnt=int(c[pick_b]), group_mass=int(m[pick_b]))
        else:
            n["nbits"] = shift
        return n

    states = []
    for level in range(LEVELS):
        s = state if level == 0 else pick(states[-1], level - 1)
        states.append(s)
        if not s["done"]:
            build(level, s)
            built += 1
    s = pick(states[-1], LEVELS - 1)
    assert s["done"]
    each = s["group_mass"] // s["group_cnt"]
    keep = s["group_cnt"]
    if each > 0:
        keep = min(keep, (s["target"] - s["before"] + each - 1) // each)
    cnt = hist[s["level"] & 1][0][:, s["bin"]]
    kept = set()
    prior = 0
    for c, (a, b) in enumerate(ranges):
        mine = int(cnt[c])
        here = min(keep - prior, mine) if keep > prior else 0
        ids = np.arange(a, b)
        k = key[a:b].astype(np.int64)
        group = ids[live[a:b] & (k == s["lo"])]
        assert len(group) == mine, "per-chunk group count"
        above = ids[live[a:b] & (k > s["lo"])]
        kept |= set(above.tolist()) | set(group[:here].tolist())
        prior += mine
    return kept, built


def make_row(rng, V, kind):
    sigma = rng.uniform(1.5, 4)
    l = rng.normal(0, sigma, V).astype(np.float32)
    if kind == "quantized":
        l = (np.round(l * 4) / 4).astype(np.float32)
    if kind == "masked":
        l[rng.random(V) < 0.4] = -np.inf
    if kind == "tie_cut":
        top = np.float32(l.max() + 4)
        l[rng.integers(0, V, 40)] = top
        l[rng.integers(0, V, 2)] = top + np.float32(0.5)
    if kind == "ties":
        s = np.sort(l)[::-1]
        l[rng.integers(0, V, 3)] = s[0] + np.float32(0.5)
        l[rng.integers(0, V, 20)] = s[45]
    if kind == "one_live":
        l[:] = -np.inf
        l[rng.integers(0, V)] = 1.0
    l[rng.integers(0, V)] = np.float32(rng.normal(0, 1))
    return l


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    rng = np.random.default_rng(11)
    kinds = ["plain", "quantized", "masked", "tie_cut", "ties", "one_live"]
    params = [(0.6, 0.95), (1.0, 0.5), (1.7, 0.999), (1.7, 0.95), (0.6, 0.5), (1.0, 0.999)]
    bad = host_diff = 0
    for i in range(n):
        V = [129280, 50001, 1000, 1001, 4097][i % 5]
        kind = kinds[i % len(kinds)]
        T, top_p = params[(i // len(kinds)) % len(params)]
        l = make_row(rng, V, kind)
        z = (l / np.float32(T)).astype(np.float32)
        bits = 1
        while (1 << bits) <= V:
            bits += 1
        ref, _ = v2_top_p(z, top_p, 1, 62 - bits)  # v1: one CTA
        for chunks in (2, 7, 32):
            got, built = v2_top_p(z, top_p, chunks, 62 - bits)
            if got != ref:
                bad += 1
                print(f"row {i}: V={V} {kind} T={T} top_p={top_p} chunks={chunks}: v2 kept {len(got)}, v1 {len(ref)}")
        host = host_top_p(z, top_p)
        if host != ref:
            host_diff += 1
            print(f"row {i}: V={V} {kind} T={T} top_p={top_p}: integer cut keeps {len(ref)}, host {len(host)}")
        if i < 12 or i % 10 == 0:
            print(f"row {i:3d}: V={V:6d} {kind:9s} T={T} top_p={top_p}: keeps {len(ref)} (levels built {built})")
    print(f"{n} rows: {bad} chunked-vs-single mismatches, {host_diff} integer-vs-host-fp64 cut differences")
    sys.exit(1 if bad or host_diff else 0)


if __name__ == "__main__":
    main()
