#!/usr/bin/env bash
# gpu_tests.sh: on the GPU machine — build dsv3 with CUDA (no tokenizer: that machine has no PCRE2 headers), run the
# gpu-labelled tests, compute-sanitizer memcheck over the quick op cases, and the ops perf mode. Full logs go to
# $OUT (the device tool's output folder; ./gpu-logs otherwise); a short table is printed last.
# -Werror is off there: g++ 13 with fmt 9 reports a false -Warray-bounds inside fmt (CI builds with -Werror).
# Usage: scripts/device/gpu_tests.sh [--no-perf] [--no-memcheck]
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/gpu-logs}
BUILD=${BUILD:-build-gpu}
mkdir -p "$OUT"
perf=1 memcheck=1
for a in "$@"; do
  case "$a" in
    --no-perf) perf=0 ;;
    --no-memcheck) memcheck=0 ;;
  esac
done
declare -a table
row() { table+=("$(printf '%-34s %s' "$1" "$2")"); }
t0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - t0 ))s"; }
left() { echo $(( ${BUDGET_S:-400} - ($(date +%s) - t0) )); }  # seconds left of the whole run's budget

{ nvidia-smi; nvcc --version; cmake --version | head -1; g++ --version | head -1; } >"$OUT/env.log" 2>&1
row "gpu" "$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"

if cmake -S . -B "$BUILD" -G Ninja -DDSV3_CUDA=ON -DDSV3_TOKENIZER=OFF -DDSV3_WERROR=OFF -DCMAKE_BUILD_TYPE=Release >"$OUT/build.log" 2>&1 &&
   ninja -C "$BUILD" -j "$(nproc)" test_ops >>"$OUT/build.log" 2>&1; then
  row "build (test_ops)" "ok ($(elapsed))"
else
  row "build (test_ops)" "FAILED (see build.log)"
  tail -40 "$OUT/build.log"
  printf '%s\n' "${table[@]}"
  exit 1
fi
lib=$(find "$BUILD" -name 'libdsv3_backend_cuda.a' | head -1)
if command -v cuobjdump >/dev/null && [ -n "$lib" ]; then
  cuobjdump --dump-sass "$lib" >"$BUILD/sass.txt" 2>&1
  row "SASS: HMMA in mla_decode_wmma" "$(awk '/Function :.*mla_decode_wmma/{f=1} /Function :/ && !/mla_decode_wmma/{f=0} f && /HMMA/{c++} END{print c+0}' "$BUILD/sass.txt")"
fi

rc=0
timeout 150 ctest --test-dir "$BUILD" -L gpu -V >"$OUT/ctest_gpu.log" 2>&1 || rc=$?
row "ctest -L gpu" "$([ $rc = 0 ] && echo ok || echo "FAILED rc=$rc") ($(elapsed))"
passed=$(grep -E '^([0-9]+: )?[0-9]+/[0-9]+ cases passed' "$OUT/ctest_gpu.log" | head -1 | sed -E 's/^[0-9]+: //')
row "test_ops (all cases)" "${passed:-no summary}"
grep -E '^([0-9]+: )? +(FAIL|FAILED:)' "$OUT/ctest_gpu.log" | head -20

if [ $memcheck = 1 ] && [ "$(left)" -lt 150 ]; then
  row "memcheck" "skipped: $(left)s left of the budget"
  memcheck=0
fi
if [ $memcheck = 1 ]; then
  if command -v compute-sanitizer >/dev/null; then
    rc=0
    timeout $(( $(left) - 90 )) compute-sanitizer --tool memcheck --error-exitcode 3 "$BUILD/tests/ops/test_ops" --quick \
      >"$OUT/memcheck.log" 2>&1 || rc=$?
    row "memcheck (test_ops --quick)" "rc=$rc, $(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -1) ($(elapsed))"
  else
    row "memcheck" "compute-sanitizer not found"
  fi
fi

if [ $perf = 1 ] && [ "$(left)" -lt 30 ]; then
  row "perf" "skipped: $(left)s left of the budget"
  perf=0
fi
if [ $perf = 1 ]; then
  rc=0
  timeout "$(left)" "$BUILD/tests/ops/test_ops" --perf >"$OUT/perf.log" 2>&1 || rc=$?
  row "perf (test_ops --perf)" "rc=$rc ($(elapsed))"
fi

echo
echo "== dsv3 GPU tests: $(date -u +%Y-%m-%dT%H:%MZ) =="
printf '%s\n' "${table[@]}"
if [ -f "$OUT/perf.log" ]; then echo; cat "$OUT/perf.log"; fi
