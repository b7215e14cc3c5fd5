#!/usr/bin/env bash
# check_all.sh: one call on the GPU machine — build dsv3 with CUDA, run the gpu-labelled op tests, compare the whole
# model on the GPU with the CPU reference (golden fixtures, greedy generate), make the HF tokenizer goldens and run
# both tokenizer benchmarks. Logs and fixtures go to $OUT; a short table is printed last.
# Carry: .devdeps (pcre2.h: that machine has the PCRE2 runtime but no headers) and models/tokenizers/deepseek-v3.
# Usage: scripts/device/check_all.sh   (BUDGET_S bounds the optional parts; default 540)
#   OPS_ARGS="-o router": only those op cases (OPS_TIMEOUT=260 s); SKIP_PERF=1, SKIP_TOKENIZER=1, SKIP_MEMCHECK=1:
#   leave those parts out.
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/device/common.sh
device_init check_all 40
device_build dsv3 test_ops
DSV3=$BUILD/tools/dsv3

rc=0; timeout "${OPS_TIMEOUT:-260}" "$BUILD/tests/ops/test_ops" ${OPS_ARGS:-} >"$OUT/test_ops.log" 2>&1 || rc=$?
row "test_ops (CPU vs CUDA, every op)" "rc=$rc: $(grep -E 'cases passed' "$OUT/test_ops.log" | tail -1) ($(elapsed))"
grep -E '^ *(FAIL|FAILED)' "$OUT/test_ops.log" | head -10

# Whole model: CUDA vs CPU on the golden fixtures, and vs the references.
for g in yarn-odd noq-plain; do
  d=tests/data/golden/$g
  ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('$d/input_ids.json')))))")
  for be in cpu cuda; do
    for num in fp8 bf16; do
      $DSV3 forward --model_dir $d --input_ids $ids --backend $be --numerics $num --out "$OUT/$g-$be-$num.npy" \
        >>"$OUT/forward.log" 2>&1 || echo "forward $g $be $num failed" >>"$OUT/forward.log"
    done
    $DSV3 forward --model_dir $d --input_ids $ids --backend $be --numerics bf16 --decode_from 3 \
      --out "$OUT/$g-$be-dec.npy" >>"$OUT/forward.log" 2>&1
  done
  res=$(python3 - "$OUT" "$g" "$d" <<'PY'
import sys, numpy as np
out, g, d = sys.argv[1:4]
L = lambda f: np.load(f"{out}/{g}-{f}.npy")
rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))
am = lambda a, b: float((a.argmax(1) == b.argmax(1)).mean())
hf = np.load(f"{d}/logits_hf.npy")
print(f"fp8 cuda~cpu {rel(L('cuda-fp8'), L('cpu-fp8')):.2e} (argmax {am(L('cuda-fp8'), L('cpu-fp8')):.2f}); "
      f"bf16 cuda~hf {rel(L('cuda-bf16'), hf):.2e}; decode cuda~cpu {rel(L('cuda-dec'), L('cpu-dec')):.2e}")
PY
)
  row "forward $g" "$res"
done

# Greedy generate on a tiny model: GPU tokens vs CPU tokens, in bf16 numerics. (In fp8 numerics a random tiny model
# turns any rounding difference into ~15% logit changes — every fp8 code flip moves an element by a whole step — so
# tokens part after the first near-tie; the fp8 run below is scored teacher-forced instead.)
$DSV3 make-tiny-model --preset tiny --out /tmp/tiny --tokenizer models/tokenizers/deepseek-v3 >"$OUT/generate.log" 2>&1
for be in cpu cuda; do
  $DSV3 generate --model_dir /tmp/tiny --backend $be --numerics bf16 --max_tokens 24 --output_json "$OUT/generate-$be.json" \
    >"$OUT/generate-$be.txt" 2>>"$OUT/generate.log"
