#!/usr/bin/env bash
# overlap_check.sh: on the GPU machine — the checks of the overlap scheduler and of GPU-vs-CPU greedy agreement:
# the op cases it touches (fill_token_ids, the double-buffered sample staging) plus OPS_REGEX, the engine tests on
# CUDA (overlap on vs off, graphs), `dsv3 generate` with and without the overlap scheduler, greedy generate on the
# tiny model GPU vs CPU with the reference-order GEMMs (DSV3_CUDA_GEMM=fallback; bf16 and fp8 numerics) and with the
# production GEMMs, compute-sanitizer memcheck on MEMCHECK_REGEX cases, and the v3-slice benchmark with the overlap
# scheduler on and off. Carry: .devdeps, models/tokenizers/deepseek-v3. About 7 minutes on one H200.
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/device/common.sh
device_init overlap_check 44
device_build dsv3 test_ops test_engine_overlap test_engine_sampling
DSV3=$PWD/$BUILD/tools/dsv3
rc=0; timeout 200 "$BUILD/tests/ops/test_ops" -p "fill_token_ids|^sample${OPS_REGEX:+|$OPS_REGEX}" >"$OUT/test_ops.log" 2>&1 || rc=$?
row "test_ops (fill_token_ids|sample|${OPS_REGEX:-})" "rc=$rc: $(grep -E 'cases passed' "$OUT/test_ops.log" | tail -1) ($(elapsed))"
while IFS= read -r l; do row "  failed" "$l"; done < <(grep -E '^ *FAIL ' "$OUT/test_ops.log" | head -8)
for t in test_engine_overlap test_engine_sampling; do
  bin=$(find "$BUILD" -name $t -type f | head -1)
  rc=0; timeout 120 "$bin" >"$OUT/$t.log" 2>&1 || rc=$?
  row "$t (cuda)" "rc=$rc: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$OUT/$t.log" | tr '\n' ' ')"
done
$DSV3 make-tiny-model --preset tiny --out /tmp/tiny --tokenizer models/tokenizers/deepseek-v3 >"$OUT/make.log" 2>&1
gen cuda-bf16 cuda bf16 ""
gen cuda-bf16-sync cuda bf16 "" --disable_overlap_scheduler
row "generate cuda: overlap on vs off" "$(same cuda-bf16 cuda-bf16-sync); log: $(grep -o 'overlap scheduler[^(]*' "$OUT/gen-cuda-bf16.log" | head -1)"
gen cuda-fp8 cuda fp8 ""
for num in bf16 fp8; do
  gen cpu-$num cpu $num ""
  gen cuda-ref-$num cuda $num "DSV3_CUDA_GEMM=fallback"
  row "greedy cuda vs cpu, $num, reference-order GEMMs" "$(same cpu-$num cuda-ref-$num)"
  row "greedy cuda vs cpu, $num, production GEMMs" "$(same cpu-$num cuda-$num)"
done
if command -v compute-sanitizer >/dev/null && [ -n "${MEMCHECK_REGEX:-}" ]; then
  rc=0; timeout "${MEMCHECK_TIMEOUT:-150}" compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 3 \
    "$BUILD/tests/ops/test_ops" --quick -p "$MEMCHECK_REGEX" >"$OUT/memcheck.log" 2>&1 || rc=$?
  row "memcheck test_ops --quick ($MEMCHECK_REGEX)" "rc=$rc: $(grep -E 'cases passed' "$OUT/memcheck.log" | tail -1); $(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -1)"
fi
for mode in on off; do
  [ "$(left)" -gt 100 ] || { row "bench overlap $mode" "skipped: out of time"; continue; }
  ( export OUT="$OUT/bench-$mode" BUILD BUDGET_S=120 SKIP_OPS=1 OSL_B1=48 OSL_B128=32; [ $mode = off ] && export NO_OVERLAP=1
    mkdir -p "$OUT"; scripts/device/bench_v3_slice.sh >"$OUT/../bench-$mode.txt" 2>&1 )
  while IFS= read -r l; do row "bench overlap $mode" "$l"; done < <(grep -E '^(prefill|decode batch)' "$OUT/bench-$mode.txt" | cut -c1-110)
done
