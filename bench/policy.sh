#!/usr/bin/env bash
# The policy service benchmark (README "Benchmarks"): geomx's policy
# listener (this node's store, and Redis) against postgrey, then memory
# per held triplet; prints a table and writes bench/results/policy.json.
# Usage: bench/policy.sh [--runs N] [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh >/dev/null
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DGEOMX_TESTS=OFF >/dev/null
cmake --build build/release --target geomx policy_bench >/dev/null
exec perl bench/policy.pl --build build/release --out bench/results "$@"
