#!/usr/bin/perl
# The DNS reputation benchmark: what three DNSBL sites cost a session. Two
# geomx processes in one run on loopback, the same rules but for the DNS
# matchers: "off" (no [dns]) and "on" (three [dnsbl] sites and a
# dnsbl_score_min rule, answered by a real unbound with a test zone).
# Clients come from distinct 127.x addresses in PROXY v1 headers sent by
# conn_bench (geomx trusts 127.0.0.1 as a PROXY sender), so each new address
# is three real queries and an address seen before is three cache hits.
# Every scenario runs --runs times, off and on interleaved; medians and
# ratios. Writes OUT/dns.json.
#
#   1. sessions/s, warm cache: 50 clients flat out over 4,096 addresses
#      every one of which was asked before the runs.
#   2. banner latency, cold then warm: paced clients from addresses never
#      seen (each run its own /16), then the same addresses again.
#   3. 10,000 concurrent connections from 10,000 new addresses, DNS on:
#      held and failed, RSS per connection (vs off), the peak of
#      geomx_dns_in_flight, queries not started; then the DNS server's
#      query log: one query per (client, site), and none when the same
#      10,000 come back within the TTL.
#
# Usage: dns.pl --build DIR [--out DIR] [--runs N] [--threads N] [--quick]
use strict;
use warnings;
use Getopt::Long;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use FindBin;
use lib "$FindBin::Bin/../tests/integration";
use GeomxTest qw(free_port wait_for slurp spit can_connect spawn start_geomx start_sink start_unbound median);

my %o = ( runs => 5, threads => 1, out => 'bench/results', quick => 0 );
GetOptions( \%o, 'build=s', 'out=s', 'runs=i', 'threads=i', 'quick!' )
    && $o{build} or die "usage: $0 --build DIR [--out DIR] [--runs N] [--threads N] [--quick]\n";
my %n = $o{quick}
    ? ( rate => 500, span => 256, parallel => 50, lat_conc => 50, lat_count => 300, lat_interval => 50, held => 500 )
    : ( rate => 20_000, span => 4096, parallel => 50, lat_conc => 50, lat_count => 5_000, lat_interval => 50, held => 10_000 );
$o{runs} = 1 if $o{quick};
my $nofile = `sh -c 'ulimit -n'` + 0;
# The limit is per process: geomx holds two descriptors per connection
# (client and member), conn_bench and smtp-sink one each.
if ( $nofile && $n{held} * 2 + 400 > $nofile ) {
    my $fit = int( ( $nofile - 400 ) / 2 );
    print STDERR "note: open-file limit $nofile: scenario 3 holds $fit connections, not $n{held}\n";
    $n{held} = $fit;
}
my $geomx = "$o{build}/cli/geomx";
my $conn_bench = "$o{build}/bench/conn_bench";
-x $_ or die "missing $_ (build first)\n" for $geomx, $conn_bench;
system( 'mkdir', '-p', $o{out} ) == 0 or die;
my $dir = tempdir( 'geomx-dnsbench-XXXXXX', TMPDIR => 1, CLEANUP => 1 );
chmod 0755, $dir;
END { my $status = $?; $_->() for reverse @GeomxTest::cleanup; $? = $status; }
$SIG{INT} = $SIG{TERM} = sub { exit 130 };
$SIG{PIPE} = 'IGNORE';

# Runs conn_bench to completion within LIMIT seconds; returns its output.
sub bench {
    my ( $limit, @args ) = @_;
    my $out = "$dir/cmd.out";
    my $pid = fork // die;
    if ( $pid == 0 ) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out;
        open STDERR, '>&', \*STDOUT;
        exec $conn_bench, @args or die "exec: $!";
    }
    my $status = wait_for( "conn_bench @args", $limit, sub { waitpid( $pid, WNOHANG ) == $pid ? [$?] : undef } );
    my $text = slurp($out);
    die "conn_bench @args failed ($status->[0]):\n$text" if $status->[0] != 0;
    return $text;
}
sub field { my ( $text, $name ) = @_; my ($v) = $text =~ /\b$name=([-\d.]+)/ or die "no $name in: $text"; $v + 0 }

# --- the DNS server: one static zone, every name not listed is NXDOMAIN ---

my ( $dns_port, $unbound_log ) = start_unbound( $dir, <<"ZONES" );
  num-threads: 1
  local-zone: "test." static
  local-data: "2.0.1.127.zen.test. 300 IN A 127.0.0.2"
  local-data: "2.0.1.127.spam.test. 300 IN A 127.0.0.2"
  local-data: "2.0.1.127.wl.test. 300 IN A 127.0.10.2"
