#!/usr/bin/env bash
# The DNS reputation benchmark (README "Benchmarks"): geomx with three DNSBL
# sites against geomx without, on loopback with a real unbound; prints a
# table of medians and ratios and writes bench/results/dns.json.
# Usage: bench/dns.sh [--runs N] [--threads N] [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh >/dev/null
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DGEOMX_TESTS=OFF >/dev/null
cmake --build build/release --target geomx conn_bench >/dev/null
# 10,000 held connections need 30,000+ descriptors between geomx and the
# client: raise the limit as far as this machine lets us (dns.pl scales
# down beyond it).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec perl bench/dns.pl --build build/release --out bench/results "$@"
