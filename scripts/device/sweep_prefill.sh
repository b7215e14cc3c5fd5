#!/usr/bin/env bash
# sweep_prefill.sh: on the GPU machine — v3-slice prefill (8 x 1024 tokens per step) under the backend's tuning
# switches (DSV3_MOE_STREAMS, DSV3_MLA_PREFILL), then one profiled run (DSV3_PROFILE=1) of the default; a table of
# tok/s per setting last. Carry: .devdeps, models/tokenizers/deepseek-v3. About 2 minutes after the build.
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/device/common.sh
device_init sweep_prefill 44
device_build dsv3
DSV3=$PWD/$BUILD/tools/dsv3 TOK=models/tokenizers/deepseek-v3 M=/tmp/v3-slice
rm -rf $M; $DSV3 make-tiny-model --preset v3-slice --config_only --out $M --tokenizer $TOK >/dev/null 2>&1
printf 'load_format: dummy\nmax_batch_size: 128\nmax_num_tokens: 8192\nkv_cache_config:\n  max_tokens: 262144\n  enable_block_reuse: false\n' >"$OUT/extra.yaml"
$DSV3 prepare-dataset --tokenizer $TOK --stdout --random-seed 7 token-norm-dist --num-requests 24 --input-mean 1024 \
  --input-stdev 0 --output-mean 1 --output-stdev 0 >"$OUT/prefill.jsonl" 2>/dev/null
run() {  # name, env assignments...
  local name=$1; shift
  env "$@" $DSV3 bench --model $M throughput --dataset "$OUT/prefill.jsonl" --backend cuda --warmup 8 \
    --extra_llm_api_options "$OUT/extra.yaml" --iteration_log "$OUT/$name.iter.jsonl" >"$OUT/$name.log" 2>&1
  row "$name" "$(python3 -c "
import json, statistics
s = [json.loads(l)['iterLatencyMS'] for l in open('$OUT/$name.iter.jsonl') if json.loads(l)['inflightBatchingStats']['numCtxTokens'] == 8192]
m = statistics.median(s); print(f'{m:.1f} ms/step, {8192 / m * 1e3:,.0f} tok/s, {8192 / m * 1e3 / 13300:.2f}x ref')")"
}
run default X=1
run streams8 DSV3_MOE_STREAMS=8
run streams2 DSV3_MOE_STREAMS=2
run mma64 DSV3_MLA_PREFILL=mma64
run streams8_mma64 DSV3_MOE_STREAMS=8 DSV3_MLA_PREFILL=mma64
run profiled DSV3_PROFILE=1
sed -n '/\[dsv3 profile\]/,$p' "$OUT/profiled.log" | head -24 >"$OUT/profile.txt"
while IFS= read -r l; do table+=("$l"); done <"$OUT/profile.txt"
