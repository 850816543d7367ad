#!/usr/bin/env bash
# The proxy benchmark (README "Benchmarks"): geomx vs haproxy vs direct on
# loopback, every scenario of bench/proxy.pl plus the geo lookups; prints a
# table of medians and ratios and writes bench/results/proxy.{json,png}.
# Usage: bench/proxy.sh [--runs N] [--threads N] [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh >/dev/null
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DGEOMX_TESTS=OFF >/dev/null
cmake --build build/release --target geomx conn_bench geo_lookup_bench >/dev/null
mmdb=build/release/tor-country-noalias.mmdb
[[ -s $mmdb ]] || perl tests/data/make-mmdb.pl "$mmdb" /usr/share/tor/geoip /usr/share/tor/geoip6
# 10,000 idle connections need 20,000+ descriptors in the proxy: raise the
# limit as far as this machine lets us (proxy.pl scales down beyond it).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec perl bench/proxy.pl --build build/release --mmdb "$mmdb" --out bench/results "$@"
