#!/usr/bin/env bash
# The SMTP screen benchmark (README "Benchmarks"): a screen = "smtp" pool
# against the byte relay and against a cached pass, in one geomx on
# loopback; prints a table of medians and ratios and writes
# bench/results/screen.json.
# Usage: bench/screen.sh [--runs N] [--threads N] [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh >/dev/null
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DGEOMX_TESTS=OFF >/dev/null
cmake --build build/release --target geomx conn_bench >/dev/null
exec perl bench/screen.pl --build build/release --out bench/results "$@"
