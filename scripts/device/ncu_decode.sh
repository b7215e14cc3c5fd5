#!/usr/bin/env bash
# ncu_decode.sh: on the GPU machine — every kernel of one v3-slice decode step at batch 1, timed alone by Nsight
# Compute (caches flushed before each kernel, clocks not locked): `dsv3 forward --load_format dummy --decode_from 8`
# on 10 tokens runs an 8-token prompt then 2 decode steps eagerly (the same kernels a CUDA graph replays); the table
# is the last step: per kernel µs, DRAM MB read, GB/s and % of 4540, then per kernel name, then the sum against the
# measured step. Carry .devdeps and models/tokenizers/deepseek-v3. ~2-3 minutes. Usage: scripts/device/ncu_decode.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/device/common.sh
device_init ncu_decode 30
TOK=models/tokenizers/deepseek-v3
[ -n "${SKIP_BUILD:-}" ] || device_build dsv3
DSV3=$PWD/$BUILD/tools/dsv3; M=/tmp/v3-slice
[ -f $M/config.json ] || $DSV3 make-tiny-model --preset v3-slice --config_only --out "$M" --tokenizer "$TOK" >"$OUT/make.log" 2>&1
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
[ -n "$NCU" ] || { row "ncu" "not found"; exit 1; }
run_ncu() {  # regex
  timeout 400 "$NCU" --clock-control none --cache-control all --kernel-name-base function --kernel-name "$1" \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,launch__grid_size,launch__block_size --csv --page raw \
    "$DSV3" forward --model_dir $M --load_format dummy --backend cuda --input_ids 1,17,42,99,3,250,7,511,64,8 \
    --decode_from 8 --out /tmp/ncu_logits.npy >"$OUT/ncu.csv" 2>"$OUT/ncu.err"
}
run_ncu 'regex:^(?!synth)'
if ! grep -q gpu__time_duration "$OUT/ncu.csv"; then
  run_ncu 'regex:^(rms|rope|linear|quantize|embedding|kv_|mla|absorb|router|moe|silu|add_|sample|fill|copy|nvjet|sm90|cutlass|gemm|gemv|Kernel)'
fi
row "ncu" "rc=$? ($(elapsed)), $(grep -c '^"' "$OUT/ncu.csv") csv lines"
python3 - "$OUT/ncu.csv" >"$OUT/summary.txt" 2>&1 <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(l for l in open(sys.argv[1]) if l.startswith('"'))]
head, data = rows[0], rows[2:]  # the second row holds units
ix = {k: head.index(k) for k in ("Kernel Name", "gpu__time_duration.sum", "dram__bytes_read.sum", "launch__grid_size", "launch__block_size")}
def num(s):
    try: return float(s.replace(",", ""))
    except ValueError: return float("nan")
unit_t, unit_b = rows[1][ix["gpu__time_duration.sum"]], rows[1][ix["dram__bytes_read.sum"]]
ks = [(r[ix["Kernel Name"]], num(r[ix["gpu__time_duration.sum"]]), num(r[ix["dram__bytes_read.sum"]]), r[ix["launch__grid_size"]], r[ix["launch__block_size"]]) for r in data]
tscale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}[unit_t]
bscale = {"byte": 1e-6, "B": 1e-6, "Kbyte": 1e-3, "KB": 1e-3, "Mbyte": 1.0, "MB": 1.0, "Gbyte": 1e3, "GB": 1e3}[unit_b]
# Names come demangled ("void dsv3::<unnamed>::rms_norm_kernel(...)"): keep the function's own name.
import re
def short(n):
    n = re.sub(r"\(.*$", "", n)            # arguments
    n = re.sub(r"<[^<>]*>", "", n)         # template arguments, inner first
    n = re.sub(r"<[^<>]*>", "", n)
    return n.split("::")[-1].split(" ")[-1]
ks = [(short(k[0]),) + k[1:] for k in ks]
# Steps start with the embedding of the step's ids; the last decode step = from the last embedding_kernel that is
# followed by rms_norm_kernel.
starts = [i for i in range(len(ks) - 1) if ks[i][0].startswith("embedding_kernel") and ks[i + 1][0].startswith("rms_norm")]
last = ks[starts[-1]:] if starts else ks
print(f"{len(ks)} kernels profiled, {len(starts)} steps; the last step has {len(last)} kernels (units {unit_t}, {unit_b})")
tot = sum(k[1] for k in last) * tscale
byt = sum(k[2] for k in last) * bscale
print(f"sum of kernel times {tot:.1f} us; DRAM read {byt:.1f} MB = {byt / tot * 1e3:.0f} GB/s over the kernel time")
print(f"{'#':>3} {'kernel':<34} {'grid':>7} {'blk':>5} {'us':>8} {'MB':>8} {'GB/s':>7} {'%4540':>6}")
for i, (n, t, b, g, bl) in enumerate(last):
    t *= tscale; b *= bscale
    print(f"{i:>3} {n[:34]:<34} {g:>7} {bl:>5} {t:>8.1f} {b:>8.2f} {b / t * 1e3 if t else 0:>7.0f} {b / t * 1e3 / 4540 * 100 if t else 0:>5.1f}%")
agg = collections.OrderedDict()
for n, t, b, g, bl in last:
    a = agg.setdefault(n[:34], [0, 0.0, 0.0]); a[0] += 1; a[1] += t * tscale; a[2] += b * bscale
print(f"-- per kernel name: calls, us, MB, share of the sum")
for n, (c, t, b) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
    print(f"{n:<34} {c:>4} {t:>9.1f} {b:>9.1f} {t / tot * 100:>5.1f}%")
PY
while IFS= read -r l; do table+=("$l"); done < <(sed -n '1,2p;/^-- per kernel name/,$p' "$OUT/summary.txt")
