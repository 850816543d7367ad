#!/usr/bin/env bash
# The geomx demo on a fresh Debian 12 machine: installs what is missing,
# builds, starts three smtp-sink backends and geomx with conf/demo.toml on
# loopback (real country data from Debian's tor-geoipdb), then sends mail
# "from" clients in several countries through it (PROXY v2 headers from a
# trusted local sender) and shows where each went, with geomx's log lines.
# Ends by itself (or on Ctrl-C) and leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DGEOMX_TESTS=OFF >/dev/null
cmake --build build/release --target geomx
geomx=$PWD/build/release/cli/geomx
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for port in 2525 2526 2601 2602 2603 9025; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "demo: 127.0.0.1:$port is in use; stop what listens there first" >&2
    exit 1
  fi
done
for port in 2601 2602 2603; do
  smtp-sink -u nobody -h "backend-$port.demo.test" "127.0.0.1:$port" 100 &
  pids+=($!)
done
"$geomx" check -c conf/demo.toml
"$geomx" run -c conf/demo.toml 2>"$work/geomx.log" &
pids+=($!)
for _ in $(seq 100); do grep -q 'event=ready' "$work/geomx.log" && break; sleep 0.1; done
grep -q 'event=ready' "$work/geomx.log" || { cat "$work/geomx.log"; exit 1; }

printf '\n%-18s %-4s %s\n' "client" "cc" "what the client saw (geomx's routing: see the log below)"
send() {  # send IP N: one message "from" IP through the PROXY listener, what it saw into client-N
  local ip=$1 family=AF_INET dest=127.0.0.1
  [[ $ip == *:* ]] && family=AF_INET6 dest=::1
  local cc out t0 t1
  cc=$("$geomx" lookup "$ip" | cut -d' ' -f2)
  t0=$(date +%s%N)
  out=$(swaks --server 127.0.0.1:2526 --proxy-version 2 --proxy-family "$family" \
    --proxy-source "$ip" --proxy-source-port 40000 --proxy-dest "$dest" --proxy-dest-port 25 \
    --to postmaster@demo.test --from demo@example.org --timeout 20 2>&1 || true)
  t1=$(date +%s%N)
  local teaser banner
  teaser=$(grep -E '^<-  220-' <<<"$out" | head -1 | cut -c5- || true)  # the quarantine's only
  banner=$(grep -E '^<-  220 |^<\*\* ' <<<"$out" | head -1 | cut -c5- || true)
  {
    printf '%-18s %-4s %s  (%.1f s for the whole mail)\n' "$ip" "$cc" "${banner:-(no reply)}" \
      "$(((t1 - t0) / 1000000))e-3"
    if [[ -n $teaser ]]; then printf '%-18s %-4s   first, at once: %s\n' "" "" "$teaser"; fi
  } >"$work/client-$2"
}
start=$(date +%s)
senders=()
clients=(8.8.8.8 1.1.1.1 151.101.1.69 2a00:1450:4001::1 77.88.55.60 200.160.2.3 192.0.2.66)
for i in "${!clients[@]}"; do
  send "${clients[$i]}" "$i" &
  senders+=($!)
done
wait "${senders[@]}"  # the quarantined ones take the 3 s greet_delay
for i in "${!clients[@]}"; do cat "$work/client-$i"; done  # in the order they were sent
echo
echo "geomx's log (one line per connection; the quarantined waited the 3 s greet_delay):"
grep 'event=session' "$work/geomx.log" | sed 's/^ts=[^ ]* //'
echo
echo "demo done in $(($(date +%s) - start)) s; stopping geomx and the backends."
