#!/usr/bin/env bash
# bench_v3_slice.sh: on the GPU machine — build dsv3 with CUDA, then the end-to-end v3-slice benchmark of
# shared/docs/performance.md (real DeepSeek-V3 dims, 4 layers, random FP8 weights made on the GPU by
# --load_format dummy): prefill 8 x 1024 tokens, decode at batch 1 and 128 with context 1024, and the weight load time.
# Step times come from `dsv3 bench throughput --iteration_log` (the engine's own step wall time; with the overlap
# scheduler, on by bench's defaults, the loop iteration that launched the step: the step period); TTFT/TPOT from
# --streaming. A table with the ratios to DeepSeek's reference and to the floors
# is printed last; all logs go to one tarball in $OUT.
# Carry: .devdeps (pcre2.h) and models/tokenizers/deepseek-v3. About 6 minutes on one H200 (16 cores), build included.
# First, test_ops' synthesize/dummy_load cases check the GPU-made weights against the host generator byte for byte.
# Usage: scripts/device/bench_v3_slice.sh   (env: OSL_B1=64, OSL_B128=48 decode lengths; BUDGET_S=540;
#        PROFILE=1: per-op GPU times (DSV3_PROFILE=1, slows steps a little) appended to the table; SKIP_OPS=1: no test_ops;
#        NO_OVERLAP=1: disable_overlap_scheduler: true, for the comparison)
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/device/common.sh
device_init bench_v3_slice 34
TOK=models/tokenizers/deepseek-v3
OSL_B1=${OSL_B1:-64}
OSL_B128=${OSL_B128:-48}
device_build dsv3 test_ops
DSV3=$PWD/$BUILD/tools/dsv3

# The device generator against the host generator, byte for byte, before its weights are benchmarked.
# (--quick: the big linear_gemv2 cases take 7-9 s each against the CPU and ran this past 120 s; check_all.sh has them.)
[ -n "${SKIP_OPS:-}" ] || { rc=0; timeout 150 "$BUILD/tests/ops/test_ops" --quick -p '^(synthesize|dummy_load|linear|moe_experts)\(' >"$OUT/test_synth.log" 2>&1 || rc=$?
row "test_ops synth, dummy_load, linear, moe" "rc=$rc: $(grep -E 'cases passed' "$OUT/test_synth.log" | tail -1) ($(elapsed))"
grep -E '^ *(FAIL|FAILED)' "$OUT/test_synth.log" | head -10; }
[ -z "${PROFILE:-}" ] || export DSV3_PROFILE=1

v3slice_setup
M=$V3SLICE
cp "$M/config.json" "$OUT/config.json"
[ -z "${NO_OVERLAP:-}" ] || echo "disable_overlap_scheduler: true" >>"$OUT/extra.yaml"
v3slice_dataset prefill 24 1024 1  # 3 steps of 8 x 1024 (max_num_tokens 8192), after a warm-up of 8
v3slice_dataset b1 1 1024 "$OSL_B1"
v3slice_dataset b128 128 1024 "$OSL_B128"
row "datasets" "prefill 24x1024/1, b1 1x1024/$OSL_B1, b128 128x1024/$OSL_B128 ($(wc -l <"$OUT/b128.jsonl") lines)"

bench() {  # name warmup timeout
  local lim=$(( $(left) < $3 ? $(left) : $3 ))
  if [ "$lim" -lt 30 ]; then echo "skipped: out of time" >"$OUT/$1.log"; return; fi
  timeout "$lim" $DSV3 bench --model "$M" throughput --dataset "$OUT/$1.jsonl" --backend cuda --streaming \
    --warmup "$2" --extra_llm_api_options "$OUT/extra.yaml" --iteration_log "$OUT/$1.iter.jsonl" \
    --report_json "$OUT/$1.report.json" >"$OUT/$1.log" 2>&1
  echo "rc=$?" >>"$OUT/$1.log"
  if [ -n "${PROFILE:-}" ]; then  # the top of the per-op table and the idle line
    sed -n '/\[dsv3 profile\]/,$p' "$OUT/$1.log" | grep -v '^ *>' | head -16 >"$OUT/$1.profile"
    grep 'GPU busy' "$OUT/$1.log" >>"$OUT/$1.profile"
  fi
}
bench prefill 8 150
row "bench prefill" "$(tail -1 "$OUT/prefill.log") ($(elapsed))"
bench b1 1 120
row "bench decode batch 1" "$(tail -1 "$OUT/b1.log") ($(elapsed))"
bench b128 0 200
row "bench decode batch 128" "$(tail -1 "$OUT/b128.log") ($(elapsed))"

