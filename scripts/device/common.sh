# common.sh: shared by the scripts/device/*.sh runs (sourced, not run): output folders, the result table, the
# build on the GPU machine (Ubuntu 24.04, CUDA 13, no PCRE2 headers: pcre2.h comes from the carried .devdeps, made
# here once with `mkdir -p .devdeps/include && cp /usr/include/pcre2.h .devdeps/include/`; .devdeps is git-ignored).
# device_init NAME WIDTH: logs go to /tmp/dsv3-NAME and leave as one tarball $OUT/NAME.tgz (the device tool brings
# back at most 8 files of 16 MB; .npy files stay behind); the table is printed last, also on failure.
device_init() {
  DEVICE_NAME=$1
  DEVICE_WIDTH=${2:-40}
  FINAL=${OUT:-$PWD/gpu-logs}
  OUT=/tmp/dsv3-$DEVICE_NAME
  BUILD=${BUILD:-build-gpu}
  rm -rf "$OUT"; mkdir -p "$OUT" "$FINAL"
  t0=$(date +%s)
  table=()
  trap device_finish EXIT
}
elapsed() { echo "$(( $(date +%s) - t0 ))s"; }
left() { echo $(( ${BUDGET_S:-540} - ($(date +%s) - t0) )); }
row() { table+=("$(printf "%-${DEVICE_WIDTH}s %s" "$1" "$2")"); }
device_finish() {
  printf '%s\n' "${table[@]}" >"$OUT/table.txt"
  rm -f "$OUT"/*.npy
  tar czf "$FINAL/$DEVICE_NAME.tgz" -C "$OUT" . 2>/dev/null
  echo; echo "== dsv3 $DEVICE_NAME: $(date -u +%Y-%m-%dT%H:%MZ) =="; printf '%s\n' "${table[@]}"
}
# device_build TARGET...: configure with CUDA and build the targets; exits (printing the log's tail) on failure.
device_build() {
  { nvidia-smi; nvcc --version; } >"$OUT/env.log" 2>&1
  row "gpu" "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
  local pcre
  pcre=$(ls /usr/lib/x86_64-linux-gnu/libpcre2-8.so* 2>/dev/null | head -1)
  if ! cmake -S . -B "$BUILD" -G Ninja -DDSV3_CUDA=ON -DDSV3_WERROR=OFF -DCMAKE_BUILD_TYPE=Release \
       -DDSV3_PCRE2_ROOT="$PWD/.devdeps" -DDSV3_PCRE2_LIB="$pcre" >"$OUT/build.log" 2>&1 ||
     ! ninja -C "$BUILD" -j "$(nproc)" "$@" >>"$OUT/build.log" 2>&1; then
    row "build" "FAILED (build.log)"; tail -30 "$OUT/build.log"; exit 1
  fi
  row "build ($*)" "ok ($(elapsed))"
}

# The v3-slice benchmark model (shared/docs/performance.md): v3slice_setup writes its config.json to $V3SLICE
# (make-tiny-model --config_only; weights are made on the GPU by load_format dummy) and the YAML every benchmark of
# it uses to $OUT/extra.yaml (KV pool 262,144 tokens, block reuse off as trtllm-bench does). Needs $DSV3 and $TOK.
V3SLICE=/tmp/v3-slice
v3slice_setup() {
  rm -rf "$V3SLICE"
  $DSV3 make-tiny-model --preset v3-slice --config_only --out "$V3SLICE" --tokenizer "$TOK" >"$OUT/make_model.log" 2>&1 ||
    { row "make-tiny-model v3-slice" "FAILED"; cat "$OUT/make_model.log"; exit 1; }
  cat >"$OUT/extra.yaml" <<'Y'
load_format: dummy
max_batch_size: 128
max_num_tokens: 8192
kv_cache_config:
  max_tokens: 262144
  enable_block_reuse: false
Y
}
# v3slice_dataset NAME N_REQUESTS ISL OSL: $OUT/NAME.jsonl of fixed-length random requests (seed 7).
v3slice_dataset() {
  $DSV3 prepare-dataset --tokenizer "$TOK" --stdout --random-seed 7 token-norm-dist --num-requests "$2" \
    --input-mean "$3" --input-stdev 0 --output-mean "$4" --output-stdev 0 >"$OUT/$1.jsonl" 2>>"$OUT/datasets.log"
}
# v3slice_decode_bench TAG DATASET BATCH [VAR=VALUE...]: `dsv3 bench throughput` (overlap scheduler and CUDA graphs on,
# as by default) under the given environment; adds a row with the median and the minimum step time of the decode-only
# steps at the full batch, the first two dropped (iteration log $OUT/TAG.iter.jsonl). Skipped under 45 s of budget.
v3slice_decode_bench() {
  local tag=$1 d=$2 b=$3; shift 3
  [ "$(left)" -gt 45 ] || { row "bench $tag" "skipped: out of time ($(elapsed))"; return; }
  env "$@" timeout 90 $DSV3 bench --model "$V3SLICE" throughput --dataset "$OUT/$d.jsonl" --backend cuda --warmup 1 \
    --extra_llm_api_options "$OUT/extra.yaml" --iteration_log "$OUT/$tag.iter.jsonl" >"$OUT/$tag.log" 2>&1
  row "bench $tag" "$(python3 - "$OUT/$tag.iter.jsonl" "$b" <<'P'
import json, sys, statistics
try: it = [json.loads(l) for l in open(sys.argv[1])]
except Exception as e: print("no log", e); sys.exit()
b = int(sys.argv[2])
st = [s["iterLatencyMS"] for s in it if s["inflightBatchingStats"]["numCtxTokens"] == 0 and s["inflightBatchingStats"]["numGenRequests"] == b][2:]
print(f"median {statistics.median(st):.3f} ms/step, min {min(st):.3f} over {len(st)} steps" if st else "no steps")
P
) ($(elapsed))"
}

# gen TAG BACKEND NUMERICS "VAR=V ..." [generate flags...]: greedy `dsv3 generate` on the tiny preset the caller made
# in /tmp/tiny, 24 tokens for the default 4 prompts; output $OUT/gen-TAG.txt, log $OUT/gen-TAG.log. Needs $DSV3.
gen() {
  local tag=$1 be=$2 num=$3 envs=$4; shift 4
  env $envs $DSV3 generate --model_dir /tmp/tiny --backend "$be" --numerics "$num" --max_tokens 24 "$@" \
    >"$OUT/gen-$tag.txt" 2>"$OUT/gen-$tag.log"
}
# same A B: how many of gen A's prompt lines gen B reproduced exactly.
same() { python3 -c "
a=[l for l in open('$OUT/gen-$1.txt') if l.startswith('[')]; b=[l for l in open('$OUT/gen-$2.txt') if l.startswith('[')]
print(f'{sum(x==y for x,y in zip(a,b))}/{len(a)} prompts identical ({len(b)} lines)')"; }
