#!/usr/bin/python3
# prepare_dataset_ref.py: an independent Python reference of TensorRT-LLM's prepare_dataset.py generator (tests).
# It redoes the tool's logic (benchmarks/cpp/utils/{utils,prepare_synthetic_data,prepare_real_data}.py, E1/E2) on
# the real numpy and CPython RNGs, reading vocab_size/eos from the tokenizer JSON as HF does, so that
# test_prepare_dataset can require byte equality with `dsv3 prepare-dataset`. The `dataset` subcommand uses a
# stand-in encoder (see standin_encode) that the C++ test reproduces; the real tokenizer is not needed.
import argparse
import contextlib
import csv
import json
import math
import os
import random
import shlex
import sys

import numpy as np


_TOKENIZERS = {}


def load_tokenizer(d):
    if d not in _TOKENIZERS:
        _TOKENIZERS[d] = _load_tokenizer(d)
    return _TOKENIZERS[d]


def _load_tokenizer(d):
    tok = json.load(open(os.path.join(d, "tokenizer.json"), encoding="utf-8"))
    cfg = json.load(open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8"))
    eos = cfg["eos_token"]
    if isinstance(eos, dict):
        eos = eos["content"]
    ids = [a["id"] for a in tok.get("added_tokens", []) if a["content"] == eos]
    if not ids:
        ids = [tok["model"]["vocab"][eos]]
    cls = cfg.get("tokenizer_class", "PreTrainedTokenizer")
    if not cls.endswith("Fast"):
        cls += "Fast"
    return {"vocab_size": len(tok["model"]["vocab"]), "eos": ids[:1], "cls": cls}


def standin_encode(text, add_special_tokens=True):
    # BOS (id 0) then one id per UTF-8 byte, offset by 3.
    return ([0] if add_special_tokens else []) + [b + 3 for b in text.encode("utf-8")]


def norm_lengths(mean, stdev, n, seed):
    np.random.seed(seed)
    return [max(1, math.ceil(x)) for x in np.random.normal(loc=mean, scale=stdev, size=n).tolist()]


def unif_lengths(lo, hi, n, seed):
    return np.random.default_rng(seed).integers(low=lo, high=hi + 1, size=n).tolist()


def random_tokens(lens, vocab_size, eos_id, seed):
    out = []
    random.seed(seed)
    for n in lens:
        pop = range(0, vocab_size)
        ids = random.sample(pop, n) if n < len(pop) else random.choices(pop, k=n)
        while set(eos_id).issubset(ids):
            ids = [(eos_id[0] + 1) % vocab_size if e == eos_id[0] else e for e in ids]
        out.append(ids)
    return out


def emit(args, input_ids, output_lens, task_ids, metadata):
    if args.stdout:
        for i, ids in enumerate(input_ids):
            print(json.dumps({"task_id": i, "input_ids": ids, "output_tokens": output_lens[i]},
                             separators=(",", ":"), ensure_ascii=False))
        return
    name = "__".join(f"{k}:{v}" for k, v in metadata.items() if k != "tokenizer")
    metadata.setdefault("workload_name", name)
    samples = [{"input_len": len(ids), "input_ids": ids, "output_len": output_lens[i], "task_id": task_ids[i]}
               for i, ids in enumerate(input_ids)]
    with open(args.output, "w") as f:
        json.dump({"metadata": metadata, "samples": samples}, f)


def task_ids_for(args, n):
    if args.rand_task_id is None:
        return [args.task_id] * n
    return [random.randint(*args.rand_task_id) for _ in range(n)]


def synthetic(args, tok, kind):
    if kind == "token-norm-dist":
        in_lens = norm_lengths(args.input_mean, args.input_stdev, args.num_requests, args.random_seed)
        out_lens = norm_lengths(args.output_mean, args.output_stdev, len(in_lens), args.random_seed)
        params = {"input_mean": args.input_mean, "input_stdev": args.input_stdev,
                  "output_mean": args.output_mean, "output_stdev": args.output_stdev}
    else:
        in_lens = unif_lengths(args.input_min, args.input_max, args.num_requests, args.random_seed)
        out_lens = unif_lengths(args.output_min, args.output_max, len(in_lens), args.random_seed)
        params = {"input_min": args.input_min, "input_max": args.input_max,
                  "output_min": args.output_min, "output_max": args.output_max}
    ids = random_tokens(in_lens, tok["vocab_size"], tok["eos"], args.random_seed)
    task_ids = task_ids_for(args, len(in_lens))
    meta = {"workload_type": kind, **params, "num_requests": args.num_requests,
            "tokenize_vocabsize": tok["vocab_size"], "max_input_len": max(in_lens), "max_output_len": max(out_lens)}
    emit(args, ids, out_lens, task_ids, meta)


def read_rows(path):
    if path.endswith(".csv"):
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    text = open(path, encoding="utf-8").read()
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(l) for l in text.splitlines() if l.strip()]


