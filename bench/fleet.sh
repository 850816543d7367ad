#!/usr/bin/env bash
# Fleet store benchmark (bench/fleet.pl) on a Release build: a [[limit]] on
# Redis vs the same limit local, commands per session, memory per client.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh >/dev/null
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DGEOMX_TESTS=OFF >/dev/null
cmake --build build/release --target geomx >/dev/null
perl bench/fleet.pl --build build/release "$@"
