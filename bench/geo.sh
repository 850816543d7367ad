#!/usr/bin/env bash
# Geo lookup benchmark: geomx's table vs libmaxminddb on tor-geoipdb's data.
# Builds a Release binary and the comparison .mmdb (MaxMind's writer) first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh >/dev/null
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DGEOMX_TESTS=OFF >/dev/null
cmake --build build/release --target geo_lookup_bench >/dev/null
# Without aliases, so that both sides hold exactly the same data.
mmdb=build/release/tor-country-noalias.mmdb
[[ -s $mmdb ]] || perl tests/data/make-mmdb.pl "$mmdb" /usr/share/tor/geoip /usr/share/tor/geoip6
build/release/bench/geo_lookup_bench /usr/share/tor/geoip /usr/share/tor/geoip6 "$mmdb" "${1:-5}"
