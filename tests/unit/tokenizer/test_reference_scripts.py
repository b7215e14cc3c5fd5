#!/usr/bin/env python3
"""test_reference_scripts.py: checks the logic of scripts/reference/{tokenizer_goldens,bench_hf_tokenizer,
make_tokenizer_bench_text,make_tokenizer_corpus}.py here, where HF tokenizers/transformers are not installed
(tests/unit/tokenizer). Stub `tokenizers`/`transformers` modules stand in for HF: a byte tokenizer (id = byte + 3,
BOS 0, EOS 1) whose apply_chat_template renders with jinja2 as transformers does.

usage: python3 test_reference_scripts.py SOURCE_DIR
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import unittest

SRC = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../.."))
SCRIPTS = os.path.join(SRC, "scripts", "reference")
DATA = os.path.join(SRC, "tests", "data", "tokenizer")
REAL_TOKENIZER = os.path.join(SRC, "models", "tokenizers", "deepseek-v3")

STUB_TRANSFORMERS = r'''
import json, os
import jinja2, jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment
__version__ = "stub"
BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"

class StubTokenizer:
    vocab_size = 259
    all_special_ids = [0, 1]
    bos_token_id, eos_token_id = 0, 1
    def __init__(self, path):
        with open(os.path.join(path, "tokenizer_config.json"), encoding="utf-8") as f:
            self.template = json.load(f)["chat_template"]
        self.env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                 extensions=[jinja2.ext.loopcontrols])
    def __len__(self):
        return 259
    def _ids(self, text):  # specials written in text are one id each
        ids, i = [], 0
        while i < len(text):
            for tok, tid in ((BOS, 0), (EOS, 1)):
                if text.startswith(tok, i):
                    ids.append(tid); i += len(tok); break
            else:
                ids.extend(b + 3 for b in text[i].encode("utf-8")); i += 1
        return ids
    def encode(self, text, add_special_tokens=True):
        return ([0] if add_special_tokens else []) + self._ids(text)
    def decode(self, ids, skip_special_tokens=False):
        out, buf = [], bytearray()
        for i in ids:
            if i in (0, 1):
                out.append(buf.decode("utf-8", "replace")); buf = bytearray()
                if not skip_special_tokens:
                    out.append(BOS if i == 0 else EOS)
            elif 3 <= i < 259:
                buf.append(i - 3)
        out.append(buf.decode("utf-8", "replace"))
        return "".join(out)
    def apply_chat_template(self, messages, tokenize=True, add_generation_prompt=False, chat_template=None, **kw):
        text = self.env.from_string(chat_template or self.template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, bos_token=BOS, eos_token=EOS, **kw)
        return {"input_ids": [self._ids(text)]} if tokenize else text  # the transformers 5 shape, batched

class AutoTokenizer:
    @staticmethod
    def from_pretrained(path):
        return StubTokenizer(path)

PreTrainedTokenizerFast = AutoTokenizer
'''

STUB_TOKENIZERS = r'''
import json
__version__ = "stub"
class Encoding:
    def __init__(self, ids):
        self.ids = ids
class Tokenizer:
    @staticmethod
    def from_file(path):
        json.load(open(path, encoding="utf-8"))  # must be a JSON file
        return Tokenizer()
    def encode(self, text, add_special_tokens=True):  # the stub transformers tokenizer's ids: specials, then byte + 3
        ids, i = [], 0
        while i < len(text):
            for tok, tid in (("<｜begin▁of▁sentence｜>", 0), ("<｜end▁of▁sentence｜>", 1)):
                if text.startswith(tok, i):
                    ids.append(tid); i += len(tok); break
            else:
                ids.extend(b + 3 for b in text[i].encode("utf-8")); i += 1
        return Encoding(([0] if add_special_tokens else []) + ids)
    def encode_batch(self, texts, add_special_tokens=True):
        return [self.encode(t) for t in texts]
'''


def run(args, env=None):
    r = subprocess.run([sys.executable] + args, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise AssertionError(f"{args} failed:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def md5(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


class ReferenceScripts(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        stub = os.path.join(cls.tmp.name, "stubs")
        for name, body in (("transformers", STUB_TRANSFORMERS), ("tokenizers", STUB_TOKENIZERS)):
            os.makedirs(os.path.join(stub, name))
            with open(os.path.join(stub, name, "__init__.py"), "w", encoding="utf-8") as f:
                f.write(body)
        cls.env = dict(os.environ, PYTHONPATH=stub)
        # A tokenizer folder: tokenizer.json is not read by the transformers stub; the config carries the V3 template.
        cls.tok_dir = os.path.join(cls.tmp.name, "tok")
        os.makedirs(cls.tok_dir)
        with open(os.path.join(DATA, "templates", "v3.jinja"), encoding="utf-8") as f:
            v3 = f.read()
        with open(os.path.join(cls.tok_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump({"chat_template": v3}, f)
        with open(os.path.join(cls.tok_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump({}, f)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def goldens(self, out):
        run([os.path.join(SCRIPTS, "tokenizer_goldens.py"), "--tokenizer", self.tok_dir, "--data", DATA, "--out", out],
            self.env)

    def test_goldens(self):
        out = os.path.join(self.tmp.name, "hf")
        self.goldens(out)
        with open(os.path.join(DATA, "corpus.jsonl"), encoding="utf-8") as f:
            corpus = [json.loads(line) for line in f if line.strip()]
        with open(os.path.join(out, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
        self.assertEqual(meta["transformers"], "stub")
        self.assertEqual((meta["vocab_size"], meta["len"], meta["bos_token_id"]), (259, 259, 0))
        self.assertEqual(meta["corpus_lines"], len(corpus))

        rows = read_jsonl(os.path.join(out, "encode.jsonl"))
        self.assertEqual([r["i"] for r in rows], list(range(len(corpus))))
        for r, text in zip(rows, corpus):
            self.assertEqual(r["ids_special"][0], 0)
            self.assertEqual(r["ids_special"][1:], r["ids"])
            self.assertEqual(r["decoded"], text)  # the stub round-trips
            self.assertNotIn("<｜begin▁of▁sentence｜>", r["decoded_skip"][:1])

        dec = read_jsonl(os.path.join(out, "decode.jsonl"))
        self.assertEqual(len(dec), 208)
        self.assertEqual(dec[4], {"ids": [19923, 73369], "text": "", "text_skip": ""})  # past the stub's vocabulary
        self.assertTrue(any(0 in d["ids"] and d["text"] != d["text_skip"] for d in dec))

        chat = read_jsonl(os.path.join(out, "chat.jsonl"))
        self.assertEqual(len(chat), 10 * (2 + 2 + 2 + 2 + 4))
        self.assertEqual([e for e in chat if "error" in e], [])
        for e in chat:
            self.assertIsInstance(e["ids"], list)
            self.assertTrue(all(isinstance(i, int) for i in e["ids"]))
            self.assertEqual(e["ids"][0], 0)  # the template's BOS, once
            self.assertEqual(e["ids"].count(0), 1)
        by_key = {(e["template"], e["conversation"], e["add_generation_prompt"], e["thinking"]): e["text"] for e in chat}
        self.assertEqual(by_key[("config", "single_user", True, False)], by_key[("v3", "single_user", True, False)])
        self.assertTrue(by_key[("v3.1", "single_user", True, True)].endswith("<｜Assistant｜><think>"))
        self.assertTrue(by_key[("v3.1", "single_user", True, False)].endswith("<｜Assistant｜></think>"))
        self.assertTrue(by_key[("r1", "think_history", True, False)].endswith("<｜Assistant｜><think>\n"))

        again = os.path.join(self.tmp.name, "hf2")
        self.goldens(again)
        for name in ("encode.jsonl", "decode.jsonl", "chat.jsonl", "meta.json"):
            self.assertEqual(md5(os.path.join(out, name)), md5(os.path.join(again, name)), name)

    def test_bench_text_and_hf_bench(self):
        a, b = os.path.join(self.tmp.name, "a.jsonl"), os.path.join(self.tmp.name, "b.jsonl")
        run([os.path.join(SCRIPTS, "make_tokenizer_bench_text.py"), "--out", a, "--mb", "0.3"])
        run([os.path.join(SCRIPTS, "make_tokenizer_bench_text.py"), "--out", b, "--mb", "0.3"])
        self.assertEqual(md5(a), md5(b))  # deterministic: both benchmarks read the same text
        docs = read_jsonl(a)
        n_bytes = sum(len(d.encode("utf-8")) for d in docs)
        self.assertGreaterEqual(n_bytes, 300000)
        self.assertTrue(all(isinstance(d, str) for d in docs))
        text = "".join(docs)
        self.assertTrue(any(0x4E00 <= ord(c) <= 0x9FA5 for c in text) and "\n" in text)
        res = json.loads(run([os.path.join(SCRIPTS, "bench_hf_tokenizer.py"), "--tokenizer", self.tok_dir,
                              "--bench", a], self.env))
        self.assertEqual(res["bytes"], n_bytes)
        self.assertEqual(res["tokens"], n_bytes)  # the stub's ids are the bytes
        self.assertEqual(res["threads"], 1)
        self.assertGreater(res["mb_per_s"], 0)
        self.assertLessEqual(res["best_s"], res["cold_s"])

    @unittest.skipUnless(os.path.exists(os.path.join(REAL_TOKENIZER, "tokenizer.json")), "no DeepSeek tokenizer")
    def test_committed_corpus_is_current(self):
        out = os.path.join(self.tmp.name, "corpus")
        run([os.path.join(SCRIPTS, "make_tokenizer_corpus.py"), "--tokenizer", REAL_TOKENIZER, "--out", out])
        for name in ("corpus.jsonl", "conversations.json"):
            self.assertEqual(md5(os.path.join(out, name)), md5(os.path.join(DATA, name)),
                             f"{name} is stale: rerun scripts/reference/make_tokenizer_corpus.py")


if __name__ == "__main__":
    unittest.main(verbosity=2)
