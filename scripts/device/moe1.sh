#!/usr/bin/env bash
# moe1.sh: on the GPU machine — the decode MoE kernels (moe_decode.cu) and the fused router: their op tests (CPU vs
# CUDA, determinism, graph replay), the moe_experts and router benchmarks (every path at 1..128 tokens, then the
# decode kernels by K split x L2 prefetch distance), and v3-slice decode at batch 1 with the decode kernels (the
# default) against the former grouped path (DSV3_MOE=grouped); table last, logs in $OUT/moe1.tgz.
# Carry: .devdeps (pcre2.h) and models/tokenizers/deepseek-v3. Budget ~5 minutes (BUDGET_S=300) with a warm build.
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/device/common.sh
export BUDGET_S=${BUDGET_S:-300}
device_init moe1 44
TOK=models/tokenizers/deepseek-v3
device_build dsv3 test_ops
DSV3=$PWD/$BUILD/tools/dsv3
T=$BUILD/tests/ops/test_ops
rc=0; timeout 150 $T -p "${OPS_REGEX:-moe_experts|router}" >"$OUT/test_ops.log" 2>&1 || rc=$?
row "test_ops moe_experts|router" "rc=$rc: $(grep -E 'cases passed' "$OUT/test_ops.log" | tail -1) ($(elapsed))"
while IFS= read -r l; do row "  failed" "$l"; done < <(grep -E '^ *FAIL' "$OUT/test_ops.log" | cut -c1-150 | head -12)
for op in moe_experts router; do
  [ "$(left)" -gt 60 ] || { row "perf $op" "skipped (budget)"; continue; }
  rc=0; timeout 90 $T --perf -o $op >"$OUT/perf_$op.log" 2>&1 || rc=$?
  row "perf $op" "rc=$rc ($(elapsed))"
done
M=/tmp/v3-slice; rm -rf $M
$DSV3 make-tiny-model --preset v3-slice --config_only --out "$M" --tokenizer "$TOK" >"$OUT/make_model.log" 2>&1
cat >"$OUT/extra.yaml" <<'Y'
load_format: dummy
max_batch_size: 128
max_num_tokens: 8192
kv_cache_config:
  max_tokens: 262144
  enable_block_reuse: false
Y
$DSV3 prepare-dataset --tokenizer "$TOK" --stdout --random-seed 7 token-norm-dist --num-requests 1 \
  --input-mean 1024 --input-stdev 0 --output-mean 64 --output-stdev 0 >"$OUT/b1.jsonl" 2>>"$OUT/datasets.log"
bench() {  # tag batch env...
  local tag=$1 b=$2; shift 2
  [ "$(left)" -gt 45 ] || { row "bench $tag" "skipped (budget)"; return; }
  env "$@" timeout 90 $DSV3 bench --model "$M" throughput --dataset "$OUT/b$b.jsonl" --backend cuda --warmup 1 \
    --extra_llm_api_options "$OUT/extra.yaml" --iteration_log "$OUT/$tag.iter.jsonl" >"$OUT/$tag.log" 2>&1
  row "bench $tag" "$(python3 - "$OUT/$tag.iter.jsonl" $b <<'P'
import json, sys, statistics
try: it = [json.loads(l) for l in open(sys.argv[1])]
except Exception as e: print("no log", e); sys.exit()
b = int(sys.argv[2])
st = [s["iterLatencyMS"] for s in it if s["inflightBatchingStats"]["numCtxTokens"] == 0 and s["inflightBatchingStats"]["numGenRequests"] == b][2:]
print(f"median {statistics.median(st):.3f} ms/step, min {min(st):.3f} over {len(st)} steps" if st else "no steps")
P
) ($(elapsed))"
}
bench b1-decode 1 X=1
bench b1-grouped 1 DSV3_MOE=grouped
bench b1-decode-again 1 X=2
for op in moe_experts router; do
  [ -f "$OUT/perf_$op.log" ] || continue
  table+=("-- perf $op")
  while IFS= read -r l; do table+=("  $l"); done < <(grep -vE '^\s*$' "$OUT/perf_$op.log" | tail -32)
done
