#!/usr/bin/env bash
# geomx's memory under a flood of random sources (bench/flood.pl): builds
# Release and prints RSS before and along 200,000 connection attempts.
# Usage: bench/flood.sh [--connections N] [--clients N]
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh >/dev/null
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DGEOMX_TESTS=OFF >/dev/null
cmake --build build/release --target geomx >/dev/null
exec perl bench/flood.pl --build build/release "$@"
