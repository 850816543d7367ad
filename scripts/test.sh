#!/usr/bin/env bash
# Installs what is missing, builds geomx with AddressSanitizer and
# UndefinedBehaviorSanitizer, and runs every test. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh
# ccache, when installed, keeps objects across builds and clones: paths are
# taken relative to the checkout, so another clone of the same commit hits.
launcher=()
if command -v ccache >/dev/null && [[ -z ${CCACHE_DISABLE:-} ]]; then
  export CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=true
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
# The Release build that the demo and the benchmarks use must compile too
# (-O3 brings its own warnings, and -Werror makes them errors).
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DGEOMX_TESTS=OFF "${launcher[@]}" >/dev/null
cmake --build build/release
build=build/asan
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGEOMX_SANITIZE=ON "${launcher[@]}" >/dev/null
cmake --build "$build"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir "$build" --output-on-failure --timeout 600
