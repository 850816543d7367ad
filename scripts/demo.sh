#!/usr/bin/env bash
# The geomx demo on a fresh Debian 12 machine: installs what is missing,
# builds, and shows the compiled geo table and the policy of the seed
# deployment (conf/geomx.toml) answering for real addresses from the
# whole-Internet country data in Debian's tor-geoipdb. Touches no network.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DGEOMX_TESTS=OFF >/dev/null
cmake --build build/release
geomx=build/release/proxy/geomx
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step "$geomx" --version
step "$geomx" lookup 8.8.8.8 1.1.1.1 193.0.6.139 77.88.55.60 200.160.2.3 2a00:1450:4001::1 ::ffff:203.0.113.7
step "$geomx" lookup --json 2001:67c:2e8::1
echo; echo "\$ $geomx export --countries AU,NZ --format mikrotik --name anz | sed -n 1,10p"
"$geomx" export --countries AU,NZ --format mikrotik --name anz | sed -n 1,10p
printf '\n$ %s\n' "$geomx export --countries US,GB,CA,AU,NZ,IE | wc -l   # the seed's 'english' list, aggregated"
"$geomx" export --countries US,GB,CA,AU,NZ,IE | wc -l
step "$geomx" check -c conf/geomx.toml
step "$geomx" explain -c conf/geomx.toml 8.8.8.8 198.51.100.7 77.88.55.60 192.0.2.66 2a00:1450:4001::1
printf '\n$ printf "10.0.0.0/24\\n10.0.1.0/24\\n10.0.2.0/23\\n" | %s cidr aggregate\n' "$geomx"
printf "10.0.0.0/24\n10.0.1.0/24\n10.0.2.0/23\n" | "$geomx" cidr aggregate
