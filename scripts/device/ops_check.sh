#!/usr/bin/env bash
# ops_check.sh: on the GPU machine — build, run every CPU-vs-CUDA op case (test_ops), the GPU engine-sampling test,
# and the op benchmarks of the kernels named in PERF_OPS; a table of pass counts, failures and the perf tables last.
# Carry: .devdeps (pcre2.h). Usage: PERF_OPS="mla_decode mla_prefill moe_experts sample" scripts/device/ops_check.sh
# (OPS_REGEX=router: only the cases whose names match).
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/device/common.sh
device_init ops_check 44
device_build dsv3 test_ops test_engine_sampling
rc=0; timeout "${OPS_TIMEOUT:-240}" "$BUILD/tests/ops/test_ops" ${OPS_REGEX:+-p "$OPS_REGEX"} >"$OUT/test_ops.log" 2>&1 || rc=$?
row "test_ops (${OPS_REGEX:-every case})" "rc=$rc: $(grep -E 'cases passed' "$OUT/test_ops.log" | tail -1) ($(elapsed))"
while IFS= read -r l; do row "  failed" "$l"; done < <(grep -E '^ *FAIL' "$OUT/test_ops.log" | head -12)
t=$(find "$BUILD" -name test_engine_sampling -type f | head -1)
if [ -n "$t" ]; then
  rc=0; timeout 120 "$t" >"$OUT/engine_sampling.log" 2>&1 || rc=$?
  row "test_engine_sampling (cuda)" "rc=$rc: $(grep -E 'PASSED|FAILED|SKIPPED' "$OUT/engine_sampling.log" | tail -2 | tr '\n' ' ')"
fi
for op in ${PERF_OPS:-}; do
  timeout 100 "$BUILD/tests/ops/test_ops" --perf -o "$op" >"$OUT/perf_$op.log" 2>&1
  row "perf $op" "rc=$? ($(elapsed))"
done
for op in ${PERF_OPS:-}; do echo "-- perf $op"; grep -vE '^\s*$' "$OUT/perf_$op.log" | tail -${PERF_LINES:-24}; done >"$OUT/perf_summary.txt"
while IFS= read -r l; do table+=("$l"); done <"$OUT/perf_summary.txt"
