#!/usr/bin/env bash
# Fuzzes the PROXY header parser with libFuzzer (clang, ASan+UBSan).
# Usage: tests/fuzz/run.sh [RUNS]   (default 10,000,000 executions)
# New interesting inputs are added to tests/fuzz/corpus/proxy_header/.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-10000000}
out=build/fuzz
mkdir -p "$out" "$out/new"
clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I. \
  tests/fuzz/proxy_header_fuzz.cpp proxy/proxy_protocol.cpp geo/address.cpp conf/config.cpp \
  $(pkg-config --cflags --libs fmt) -o "$out/proxy_header_fuzz"
"$out/proxy_header_fuzz" -runs="$runs" -max_len=700 -print_final_stats=1 \
  -artifact_prefix="$out/" "$out/new" tests/fuzz/corpus/proxy_header 2>&1 | tail -25
