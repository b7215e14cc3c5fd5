#!/usr/bin/env bash
# gemv_v2.sh: on the GPU machine — the checks and measurements of the v2 decode GEMV (gemv_fp8_v2.cu, DSV3_GEMV=v2):
# build; test_ops -p linear (every linear case: v1, v2 through the backend, and the direct v2 cases at each forced
# K split with the fused quantization's codes and scales bit for bit); test_ops --perf -o linear (v1 and v2 per
# DeepSeek-V3 shape at M = 1 and 8, and v2's split sweep); then the v3-slice benchmark (SKIP_OPS=1 OSL_B1=48
# OSL_B128=16 bench_v3_slice.sh) without and with DSV3_GEMV=v2. A table last. Carry: .devdeps (pcre2.h) and
# models/tokenizers/deepseek-v3. About 9 minutes on one H200 (BUDGET_S=570): a bench that no longer fits is skipped
# (then run again with SKIP_TESTS=1 SKIP_PERF=1). Usage: scripts/device/gemv_v2.sh  (OPS_REGEX=linear by default;
# SANITIZE=1 adds compute-sanitizer runs on the small v2 cases, ~2 minutes)
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/device/common.sh
export BUDGET_S=${BUDGET_S:-570}
device_init gemv_v2 44
device_build dsv3 test_ops
if [ -z "${SKIP_TESTS:-}" ]; then
  rc=0; timeout "${OPS_TIMEOUT:-200}" "$BUILD/tests/ops/test_ops" -p "${OPS_REGEX:-linear}" >"$OUT/test_ops.log" 2>&1 || rc=$?
  row "test_ops -p ${OPS_REGEX:-linear}" "rc=$rc: $(grep -E 'cases passed' "$OUT/test_ops.log" | tail -1) ($(elapsed))"
  row "  of which v2 (gemv2)" "$(grep -cE '^ *OK .*(path=gemv2|linear_gemv2)' "$OUT/test_ops.log") passed, $(grep -cE '^ *FAIL .*(path=gemv2|linear_gemv2)' "$OUT/test_ops.log") failed"
  while IFS= read -r l; do row "  failed" "$l"; done < <(grep -E '^ *FAIL ' "$OUT/test_ops.log" | cut -c1-100 | head -12)
fi
if [ -z "${SKIP_PERF:-}" ]; then
  rc=0; timeout 180 "$BUILD/tests/ops/test_ops" --perf -o linear >"$OUT/perf_linear.log" 2>&1 || rc=$?
  row "perf linear" "rc=$rc ($(elapsed))"
fi
# SANITIZE=1: compute-sanitizer memcheck, racecheck (shared memory: the cp.async ring, the tile reduction) and
# synccheck on the small v2 cases.
if [ -n "${SANITIZE:-}" ] && command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck synccheck; do
    rc=0; timeout 150 compute-sanitizer --tool $tool --error-exitcode 3 "$BUILD/tests/ops/test_ops" --quick -p gemv2 \
      >"$OUT/sanitize-$tool.log" 2>&1 || rc=$?
    row "$tool test_ops --quick -p gemv2" "rc=$rc: $(grep -E 'cases passed' "$OUT/sanitize-$tool.log" | tail -1); $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitize-$tool.log" | tail -1)"
  done
fi
for mode in v1 v2; do
  [ "$(left)" -gt 110 ] || { row "bench v3-slice $mode" "skipped: out of time ($(elapsed))"; continue; }
  if [ $mode = v1 ]; then budget=$(( ($(left) - 10) / 2 )); else budget=$(( $(left) - 10 )); fi
  ( export OUT="$OUT/bench-$mode" BUILD BUDGET_S=$budget SKIP_OPS=1 OSL_B1=48 OSL_B128=16
    if [ $mode = v2 ]; then export DSV3_GEMV=v2; else unset DSV3_GEMV; fi
    mkdir -p "$OUT"; scripts/device/bench_v3_slice.sh >"$OUT/../bench-$mode.txt" 2>&1 )
  while IFS= read -r l; do row "bench $mode" "$l"; done < <(grep -E '^(decode batch|prefill 8)' "$OUT/bench-$mode.txt" | cut -c1-100)
done
# The short table: v1 vs v2 per shape at M = 1 and 8 (time_us, weight GB/s, % of 4540), the split sweep, the benches.
if [ -f "$OUT/perf_linear.log" ]; then
  table+=("-- perf linear: v1 (gemv: quantize + gemv_fp8.cu) vs v2 (gemv2 sS: fused, split S), M = 1 and 8")
  table+=("$(printf '%-16s %2s %6s %6s %9s %9s %11s %7s' weight M N K path time_us weight_GB/s %4540)")
  while IFS= read -r l; do table+=("$l"); done < <(awk '/^== perf: linear, FP8/{on=1; next} /^==/{on=0}
    on && ($2 == 1 || $2 == 8) && ($5 == "gemv" || $5 == "gemv2") {
      p = $5 == "gemv2" ? $5 " " $6 : $5; o = $5 == "gemv2" ? 1 : 0
      printf "%-16s %2s %6s %6s %9s %9s %11s %7s\n", $1, $2, $3, $4, p, $(6+o), $(9+o), $(10+o) }' "$OUT/perf_linear.log")
  table+=("-- perf gemv_fp8_v2 by K split: time_us (% of 4540), * = the launcher's choice")
  while IFS= read -r l; do table+=("$l"); done < <(sed -n '/^== perf: gemv_fp8_v2 by K split/,/^$/p' "$OUT/perf_linear.log" | sed '1d;/^$/d')
fi
