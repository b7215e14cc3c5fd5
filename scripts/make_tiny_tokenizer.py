#!/usr/bin/python3
# make_tiny_tokenizer.py: writes tests/data/tokenizer-tiny/, a 300-entry byte-level BPE tokenizer in DeepSeek-V3's
# tokenizer.json layout (same pre-tokenizer, specials at ids 0-2, two extra added tokens at 300-301 that HF's
# vocab_size excludes). 41 merges are learned greedily from a fixed English text, so the output is deterministic.
# Used by the prepare-dataset tests (vocab_size 300, EOS id 1); rerun only to change the fixture.
import json
import os
import sys

TEXT = ("the quick brown fox jumps over the lazy dog. in the beginning there was the word, and the word was "
        "with the tokenizer; then the tokens were sampled at random and the benchmark measured the throughput "
        "of the engine on the inputs that the dataset held. ") * 4


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def main(out_dir):
    specials = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"]
    b2u = bytes_to_unicode()
    vocab = {s: i for i, s in enumerate(specials)}
    for b in range(256):
        vocab[b2u[b]] = len(vocab)
    words = [[b2u[b] for b in (w if i == 0 else " " + w).encode()] for i, w in enumerate(TEXT.split(" ")) if w]
    merges = []
    while len(vocab) < 300:
        counts = {}
        for w in words:
            for a, b in zip(w, w[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + 1
        (a, b), _ = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        merges.append(f"{a} {b}")
        vocab[a + b] = len(vocab)
        for w in words:
            i = 0
            while i < len(w) - 1:
                if w[i] == a and w[i + 1] == b:
                    w[i:i + 2] = [a + b]
                i += 1
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": True} for i, s in enumerate(specials)]
    for i, s in ((300, "<｜User｜>"), (301, "<｜Assistant｜>")):
        added.append({"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": True, "special": False})
    split = ("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
             " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+")
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": []},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": False},
            {"type": "Split", "pattern": {"Regex": "[一-龥぀-ゟ゠-ヿ]+"}, "behavior": "Isolated", "invert": False},
            {"type": "Split", "pattern": {"Regex": split}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                  "merges": merges},
    }
    def added_token(s):
        return {"__type": "AddedToken", "content": s, "lstrip": False, "normalized": True, "rstrip": False,
                "single_word": False}
    cfg = {"add_bos_token": True, "add_eos_token": False, "bos_token": added_token(specials[0]),
           "clean_up_tokenization_spaces": False, "eos_token": added_token(specials[1]), "legacy": True,
           "model_max_length": 4096, "pad_token": added_token(specials[1]), "sp_model_kwargs": {},
           "unk_token": None, "tokenizer_class": "LlamaTokenizerFast"}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "data",
                                                           "tokenizer-tiny"))
