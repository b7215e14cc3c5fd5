#!/usr/bin/env bash
# sanitize.sh: on the GPU machine — compute-sanitizer over test_ops cases: each tool of TOOLS (memcheck: out-of-bounds
# and misaligned global/shared accesses; racecheck: shared-memory hazards such as a cp.async/mbarrier ring read before
# its data landed; synccheck: barriers under divergence) on the quick cases matching REGEX, each with its own log and
# a row "cases passed; ERROR SUMMARY". Carry .devdeps. ~1-3 minutes per tool after the ~70 s build.
# Usage: REGEX=gemv2 TOOLS="memcheck racecheck" scripts/device/sanitize.sh   (QUICK= to run all cases, not --quick)
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/device/common.sh
device_init sanitize 44
[ -n "${SKIP_BUILD:-}" ] || device_build test_ops
command -v compute-sanitizer >/dev/null || { row "compute-sanitizer" "not found"; exit 1; }
for tool in ${TOOLS:-memcheck racecheck}; do
  rc=0; timeout "${TOOL_TIMEOUT:-240}" compute-sanitizer --tool "$tool" --error-exitcode 3 "$BUILD/tests/ops/test_ops" \
    ${QUICK---quick} -p "${REGEX:?REGEX=cases to run}" >"$OUT/$tool.log" 2>&1 || rc=$?
  row "$tool test_ops -p $REGEX" "rc=$rc: $(grep -E 'cases passed' "$OUT/$tool.log" | tail -1); $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/$tool.log" | tail -1) ($(elapsed))"
  while IFS= read -r l; do row "  $tool" "$l"; done < <(grep -E '^========= (Invalid|Race|Barrier|Error)' "$OUT/$tool.log" | sort | uniq -c | head -8)
done
