#!/usr/bin/env bash
# Build samemath for the browser into a static folder (default target/web): the wasm app
# through wasm-bindgen (the version pinned in Cargo.lock, installed if missing), optimised for
# size by wasm-opt (binaryen) when present, the page, and the model next to it (same origin).
#   wasm/build.sh            build
#   wasm/build.sh --serve    build, then serve it on http://127.0.0.1:8080 (PORT to change)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${SAMEMATH_WEB_OUT:-target/web}"
target_dir="${CARGO_TARGET_DIR:-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $version"; then
  echo "installing wasm-bindgen-cli $version (the version in Cargo.lock)"
  # (its own lock file pins a webpki-roots release crates.io no longer offers: resolve afresh)
  cargo install --quiet wasm-bindgen-cli --version "$version"
fi
rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown ||
  rustup target add wasm32-unknown-unknown

echo "building the wasm app"
cargo build --locked --profile web --target wasm32-unknown-unknown --bin samemath
wasm="$target_dir/wasm32-unknown-unknown/web/samemath.wasm"

rm -rf "$out/pkg"
mkdir -p "$out/pkg" "$out/model"
wasm-bindgen --target web --no-typescript --out-dir "$out/pkg" "$wasm"

# wasm-opt from binaryen 132 (npm, wasm/package.json; Debian's 108 breaks wasm-bindgen's
# externref table). It takes minutes on a large module: keep its output per input hash.
bound="$out/pkg/samemath_bg.wasm"
if command -v npm >/dev/null; then
  (cd wasm && { [ -x node_modules/.bin/wasm-opt ] || npm ci --no-audit --no-fund --silent; })
fi
if [ -x wasm/node_modules/.bin/wasm-opt ]; then
  opt_cache="$target_dir/web-opt"
  mkdir -p "$opt_cache"
  key=$(sha256sum "$bound" | cut -c1-16)
  if [ ! -f "$opt_cache/$key.wasm" ]; then
    echo "wasm-opt -Os ($(du -m "$bound" | cut -f1) MB in)"
    wasm/node_modules/.bin/wasm-opt -Os --strip-debug --strip-producers \
      --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
      --enable-mutable-globals --enable-reference-types --enable-multivalue --enable-simd \
      -o "$opt_cache/$key.tmp" "$bound"
    mv "$opt_cache/$key.tmp" "$opt_cache/$key.wasm"
    ls -t "$opt_cache"/*.wasm | tail -n +4 | xargs -r rm -f
  fi
  cp "$opt_cache/$key.wasm" "$bound"
else
  echo "note: no npm, so no wasm-opt: the wasm is not size-optimised"
fi

cp wasm/index.html wasm/page.js "$out/"

# The model, served from the same origin (fetched into the user cache on first use).
model="${SAMEMATH_MODEL:-$HOME/.cache/samemath/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
if [ ! -f "$model" ]; then
  cargo run --locked --quiet -- fetch-model
fi
ln -f "$model" "$out/model/SmolLM2-135M-Instruct.Q4_1.gguf" 2>/dev/null ||
  cp "$model" "$out/model/SmolLM2-135M-Instruct.Q4_1.gguf"
# The sha256 the page checks the download (and its cached copy) against: the published one for
# the default model (crates/llm/src/fetch.rs), the file's own for another.
if [ -z "${SAMEMATH_MODEL:-}" ]; then
  sum=$(sed -n 's/^pub const MODEL_SHA256: &str = "\([0-9a-f]*\)";/\1/p' crates/llm/src/fetch.rs)
else
  sum=$(sha256sum "$model" | cut -d' ' -f1)
fi
echo "$sum  SmolLM2-135M-Instruct.Q4_1.gguf" > "$out/model/SmolLM2-135M-Instruct.Q4_1.gguf.sha256"

raw=$(stat -c %s "$bound")
gz=$(gzip -9 -c "$bound" | wc -c)
echo "web build in $out: samemath_bg.wasm $(( raw / 1000000 )) MB, gzipped $(( gz / 1000000 )) MB (model excluded)"

if [ "${1:-}" = "--serve" ]; then
  port="${PORT:-8080}"
  echo "serving on http://127.0.0.1:$port/ (Ctrl-C stops)"
  exec node wasm/serve.mjs "$out" "$port"
fi
