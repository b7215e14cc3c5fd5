#!/usr/bin/env python3
"""test_generate.py: `dsv3 generate` as the quickstart user runs it, on a CPU tiny model with the DeepSeek-V3
tokenizer (tests/e2e). Usage: test_generate.py DSV3_BIN WORK_DIR TOKENIZER_DIR. Prints 'N passed, M failed'."""
import ast
import os
import re
import subprocess
import sys

DSV3, WORK, TOK = sys.argv[1:4]
passed, failed = 0, 0


def check(cond, what):
    global passed, failed
    passed, failed = (passed + 1, failed) if cond else (passed, failed + 1)
    if not cond:
        print("FAIL:", what)


if not os.path.exists(os.path.join(TOK, "tokenizer.json")):
    print("skipped: no tokenizer (run scripts/setup.sh)")
    print("0 passed, 0 failed")
    sys.exit(0)
model = os.path.join(WORK, "tiny")
subprocess.run([DSV3, "make-tiny-model", "--preset", "tiny", "--out", model, "--tokenizer", TOK], check=True,
               capture_output=True)
p = subprocess.run([DSV3, "generate", "--model_dir", model, "--backend", "cpu", "--max_tokens", "8"],
                   capture_output=True, text=True)
check(p.returncode == 0, "generate runs: " + p.stderr[-500:])
lines = [l for l in p.stdout.splitlines() if l.startswith("[")]
prompts = ["Hello, my name is", "The president of the United States is", "The capital of France is",
           "The future of AI is"]
check(len(lines) == 4, "one line per default prompt")
texts = []
for i, (line, prompt) in enumerate(zip(lines, prompts)):
    m = re.match(r"^\[(\d+)\] Prompt: (.*), Generated text: (.*)$", line)
    check(m is not None and int(m.group(1)) == i, f"line {i} has the recipe's format: {line[:80]}")
    if m:
        check(ast.literal_eval(m.group(2)) == prompt, f"line {i} repr of the prompt")
        texts.append(ast.literal_eval(m.group(3)))  # a valid Python literal: the repr quoting is right
check("Processed requests" in p.stderr and "4/4" in p.stderr, "progress bar on stderr")
# The overlap scheduler is on by default, off with --disable_overlap_scheduler; the CPU backend never overlaps (its
# ops finish before they return) and says why.
check("overlap scheduler: off (a host backend)" in p.stderr, "overlap scheduler state logged: " + p.stderr[-300:])
po = subprocess.run([DSV3, "generate", "--model_dir", model, "--backend", "cpu", "--max_tokens", "8",
                     "--disable_overlap_scheduler"], capture_output=True, text=True)
check("overlap scheduler: off (disable_overlap_scheduler)" in po.stderr, "--disable_overlap_scheduler reaches the engine")
check([l for l in po.stdout.splitlines() if l.startswith("[")] == lines, "the same texts without the overlap scheduler")
# Greedy is deterministic, and the same prompt alone gives the same text as in the batch.
p2 = subprocess.run([DSV3, "generate", "--model_dir", model, "--backend", "cpu", "--max_tokens", "8", "--prompt",
                     prompts[2]], capture_output=True, text=True)
m = re.match(r"^\[0\] Prompt: .*, Generated text: (.*)$", p2.stdout.splitlines()[-1])
check(m is not None and len(texts) == 4 and ast.literal_eval(m.group(1)) == texts[2], "batch-invariant greedy text")
# Flags that are not implemented are refused, never ignored.
for flags, needle in ((["--tp_size", "2"], "parallel"), (["--mtp_nextn", "1"], "MTP"),
                      (["--spec_decode_algo", "MTP"], "MTP")):
    p3 = subprocess.run([DSV3, "generate", "--model_dir", model, "--backend", "cpu", *flags], capture_output=True,
                        text=True)
    check(p3.returncode != 0 and needle in p3.stderr, f"{flags} refused with a clear error: {p3.stderr[-200:]}")
p4 = subprocess.run([DSV3, "generate", "--model_dir", os.path.join(WORK, "nope")], capture_output=True, text=True)
check(p4.returncode == 1 and "nope" in p4.stderr, "missing model dir named")
# prepare-dataset `dataset` over a local JSONL file: prompt + ' ' + input, encoded with special tokens, output length
# = the token count of the golden output (interfaces.md §1.1) — checked against `dsv3 tokenize` of the same strings.
import json
qa = os.path.join(WORK, "qa.jsonl")
with open(qa, "w") as f:
    f.write(json.dumps({"q": "What is 2+2?", "a": "4"}) + "\n" + json.dumps({"q": "Name a colour.", "a": "Blue, say."}) + "\n")
p5 = subprocess.run([DSV3, "prepare-dataset", "--tokenizer", TOK, "--stdout", "dataset", "--dataset-name", qa,
                     "--dataset-split", "train", "--dataset-input-key", "q", "--dataset-output-key", "a",
                     "--dataset-prompt", "Answer:"], capture_output=True, text=True)
check(p5.returncode == 0, "prepare-dataset dataset runs: " + p5.stderr[-300:])
rows = [json.loads(l) for l in p5.stdout.splitlines()]
texts = ["Answer: What is 2+2?", "Answer: Name a colour.", "4", "Blue, say."]
tk = subprocess.run([DSV3, "tokenize", "--tokenizer", TOK, "--add_special_tokens"], input="\n".join(json.dumps(t) for t in texts),
                    capture_output=True, text=True)
ids = [json.loads(l) for l in tk.stdout.splitlines()]
check(len(rows) == 2 and [r["input_ids"] for r in rows] == ids[:2], "dataset input_ids = encode(prompt + ' ' + input)")
check([r["output_tokens"] for r in rows] == [len(ids[2]), len(ids[3])], "dataset output_tokens = len(encode(output))")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
