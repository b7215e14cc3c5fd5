#!/usr/bin/env python3
"""make_tokenizer_bench_text.py: a deterministic multi-MB mixed text for the tokenizer benchmarks, as JSON lines
(one document per line), read by both `dsv3 tokenize --bench FILE` and bench_hf_tokenizer.py.

usage: python3 scripts/reference/make_tokenizer_bench_text.py --out build/tokenizer_bench.jsonl [--mb 16] [--seed 0]
The mix: English prose, code, numbers, Chinese/Japanese, Korean, Cyrillic, Arabic, Devanagari, emoji, whitespace runs.
"""
import argparse
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tokenizer_corpus as corpus  # noqa: E402

WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at which but have an "
         "they you were her she there one all we their been has would when more if will what so about up out no "
         "model token inference attention expert router latent cache kernel throughput latency memory bandwidth "
         "tensor parallel pipeline scheduler request batch prefill decode sampling temperature").split()
RANGES = [(0x4E00, 0x9FA5), (0x3040, 0x309F), (0x30A0, 0x30FF), (0xAC00, 0xD7A3), (0x0410, 0x044F),
          (0x0621, 0x064A), (0x0905, 0x0939), (0x1F600, 0x1F64F)]


def sentence(rng):
    words = [rng.choice(WORDS) for _ in range(rng.randrange(4, 20))]
    words[0] = words[0].capitalize()
    if rng.random() < 0.3:
        words.insert(rng.randrange(len(words)), str(rng.randrange(0, 10 ** rng.randrange(1, 9))))
    return " ".join(words) + rng.choice([".", ".", ".", "?", "!", ",", ";", ":"])


def script_run(rng):
    lo, hi = rng.choice(RANGES)
    n = rng.randrange(2, 40)
    sep = "" if lo in (0x4E00, 0x3040, 0x30A0) else " "
    out = []
    for _ in range(n):
        out.append(chr(rng.randrange(lo, hi + 1)))
        if sep and rng.random() < 0.2:
            out.append(sep)
    return "".join(out)


def document(rng, target):
    pools = [corpus.ENGLISH, corpus.CODE, corpus.NUMBERS, corpus.CJK, corpus.OTHER_SCRIPTS, corpus.EMOJI,
             corpus.COMBINING, corpus.WHITESPACE]
    parts, size = [], 0
    while size < target:
        r = rng.random()
        if r < 0.55:
            p = sentence(rng)
        elif r < 0.75:
            p = script_run(rng)
        elif r < 0.95:
            p = rng.choice(rng.choice(pools))
        else:
            p = rng.choice(["\n", "\n\n", "    ", "\t", " " * rng.randrange(1, 12)])
        parts.append(p)
        parts.append(rng.choice([" ", " ", " ", "\n", ""]))
        size += len(p.encode("utf-8")) + 1
    return "".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mb", type=float, default=16.0, help="approximate size in MB (UTF-8 bytes of the text)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    total, n = 0, 0
    with open(args.out, "w", encoding="utf-8") as f:
        while total < args.mb * 1e6:
            doc = document(rng, rng.randrange(1000, 16000))
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
            total += len(doc.encode("utf-8"))
            n += 1
    print(f"wrote {n} documents, {total} bytes of text to {args.out}")


if __name__ == "__main__":
    main()
