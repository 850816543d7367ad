#!/usr/bin/perl
# geomx ptr-zone: the zones it writes pass bind9's named-checkzone, and,
# served by a real DNS server (unbound, auth-zone from the files), every
# address of the pool passes geomx's own forward-confirmed reverse DNS
# check (geomx explain --dns), while an address outside it does not.
# Usage: ptr_zone_test.pl GEOMX
use strict;
use warnings;
use Test::More;
use Cwd ();
use File::Temp qw(tempdir);
use FindBin;
use lib $FindBin::Bin;
use GeomxTest qw(start_unbound slurp);

my ($geomx) = @ARGV;
die "usage: $0 GEOMX\n" unless $geomx;
my $dir = tempdir( 'geomx-ptr-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{GEOMX_TEST_KEEP} );
END { my $status = $?; $_->() for reverse @GeomxTest::cleanup; $? = $status; }

sub run { my $out = qx{@_ 2>&1}; return ( $? >> 8, $out ) }

# --- errors first: each named, rc 1 (usage errors 2) -------------------------
my @cases = (
    [ '2001:db8:5::/120 --name "nat-{a}.pool.test" --ns ns1.pool.test', 1, qr/\{a\} is an IPv4 octet; name IPv6 addresses with \{ip\}/ ],
    [ '127.3.0.0/24 --name "nat-{c}.pool.test" --ns ns1.pool.test', 1, qr/gives 'nat-0\.pool\.test' to both 127\.3\.0\.0 and 127\.3\.0\.1/ ],
    [ '127.3.0.0/24 --name "nat_{d}.pool.test" --ns ns1.pool.test', 1, qr/gives 'nat_0\.pool\.test' for 127\.3\.0\.0: not a host name/ ],
    [ '127.3.0.0/24 --name "nat-{e}.pool.test" --ns ns1.pool.test', 1, qr/unknown field \{e\}/ ],
    [ '127.0.0.0/8 --name "nat-{ip}.pool.test" --ns ns1.pool.test', 1, qr/more than 1048576 addresses/ ],
    [ '127.3.0.1/24 --name "nat-{ip}.pool.test" --ns ns1.pool.test', 1, qr/host bits set/ ],
    [ '127.3.0.0/24 --name "nat-{ip}.pool.test"', 2, qr/--ns is required/ ],
    [ '127.3.0.0/24 --name "nat-{ip}.pool.test" --ns ns1.pool.test --forward', 1, qr/name server ns1\.pool\.test is inside the zone pool\.test/ ],
);
for my $c (@cases) {
    my ( $rc, $out ) = run("$geomx ptr-zone --out $dir $c->[0]");
    is( $rc, $c->[1], "rc $c->[1]: $c->[0]" );
    like( $out, $c->[2], '... and says why' );
}
is( scalar( () = glob("$dir/*.zone") ), 0, 'no zone file written by a failed run' );

# --- the pool: two /24s of IPv4, a /28, and an IPv6 /120 ---------------------
my @nets = qw(127.3.0.0/23 127.4.1.16/28 2001:db8:5::/120);
my ( $rc, $out ) = run( "$geomx ptr-zone @nets --name 'nat-{ip}.pool.test' --ns ns1.example.net"
      . " --ns ns2.example.net --forward --serial 2026120301 --out $dir" );
is( $rc, 0, 'ptr-zone --forward: rc 0' ) or diag $out;
my $v6zone = join( '.', reverse split //, substr( '20010db8000500000000000000000000', 0, 30 ) ) . '.ip6.arpa';
my %want = (
    '0.3.127.in-addr.arpa' => 256,
    '1.3.127.in-addr.arpa' => 256,
    '1.4.127.in-addr.arpa' => 16,
    $v6zone                => 256,
    'pool.test'            => 784,
);
for my $zone ( sort keys %want ) {
    like( $out, qr/^\Q$dir\E\/\Q$zone\E\.zone \Q$zone\E $want{$zone} records$/m, "$zone: $want{$zone} records" );
    my ( $crc, $check ) = run("named-checkzone -i local '$zone' '$dir/$zone.zone'");
    is( $crc, 0, "named-checkzone $zone: rc 0" ) or diag $check;
    like( $check, qr/loaded serial 2026120301\nOK/, "named-checkzone $zone: loaded serial 2026120301, OK" );
}
my $rev = slurp("$dir/1.4.127.in-addr.arpa.zone");
like( $rev, qr/^\@ IN NS ns1\.example\.net\.\n\@ IN NS ns2\.example\.net\.$/m, 'both name servers' );
like( $rev, qr/^20 IN PTR nat-127-4-1-20\.pool\.test\.$/m, 'one PTR per address' );
like( slurp("$dir/pool.test.zone"), qr/^nat-2001-db8-5-0-0-0-0-2a IN AAAA 2001:db8:5::2a$/m, 'AAAA for the IPv6 names' );

# The IPv4 template of the seed, and a dated serial by default.
( $rc, $out ) = run("$geomx ptr-zone 127.9.0.0/30 --name 'nat-{a}-{b}-{c}-{d}.example.net' --ns ns1.example.net --out $dir");
is( $rc, 0, 'the seed template: rc 0' );
my @t = gmtime;
my $serial = sprintf( '%04d%02d%02d01', $t[5] + 1900, $t[4] + 1, $t[3] );
like( slurp("$dir/0.9.127.in-addr.arpa.zone"), qr/SOA ns1\.example\.net\. hostmaster\.0\.9\.127\.in-addr\.arpa\. \( $serial /,
    "SOA serial $serial (today, UTC)" );
like( slurp("$dir/0.9.127.in-addr.arpa.zone"), qr/^3 IN PTR nat-127-9-0-3\.example\.net\.$/m, 'nat-127-9-0-3.example.net' );

# --- served by unbound, checked by geomx's own FCrDNS -------------------------
my $zones = join '', map { <<"Z" } sort keys %want;
auth-zone:
  name: "$_."
  zonefile: "$dir/$_.zone"
  for-downstream: yes
  for-upstream: no
Z
my ($port) = start_unbound( $dir, <<"CONF" . $zones );
  local-zone: "test." nodefault
  local-zone: "127.in-addr.arpa." nodefault
  local-zone: "8.b.d.0.1.0.0.2.ip6.arpa." nodefault
CONF
open my $fh, '>', "$dir/ranges" or die;
print $fh "127.3.0.0,127.4.255.255,DE\n";
close $fh;
open $fh, '>', "$dir/geomx.toml" or die;
print $fh <<"TOML";
[geo]
databases = ["$dir/ranges"]
[dns]
servers = ["127.0.0.1:$port"]
timeout = "5s"
[[listener]]
name = "mx"
address = "127.0.0.1:0"
[pool.primary]
members = ["127.0.0.1:2501"]
[[rule]]
name = "confirmed"
if = { fcrdns = true }
pool = "primary"
[[rule]]
name = "rest"
action = "drop"
TOML
close $fh;
my @pool;
for my $n ( 0 .. 511 ) { push @pool, sprintf( '127.3.%d.%d', $n >> 8, $n & 255 ) }
push @pool, map {"127.4.1.$_"} 16 .. 31;
push @pool, map { sprintf '2001:db8:5::%x', $_ } 0 .. 255;
( $rc, $out ) = run("$geomx explain -c $dir/geomx.toml --dns @pool 127.4.1.99 2001:db8:5::100");
is( $rc, 0, 'explain --dns over the pool: rc 0' ) or diag substr( $out, 0, 2000 );
my $confirmed = () = $out =~ /^\S+ country=\S+ lists=- rule=confirmed why="reverse DNS confirmed"/mg;
is( $confirmed, 784, 'FCrDNS true for all 784 pool addresses' );
like( $out, qr/^127\.3\.1\.7 .* ptr=nat-127-3-1-7\.pool\.test/m, 'the PTR name is the template\'s' );
like( $out, qr/^127\.4\.1\.99 .*rule=rest/m, 'an address outside the pool: not confirmed' );
like( $out, qr/^2001:db8:5::100 .*rule=rest/m, 'nor outside the IPv6 /120' );
done_testing();
