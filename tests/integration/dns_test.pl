#!/usr/bin/perl
# DNS reputation against a real DNS server: unbound on a loopback port with
# test zones (a DNSBL listing 127.x clients, one answering 127.255.255.254,
# a DNSWL, PTR records with matching and mismatching forward records, and a
# zone forwarded to a port that never answers). Two geomx nodes share their
# DNS cache through a real redis-server. Clients are PROXY v1 headers from
# a trusted local sender; the test database maps 127.1/16 to GB and 127.2/16
# to CN. Every wait has a deadline. Usage: dns_test.pl GEOMX TESTDATA_DIR
use strict;
use warnings;
use Test::More;
use IO::Select;
use IO::Socket::IP;
use Cwd ();
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use FindBin;
use lib $FindBin::Bin;
use GeomxTest qw(free_port wait_for slurp log_like start_geomx start_sink start_redis start_unbound spawn first_line);
use HTTP::Tiny;

my ( $geomx, $testdata ) = @ARGV;
die "usage: $0 GEOMX TESTDATA\n" unless $testdata;
$testdata = Cwd::abs_path($testdata);
my $dir = tempdir( 'geomx-dns-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{GEOMX_TEST_KEEP} );
chmod 0755, $dir;
END { my $status = $?; $_->() for reverse @GeomxTest::cleanup; $? = $status; }
$SIG{PIPE} = 'IGNORE';

# A port that takes queries and never answers them (no ICMP either).
my $silent = IO::Socket::IP->new( Proto => 'udp', LocalHost => '127.0.0.1', LocalPort => 0 ) or die "udp: $@";
my $silent_port = $silent->sockport;

my ( $dns_port, $unbound_log, $unbound_pid ) = start_unbound( $dir, <<"ZONES" );
  # unbound answers the special-use "test." itself (RFC 6761): not slow.test.
  local-zone: "test." nodefault
  local-zone: "zen.test." static
  local-data: "2.0.1.127.zen.test. 300 IN A 127.0.0.2"
  local-data: "3.0.1.127.zen.test. 300 IN A 127.0.0.4"
  local-data: "8.0.1.127.zen.test. 300 IN A 127.0.0.12"
  local-zone: "spam.test." static
  local-data: "2.0.1.127.spam.test. 300 IN A 127.0.0.2"
  local-data: "7.0.1.127.spam.test. 300 IN A 127.255.255.254"
  local-zone: "wl.test." static
  local-data: "5.0.2.127.wl.test. 300 IN A 127.0.10.2"
  local-zone: "127.in-addr.arpa." static
  local-data-ptr: "127.2.0.9 mail.good.test"
  local-data-ptr: "127.2.0.10 liar.test"
  local-zone: "good.test." static
  local-data: "mail.good.test. 300 IN A 127.2.0.9"
  local-zone: "liar.test." static
  local-data: "liar.test. 300 IN A 127.2.0.99"
forward-zone:
  name: "slow.test."
  forward-addr: 127.0.0.1\@$silent_port
ZONES

my ( $redis_port ) = start_redis( $dir, 'redis' );
my $main = start_sink( $dir, 'main' );
my $quar = start_sink( $dir, 'quar' );

sub node {
    my ( $name, $sites ) = @_;
    my $state = "$dir/state-$name";
    mkdir $state;
    chmod 0777, $state;
    return start_geomx( $geomx, $dir, $name, <<"TOML" );
[server]
hostname = "$name.test"
threads = 2
state_dir = "$state"
max_connections = 5000
[geo]
databases = ["$testdata/edge6.mmdb"]
[[listener]]
name = "mx"
address = "127.0.0.1:0"
proxy_protocol = "v1"
trusted_proxies = ["127.0.0.1/32"]
[dns]
servers = ["127.0.0.1:$dns_port"]
timeout = "1s"
[dnsbl]
sites = [$sites]
[lists.english]
countries = ["GB"]
[pool.main]
members = ["$main"]
[pool.quar]
members = ["$quar"]
[pool.greet]
members = ["$quar"]
greet_delay = "1500ms"
pregreet = "reject"
pregreet_ttl = "1h"
[[rule]]
name = "greeted"
if = { cidr = ["127.1.98.0/24"] }
pool = "greet"
[[rule]]
name = "early"
if = { cidr = ["127.1.99.0/24"] }
pool = "quar"
[[rule]]
name = "dnswl"
if = { dnsbl_score_max = -5 }
pool = "main"
[[rule]]
name = "listed"
if = { dnsbl_score_min = 6 }
action = "reject"
[[rule]]
name = "suspect"
if = { dnsbl_score_min = 3 }
pool = "quar"
[[rule]]
name = "ptr-cn"
if = { country = "CN", fcrdns = true }
pool = "main"
[[rule]]
name = "english"
if = { list = "english" }
pool = "main"
[[rule]]
name = "rest"
pool = "quar"
[store]
redis = "127.0.0.1:$redis_port"
node = "$name"
TOML
}

my $sites = '"zen.test=127.0.0.[2..11]*3", "spam.test*3", "wl.test=127.0.[0..255].[1..3]*-5"';
my $a = node( 'a', $sites );
my $port = $a->{ports}{mx};
my $http = HTTP::Tiny->new( timeout => 5 );
sub metrics { $http->get("http://127.0.0.1:$_[0]{admin}/metrics")->{content} // '' }
sub queries { my ($name) = @_; my @q = slurp($unbound_log) =~ /info: 127\.0\.0\.1 \Q$name\E\. A IN$/mg; scalar @q }

# 1. Scores, filters, weights, the DNSWL and the refusal.
my %want = (
    '127.1.0.2'  => [ qr/^554 /,     'zen and spam list it: 3 + 3 >= 6, rejected' ],
    '127.1.0.3'  => [ qr/^220 quar /, 'zen lists it: 3, to the quarantine' ],
    '127.1.0.4'  => [ qr/^220 main /, 'listed nowhere, GB: the primaries' ],
    '127.2.0.5'  => [ qr/^220 main /, 'on the DNSWL (-5): the primaries whatever its country (CN)' ],
    '127.2.0.6'  => [ qr/^220 quar /, 'CN, unlisted, no PTR: the quarantine' ],
    '127.1.0.7'  => [ qr/^220 main /, 'a 127.255.255.254 answer is not a listing' ],
    '127.1.0.8'  => [ qr/^220 main /, 'a reply outside the filter (127.0.0.12) is not a listing' ],
    '127.2.0.9'  => [ qr/^220 main /, 'CN with forward-confirmed reverse DNS: the primaries' ],
    '127.2.0.10' => [ qr/^220 quar /, 'CN whose PTR name resolves elsewhere: not confirmed' ],
);
for my $client ( sort keys %want ) {
    like( first_line( $port, $client ), $want{$client}[0], "$client: $want{$client}[1]" );
}
log_like( $a->{log}, qr/client=127\.1\.0\.2:\d+ .*rule=listed action=reject dnsbl=6 sites=zen\.test,spam\.test /,
    'the log line has the score and the sites that list it' );
log_like( $a->{log}, qr/client=127\.2\.0\.5:\d+ .*rule=dnswl action=route dnsbl=-5 sites=wl\.test /, 'a DNSWL listing scores its negative weight' );
log_like( $a->{log}, qr/client=127\.2\.0\.9:\d+ .*rule=ptr-cn .*ptr=mail\.good\.test /, 'the confirmed PTR name is in the log line (ptr=)' );
log_like( $a->{log}, qr/client=127\.2\.0\.10:\d+ .*rule=rest .*ptr=unknown /, 'a mismatching forward record: ptr=unknown' );
log_like( $a->{log}, qr/event=dnsbl_refused site=spam\.test reply=127\.255\.255\.254 error="the list refuses this resolver/,
    'the refusal is logged' );
log_like( $a->{log}, qr/client=127\.1\.0\.7:\d+ .*rule=english action=route dnsbl=0 dnsbl_error=spam\.test /,
    'and the session says which site did not answer usefully' );
my $m = metrics($a);
like( $m, qr/^geomx_dns_answers_total\{check="dnsbl",site="spam\.test\*3",result="refused"\} 1$/m, 'the refusal is counted per site' );
like( $m, qr/^geomx_dns_answers_total\{check="dnsbl",site="zen\.test=127\.0\.0\.\[2\.\.11\]\*3",result="listed"\} 2$/m,
    'listings are counted per site' );
like( $m, qr/^geomx_dns_answers_total\{check="fcrdns",site="",result="confirmed"\} 1$/m, 'and PTR checks by result' );

# 2. A rule before the first DNS matcher never waits: unbound stopped, the
#    "early" client still has its banner at once.
kill 'STOP', $unbound_pid;
my $t0 = time;
like( first_line( $port, '127.1.99.1' ), qr/^220 quar /, 'a rule before the DNS matchers decides' );
cmp_ok( time - $t0, '<', 0.5, '... without waiting for the DNS' );

# 3. A stalled DNS server: 1,000 sessions from distinct addresses, 250 at a
#    time; each waits no longer than dns.timeout (1 s), then goes on as
#    unlisted (GB: the primaries). None hangs, none is lost.
my ( $served, $slowest, $fastest ) = ( 0, 0, 99 );
for my $batch ( 0 .. 3 ) {
    my ( %start, %sock );
    my $sel = IO::Select->new;
    for my $i ( 0 .. 249 ) {
        my $client = sprintf '127.1.%d.%d', 10 + $batch, $i + 1;
        my $s = IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $port, Timeout => 5 ) or next;
        print $s "PROXY TCP4 $client 127.0.0.1 40000 25\r\n";
        $start{$s} = time;
        $sock{$s} = $s;
        $sel->add($s);
    }
    my $end = time + 10;
    while ( $sel->count && time < $end ) {
        for my $s ( $sel->can_read(0.2) ) {
            my $line = <$s>;
            if ( defined $line && $line =~ /^220 main / ) {
                ++$served;
                my $took = time - $start{$s};
                $slowest = $took if $took > $slowest;
                $fastest = $took if $took < $fastest;
            }
            $sel->remove($s);
            close $s;
        }
    }
    close $_ for $sel->handles;
}
kill 'CONT', $unbound_pid;
is( $served, 1000, 'a stalled DNS server: all 1,000 sessions served as unlisted' );
cmp_ok( $fastest, '>=', 0.9, "each waited for the DNS until dns.timeout (fastest ${fastest}s)" );
cmp_ok( $slowest, '<', 3, "and no longer (slowest ${slowest}s, dns.timeout 1 s)" );
note( sprintf 'stall: 1000 sessions, banner after %.3f-%.3f s', $fastest, $slowest );
log_like( $a->{log}, qr/client=127\.1\.10\.1:\d+ .*dnsbl=0 dnsbl_timeout=zen\.test,spam\.test,wl\.test /,
    'the log says which sites were given up on' );
wait_for( 'the stalled queries to end', 10, sub { metrics($a) =~ /^geomx_dns_in_flight 0$/m } );
pass('no query is left in flight');

# 4. The cache: the same client again is answered without a query, on this
#    node and on another node of the fleet (Redis); a site that never
#    answers counts 0 and the log says so.
my $before = queries('4.0.1.127.zen.test');
is( $before, 1, 'the first session of 127.1.0.4 asked zen.test once' );
like( first_line( $port, '127.1.0.4' ), qr/^220 main /, 'the same client again' );
my $b = node( 'b', qq($sites, "slow.test*1") );
wait_for( 'the answers in Redis', 10, sub {
    `redis-cli -p $redis_port exists 'geomx:cache:dns:a:4.0.1.127.zen.test'` =~ /^1/ } );
$t0 = time;
like( first_line( $b->{ports}{mx}, '127.1.0.4' ), qr/^220 main /, 'on the other node too' );
my $took = time - $t0;
is( queries('4.0.1.127.zen.test'), 1, 'one query per (client, site) across the fleet (the DNS server\'s query log)' );
is( queries('4.0.1.127.spam.test'), 1, '... for every site' );
cmp_ok( $took, '>=', 0.9, 'a site that never answers waits until dns.timeout' );
log_like( $b->{log}, qr/client=127\.1\.0\.4:\d+ .*dnsbl=0 dnsbl_timeout=slow\.test /, 'the log says which site did not answer' );
like( metrics($b), qr/^geomx_dns_cache_total\{result="hit"\} [1-9]/m, 'cache hits are counted' );

# 5. The greeting-pass cache: a client that waited out the greet delay is
#    not delayed again within greet_ttl, on this node or the other; one that
#    talked first is refused at once on both for pregreet_ttl.
sub timed_first_line {
    my ( $p, $client, $talk ) = @_;
    my $t = time;
    my $s = IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $p, Timeout => 5 ) or return ( "connect: $!", 0 );
    print $s "PROXY TCP4 $client 127.0.0.1 40000 25\r\n";
    print $s "EHLO early.test\r\n" if $talk;
    my $line = GeomxTest::read_line( $s, 10 ) // '';
    close $s;
    return ( $line, time - $t );
}
my ( $line, $wait ) = timed_first_line( $port, '127.1.98.1' );
like( $line, qr/^220 quar /, 'a delayed greeting' );
cmp_ok( $wait, '>=', 1.4, sprintf( 'the first time after the greet delay (%.2f s)', $wait ) );
( $line, $wait ) = timed_first_line( $port, '127.1.98.1' );
like( $line, qr/^220 quar /, 'again' );
cmp_ok( $wait, '<', 0.5, sprintf( 'the second time at once (%.3f s)', $wait ) );
log_like( $a->{log}, qr/client=127\.1\.98\.1:\d+ .*greet=cached /, 'the log says the cache passed it' );
( $line, $wait ) = timed_first_line( $b->{ports}{mx}, '127.1.98.1' );
like( $line, qr/^220 quar /, 'on the other node' );
cmp_ok( $wait, '<', 0.5, sprintf( 'the pass on one node holds on the other (%.3f s)', $wait ) );
( $line, $wait ) = timed_first_line( $port, '127.1.98.2', 1 );
like( $line, qr/^554 5\.5\.1 /, 'a pregreet is refused' );
wait_for( 'the pregreet in Redis', 10, sub {
    `redis-cli -p $redis_port get 'geomx:cache:greet:greet:127.1.98.2'` =~ /pregreet/ } );
( $line, $wait ) = timed_first_line( $b->{ports}{mx}, '127.1.98.2' );
like( $line, qr/^554 5\.5\.1 /, 'and remembered: refused on the other node without talking' );
cmp_ok( $wait, '<', 0.5, sprintf( '... at once (%.3f s)', $wait ) );
like( metrics($b), qr/^geomx_greet_cache_total\{result="pass"\} 1$/m, 'cache passes are counted' );

done_testing();
