#!/usr/bin/env bash
# gemv3.sh: on the GPU machine — the v2 decode GEMV's configuration sweep (gemv_fp8_v2.cu, gemv_v2_config.h): build;
# test_ops -p gemv2 (every sweep configuration on shapes that reach its paths: outputs vs the CPU reference, the
# fused codes and scales bit for bit, graphs); test_ops --perf -o gemv2_sweep (each configuration on the ncu decode
# shapes at M = 1 and o_proj at M = 8, the best per shape with its forced splits, the ranking by a V3 decode step);
# then v3-slice decode at batch 1 with the default, the sweep's best single configuration (DSV3_GEMV_V2_CFG) and its
# best big- and small-weight configurations together (DSV3_GEMV_V2_CFG + DSV3_GEMV_V2_CFG_SMALL).
# Table last. Carry .devdeps and models/tokenizers/deepseek-v3. ~4 minutes on one H200 with a warm build
# (BUDGET_S=240; a bench that no longer fits is skipped). Usage: scripts/device/gemv3.sh  (CFG='...' adds a bench
# with that configuration; SKIP_TESTS=1 skips test_ops -p gemv2; SWEEP_REGEX='copy=cp' sweeps only the matching
# configurations). Per kernel: DSV3_GEMV_V2_CFG=... DSV3_GEMV_V2_CFG_SMALL=... scripts/device/ncu_decode.sh.
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/device/common.sh
export BUDGET_S=${BUDGET_S:-240}
device_init gemv3 44
TOK=models/tokenizers/deepseek-v3
device_build dsv3 test_ops
DSV3=$PWD/$BUILD/tools/dsv3
T=$BUILD/tests/ops/test_ops
if [ -z "${SKIP_TESTS:-}" ]; then
  rc=0; timeout 150 "$T" -p gemv2 >"$OUT/test_ops.log" 2>&1 || rc=$?
  row "test_ops -p gemv2" "rc=$rc: $(grep -E 'cases passed' "$OUT/test_ops.log" | tail -1) ($(elapsed))"
  while IFS= read -r l; do row "  failed" "$l"; done < <(grep -E '^ *FAIL' "$OUT/test_ops.log" | cut -c1-150 | head -12)
fi
# A failing bulk case (e.g. a trapped mbarrier wait, which also poisons the process) keeps the sweep to cp.async.
if [ -z "${SWEEP_REGEX:-}" ] && grep -qE '^ *FAIL .*copy=bulk' "$OUT/test_ops.log" 2>/dev/null; then
  SWEEP_REGEX='copy=cp'; row "  bulk cases failed" "the sweep runs copy=cp only"
fi
rc=0; timeout 120 "$T" --perf -o gemv2_sweep -p "${SWEEP_REGEX:-.*}" >"$OUT/sweep.log" 2>&1 || rc=$?
row "perf gemv2_sweep" "rc=$rc ($(elapsed))"
best=$(sed -n 's/^best single config: //p' "$OUT/sweep.log" | tail -1)
big=$(sed -n 's/^best big config: \([^ ]*\).*/\1/p' "$OUT/sweep.log" | tail -1)
small=$(sed -n 's/^best small config: \([^ ]*\).*/\1/p' "$OUT/sweep.log" | tail -1)

v3slice_setup
v3slice_dataset b1 1 1024 48
bench() { local tag=$1; shift; v3slice_decode_bench "b1 $tag" b1 1 "$@"; }
bench default X=1
[ -z "$best" ] || bench best DSV3_GEMV_V2_CFG="$best"
[ -z "$big" ] || [ -z "$small" ] || bench big+small DSV3_GEMV_V2_CFG="$big" DSV3_GEMV_V2_CFG_SMALL="$small"
[ -z "${CFG:-}" ] || bench cfg DSV3_GEMV_V2_CFG="$CFG"
[ -z "$best" ] || bench default2 X=2
[ -n "$best" ] && row "  best single config" "$best"
[ -n "$big" ] && row "  best big / small config" "$big / $small"
# The sweep's summary: the table, the best per shape with its splits, the ranking.
if [ -f "$OUT/sweep.log" ]; then
  while IFS= read -r l; do table+=("$l"); done < <(sed -n '/^== perf: gemv_fp8_v2 configuration sweep/,$p' "$OUT/sweep.log")
fi
