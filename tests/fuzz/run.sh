#!/usr/bin/env bash
# Fuzzes geomx's parsers with libFuzzer (clang, ASan+UBSan): builds every
# target (GEOMX_FUZZ=ON) in build/fuzz, then runs TARGET (or each in turn)
# for RUNS executions, starting from tests/fuzz/corpus/TARGET. New inputs
# that reach new code go to build/fuzz/new/TARGET (merge the worth-keeping
# ones into the corpus: `TARGET_fuzz -merge=1 corpus/TARGET build/fuzz/new/TARGET`);
# a crash is written to build/fuzz/TARGET-crash-* and the run fails.
# Targets: proxy_header admin config lists blocks mmdb store_record smtp_screen policy_request.
# Usage: tests/fuzz/run.sh [TARGET|all] [RUNS] [JOBS]   (default: all, 10,000,000, 1)
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${1:-all}
runs=${2:-10000000}
jobs=${3:-1}
out=build/fuzz
cmake -S . -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DGEOMX_FUZZ=ON -DGEOMX_TESTS=OFF -DGEOMX_BENCH=OFF >/dev/null
targets=(proxy_header admin config lists blocks mmdb store_record smtp_screen policy_request)
[[ $target != all ]] && targets=("$target")
for t in "${targets[@]}"; do cmake --build "$out" --target "${t}_fuzz" >/dev/null; done
# Inputs no larger than the parser would take whole (a PROXY header is at
# most 536 bytes; databases are seeded with real files).
declare -A max_len=([proxy_header]=700 [admin]=1024 [config]=8192 [lists]=8192 [blocks]=8192 [mmdb]=16384 [store_record]=1024 [smtp_screen]=2048 [policy_request]=1024)
export LSAN_OPTIONS=suppressions=$PWD/tests/fuzz/lsan.supp  # libmaxminddb's own leak
for t in "${targets[@]}"; do
  mkdir -p "$out/new/$t"
  echo "== $t: $runs runs"
  "$out/tests/fuzz/${t}_fuzz" -runs="$runs" -max_len="${max_len[$t]}" -jobs="$jobs" -workers="$jobs" \
    -close_fd_mask=2 -print_final_stats=1 -artifact_prefix="$out/$t-" "$out/new/$t" "tests/fuzz/corpus/$t" \
    2>&1 | grep -E '^(stat::|#[0-9]+ +DONE|Done|==[0-9]+==ERROR|SUMMARY|artifact)' || true
  if compgen -G "$out/$t-crash-*" >/dev/null || compgen -G "$out/$t-leak-*" >/dev/null; then
    echo "$t: findings in $out/$t-*" >&2
    exit 1
  fi
done
