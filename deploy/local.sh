#!/usr/bin/env bash
# Build deploy/Dockerfile's image here, without Docker Hub or a registry: podman (Debian's, with
# runc) and base images made from Debian's own packages by debootstrap.
#
#   deploy/local.sh                  # image localhost/samemath-serve:local (release binary)
#   PROFILE=dev deploy/local.sh      # a dev build of the server
#   SERVE_BIN=path deploy/local.sh   # a server binary built already (what .ci/test does)
#
# Where the binary comes from: BINARY=prebuilt. The project's cargo builds samemath-serve here
# (rustup's Rust 1.95, the toolchain everything else uses, on this Debian bookworm, the same
# glibc as the image's base) and the Dockerfile copies it in with the model. A build stage with
# Rust inside needs a Rust base image, which only a registry serves; a real deploy
# (deploy/deploy.sh, Cloud Build) uses the default BINARY=build and compiles inside
# rust:1.95-bookworm.
#
# The base is made once and kept (podman's storage; the debootstrap root is cached in
# ~/.cache/samemath-podman). Prints the image's size and how long each part took.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE="${BASE:-localhost/debian-base:bookworm}"
IMAGE="${IMAGE:-localhost/samemath-serve:local}"
PROFILE="${PROFILE:-release}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/samemath-podman"
TARGET="${CARGO_TARGET_DIR:-target}"
PODMAN=(podman --runtime runc)
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/deploy/podman.conf}"
took() { printf 'local.sh: %s in %d s\n' "$1" $(( $(date +%s) - $2 )); }

for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null || {
    echo "local.sh: needs $tool (Debian: apt-get install podman runc debootstrap)" >&2
    exit 2
  }
done

# 1. The base image: a minimal Debian bookworm root from Debian's packages.
mkdir -p "$CACHE"
t=$(date +%s)
if ! "${PODMAN[@]}" image exists "$BASE"; then
  mkdir -p "$CACHE"
  if [ ! -s "$CACHE/bookworm.tar" ]; then
    root="$(mktemp -d)"
    trap 'rm -rf "$root"' EXIT
    echo "local.sh: debootstrap bookworm from $MIRROR (once)"
    debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
      || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -cf "$CACHE/bookworm.tar.part" .
    mv "$CACHE/bookworm.tar.part" "$CACHE/bookworm.tar"
    rm -rf "$root"
    trap - EXIT
  fi
  "${PODMAN[@]}" import "$CACHE/bookworm.tar" "$BASE" >/dev/null
fi
took "base image $BASE" "$t"

# 2. The server alone (no Bevy, winit or egui) and the model (fetched once, sha256-checked).
#    SERVE_BIN: a samemath-serve already built (.ci/test passes the one `cargo test --workspace`
#    built: a `cargo build -p samemath-serve` of its own unifies features differently and would
#    compile the server's dependencies a second time).
t=$(date +%s)
if [ -n "${SERVE_BIN:-}" ]; then
  [ -x "$SERVE_BIN" ] || { echo "local.sh: SERVE_BIN=$SERVE_BIN is not an executable" >&2; exit 2; }
  PROFILE="prebuilt $SERVE_BIN"
  mkdir -p deploy/out
  cp "$SERVE_BIN" deploy/out/samemath-serve
elif [ "$PROFILE" = release ]; then
  cargo build --locked --release -p samemath-serve
  dir=release
else
  cargo build --locked --profile "$PROFILE" -p samemath-serve
  dir=debug
  [ "$PROFILE" = dev ] || dir="$PROFILE"
fi
if [ -z "${SERVE_BIN:-}" ]; then
  mkdir -p deploy/out
  cp "$TARGET/$dir/samemath-serve" deploy/out/samemath-serve
fi
strip deploy/out/samemath-serve 2>/dev/null || true
model="$(deploy/out/samemath-serve --fetch-model)"
cp "$model" deploy/out/SmolLM2-135M-Instruct.Q4_1.gguf
took "server binary ($PROFILE, $(du -h deploy/out/samemath-serve | cut -f1)) and model" "$t"

# 3. The image, from deploy/Dockerfile as a real deploy builds it, the binary copied in.
t=$(date +%s)
"${PODMAN[@]}" build --network host -f deploy/Dockerfile \
  --build-arg BUILD_BASE="$BASE" --build-arg RUNTIME_BASE="$BASE" \
  --build-arg BINARY=prebuilt --build-arg GPU=0 \
  -t "$IMAGE" . >"$CACHE/build.log" 2>&1 || { tail -30 "$CACHE/build.log" >&2; exit 1; }
took "image $IMAGE" "$t"
size=$("${PODMAN[@]}" image inspect "$IMAGE" --format '{{.Size}}')
echo "local.sh: image size $(( size / 1000000 )) MB ($size bytes)"