done
same=$(python3 - "$OUT" <<'PY'
import sys
out = sys.argv[1]
a = [l for l in open(f"{out}/generate-cpu.txt") if l.startswith("[")]
b = [l for l in open(f"{out}/generate-cuda.txt") if l.startswith("[")]
print(f"{sum(x == y for x, y in zip(a, b))}/{len(a)} prompts identical (cuda lines: {len(b)})")
PY
)
row "generate greedy cuda vs cpu (bf16)" "$same"
# Teacher-forced: the CPU reference scores the GPU's greedy continuation; each GPU token must be the CPU's argmax or
# a near-tie (random weights give near-flat logits over 129280 ids, so fp32 summation order decides some ties).
teacher_forced() {  # $1 = numerics of generate-cuda.json
  python3 - "$OUT" "$DSV3" "$1" <<'PY'
import json, subprocess, sys, numpy as np
out, dsv3, numerics = sys.argv[1:4]
agree = total = 0; worst = 0.0
for i, r in enumerate(json.load(open(f"{out}/generate-cuda.json"))):
    p, g = r["prompt_token_ids"], r["token_ids"]
    ids = ",".join(map(str, p + g[:-1]))
    subprocess.run([dsv3, "forward", "--model_dir", "/tmp/tiny", "--backend", "cpu", "--input_ids", ids, "--numerics",
                    numerics, "--decode_from", str(len(p)), "--out", f"/tmp/tf{i}.npy"], check=True, capture_output=True)
    lg = np.load(f"/tmp/tf{i}.npy")[len(p) - 1:]
    for row, tok in zip(lg, g):
        total += 1; agree += int(row.argmax() == tok)
        worst = max(worst, float((row.max() - row[tok]) / row.std()))
print(f"{agree}/{total} GPU tokens are the CPU argmax; worst margin {worst:.4f} logit std")
PY
}
row "teacher-forced cuda tokens on cpu (bf16)" "$(teacher_forced bf16)"
# fp8 numerics (the default), teacher-forced.
$DSV3 generate --model_dir /tmp/tiny --backend cuda --max_tokens 24 \
  --output_json "$OUT/generate-cuda.json" >"$OUT/generate-cuda-fp8.txt" 2>>"$OUT/generate.log"
row "teacher-forced cuda tokens on cpu (fp8)" "$(teacher_forced fp8)"

# Op benchmarks and compute-sanitizer.
if [ -z "${SKIP_PERF:-}" ]; then
  timeout 120 "$BUILD/tests/ops/test_ops" --perf >"$OUT/perf.log" 2>&1
  row "test_ops --perf" "rc=$? ($(elapsed))"
fi
if [ -z "${SKIP_MEMCHECK:-}" ] && command -v compute-sanitizer >/dev/null; then
  timeout "${MEMCHECK_TIMEOUT:-150}" compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 3 "$BUILD/tests/ops/test_ops" --quick >"$OUT/memcheck.log" 2>&1
  row "memcheck (test_ops --quick)" "rc=$?, $(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -1) ($(elapsed))"
fi

# Tokenizer: HF goldens and the encode benchmark.
[ -n "${SKIP_TOKENIZER:-}" ] && exit 0
python3 scripts/reference/tokenizer_goldens.py --tokenizer models/tokenizers/deepseek-v3 --data tests/data/tokenizer \
  --out "$OUT/tokenizer_hf" >"$OUT/tokenizer_goldens.log" 2>&1
row "tokenizer HF goldens" "rc=$? ($(ls "$OUT/tokenizer_hf" 2>/dev/null | tr '\n' ' '))"
python3 scripts/reference/make_tokenizer_bench_text.py --out /tmp/tokbench.jsonl --mb 16 >/dev/null 2>&1
hf=$(python3 scripts/reference/bench_hf_tokenizer.py --tokenizer models/tokenizers/deepseek-v3 --bench /tmp/tokbench.jsonl 2>&1 | tail -1)
d1=$($DSV3 tokenize --tokenizer models/tokenizers/deepseek-v3 --bench /tmp/tokbench.jsonl --threads 1 2>&1 | tail -1)
d16=$($DSV3 tokenize --tokenizer models/tokenizers/deepseek-v3 --bench /tmp/tokbench.jsonl --threads 16 2>&1 | tail -1)
echo "hf: $hf" >"$OUT/tokenizer_bench.log"; echo "dsv3 1t: $d1" >>"$OUT/tokenizer_bench.log"; echo "dsv3 16t: $d16" >>"$OUT/tokenizer_bench.log"
row "tokenizer bench" "see tokenizer_bench.log ($(elapsed))"
cat "$OUT/tokenizer_bench.log"
