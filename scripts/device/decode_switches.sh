#!/usr/bin/env bash
# decode_switches.sh: on the GPU machine — op tests of the decode kernels (OPS_REGEX), then short v3-slice decode
# benches (batch 1, 64 steps; batch 128, 24 steps) under each environment switch of CONFIGS, and the sampler's
# benchmark for DSV3_SAMPLE=v2 and v1; table last. Carry .devdeps and models/tokenizers/deepseek-v3. ~4-5 minutes.
# Usage: CONFIGS="base:X=1 gemv1:DSV3_GEMV=v1" scripts/device/decode_switches.sh   (each entry NAME:VAR=V[,VAR=V];
#        B128=1 adds batch 128 for the first and last entry; SKIP_SAMPLE=1 skips the sampler benchmark)
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/device/common.sh
export BUDGET_S=${BUDGET_S:-580}
device_init decode_switches 44
TOK=models/tokenizers/deepseek-v3
device_build dsv3 test_ops test_engine_sampling
DSV3=$PWD/$BUILD/tools/dsv3
T=$BUILD/tests/ops/test_ops
rc=0; timeout 200 $T -p "${OPS_REGEX:-linear|moe_experts|^sample}" >"$OUT/test_ops.log" 2>&1 || rc=$?
row "test_ops -p ${OPS_REGEX:-linear|moe_experts|^sample}" "rc=$rc: $(grep -E 'cases passed' "$OUT/test_ops.log" | tail -1) ($(elapsed))"
while IFS= read -r l; do row "  failed" "$l"; done < <(grep -E '^ *FAIL' "$OUT/test_ops.log" | cut -c1-120 | head -12)
t=$(find "$BUILD" -name test_engine_sampling -type f | head -1)
rc=0; timeout 90 "$t" >"$OUT/engine_sampling.log" 2>&1 || rc=$?
row "test_engine_sampling" "rc=$rc: $(grep -E 'PASSED|FAILED' "$OUT/engine_sampling.log" | tail -1)"
v3slice_setup
v3slice_dataset b1 1 1024 64
v3slice_dataset b128 128 1024 24
CONFIGS=${CONFIGS:-"base:X=1 gemv1:DSV3_GEMV=v1 base2:X=2"}
read -r -a cfgs <<<"$CONFIGS"
# `dsv3 forward` (decode form, fp8 and bf16 numerics) on the micro model under each switch, against the first
# switch's logits: "bitwise" or the relative difference (a switch that only reorders launches must be bitwise).
$DSV3 make-tiny-model --preset micro --out /tmp/micro >"$OUT/make_micro.log" 2>&1
for c in "${cfgs[@]}"; do
  IFS=, read -r -a vars <<<"${c#*:}"
  for num in fp8 bf16; do
    env "${vars[@]}" timeout 60 $DSV3 forward --model_dir /tmp/micro --backend cuda --numerics $num \
      --input_ids 1,17,42,99,3,250,7,511,64,8,300,12 --decode_from 4 --out "$OUT/fwd-${c%%:*}-$num.npy" \
      >"$OUT/fwd-${c%%:*}-$num.log" 2>&1 || echo "failed" >>"$OUT/fwd-${c%%:*}-$num.log"
  done
done
for c in "${cfgs[@]:1}"; do
  row "forward micro ${c%%:*} vs ${cfgs[0]%%:*}" "$(python3 - "$OUT" "${cfgs[0]%%:*}" "${c%%:*}" <<'P'
import sys, numpy as np
o, a, b = sys.argv[1:]
r = []
for num in ("fp8", "bf16"):
    try: x, y = np.load(f"{o}/fwd-{a}-{num}.npy"), np.load(f"{o}/fwd-{b}-{num}.npy")
    except Exception: r.append(f"{num}: missing"); continue
    r.append(f"{num}: " + ("bitwise" if np.array_equal(x, y) else f"rel {np.linalg.norm(x - y) / np.linalg.norm(x):.1e}"))
print("; ".join(r))
P
)"
done
for c in "${cfgs[@]}"; do IFS=, read -r -a vars <<<"${c#*:}"; v3slice_decode_bench "b1-${c%%:*}" b1 1 "${vars[@]}"; done
if [ -n "${B128:-}" ]; then
  for c in "${cfgs[0]}" "${cfgs[-1]}"; do IFS=, read -r -a vars <<<"${c#*:}"; v3slice_decode_bench "b128-${c%%:*}" b128 128 "${vars[@]}"; done
fi
[ -z "${SKIP_SAMPLE:-}" ] || exit 0
for impl in v2 v1; do
  [ "$(left)" -gt 40 ] || break
  rc=0; DSV3_SAMPLE=$impl timeout 60 $T --perf -o sample >"$OUT/perf_sample_$impl.log" 2>&1 || rc=$?
  row "perf sample $impl" "rc=$rc ($(elapsed))"
  while IFS= read -r l; do table+=("  $l"); done < <(grep -vE '^\s*$' "$OUT/perf_sample_$impl.log" | tail -14)
done
