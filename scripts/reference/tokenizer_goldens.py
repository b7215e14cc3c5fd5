#!/usr/bin/env python3
"""tokenizer_goldens.py: HF goldens for the dsv3 tokenizer tests (tests/unit/tokenizer/test_tokenizer_goldens.cpp).

Run on a machine with `tokenizers` and `transformers` (the lead's GPU machine; no network needed):
    python3 scripts/reference/tokenizer_goldens.py --tokenizer models/tokenizers/deepseek-v3 \
        --data tests/data/tokenizer --out tests/data/tokenizer/hf
and commit the files it writes to --out:
    meta.json      versions, vocab_size, len(tokenizer), bos/eos ids, special ids, the config's chat template kind
    encode.jsonl   per corpus line: ids without / with special tokens, decode of both (skip_special_tokens on the second)
    decode.jsonl   seeded id sequences (partial UTF-8, specials, out-of-vocabulary ids) and their decodes
    chat.jsonl     every conversation x template (the config's own + templates/*.jinja) x add_generation_prompt
                   (x thinking for V3.1): the rendered text and apply_chat_template's ids, or the error
"""
import argparse
import json
import os
import random
import sys

TEMPLATES = ["v3", "v3-0324", "r1", "v3.1"]


def to_list(ids):
    """apply_chat_template(tokenize=True) returns a list in transformers 4 and a BatchEncoding in 5."""
    if hasattr(ids, "keys") and "input_ids" in ids:
        ids = ids["input_ids"]
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    ids = list(ids)
    if ids and isinstance(ids[0], list):  # batched
        assert len(ids) == 1, "expected one sequence"
        ids = ids[0]
    return [int(i) for i in ids]


def read_corpus(data_dir):
    with open(os.path.join(data_dir, "corpus.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def decode_cases(n_tokens, special_ids, seed=20240229, n_cases=200):
    """Id sequences that stress decoding: single bytes (incomplete UTF-8), specials, ids past the tokenizer."""
    rng = random.Random(seed)
    cases = [[], [0], [1], [238], [19923, 73369], [73369, 238], [n_tokens], [n_tokens + 100, 19923]]
    for _ in range(n_cases):
        ids = []
        for _ in range(rng.randrange(1, 30)):
            r = rng.random()
            if r < 0.5:
                ids.append(rng.randrange(3, 259))          # byte-level single-byte tokens
            elif r < 0.6 and special_ids:
                ids.append(rng.choice(special_ids))
            else:
                ids.append(rng.randrange(0, n_tokens))
        cases.append(ids)
    return cases


def chat_entries(tokenizer, conversations, templates):
    """templates: list of (name, jinja text or None for the tokenizer's own)."""
    out = []
    for name, text in templates:
        for conv in conversations:
            for gen in (True, False):
                for thinking in ((False, True) if name == "v3.1" else (False,)):
                    e = {"template": name, "conversation": conv["name"], "add_generation_prompt": gen,
                         "thinking": thinking}
                    kwargs = {"add_generation_prompt": gen}
                    if text is not None:
                        kwargs["chat_template"] = text
                    if name == "v3.1":
                        kwargs["thinking"] = thinking
                    try:
                        e["text"] = tokenizer.apply_chat_template(conv["messages"], tokenize=False, **kwargs)
                        e["ids"] = to_list(tokenizer.apply_chat_template(conv["messages"], tokenize=True, **kwargs))
                    except Exception as ex:  # recorded: the C++ test reports which templates HF cannot render
                        e.pop("text", None)
                        e["error"] = f"{type(ex).__name__}: {ex}"
                    out.append(e)
    return out


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def make_goldens(tokenizer, data_dir, out_dir, versions, raw=None):
    os.makedirs(out_dir, exist_ok=True)
    corpus = read_corpus(data_dir)
    with open(os.path.join(data_dir, "conversations.json"), encoding="utf-8") as f:
        conversations = json.load(f)

    rows = []
    for i, text in enumerate(corpus):
        ids = to_list(tokenizer.encode(text, add_special_tokens=False))
        ids_special = to_list(tokenizer.encode(text, add_special_tokens=True))
        if raw is not None:  # the tokenizers library on tokenizer.json itself must agree with the transformers class
            raw_ids = raw.encode(text, add_special_tokens=False).ids
            assert raw_ids == ids, f"line {i}: transformers {type(tokenizer).__name__} {ids} != tokenizers {raw_ids}"
        rows.append({"i": i, "ids": ids, "ids_special": ids_special,
                     "decoded": tokenizer.decode(ids),
                     "decoded_skip": tokenizer.decode(ids_special, skip_special_tokens=True)})
    write_jsonl(os.path.join(out_dir, "encode.jsonl"), rows)

    n_tokens = len(tokenizer)
    special_ids = sorted(int(i) for i in tokenizer.all_special_ids)
    rows = [{"ids": ids, "text": tokenizer.decode(ids), "text_skip": tokenizer.decode(ids, skip_special_tokens=True)}
            for ids in decode_cases(n_tokens, special_ids)]
    write_jsonl(os.path.join(out_dir, "decode.jsonl"), rows)

    templates = [("config", None)]
    for name in TEMPLATES:
        with open(os.path.join(data_dir, "templates", name + ".jinja"), encoding="utf-8") as f:
            templates.append((name, f.read()))
    write_jsonl(os.path.join(out_dir, "chat.jsonl"), chat_entries(tokenizer, conversations, templates))

    meta = dict(versions)
    meta.update({"vocab_size": int(tokenizer.vocab_size), "len": n_tokens,
                 "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                 "all_special_ids": special_ids, "corpus_lines": len(corpus)})
    with open(os.path.join(out_dir, "meta.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    return meta


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default="models/tokenizers/deepseek-v3", help="folder with tokenizer.json")
    ap.add_argument("--data", default="tests/data/tokenizer", help="folder with corpus.jsonl, conversations.json")
    ap.add_argument("--out", required=True, help="output folder (tests/data/tokenizer/hf)")
    args = ap.parse_args()
    import tokenizers
    import transformers
    # NOTE: transformers 5's AutoTokenizer maps this folder (tokenizer_class LlamaTokenizerFast, legacy) to its
    # LlamaTokenizer, which rebuilds a SentencePiece-style pre-tokenizer instead of the file's byte-level splits
    # ("Hello world" -> [42, 6629, 10030] instead of [19923, 2058]). The generic fast tokenizer loads tokenizer.json
    # as it is (and honours add_bos_token); the raw `tokenizers` library cross-checks every corpus line.
    tok = transformers.PreTrainedTokenizerFast.from_pretrained(args.tokenizer)
    raw = tokenizers.Tokenizer.from_file(os.path.join(args.tokenizer, "tokenizer.json"))
    meta = make_goldens(tok, args.data, args.out, {"tokenizers": tokenizers.__version__,
                                                   "transformers": transformers.__version__,
                                                   "tokenizer_class": type(tok).__name__}, raw=raw)
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
