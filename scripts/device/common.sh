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
