#!/usr/bin/env bash
# load_and_plan.sh: on the GPU machine — weight loading and the start-up memory plan. Builds dsv3 with CUDA, runs the
# test_ops cases of the staged upload (bytes through the pinned chunks, a checkpoint from disk, dummy weights, the
# allocator's out-of-memory error), the upload rate from host memory (test_ops --perf -o staged_upload), the load
# rate of a real-format checkpoint (v3-slice with 32 experts per MoE layer: 11 GB of files, read back from the page
# cache right after writing) and of --load_format dummy (the full v3-slice made on the GPU), the engine's memory plan
# next to `dsv3 inspect`'s prediction, and the start-up refusal of a plan that cannot fit.
# Carry: .devdeps (pcre2.h). About 6 minutes on one H200 (16 cores), build included; writes 11 GB under /tmp.
# Usage: scripts/device/load_and_plan.sh   (BUDGET_S=540; SKIP_CKPT=1: only the dummy load, its plan and the no-fit
#        refusal, ~2 minutes with the build)
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/device/common.sh
device_init load_and_plan 38
device_build dsv3 test_ops
DSV3=$PWD/$BUILD/tools/dsv3

[ -n "${SKIP_CKPT:-}" ] || { rc=0; timeout 240 "$BUILD/tests/ops/test_ops" -p 'staged_upload|checkpoint_load|dummy_load|device_oom' \
  >"$OUT/test_ops.log" 2>&1 || rc=$?
row "test_ops staged/ckpt/dummy/oom" "rc=$rc: $(grep -E 'cases passed' "$OUT/test_ops.log" | tail -1) ($(elapsed))"
grep -E '^ *(FAIL|FAILED)' "$OUT/test_ops.log" | head -10
timeout 150 "$BUILD/tests/ops/test_ops" --perf -o staged_upload >"$OUT/perf_upload.log" 2>&1
while IFS= read -r l; do row "upload from host memory" "$l"; done < <(grep -E '^(Backend::copy|staged)' "$OUT/perf_upload.log")
}

# A few token-id requests (no tokenizer needed); the KV pool comes from the plan (no max_tokens).
printf '{"task_id": %d, "input_ids": [5, 6, 7, 8, 9, 10, 11, 12], "output_tokens": 4}\n' 0 1 2 3 >"$OUT/ds.jsonl"
printf 'max_batch_size: 8\nmax_num_tokens: 8192\nkv_cache_config:\n  enable_block_reuse: false\n' >"$OUT/extra.yaml"
plan_rows() {  # label log: the engine's table lines next to inspect's prediction
  row "$1" "$(grep -o 'loaded .*' "$2" | head -1)"
  for item in "free at start" "weights" "workspace" "free for KV cache" "KV tokens"; do
    row "  $item (engine | inspect)" "$(grep -m1 "\] *  $item " "$2" | sed 's/.*\]  *//') | $(grep -m1 "^  $item " "$3")"
  done
}

M=/tmp/v3s32
rm -rf "$M"
if [ -n "${SKIP_CKPT:-}" ]; then :
elif [ "$(left)" -gt 200 ] && $DSV3 make-tiny-model --preset v3-slice --n_routed_experts 32 --out "$M" \
     >"$OUT/make_model.log" 2>&1; then
  row "make-tiny-model v3-slice, 32 experts" "$(tail -1 "$OUT/make_model.log") ($(elapsed))"
  $DSV3 inspect --model_dir "$M" --max_batch_size 8 >"$OUT/inspect_ckpt.log" 2>&1
  timeout "$(left)" $DSV3 bench --model "$M" throughput --dataset "$OUT/ds.jsonl" --backend cuda \
    --extra_llm_api_options "$OUT/extra.yaml" >"$OUT/bench_ckpt.log" 2>&1
  echo "rc=$?" >>"$OUT/bench_ckpt.log"
  plan_rows "load checkpoint (page cache)" "$OUT/bench_ckpt.log" "$OUT/inspect_ckpt.log"
  # A second load once the page cache is dropped, where the machine lets us (root): the disk-bound rate.
  if sync && echo 3 2>/dev/null >/proc/sys/vm/drop_caches; then
    timeout "$(left)" $DSV3 bench --model "$M" throughput --dataset "$OUT/ds.jsonl" --backend cuda \
      --extra_llm_api_options "$OUT/extra.yaml" >"$OUT/bench_ckpt_cold.log" 2>&1
    row "load checkpoint (cold cache)" "$(grep -o 'loaded .*' "$OUT/bench_ckpt_cold.log" | head -1)"
  fi
  rm -rf "$M"
else
  row "make-tiny-model v3-slice, 32 experts" "FAILED or out of time"
fi

D=/tmp/v3-slice-config
rm -rf "$D"
$DSV3 make-tiny-model --preset v3-slice --config_only --out "$D" >/dev/null 2>&1
printf 'load_format: dummy\n' >>"$OUT/extra.yaml"
$DSV3 inspect --model_dir "$D" --max_batch_size 8 >"$OUT/inspect_dummy.log" 2>&1
timeout "$(left)" $DSV3 bench --model "$D" throughput --dataset "$OUT/ds.jsonl" --backend cuda \
  --extra_llm_api_options "$OUT/extra.yaml" >"$OUT/bench_dummy.log" 2>&1
echo "rc=$?" >>"$OUT/bench_dummy.log"
plan_rows "load dummy v3-slice (made on GPU)" "$OUT/bench_dummy.log" "$OUT/inspect_dummy.log"

# A plan that cannot fit: 262144 tokens per step need a ~210 GB workspace next to 39 GB of weights. The engine must
# refuse at start-up (exit 1, one error line) before loading anything, as inspect predicts. (131072 tokens fit
# the H200's 150 GB: 106 GB of workspace.)
sed 's/max_num_tokens: 8192/max_num_tokens: 262144/' "$OUT/extra.yaml" >"$OUT/extra_big.yaml"
rc=0; timeout 60 $DSV3 bench --model "$D" throughput --dataset "$OUT/ds.jsonl" --backend cuda \
  --extra_llm_api_options "$OUT/extra_big.yaml" >"$OUT/bench_nofit.log" 2>&1 || rc=$?
row "max_num_tokens 262144 (engine)" "rc=$rc: $(grep -c . "$OUT/bench_nofit.log") lines; $(grep -m1 'error' "$OUT/bench_nofit.log")"
rc=0; $DSV3 inspect --model_dir "$D" --max_num_tokens 262144 >/dev/null 2>"$OUT/inspect_nofit.log" || rc=$?
row "max_num_tokens 262144 (inspect)" "rc=$rc: $(cat "$OUT/inspect_nofit.log")"
