#!/usr/bin/env bash
# `geomx check` and `geomx explain` as an operator runs them.
# Usage: cli_config_test.sh GEOMX SOURCE_DIR
set -uo pipefail
geomx=$1
src=$2
source "$(dirname "$0")/lib.sh"

# The example names the packaged user geomx; where the package is not
# installed, `check` says what `run` would refuse, and a copy that names
# nobody passes.
if ! getent passwd geomx >/dev/null; then
  expect check-example-user 1 '' 'server.user "geomx": no such user$' -- "$geomx" check -c "$src/conf/geomx.toml"
fi
sed -e 's/^user = "geomx"/user = "nobody"/' -e 's/^group = "geomx"/group = "nogroup"/' "$src/conf/geomx.toml" >"$tmp/example.toml"
expect check-example 0 '^rule 3 +quarantine: catch-all -> route to pool quarantine$' '' -- \
  "$geomx" check -c "$tmp/example.toml"
grep -Eq '^list +english: 6 countries, 2 cidrs, 0 files -> [0-9]{5,} IPv4 prefixes' "$tmp/out" && ok || fail "check: english list size"
grep -Eq '^pool +quarantine: first, proxy_protocol v2, greet_delay 20s with teaser, screen smtp \(pipelining reject, non_smtp drop, bare_newline log, no_helo log, long_line reject, too_many_commands reject; a pass kept 30d\): ' "$tmp/out" && ok || fail "check: the quarantine pool's screen: $(grep quarantine "$tmp/out")"
# Each matcher kind is described (a country rule once read a dead copy's code).
cat >"$tmp/matchers.toml" <<EOF
[[listener]]
name = "mx"
address = "127.0.0.1:2525"
[pool.p]
members = ["127.0.0.1:25"]
[[rule]]
name = "countries"
if = { country = ["US", "GB"], listener = "mx" }
pool = "p"
[[rule]]
name = "confirmed"
if = { fcrdns = true }
pool = "p"
[[rule]]
name = "all"
pool = "p"
EOF
expect check-matchers 0 '^rule 1 +countries: if country US\|GB and listener mx -> route to pool p$' '' -- \
  "$geomx" check -c "$tmp/matchers.toml"
grep -Eq '^rule 2 +confirmed: if fcrdns true -> route to pool p$' "$tmp/out" && ok || fail "check: the fcrdns rule: $(grep confirmed "$tmp/out")"
expect check-bad 1 '' '^geomx: .*/bad\.toml: 19 errors$' -- "$geomx" check -c "$src/tests/data/bad.toml"
if [[ $(grep -c "^$src/tests/data/bad.toml:[0-9]*:[0-9]*: " "$tmp/err") == 19 && ! -s $tmp/out ]]; then ok; else fail "check-bad: $(cat "$tmp/err")"; fi
expect check-missing 1 '' 'No such file or directory' -- "$geomx" check -c "$tmp/nope.toml"

