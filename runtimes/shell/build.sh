#!/usr/bin/env bash
# Build the shell guest (sh.wasm) for wasm32-wasip1 and copy it to OUT_PATH.
# Usage: runtimes/shell/build.sh OUT_PATH
# Uses its own target dir (runtimes/shell/target); not part of the host workspace.
set -euo pipefail
out=${1:?usage: build.sh OUT_PATH}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
# uucore embeds the locale named by LANG at build time; en-US only keeps the module small.
env -u LANG -u LC_ALL -u LC_MESSAGES cargo build --locked --release --target wasm32-wasip1 --bin sh
mkdir -p "$(dirname "$out")"
cp target/wasm32-wasip1/release/sh.wasm "$out"
echo "built $out ($(wc -c <"$out") bytes)"
