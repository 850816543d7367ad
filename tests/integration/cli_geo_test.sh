#!/usr/bin/env bash
# The geo tools as an operator runs them: output, exit codes, errors on stderr.
# Usage: cli_geo_test.sh GEOMX TESTDATA_DIR
set -uo pipefail
geomx=$1
data=$2
source "$(dirname "$0")/lib.sh"

mmdb=$data/tor-country.mmdb
expect version 0 '^geomx [0-9]+\.[0-9]+\.[0-9]+$' '' -- "$geomx" --version
expect no-subcommand 2 '' 'subcommand' -- "$geomx"
expect unknown-option 2 '' 'not expected: --frobnicate' -- "$geomx" lookup --db "$mmdb" --frobnicate 1.2.3.4

# lookup agrees with libmaxminddb's own mmdblookup tool, text and JSON
for ip in 8.8.8.8 1.1.1.1 193.0.6.139 2001:67c:2e8::1 2a00:1450:4001::1; do
  want=$( (mmdblookup -f "$mmdb" -i "$ip" country iso_code 2>/dev/null ||
    mmdblookup -f "$mmdb" -i "$ip" registered_country iso_code) | grep -o '"[A-Z][A-Z]"' | tr -d '"')
  expect "lookup $ip" 0 "^$ip $want [0-9a-f:.]+/[0-9]+\$" '' -- "$geomx" lookup --db "$mmdb" "$ip"
  expect "lookup --json $ip" 0 "^\\{\"ip\":\"$ip\",\"country\":\"$want\",\"prefix\":\"[0-9a-f:.]+/[0-9]+\"\\}\$" '' -- \
    "$geomx" lookup --db "$mmdb" --json "$ip"
done
expect lookup-default-db 0 '^8\.8\.8\.8 US ' '' -- "$geomx" lookup 8.8.8.8
expect lookup-two-dbs 0 '^1\.0\.4\.1 AU ' '' -- "$geomx" lookup --db "$data/edge6.mmdb" --db /usr/share/tor/geoip 1.0.4.1

# --asn-db: the AS number and organisation, as libmaxminddb's mmdblookup reads them
asn=$data/test-asn.mmdb
for ip in 127.2.0.9 8.8.8.8 193.0.6.139 2001:67c:2e8::1; do
  want=$(mmdblookup -f "$asn" -i "$ip" autonomous_system_number 2>/dev/null | grep -o '[0-9][0-9]*' | head -1)
  org=$(mmdblookup -f "$asn" -i "$ip" autonomous_system_organization 2>/dev/null | grep -o '"[^"]*"' | tr -d '"')
  [[ -n $want ]] || { want=0; org=; }
  expect "lookup --asn-db $ip" 0 "^$ip [A-Z][A-Z] [0-9a-f:.]+/[0-9]+ AS$want${org:+ $org}\$" '' -- \
    "$geomx" lookup --db "$mmdb" --asn-db "$asn" "$ip"
  expect "lookup --asn-db --json $ip" 0 "\"asn\":$want,\"as_org\":\"$org\"\\}\$" '' -- \
    "$geomx" lookup --db "$mmdb" --asn-db "$asn" --json "$ip"
done
expect lookup-asn-cn 0 '^127\.2\.0\.9 ZZ 127\.2\.0\.0/16 AS64511 Example CN Net$' '' -- \
  "$geomx" lookup --db "$mmdb" --asn-db "$asn" 127.2.0.9
expect lookup-asn-as-country 1 '' 'no country data in any of its records \(database_type "GeoLite2-ASN"\); an ASN database goes in \[geo\] asn_databases' -- \
  "$geomx" lookup --db "$asn" 8.8.8.8

# stdin streaming: one line per address; a bad line is reported and the rest answered
printf '1.1.1.1\n1.2.3\n2001:67c:2e8::1\n' | "$geomx" lookup --db "$mmdb" - >"$tmp/out" 2>"$tmp/err"
code=$?
if [[ $code == 1 && $(wc -l <"$tmp/out") == 2 ]] && grep -q "'1.2.3' is not an IPv4 address" "$tmp/err"; then ok
else fail "lookup - : exit $code, $(cat "$tmp/out" "$tmp/err")"; fi
# streaming really streams: the first answer arrives before stdin closes
coproc LOOKUP { "$geomx" lookup --db /usr/share/tor/geoip -; }
echo 1.1.1.1 >&"${LOOKUP[1]}"
if read -r -t 10 line <&"${LOOKUP[0]}" && [[ $line == "1.1.1.1 AU "* ]]; then ok; else fail "streaming: got '${line:-nothing}'"; fi
exec {LOOKUP[1]}>&-
wait "$LOOKUP_PID"

# cidr aggregate from stdin and files
printf '10.0.0.0/24\n10.0.1.0/24\n# comment\n\n2001:db8::/33\n2001:db8:8000::/33\n10.0.0.7\n' >"$tmp/list"
expect aggregate-file 0 '^10\.0\.0\.0/23$' '' -- "$geomx" cidr aggregate "$tmp/list"
if [[ $("$geomx" cidr aggregate <"$tmp/list" | tr '\n' ' ') == "10.0.0.0/23 2001:db8::/32 " ]]; then ok; else fail "aggregate stdin"; fi
printf '10.0.0.0/8\n10.0.0.1/8\n' >"$tmp/bad"
expect aggregate-bad 1 '' "^geomx: $tmp/bad:2: 10\.0\.0\.1/8 has host bits set; the network is 10\.0\.0\.0/8\$" -- \
  "$geomx" cidr aggregate "$tmp/bad"