# A config whose list file is missing and whose database is corrupt: both
# reported at the config line that names them.
printf 'garbage\n' >"$tmp/corrupt.mmdb"
cat >"$tmp/files.toml" <<'TOML'
[geo]
databases = ["corrupt.mmdb"]
[[listener]]
name = "mx"
address = "127.0.0.1:0"
[lists.extra]
files = ["missing.txt"]
[[rule]]
name = "all"
action = "drop"
TOML
expect check-files 1 '' "^$tmp/files.toml:2:14: geo.databases\[0\]: $tmp/corrupt.mmdb: " -- "$geomx" check -c "$tmp/files.toml"
grep -q "^$tmp/files.toml:7:10: lists.extra.files\[0\]: $tmp/missing.txt: No such file or directory\$" "$tmp/err" && ok || fail "check-files: $(cat "$tmp/err")"
# with a config error as well, the files are still checked and reported
sed 's/name = "all"/name = "all"\ncolour = 1/' "$tmp/files.toml" >"$tmp/both.toml"
expect check-both 1 '' '^geomx: .*both\.toml: 3 errors$' -- "$geomx" check -c "$tmp/both.toml"
if grep -q ':10:1: rule\[0\].colour: unknown key' "$tmp/err" && grep -q 'missing.txt' "$tmp/err" && grep -q corrupt.mmdb "$tmp/err"; then ok
else fail "check-both: $(cat "$tmp/err")"; fi
expect check-directory 1 '' "^$tmp: is a directory, not a regular file\$" -- "$geomx" check -c "$tmp"
# Only regular files are read, each within a size cap: a FIFO as a database
# would hang the loader, /dev/zero as a list never ends.
mkfifo "$tmp/fifo.mmdb"
cat >"$tmp/devices.toml" <<TOML
[geo]
databases = ["fifo.mmdb", "/dev/urandom"]
[[listener]]
name = "mx"
address = "127.0.0.1:0"
[lists.zero]
files = ["/dev/zero"]
[[rule]]
name = "all"
action = "drop"
TOML
expect check-fifo 1 '' "^$tmp/devices.toml:2:14: geo.databases\[0\]: $tmp/fifo.mmdb: is a FIFO, not a regular file\$" -- \
  timeout 20 "$geomx" check -c "$tmp/devices.toml"
grep -q "geo.databases\[1\]: /dev/urandom: is a character device, not a regular file\$" "$tmp/err" && ok || fail "check-urandom: $(cat "$tmp/err")"
grep -q "lists.zero.files\[0\]: /dev/zero: is a character device, not a regular file\$" "$tmp/err" && ok || fail "check-zero: $(cat "$tmp/err")"
truncate -s 300M "$tmp/huge.txt"
sed -e '/^\[geo\]/d' -e '/^databases/d' -e 's|/dev/zero|huge.txt|' "$tmp/devices.toml" >"$tmp/huge.toml"
expect check-huge 1 '' "lists.zero.files\[0\]: $tmp/huge.txt: 300 MiB is over the limit of 256 MiB for this kind of file\$" -- \
  "$geomx" check -c "$tmp/huge.toml"
rm -f "$tmp/huge.txt"
# Rates are COUNT/PERIOD exactly: no sign, no space.
for rate in ' 5/min' '+5/min' '5 /min' '5/ min' '-5/min' '0x5/min'; do
  printf '[[listener]]\nname = "mx"\naddress = "127.0.0.1:0"\n[[limit]]\nname = "l"\nrate = "%s"\n[[rule]]\nname = "all"\naction = "drop"\n' "$rate" >"$tmp/rate.toml"
  expect "check-rate '$rate'" 1 '' '' -- "$geomx" check -c "$tmp/rate.toml"
  grep -qF -- "limit[0].rate: \"$rate\": " "$tmp/err" && ok || fail "check-rate '$rate': $(cat "$tmp/err")"
