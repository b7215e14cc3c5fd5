#!/usr/bin/env bash
# refnum_check.sh: on the GPU machine — the CUDA backend's reference numerics (DSV3_NUMERICS=reference,
# `--cuda_numerics reference`; docs/numerics.md), in which every op must give the CPU reference's outputs bit for bit:
# the op cases (test_ops -p refnum: every op, max |gpu - cpu| == 0), greedy `dsv3 generate` on the tiny model GPU vs
# CPU in bf16 and fp8 numerics with reference numerics (expected: 4/4 prompts identical; CUDA graphs and the overlap
# scheduler on, as by default) and with the fast kernels (for contrast), and `dsv3 forward` logits GPU vs CPU (expected:
# max |diff| 0) on the golden fixtures and the tiny model, prompt (chunked) and decode paths.
# Carry: .devdeps, models/tokenizers/deepseek-v3. About 4 minutes on one H200 (the build ~70 s).
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/device/common.sh
device_init refnum_check 52
device_build dsv3 test_ops
DSV3=$PWD/$BUILD/tools/dsv3

rc=0; timeout 240 "$BUILD/tests/ops/test_ops" -p refnum >"$OUT/test_ops.log" 2>&1 || rc=$?
row "test_ops -p refnum (bitwise vs CPU)" "rc=$rc: $(grep -E 'cases passed' "$OUT/test_ops.log" | tail -1) ($(elapsed))"
while IFS= read -r l; do row "  failed" "$l"; done < <(grep -E '^ *FAIL ' "$OUT/test_ops.log" | head -8)

# A bad DSV3_NUMERICS is an error that names the variable.
msg=$(DSV3_NUMERICS=exact $DSV3 forward --model_dir tests/data/golden/noq-plain --input_ids 0,1 --backend cuda \
      --out /tmp/refnum-bad.npy 2>&1 >/dev/null)
row "DSV3_NUMERICS=exact" "rc=$?: $(echo "$msg" | tail -1 | cut -c1-90)"

# Greedy generate, tiny model (vocab 129280: near-flat random logits, where any last-bit difference flips tokens).
$DSV3 make-tiny-model --preset tiny --out /tmp/tiny --tokenizer models/tokenizers/deepseek-v3 >"$OUT/make.log" 2>&1
graphs() {  # what the log says about the mode and the CUDA graphs
  echo "$(grep -c 'numerics: reference' "$OUT/gen-$1.log") mode line(s), $(grep -c 'CUDA graph not captured' \
    "$OUT/gen-$1.log") refused capture(s)"
}
for num in bf16 fp8; do
  gen cpu-$num cpu $num ""
  if [ $num = bf16 ]; then gen ref-$num cuda $num "" --cuda_numerics reference  # the option ...
  else gen ref-$num cuda $num "DSV3_NUMERICS=reference"; fi                      # ... and the variable
  gen fast-$num cuda $num ""
  row "greedy cuda(reference) vs cpu, $num" "$(same cpu-$num ref-$num); $(graphs ref-$num)"
  row "greedy cuda(fast) vs cpu, $num" "$(same cpu-$num fast-$num)"
done
gen ref-bf16-sync cuda bf16 "" --cuda_numerics reference --disable_overlap_scheduler --disable_cuda_graph
row "greedy cuda(reference, eager, no overlap), bf16" "$(same cpu-bf16 ref-bf16-sync)"

# Forward logits, bitwise: the golden fixtures (odd dims; prompt, then decode from token 3) and the tiny model (a
# 24-token prompt in chunks of 10, then 8 decode steps).
fwd() {  # tag model_dir ids backend numerics [flags...]
  local tag=$1 dir=$2 ids=$3 be=$4 num=$5; shift 5
  $DSV3 forward --model_dir "$dir" --input_ids "$ids" --backend "$be" --numerics "$num" --out "$OUT/$tag.npy" "$@" \
    >>"$OUT/forward.log" 2>&1 || echo "forward $tag failed" >>"$OUT/forward.log"
}
cmp_npy() {  # a b: bitwise equality and max |a - b|
  python3 - "$OUT/$1.npy" "$OUT/$2.npy" <<'PY'
import sys, numpy as np
try:
    a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
except Exception as e:
    print(f"missing output ({e.__class__.__name__})"); sys.exit()
same = a.shape == b.shape and bool(np.array_equal(a.view(np.uint32), b.view(np.uint32)))
d = float(np.nanmax(np.abs(a.astype(np.float64) - b))) if a.shape == b.shape else float("nan")
print(f"{'bitwise equal' if same else 'DIFFERENT'}: max |diff| {d:.3g} over {a.size} logits, argmax "
      f"{float((a.argmax(-1) == b.argmax(-1)).mean()) if a.shape == b.shape else 0:.2f}")
PY
}
tiny_ids=$(python3 -c "print(','.join(str((i * 7919 + 13) % 129280) for i in range(32)))")
for m in yarn-odd noq-plain tiny; do
  if [ $m = tiny ]; then dir=/tmp/tiny; ids=$tiny_ids; extra="--decode_from 24 --chunk 10"
  else dir=tests/data/golden/$m; ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('$dir/input_ids.json')))))"); extra="--decode_from 3"; fi
  for num in fp8 bf16; do
    fwd $m-cpu-$num $dir "$ids" cpu $num $extra
    fwd $m-ref-$num $dir "$ids" cuda $num $extra --cuda_numerics reference
    fwd $m-fast-$num $dir "$ids" cuda $num $extra
    row "forward $m $num: cuda(reference) vs cpu" "$(cmp_npy $m-cpu-$num $m-ref-$num)"
    row "forward $m $num: cuda(fast) vs cpu" "$(cmp_npy $m-cpu-$num $m-fast-$num)"
  done
done
row "total" "$(elapsed)"