python3 - "$OUT" >"$OUT/summary.txt" 2>&1 <<'PY'
import json, os, re, statistics, sys
out = sys.argv[1]
def iters(name):
    p = f"{out}/{name}.iter.jsonl"
    return [json.loads(l) for l in open(p)] if os.path.exists(p) else []
def report(name):
    p = f"{out}/{name}.report.json"
    return json.load(open(p)) if os.path.exists(p) else {}
def load(name):  # "loaded 39.0 GB of weights in 3.21 s (...)" -> (MB, s); older builds print MB
    m = re.search(r"loaded ([\d.]+) (MB|GB) of weights in ([\d.]+) s", open(f"{out}/{name}.log").read()) \
        if os.path.exists(f"{out}/{name}.log") else None
    return (float(m.group(1)) * (1000 if m.group(2) == "GB" else 1), float(m.group(3))) if m else None
def med(xs):
    return statistics.median(xs) if xs else float("nan")
ib = lambda s: s["inflightBatchingStats"]
rows = []
# Prefill: the steps that hold all 8 x 1024 prompt tokens (warm-up excluded by bench).
pre = [s["iterLatencyMS"] for s in iters("prefill") if ib(s)["numCtxTokens"] == 8192]
pre_ms = med(pre)
pre_tps = 8192 / (pre_ms / 1e3) if pre else float("nan")
rows.append(("prefill 8 x 1024 (tok/s)", pre_tps, 13.3e3, pre_tps / 13.3e3, 270e3, pre_tps / 270e3,
             f"step {pre_ms:.1f} ms over {len(pre)} steps; target >= 10x ref"))
# Decode: steps with only decode tokens at the full batch; the first two are dropped (cuBLASLt heuristics, caches).
def decode(name, batch):
    st = [s["iterLatencyMS"] for s in iters(name) if ib(s)["numCtxTokens"] == 0 and ib(s)["numGenRequests"] == batch]
    return med(st[2:] if len(st) > 4 else st), len(st)
for name, b, ref_ms, floor_ms, target in (("b1", 1, 27.8, 1.0, "target >= 80% floor (<= 1.25x)"),
                                          ("b128", 128, 361.0, 8.0, "target >= 40x ref")):
    ms, n = decode(name, b)
    rows.append((f"decode batch {b}, ctx 1024 (ms/step)", ms, ref_ms, ref_ms / ms, floor_ms, floor_ms / ms,
                 f"{b / ms * 1e3:.0f} tok/s over {n} steps; {target}"))
print(f"{'metric':<34} {'dsv3':>10} {'reference':>10} {'x ref':>7} {'floor':>9} {'% floor':>8}  note")
for name, v, ref, xr, fl, xf, note in rows:
    print(f"{name:<34} {v:>10.1f} {ref:>10.1f} {xr:>7.2f} {fl:>9.1f} {100 * xf:>7.1f}%  {note}")
print("(x ref: speed-up over DeepSeek's reference; % floor: floor / measured, 100% = at the floor)")
for name in ("prefill", "b1", "b128"):
    r = report(name)
    sm = r.get("streaming_metrics", {})
    l = load(name)
    lw = f"weights {l[0] / 1e3:.1f} GB in {l[1]:.2f} s = {l[0] / 1e3 / l[1]:.1f} GB/s" if l else "no load line"
    print(f"{name}: {lw}; TTFT avg {sm.get('avg_ttft_ms', float('nan')):.1f} ms, TPOT avg "
          f"{sm.get('avg_tpot_ms', float('nan')):.2f} ms, output {r.get('performance', {}).get('system_output_throughput_tok_s', float('nan')):.1f} tok/s")
PY
for n in prefill b1 b128; do [ -f "$OUT/$n.profile" ] && { echo "-- profile $n"; cat "$OUT/$n.profile"; } >>"$OUT/summary.txt"; done
cat "$OUT/summary.txt"
while IFS= read -r l; do table+=("$l"); done <"$OUT/summary.txt"