def dataset(args, tok):
    # dsv3 draws random task ids from random.seed(seed); the tool uses its unseeded global RNG.
    random.seed(args.random_seed)
    ids, in_lens, out_lens, task_ids = [], [], [], []
    for req in read_rows(args.dataset_name):
        prompt = (req[args.dataset_prompt_key] if args.dataset_prompt_key else args.dataset_prompt)
        line = standin_encode(prompt + " " + req[args.dataset_input_key])
        if args.max_input_len and len(line) > args.max_input_len:
            continue
        ids.append(line)
        in_lens.append(len(line))
        if args.output_len_dist is None:
            out_lens.append(len(standin_encode(req[args.dataset_output_key])))
        task_ids.append(random.randint(*args.rand_task_id) if args.rand_task_id else args.task_id)
        if args.num_requests and len(ids) >= args.num_requests:
            break
    if args.output_len_dist is not None:
        mean, stdev = (int(x) for x in args.output_len_dist.split(","))
        out_lens = norm_lengths(mean, stdev, len(ids), args.random_seed)
    meta = {"workload_type": "dataset", "tokenizer": tok["cls"], "num_requests": len(ids),
            "max_input_len": max(in_lens), "max_output_len": max(out_lens)}
    emit(args, ids, out_lens, task_ids, meta)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--output", default="preprocessed_dataset.json")
    p.add_argument("--stdout", action="store_true")
    p.add_argument("--random-seed", "--random_seed", type=int, default=420)
    p.add_argument("--task-id", type=int, default=-1)
    p.add_argument("--rand-task-id", type=int, nargs=2, default=None)
    sub = p.add_subparsers(dest="cmd", required=True)
    n = sub.add_parser("token-norm-dist")
    u = sub.add_parser("token-unif-dist")
    d = sub.add_parser("dataset")
    for sp in (n, u):
        sp.add_argument("--num-requests", "--num_requests", type=int, required=True)
    for k in ("input-mean", "input-stdev", "output-mean", "output-stdev"):
        n.add_argument("--" + k, type=int, required=True)
    for k in ("input-min", "input-max", "output-min", "output-max"):
        u.add_argument("--" + k, type=int, required=True)
    for k in ("dataset-name", "dataset-split", "dataset-input-key", "dataset-prompt-key", "dataset-prompt",
              "dataset-output-key", "output-len-dist"):
        d.add_argument("--" + k, default=None)
    d.add_argument("--num-requests", type=int, default=None)
    d.add_argument("--max-input-len", type=int, default=None)
    args = p.parse_args(argv)
    tok = load_tokenizer(args.tokenizer)
    if args.cmd == "dataset":
        dataset(args, tok)
    else:
        synthetic(args, tok, args.cmd)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--batch":
        # One run per line "STDOUT_FILE<TAB>arguments": saves the interpreter and numpy start-up per case.
        for line in open(sys.argv[2], encoding="utf-8"):
            if line.strip():
                out, args = line.rstrip("\n").split("\t", 1)
                with open(out, "w", encoding="utf-8") as f, contextlib.redirect_stdout(f):
                    main(shlex.split(args))
    else:
        main()
