#!/usr/bin/env bash
# Builds the Debian package (build/release/geomx_*.deb) with CPack.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh >/dev/null
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DGEOMX_TESTS=OFF >/dev/null
cmake --build build/release --target geomx
(cd build/release && cpack -G DEB)
ls build/release/geomx_*.deb
