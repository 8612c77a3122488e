#!/usr/bin/env bash
# Every GPU figure of the speed work in one run, for a machine with a real GPU: decode with
# recording off and on (the decode step the model chose by timing, folded or separate, against
# the other; the workgroup-tree reductions against the subgroups),
# dispatches per token and GPU time per kernel kind, parity with the CPU,
# prefill of 64 / 2,000 / 8,000 tokens, and scene 2's frame pacing while the GPU backend
# generates. It builds the release binary first (a few minutes on 16 cores) unless SAMEMATH_BIN
# names one. llama.cpp's figures appear where `llama-cpp-python` is installed.
#
# Usage: tests/gpu-figures.sh [--quick | --smoke]
#   --quick: prefill of 64 and 2,000 tokens only
#   --smoke: tiny sizes, to see the script run where there is no real GPU (lavapipe)
set -uo pipefail
cd "$(dirname "$0")/.."

mode=${1:-full}
tokens=128 sizes="64 2000 8000" frames=300 window=1920x1080
case "$mode" in
    full) ;;
    --quick) sizes="64 2000" ;;
    --smoke) tokens=2 sizes="8" frames=20 window=640x360 ;;
    *) echo "usage: $0 [--quick | --smoke]" >&2; exit 2 ;;
esac
bin=${SAMEMATH_BIN:-}
if [ -z "$bin" ]; then
    cargo build --release --locked --bin samemath || exit 1
    bin=${CARGO_TARGET_DIR:-target}/release/samemath
fi
"$bin" fetch-model || exit 1
status=0
step() {
    echo "== $1"
    shift
    local t0=$SECONDS
    "$@" || { echo "   (failed: exit $?)"; status=1; }
    echo "   ($((SECONDS - t0)) s)"
}

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
step "decode: GPU and CPU, recording off / on / no lens, folded, trees, dispatches, per-kernel time, parity" \
    "$bin" bench --llm --backend gpu --tokens "$tokens"
for n in $sizes; do
    step "prefill of $n tokens: CPU, llama.cpp, GPU backend" \
        "$bin" bench --llm --backend gpu --prompt-tokens "$n"
done

# Scene 2 needs a window: an X display if there is one, else a virtual one from xvfb-run.
scene=("$bin" --backend gpu bench --scene llm --frames "$frames" --window "$window")
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
    step "frame pacing: scene 2 while the GPU backend generates" "${scene[@]}"
elif command -v xvfb-run >/dev/null; then
    step "frame pacing: scene 2 (off-screen, xvfb) while the GPU backend generates" \
        xvfb-run -a -s "-screen 0 1920x1080x24" "${scene[@]}"
else
    echo "== frame pacing: not measured (no display and no xvfb-run here)"
    status=1
fi
exit $status
