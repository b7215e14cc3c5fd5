#!/usr/bin/env bash
# sample_v2.sh: on the GPU machine — the sample op's v2 kernels (backend/cuda/sample.cu: several CTAs per row, e and
# the integer top-p masses once per radix level) against the CPU reference, the former kernel (DSV3_SAMPLE=v1) on the
# same cases, compute-sanitizer memcheck on the quick sample cases, the GPU engine-sampling test, and the sample
# benchmark with v2 and with v1; the table (pass counts, failures, both perf tables) last. Carry: .devdeps.
# About 3 minutes on one H200. Usage: scripts/device/sample_v2.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/device/common.sh
device_init sample_v2 44
device_build test_ops test_engine_sampling
TEST_OPS=$BUILD/tests/ops/test_ops
for impl in v2 v1; do
  rc=0; DSV3_SAMPLE=$impl timeout 240 "$TEST_OPS" -p '^sample' >"$OUT/test_ops_$impl.log" 2>&1 || rc=$?
  row "test_ops -p ^sample, DSV3_SAMPLE=$impl" "rc=$rc: $(grep -E 'cases passed' "$OUT/test_ops_$impl.log" | tail -1) ($(elapsed))"
  while IFS= read -r l; do row "  failed" "$l"; done < <(grep -E '^ *FAIL' "$OUT/test_ops_$impl.log" | head -12)
done
if command -v compute-sanitizer >/dev/null; then
  rc=0; timeout 150 compute-sanitizer --tool memcheck --error-exitcode 3 "$TEST_OPS" --quick -p '^sample' \
    >"$OUT/memcheck.log" 2>&1 || rc=$?
  row "memcheck --quick -p ^sample (v2)" "rc=$rc: $(grep -E 'cases passed|ERROR SUMMARY' "$OUT/memcheck.log" | tail -2 | tr '\n' ' ')"
fi
t=$(find "$BUILD" -name test_engine_sampling -type f | head -1)
if [ -n "$t" ]; then
  rc=0; timeout 120 "$t" >"$OUT/engine_sampling.log" 2>&1 || rc=$?
  row "test_engine_sampling (cuda, v2)" "rc=$rc: $(grep -E 'PASSED|FAILED|SKIPPED' "$OUT/engine_sampling.log" | tail -2 | tr '\n' ' ')"
fi
for impl in v2 v1; do
  rc=0; DSV3_SAMPLE=$impl timeout 100 "$TEST_OPS" --perf -o sample >"$OUT/perf_sample_$impl.log" 2>&1 || rc=$?
  row "perf sample, DSV3_SAMPLE=$impl" "rc=$rc ($(elapsed))"
done
for impl in v2 v1; do echo "-- perf sample, DSV3_SAMPLE=$impl"; grep -vE '^\s*$' "$OUT/perf_sample_$impl.log" | tail -24
done >"$OUT/perf_summary.txt"
while IFS= read -r l; do table+=("$l"); done <"$OUT/perf_summary.txt"
