#!/usr/bin/env bash
# dec1.sh: on the GPU machine — the absorbed-MLA decode ops at 1-8 tokens (branch dec1): build, the op cases of
# mla_absorb_q / mla_absorb_v (bitwise vs the CPU) and mla_decode (mma16, forced splits, graph-wide tables), the perf
# tables of the three ops, then a short v3-slice decode at batch 1 (context 1024) with the new kernels (default) and
# with the former ones (DSV3_MLA_DECODE=mma DSV3_MLA_ABSORB=tile); table last. About 5 minutes on one H200.
# Carry: .devdeps (pcre2.h) and models/tokenizers/deepseek-v3. Env: BUDGET_S=300, OSL_B1=48, OPS_REGEX, SANITIZE=1.
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/device/common.sh
export BUDGET_S=${BUDGET_S:-300}
device_init dec1 44
TOK=models/tokenizers/deepseek-v3
device_build dsv3 test_ops
DSV3=$PWD/$BUILD/tools/dsv3
T=$BUILD/tests/ops/test_ops

rc=0; timeout 150 $T -p "${OPS_REGEX:-mla_absorb|mla_decode}" >"$OUT/test_ops.log" 2>&1 || rc=$?
row "test_ops ${OPS_REGEX:-mla_absorb|mla_decode}" "rc=$rc: $(grep -E 'cases passed' "$OUT/test_ops.log" | tail -1) ($(elapsed))"
while IFS= read -r l; do row "  failed" "$l"; done < <(grep -E '^ *FAIL' "$OUT/test_ops.log" | cut -c1-130 | head -12)

# SANITIZE=1 (a few minutes more: raise BUDGET_S, e.g. 700): memcheck, racecheck (the slice kernels' and mma16's shared-memory phases) and
# synccheck on the small cases of the new kernels.
if [ -n "${SANITIZE:-}" ] && command -v compute-sanitizer >/dev/null; then
  re='mla_absorb.*(H=5|H=3|H=16),|mla_decode.*(H=16|H=48|kernel=mma16-split)'
  for tool in memcheck racecheck synccheck; do
    rc=0; timeout 200 compute-sanitizer --tool $tool --error-exitcode 3 $T --quick -p "$re" >"$OUT/sanitize-$tool.log" 2>&1 || rc=$?
    row "$tool (small absorb / mma16 cases)" "rc=$rc: $(grep -E 'cases passed' "$OUT/sanitize-$tool.log" | tail -1); $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitize-$tool.log" | tail -1)"
  done
fi

for op in mla_absorb mla_decode_small; do
  [ "$(left)" -gt 60 ] || { row "perf $op" "skipped (budget)"; continue; }
  rc=0; timeout 90 $T --perf -o $op >"$OUT/perf_$op.log" 2>&1 || rc=$?
  row "perf $op" "rc=$rc ($(elapsed))"
done

M=/tmp/v3-slice; rm -rf $M
$DSV3 make-tiny-model --preset v3-slice --config_only --out "$M" --tokenizer "$TOK" >"$OUT/make_model.log" 2>&1 ||
  row "make-tiny-model v3-slice" "FAILED"
cat >"$OUT/extra.yaml" <<'Y'
load_format: dummy
max_batch_size: 128
max_num_tokens: 8192
kv_cache_config:
  max_tokens: 262144
  enable_block_reuse: false
Y
$DSV3 prepare-dataset --tokenizer "$TOK" --stdout --random-seed 7 token-norm-dist --num-requests 1 --input-mean 1024 \
  --input-stdev 0 --output-mean "${OSL_B1:-48}" --output-stdev 0 >"$OUT/b1.jsonl" 2>"$OUT/datasets.log"
bench() {  # tag env...: v3-slice decode at batch 1, median step period over the decode steps (warm-up skipped)
  local tag=$1; shift
  [ "$(left)" -gt 45 ] || { row "bench $tag" "skipped (budget)"; return; }
  env "$@" timeout 90 $DSV3 bench --model "$M" throughput --dataset "$OUT/b1.jsonl" --backend cuda --warmup 1 \
    --extra_llm_api_options "$OUT/extra.yaml" --iteration_log "$OUT/$tag.iter.jsonl" >"$OUT/$tag.log" 2>&1
  row "bench b1 $tag" "$(python3 - "$OUT/$tag.iter.jsonl" <<'P'
import json, sys, statistics
try: it = [json.loads(l) for l in open(sys.argv[1])]
except Exception as e: print("no log", e); sys.exit()
st = [s["iterLatencyMS"] for s in it if s["inflightBatchingStats"]["numCtxTokens"] == 0 and s["inflightBatchingStats"]["numGenRequests"] == 1][2:]
print(f"median {statistics.median(st):.3f} ms/step, min {min(st):.3f} over {len(st)} steps" if st else "no steps")
P
) ($(elapsed))"
}
bench new X=1
bench old DSV3_MLA_DECODE=mma DSV3_MLA_ABSORB=tile
bench new2 X=2

# Perf tables after the rows (the table is printed last by device_finish).
for op in mla_absorb mla_decode_small; do
  [ -f "$OUT/perf_$op.log" ] || continue
  table+=("-- perf $op")
  while IFS= read -r l; do table+=("$l"); done < <(grep -vE '^\s*$' "$OUT/perf_$op.log" | head -${PERF_LINES:-80})
done