# export formats
expect export-cidr 0 '^[0-9.]+/[0-9]+$' '' -- "$geomx" export --db /usr/share/tor/geoip --countries NZ
expect export-mikrotik 0 '^add list=english-new address=[0-9.]+/[0-9]+$' '' -- \
  "$geomx" export --countries NZ,ie --format mikrotik --name english
expect export-nft 0 '^add element inet geomx nz_v6 \{ [0-9a-f:]+/' '' -- \
  "$geomx" export --countries NZ --format nft --name nz
expect export-ipset 0 '^add nz_v4-new [0-9.]+/[0-9]+$' '' -- "$geomx" export --countries NZ --format ipset --name nz
# The ipset file loads into the kernel (a network namespace of its own) twice
# in a row: the second load leaves the same members, and no -new set behind.
"$geomx" export --countries NZ --format ipset --name nz >"$tmp/nz.ipset"
adds=$(grep -c '^add nz_v4-new ' "$tmp/nz.ipset")
members=$(unshare -n sh -c "ipset -exist restore <'$tmp/nz.ipset' && ipset -exist restore <'$tmp/nz.ipset' &&
  ipset list nz_v4 | sed '1,/^Members:/d' | grep -c . && ipset list -n | tr '\n' ' '" 2>&1 | tr '\n' ' ')
if [[ $members == "$adds nz_v4 nz_v6 " ]]; then ok; else fail "ipset restore twice: want '$adds nz_v4 nz_v6', got '$members'"; fi
expect export-bad-country 1 '' "'NZL' is not a country code" -- "$geomx" export --countries NZL
expect export-bad-format 2 '' 'format' -- "$geomx" export --countries NZ --format csv
# an inverted export is exactly the complement: together they cover
# everything, and no address is in both
"$geomx" export --countries NZ >"$tmp/nz"
"$geomx" export --countries NZ --invert >"$tmp/not-nz"
if [[ $(cat "$tmp/nz" "$tmp/not-nz" | "$geomx" cidr aggregate | tr '\n' ' ') == "0.0.0.0/0 ::/0 " ]]; then ok; else fail "invert does not cover the rest"; fi
# exact sizes (Math::BigInt): NZ and not-NZ together cover the whole space
# (above) and their sizes add up to exactly it, so they cannot overlap
addresses() {  # addresses FAMILY FILE...: the number of addresses the prefixes cover
  FAM=$1 perl -MMath::BigInt -ne 'BEGIN { $s = Math::BigInt->new(0) }
    chomp; my ($a, $l) = split m{/}; my $six = $a =~ /:/ ? 1 : 0;
    $s += Math::BigInt->new(2)->bpow(($six ? 128 : 32) - $l) if $six == ($ENV{FAM} eq "v6");
    END { print $s }' "${@:2}"
}
for fam in v4 v6; do
  sum=$(addresses $fam "$tmp/nz" "$tmp/not-nz")
  want=$([[ $fam == v4 ]] && echo 4294967296 || echo 340282366920938463463374607431768211456)
  if [[ $sum == "$want" && $(addresses $fam "$tmp/nz") != 0 ]]; then ok; else fail "$fam: NZ + not-NZ = $sum addresses, want $want"; fi
done

# bad databases: a clear error, non-zero exit, nothing on stdout
expect_failure_quiet() { expect "$@"; if [[ -s $tmp/out ]]; then fail "$1: output despite a load error"; fi; }
head -c 100000 "$mmdb" >"$tmp/truncated.mmdb"
expect_failure_quiet truncated-mmdb 1 '' "^geomx: $tmp/truncated.mmdb: The MaxMind DB file contains invalid metadata\$" -- \
  "$geomx" lookup --db "$tmp/truncated.mmdb" 1.2.3.4
cp "$data/edge6.mmdb" "$tmp/corrupt.mmdb"
printf '\xff\xff\xff\xff\xff\xff' | dd of="$tmp/corrupt.mmdb" conv=notrunc status=none
expect_failure_quiet corrupt-mmdb 1 '' 'corrupt database: search tree record points outside the file' -- \
  "$geomx" lookup --db "$tmp/corrupt.mmdb" 1.2.3.4
printf '16777216,16777471,AU\n16777472,16777216,CN\n' >"$tmp/inverted"
expect_failure_quiet inverted-range 1 '' "^geomx: $tmp/inverted:2: inverted range: 1\.0\.1\.0 is after 1\.0\.0\.0\$" -- \
  "$geomx" lookup --db "$tmp/inverted" 1.2.3.4
expect_failure_quiet missing-db 1 '' "^geomx: $tmp/nope: No such file or directory\$" -- "$geomx" lookup --db "$tmp/nope" 1.2.3.4
expect_failure_quiet export-bad-db 1 '' "^geomx: $tmp/inverted:2: inverted range" -- \
  "$geomx" export --db "$tmp/inverted" --countries NZ
# a failed write is an error, not a silent truncation
if "$geomx" export --countries US >/dev/full 2>"$tmp/err"; then fail "write to /dev/full succeeded"
elif grep -q "writing the output failed" "$tmp/err"; then ok; else fail "/dev/full: $(cat "$tmp/err")"; fi

finish
