#!/usr/bin/env python3
"""bench_hf_tokenizer.py: MB/s of HF `tokenizers` encode on the benchmark text (one thread by default), printed in
the same JSON shape as `dsv3 tokenize --bench FILE --threads N`.

usage: python3 scripts/reference/make_tokenizer_bench_text.py --out build/tokenizer_bench.jsonl
       python3 scripts/reference/bench_hf_tokenizer.py --tokenizer models/tokenizers/deepseek-v3 \
           --bench build/tokenizer_bench.jsonl
       build/tools/dsv3 tokenize --tokenizer models/tokenizers/deepseek-v3 --bench build/tokenizer_bench.jsonl --threads 1
Passes: one cold pass (empty word cache) and the best of 3 more, as dsv3 does. --batch N uses encode_batch with N
rayon threads instead of a loop of encode() calls.
"""
import argparse
import json
import os
import sys
import time


def read_docs(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def run(encode_all, docs):
    t0 = time.perf_counter()
    n_tokens = encode_all(docs)
    return time.perf_counter() - t0, n_tokens


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default="models/tokenizers/deepseek-v3")
    ap.add_argument("--bench", required=True, help="JSON-lines text from make_tokenizer_bench_text.py")
    ap.add_argument("--batch", type=int, default=0, help="threads for encode_batch (0: one thread, encode loop)")
    args = ap.parse_args()
    threads = max(1, args.batch)
    os.environ["RAYON_NUM_THREADS"] = str(threads)  # before tokenizers starts its pool
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if args.batch else "false"
    import tokenizers
    tok = tokenizers.Tokenizer.from_file(os.path.join(args.tokenizer, "tokenizer.json"))
    docs = read_docs(args.bench)
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)

    if args.batch:
        def encode_all(ds):
            return sum(len(e.ids) for e in tok.encode_batch(ds, add_special_tokens=False))
    else:
        def encode_all(ds):
            return sum(len(tok.encode(d, add_special_tokens=False).ids) for d in ds)

    cold, n_tokens = run(encode_all, docs)
    best = min([cold] + [run(encode_all, docs)[0] for _ in range(3)])
    print(json.dumps({"file": args.bench, "documents": len(docs), "bytes": n_bytes, "tokens": n_tokens,
                      "threads": threads, "cold_s": round(cold, 4), "best_s": round(best, 4),
                      "cold_mb_per_s": round(n_bytes / 1e6 / cold, 2), "mb_per_s": round(n_bytes / 1e6 / best, 2),
                      "impl": f"tokenizers {tokenizers.__version__}"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