done
# `check` refuses what `run` would refuse or loop on.
base='[[rule]]\nname = "all"\npool = "p"\n'
printf '[[listener]]\nname = "mx"\naddress = "127.0.0.1:2600"\n[pool.p]\nmembers = ["127.0.0.9:25"]\n'"$base"'[admin]\nlisten = "127.0.0.1:2600"\n' >"$tmp/pre.toml"
expect check-admin-is-listener 1 '' ':[0-9]+:10: admin.listen: 127.0.0.1:2600 is \(or overlaps\) the address of listener "mx" \(127.0.0.1:2600\)$' -- "$geomx" check -c "$tmp/pre.toml"
printf '[[listener]]\nname = "any"\naddress = "0.0.0.0:2600"\n[[listener]]\nname = "lo"\naddress = "127.0.0.1:2600"\n[pool.p]\nmembers = ["127.0.0.9:25"]\n'"$base" >"$tmp/pre.toml"
expect check-wildcard-overlap 1 '' 'listener\[1\].address: 127.0.0.1:2600 and listener "any" \(0.0.0.0:2600\) cannot both be bound$' -- "$geomx" check -c "$tmp/pre.toml"
printf '[[listener]]\nname = "any"\naddress = "0.0.0.0:2600"\n[pool.p]\nmembers = ["127.0.0.1:2600"]\n'"$base" >"$tmp/pre.toml"
expect check-self-loop 1 '' 'pool.p.members\[0\]: 127.0.0.1:2600 is geomx.s own listener "any": each session would dial geomx again$' -- "$geomx" check -c "$tmp/pre.toml"
printf '[server]\nuser = "no-such-user-geomx"\n[[listener]]\nname = "mx"\naddress = "127.0.0.1:0"\n[pool.p]\nmembers = ["127.0.0.9:25"]\n'"$base" >"$tmp/pre.toml"
expect check-user 1 '' 'server.user "no-such-user-geomx": no such user$' -- "$geomx" check -c "$tmp/pre.toml"
printf '[[listener]]\nname = "mx"\naddress = "127.0.0.1:0"\n[pool.p]\nmembers = ["127.0.0.9:25"]\n'"$base"'[admin]\ntls_cert = "missing.pem"\ntls_key = "missing.key"\n' >"$tmp/pre.toml"
expect check-tls 1 '' "admin endpoint TLS certificate $tmp/missing.pem / key $tmp/missing.key" -- "$geomx" check -c "$tmp/pre.toml"
# and `run` refuses it the same way, before it binds
expect run-tls 1 '' "event=error problem=\"admin endpoint TLS certificate $tmp/missing.pem" -- "$geomx" run -c "$tmp/pre.toml"

# The admin endpoint on a public address without TLS: valid, with a warning.
printf '[[listener]]\nname = "mx"\naddress = "127.0.0.1:0"\n[[rule]]\nname = "all"\naction = "drop"\n[admin]\nlisten = "0.0.0.0:9025"\n' >"$tmp/admin.toml"
"$geomx" check -c "$tmp/admin.toml" >"$tmp/out" 2>"$tmp/err"
if [[ $? == 0 ]] && grep -q "warning: admin.listen 0.0.0.0:9025 is not a loopback address and has no TLS" "$tmp/err"; then ok
else fail "check-admin-warning: $(cat "$tmp/err")"; fi

# explain reads the dated blocks this node keeps (blocks.toml): a blocked
# client is refused before any rule, as the live answer is.
mkdir -p "$tmp/state"
cat >"$tmp/state/blocks.toml" <<'TOML'
[[block]]
cidr = "77.88.55.0/24"
comment = "SPAM_09_01_2021"
created = 1700000000
origin = "operator"
TOML
sed -e "s|^state_dir = .*|state_dir = \"$tmp/state\"|" "$tmp/example.toml" >"$tmp/blocked.toml"
expect explain-blocked 0 '^77\.88\.55\.60 country=RU blocked_by="77\.88\.55\.0/24 \(operator: SPAM_09_01_2021\)" action=reject reply="554 5\.7\.1 [^ ]+ access denied"$' '' -- \
  "$geomx" explain -c "$tmp/blocked.toml" 77.88.55.60
expect explain-not-blocked 0 '^8\.8\.8\.8 country=US lists=english rule=english ' '' -- "$geomx" explain -c "$tmp/blocked.toml" 8.8.8.8

# The policy listener: check summarises it, explain --policy answers as the
# listener would (a new triplet from RU, the skipped english list, a block).
cat "$tmp/example.toml" >"$tmp/policy.toml"
cat >>"$tmp/policy.toml" <<'TOML'
[[listener]]
name = "policy"
address = "127.0.0.1:10031"
mode = "policy"
trusted_proxies = ["127.0.0.1/32"]
[greylist]
skip = { list = "english" }
[policy]
header = "X-Geomx"
TOML
expect check-policy 0 '^greylist  delay 35m, retry_window 2d, max_age 35d, per /24 \(IPv4\) /64 \(IPv6\), auto_allow after 5 passes, skip if list english, kept /var/lib/geomx/greylist\.\{db,journal\} \(at most 2000000 records\)$' '' -- \
  "$geomx" check -c "$tmp/policy.toml"
