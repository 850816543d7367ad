#!/usr/bin/env bash
# Installs every Debian 12 package geomx needs to build, test and benchmark.
# Idempotent and non-interactive: packages already present are skipped, and
# Postfix is preseeded so that no system mail server is configured or started.
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config ccache clang libclang-rt-14-dev clang-format
  # libraries
  libboost1.81-dev libboost-url1.81-dev libmaxminddb-dev libssl-dev libtomlplusplus-dev doctest-dev
  libcli11-dev libfmt-dev libspdlog-dev libsystemd-dev libhiredis-dev libc-ares-dev
  # test and benchmark tools
  mmdb-bin libmaxmind-db-writer-perl libnet-works-perl tor-geoipdb postfix swaks libnet-ssleay-perl haproxy
  prometheus gnuplot-nox curl openssl heaptrack systemd redis-server redis-sentinel
  # the policy service's anchor (bench/policy.sh)
  postgrey
  # the DNS server of the reputation tests (local zones, a forward to a silent port)
  unbound
  # named-checkzone, which checks the zones of `geomx ptr-zone`
  bind9-utils
  # the transparent test: a network namespace with an nft REDIRECT
  iproute2 nftables
  # the export test loads the ipset file into the kernel, twice
  ipset
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if ((EUID != 0)); then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
# policy-rc.d keeps the packaged daemons (haproxy, prometheus, postfix, redis) from
# starting on install: tests start their own instances on loopback.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