ZONES
# The queries for client addresses in 127.B.0.0/16.
sub queries { my @q = query_names(@_); return scalar @q }
sub query_names {
    my ($b) = @_;
    return slurp($unbound_log) =~ /info: 127\.0\.0\.1 (\d+\.\d+\.$b\.127\.(?:zen|spam|wl)\.test)\. A IN$/mg;
}
# Until the node has no query on the wire and the server's log has stopped
# growing (it is written as the queries are answered).
sub settle {
    my ( $g, $b ) = @_;
    my $http = HTTP::Tiny->new( timeout => 2 );
    wait_for( 'no DNS query in flight', 60, sub {
        ( $http->get("http://127.0.0.1:$g->{admin}/metrics")->{content} // '' ) =~ /^geomx_dns_in_flight 0$/m } );
    my $last = -1;
    for ( 1 .. 100 ) {
        my $now = queries($b);
        last if $now == $last;
        $last = $now;
        sleep 0.5;
    }
}

my $sink = start_sink( $dir, 'sink' );
my ($sink_port) = $sink =~ /:(\d+)$/;
my $holder = free_port();    # scenario 3's backend holds every connection
spawn( "$dir/holder.log", $conn_bench, 'serve', $holder );
wait_for( 'conn_bench serve', 10, sub { can_connect($holder) } );

my $sites = '"zen.test=127.0.0.[2..11]*3", "spam.test*3", "wl.test=127.0.[0..255].[1..3]*-5"';
my $maxconn = $n{held} + 1000;
sub node {
    my ( $name, $dns, $backend ) = @_;
    my $reputation = !$dns ? '' : <<"TOML";
[dns]
servers = ["127.0.0.1:$dns_port"]
timeout = "2s"
min_ttl = "1h"          # NXDOMAIN answers live min_ttl: the warm runs stay warm
[dnsbl]
sites = [$sites]
[[rule]]
name = "dnswl"
if = { dnsbl_score_max = -5 }
pool = "mx"
[[rule]]
name = "listed"
if = { dnsbl_score_min = 6 }
action = "reject"
TOML
    return start_geomx( $geomx, $dir, $name, <<"TOML" );
[server]
hostname = "bench.test"
threads = $o{threads}
max_connections = $maxconn
max_connections_per_ip = 0
[[listener]]
name = "mx"
address = "127.0.0.1:0"
proxy_protocol = "v1"
trusted_proxies = ["127.0.0.1/32"]
[pool.mx]
members = ["127.0.0.1:$backend"]
balance = "first"
$reputation
[[rule]]
name = "all"
pool = "mx"
TOML
}

sub stop_checked {
    my ($g) = @_;
    $g->{stop}->();
    die "geomx reported an error:\n" . slurp( $g->{log} ) if slurp( $g->{log} ) =~ /Sanitizer|runtime error|session_error/;
}

my %result;    # scenario -> config -> [values of each run]
sub record { my ( $s, $t, $v ) = @_; push @{ $result{$s}{$t} }, $v + 0 }
my @configs = qw(off on);

# --- 1 and 2 ----------------------------------------------------------------

my %g = ( off => node( 'off', 0, $sink_port ), on => node( 'on', 1, $sink_port ) );
my %port = map { $_ => $g{$_}{ports}{mx} } @configs;
# Warm: every address of scenario 1 asked once before the runs (both
# configs see the same warm-up, so the processes are alike).
bench( 300, 'latency', $port{$_}, $n{parallel}, $n{span}, 0, '--proxy', '127.10.0.0', $n{span} ) for @configs;
my $warm_queries = queries(10);
for my $run ( 1 .. $o{runs} ) {
    print STDERR "run $run of $o{runs}\n";
    for my $t (@configs) {
        my $text = bench( 600, 'latency', $port{$t}, $n{parallel}, $n{rate}, 0, '--proxy', '127.10.0.0', $n{span} );
        record( 'sessions', $t, field( $text, 'per_s' ) );
    }
    # Each run's cold addresses are a /16 no one has seen: 127.(20 + run).
    my $cold = '127.' . ( 20 + $run ) . '.0.0';
    for my $pass (qw(cold warm)) {
        for my $t (@configs) {
            my $text = bench( 300, 'latency', $port{$t}, $n{lat_conc}, $n{lat_count}, $n{lat_interval},
                '--proxy', $cold, $n{lat_count} );
            record( "p50_$pass", $t, field( $text, 'p50_us' ) );
            record( "p99_$pass", $t, field( $text, 'p99_us' ) );
        }
    }
}
die "scenario 1 asked the DNS server again within the TTL: $warm_queries, then " . queries(10) . " queries\n"
    if queries(10) != $warm_queries;
die "the warm-up asked $warm_queries queries for $n{span} addresses and 3 sites\n" if $warm_queries != 3 * $n{span};
stop_checked( $g{$_} ) for @configs;

# --- 3. many concurrent clients, DNS on ---------------------------------------

my %held;
for my $t (@configs) {
    my $g = node( "held-$t", $t eq 'on', $holder );
    my $first = $t eq 'on' ? '127.30.0.0' : '127.31.0.0';
    # A sampler of the DNS gauges while the connections open.
    my $samples = "$dir/samples-$t";
    my $sampler = fork // die;
    if ( $sampler == 0 ) {
        my $http = HTTP::Tiny->new( timeout => 2 );
        my ( $peak, $not_started ) = ( 0, 0 );
        my $end = time + 600;
        while ( time < $end ) {
            my $m = $http->get("http://127.0.0.1:$g->{admin}/metrics")->{content} // '';
            $peak = $1 if $m =~ /^geomx_dns_in_flight (\d+)$/m && $1 > $peak;
            $not_started = $1 if $m =~ /^geomx_dns_not_started_total (\d+)$/m;
            spit( $samples, "peak=$peak not_started=$not_started\n" );
            sleep 0.02;
        }
        POSIX::_exit(0);
    }
    my $text = bench( 600, 'idle', $g->{ports}{mx}, $n{held}, $g->{pid}, '--proxy', $first, $n{held} );
    kill 'KILL', $sampler;
    waitpid $sampler, 0;
    $held{$t} = {
        held => field( $text, 'held' ), failed => field( $text, 'failed' ), kb_per_conn => field( $text, 'kb_per_conn' ),
        peak_in_flight => field( slurp($samples), 'peak' ), not_started => field( slurp($samples), 'not_started' ),
    };
    stop_checked($g) if $t eq 'off';
    next if $t eq 'off';
    settle( $g, 30 );
    my %first = map { $_ => 1 } query_names(30);
    $held{on}{queries} = queries(30);
    # The same clients again within the TTL, while the node still holds
    # their first connections (max_connections_per_ip is off): no query.
    my $again = bench( 600, 'latency', $g->{ports}{mx}, $n{parallel}, $n{held}, 0, '--proxy', $first, $n{held} );
    $held{on}{again_sessions} = field( $again, 'sessions' );
    settle( $g, 30 );
    my @all = query_names(30);
    $held{on}{queries_again} = @all - $held{on}{queries};
    # Asked again although asked before (a name asked only now was lost the first time).
    $held{on}{repeated} = grep { $first{$_} } @all[ $held{on}{queries} .. $#all ];
    stop_checked($g);
}

# --- report -------------------------------------------------------------------

my %med;
for my $s ( keys %result ) { $med{$s}{$_} = median( @{ $result{$s}{$_} } ) for keys %{ $result{$s} } }
sub ratio { my ( $a, $b ) = @_; return defined $a && defined $b && $b != 0 ? $a / $b : undef }
my $cpus = `nproc`;
chomp $cpus;
printf "geomx, three DNSBL sites on vs off, %d thread(s), %d CPU(s); medians of %d run(s)%s\n\n",
    $o{threads}, $cpus, $o{runs}, $o{quick} ? ' (QUICK: not a measurement)' : '';
printf "%-48s %10s %10s %10s  %s\n", 'scenario', 'off', 'on', 'on/off', 'target';
my @rows = (
    [ "1. sessions/s, warm cache ($n{span} clients)", 'sessions', '>= 0.9' ],
    [ '2. banner p50 (us), cold cache',              'p50_cold', '' ],
    [ '2. banner p99 (us), cold cache',              'p99_cold', '' ],
    [ '2. banner p50 (us), warm cache',              'p50_warm', '' ],
    [ '2. banner p99 (us), warm cache',              'p99_warm', '' ],
);
for my $r (@rows) {
    my ( $label, $key, $target ) = @$r;
    printf "%-48s %10.1f %10.1f %10.3f  %s\n", $label, $med{$key}{off}, $med{$key}{on}, ratio( $med{$key}{on}, $med{$key}{off} ), $target;
}
for my $pass (qw(cold warm)) {
    printf "%-48s %10s %10.1f\n", "2. added p99 with DNS on (us), $pass", '-', $med{"p99_$pass"}{on} - $med{"p99_$pass"}{off};
}
printf "\n3. %d concurrent connections from %d new addresses\n", $n{held}, $n{held};
printf "   %-44s %10s %10s\n", '', 'off', 'on';
printf "   %-44s %10d %10d\n", $_->[0], $held{off}{ $_->[1] }, $held{on}{ $_->[1] }
    for [ 'held', 'held' ], [ 'failed', 'failed' ], [ 'peak geomx_dns_in_flight', 'peak_in_flight' ],
    [ 'geomx_dns_not_started_total', 'not_started' ];
printf "   %-44s %10.2f %10.2f\n", 'RSS kB per connection', $held{off}{kb_per_conn}, $held{on}{kb_per_conn};
printf "   %-44s %10s %10d  (3 sites x %d clients = %d)\n", 'queries at the DNS server', '-', $held{on}{queries}, $n{held}, 3 * $n{held};
printf "   %-44s %10s %10d  (%d sessions; %d of them asked before)\n", 'queries when the same clients came back', '-',
    $held{on}{queries_again}, $held{on}{again_sessions}, $held{on}{repeated};

my $json = JSON::PP->new->pretty->canonical;
spit( "$o{out}/dns.json", $json->encode( {
    date => scalar gmtime, threads => $o{threads}, cpus => $cpus + 0, runs => $o{runs}, quick => $o{quick} ? \1 : \0,
    counts => \%n, runs_raw => \%result, medians => \%med, held => \%held,
    ratios_on_off => { map { $_->[1] => ratio( $med{ $_->[1] }{on}, $med{ $_->[1] }{off} ) } @rows },
} ) );
print "\nwrote $o{out}/dns.json\n";