grep -q '^policy    policy on 127.0.0.1:10031 (check_policy_service inet:127.0.0.1:10031), from 127.0.0.1/32$' "$tmp/out" && ok || fail "check: the policy listener: $(grep ^policy "$tmp/out")"
expect explain-policy-new 0 '^77\.88\.55\.60 country=RU rule=quarantine triplet="77\.88\.55\.0/24 bob@sender\.test -> alice@example\.net" store=/var/lib/geomx/greylist\.journal result=new action="450 4\.2\.0 Greylisted, please retry in 35 minutes"$' '' -- \
  "$geomx" explain -c "$tmp/policy.toml" --policy Bob+Tag@Sender.test alice@example.net 77.88.55.60
expect explain-policy-skip 0 '^8\.8\.8\.8 country=US rule=english result=skipped action="PREPEND X-Geomx: country=US list=english rule=english node=[^ ]+"$' '' -- \
  "$geomx" explain -c "$tmp/policy.toml" --policy '' alice@example.net 8.8.8.8
expect explain-policy-usage 2 '' 'takes SENDER RECIPIENT IP' -- "$geomx" explain -c "$tmp/policy.toml" --policy 8.8.8.8
expect explain-policy-none 1 '' 'has no listener with mode = "policy"' -- "$geomx" explain -c "$tmp/example.toml" --policy a b 8.8.8.8

# explain: the seed deployment on tor-geoipdb's data
expect explain-us 0 '^8\.8\.8\.8 country=US lists=english rule=english why="in list english" action=route pool=primary member=10\.0\.0\.11:25 fallback=10\.0\.0\.11:25,10\.0\.0\.12:25$' '' -- \
  "$geomx" explain -c "$src/conf/geomx.toml" 8.8.8.8
expect explain-upper-half 0 '^198\.51\.100\.7 .*rule=english .*member=10\.0\.0\.12:25 fallback=10\.0\.0\.12:25,10\.0\.0\.11:25$' '' -- \
  "$geomx" explain -c "$src/conf/geomx.toml" 198.51.100.7
expect explain-foreign 0 '^77\.88\.55\.60 country=RU lists=- rule=quarantine why="catch-all" action=route pool=quarantine member=10\.0\.0\.13:25' '' -- \
  "$geomx" explain -c "$src/conf/geomx.toml" 77.88.55.60
expect explain-blocked 0 '^192\.0\.2\.66 .*rule=blocked .*action=reject reply="554 5\.7\.1 mx\.example\.net your address is blocked' '' -- \
  "$geomx" explain -c "$src/conf/geomx.toml" 192.0.2.66
expect explain-json 0 '' '' -- "$geomx" explain --json -c "$src/conf/geomx.toml" 8.8.8.8 2a00:1450:4001::1 192.0.2.66
# the country explain reports is the one lookup reports
cc=$("$geomx" lookup 2a00:1450:4001::1 | cut -d' ' -f2)
if perl -MJSON::PP -ne '$j = decode_json($_); $n++; END { exit !($n == 3) }' "$tmp/out" &&
  grep -q "\"ip\":\"2a00:1450:4001::1\",\"country\":\"$cc\"," "$tmp/out"; then ok
else fail "explain --json: $(cat "$tmp/out")"; fi
expect explain-bad-ip 1 '^8\.8\.8\.8 ' "'8\.8\.8' is not an IP address" -- "$geomx" explain -c "$src/conf/geomx.toml" 8.8.8 8.8.8.8
expect explain-bad-listener 1 '' 'no listener named "smtp"' -- "$geomx" explain -c "$src/conf/geomx.toml" --listener smtp 8.8.8.8

finish
