#!/usr/bin/perl
# The proxy benchmark: geomx against haproxy (mode tcp, same thread count)
# and a direct connection, in one run on loopback. Starts its own smtp-sink,
# haproxy, geomx and a throwaway Postfix; every scenario runs --runs times,
# interleaved (direct, haproxy, geomx) so that machine noise hits all alike,
# and reports medians and ratios. Writes OUT/proxy.json and OUT/proxy.png.
#
# Usage: proxy.pl --build DIR [--out DIR] [--runs N] [--threads N] [--quick]
#   DIR holds cli/geomx, bench/conn_bench and bench/geo_lookup_bench.
#   --quick: small counts, one run (a smoke test, not a measurement).
use strict;
use warnings;
use Getopt::Long;
use IO::Socket::IP;
use File::Temp qw(tempdir);
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use FindBin;
use lib "$FindBin::Bin/../tests/integration";
use GeomxTest qw(free_port wait_for slurp spit can_connect spawn start_postfix timed median);

my %o = ( runs => 5, threads => 1, out => 'bench/results', quick => 0 );
GetOptions( \%o, 'build=s', 'out=s', 'runs=i', 'threads=i', 'quick!', 'mmdb=s' )
    && $o{build} or die "usage: $0 --build DIR [--out DIR] [--runs N] [--threads N] [--quick]\n";
my %n = $o{quick}
    ? ( sessions => 300, parallel => 50, big_msgs => 4, big_len => 4_000_000, big_parallel => 4,
        idle => 300, lat_conc => 50, lat_count => 300, lat_interval => 50, pf_sessions => 100 )
    : ( sessions => 20_000, parallel => 50, big_msgs => 100, big_len => 4_000_000, big_parallel => 4,
        idle => 10_000, lat_conc => 50, lat_count => 5_000, lat_interval => 50, pf_sessions => 2_000 );
$o{runs} = 1 if $o{quick};
# A proxy holds two descriptors per idle connection.
my $nofile = `sh -c 'ulimit -n'` + 0;
if ( $nofile && $n{idle} * 2 + 100 > $nofile ) {
    my $fit = int( ( $nofile - 100 ) / 2 );
    print STDERR "note: open-file limit $nofile: idle scenario holds $fit connections, not $n{idle}\n";
    $n{idle} = $fit;
}
my $maxconn = $nofile ? int( ( $nofile - 50 ) / 2 ) : 40_000;
my $geomx = "$o{build}/cli/geomx";
my $conn_bench = "$o{build}/bench/conn_bench";
-x $_ or die "missing $_ (build first)\n" for $geomx, $conn_bench;
system( 'mkdir', '-p', $o{out} ) == 0 or die;
my $dir = tempdir( 'geomx-bench-XXXXXX', TMPDIR => 1, CLEANUP => 1 );
chmod 0755, $dir;
END { my $status = $?; $_->() for reverse @GeomxTest::cleanup; $? = $status; }
$SIG{INT} = $SIG{TERM} = sub { exit 130 };
$SIG{PIPE} = 'IGNORE';

# --- the backends and the two proxies -------------------------------------

sub start_sink {
    my $port = free_port();
    my ( $pid, $stop ) = spawn( "$dir/sink.log", 'smtp-sink', '-u', 'nobody', "127.0.0.1:$port", '4096' );
    wait_for( 'smtp-sink', 10, sub { can_connect($port) } );
    return $port;
}

# haproxy in mode tcp, logging one line per connection like geomx does.
sub start_haproxy {
    my ( $backend, $proxy_v2 ) = @_;
    my $port = free_port();
    my $send = $proxy_v2 ? ' send-proxy-v2' : '';
    spit( "$dir/haproxy.cfg", <<"CFG" );
global
  nbthread $o{threads}
  maxconn $maxconn
  log stderr format raw local0 info
defaults
  mode tcp
  log global
  option tcplog
  timeout connect 5s
  timeout client 300s
  timeout server 300s
frontend mx
  bind 127.0.0.1:$port
  default_backend pool
backend pool
  server s1 127.0.0.1:$backend$send
CFG
    my ( $pid, $stop ) = spawn( "$dir/haproxy.log", 'haproxy', '-db', '-f', "$dir/haproxy.cfg" );
    wait_for( 'haproxy', 10, sub { can_connect($port) } );
    return { port => $port, pid => $pid, stop => $stop };
}

sub start_geomx {
    my ( $backend, $proxy_v2 ) = @_;
    my $log = "$dir/geomx.log";
    unlink $log;
    my $proxy = $proxy_v2 ? qq(proxy_protocol = "v2"\n) : '';
    my $user = $> == 0 ? qq(user = "nobody"\n) : '';    # geomx will not serve as root
    spit( "$dir/geomx.toml", <<"TOML" );
[server]
hostname = "bench.test"
threads = $o{threads}
$user
max_connections = $maxconn
max_connections_per_ip = 0      # every client is 127.0.0.1 here
[[listener]]
name = "mx"
address = "127.0.0.1:0"
[pool.mx]
members = ["127.0.0.1:$backend"]
balance = "first"
$proxy
[[rule]]
name = "all"
pool = "mx"
[admin]
listen = "127.0.0.1:0"
token_file = "$dir/admin.token"
TOML
    my ( $pid, $stop ) = spawn( $log, $geomx, 'run', '-c', "$dir/geomx.toml" );
    my $port = wait_for( 'geomx', 30, sub {
        die "geomx exited: " . slurp($log) if waitpid( $pid, WNOHANG ) == $pid;
        return slurp($log) =~ /event=ready/ && ( slurp($log) =~ /event=listening .*address=127\.0\.0\.1:(\d+)/ )[0];
    } );
    # Stopping checks the log: a sanitizer report fails the run.
    my $checked_stop = sub {
        $stop->();
        die "geomx reported an error:\n" . slurp($log) if slurp($log) =~ /Sanitizer|runtime error|session_error/;
    };
    return { port => $port, pid => $pid, stop => $checked_stop };
}

# --- scenarios --------------------------------------------------------------

my %result;    # scenario -> target -> [values of each run]
my @targets = qw(direct haproxy geomx);
sub record { my ( $s, $t, $v ) = @_; push @{ $result{$s}{$t} }, $v + 0 }    # numbers in the JSON

sub smtp_source {
    my ( $port, $sessions, $parallel, $len, $limit ) = @_;
    my @len = $len ? ( '-l', $len ) : ();
    my ( $s, $text ) = timed( $limit, 'smtp-source', '-4', '-s', $parallel, '-m', $sessions, @len,
        '-f', 'bench@example.org', '-t', 'sink@example.test', '-M', 'client.test', "127.0.0.1:$port" );
    die "smtp-source reported errors:\n$text" if $text =~ /\S/;
    return $s;
}

my $sink = start_sink();
my $holder = free_port();    # the idle scenario's backend
spawn( "$dir/holder.log", $conn_bench, 'serve', $holder );
wait_for( 'conn_bench serve', 10, sub { can_connect($holder) } );
my %front;
for my $run ( 1 .. $o{runs} ) {
    print STDERR "run $run of $o{runs}\n";
    my %port = ( direct => $sink );
    my $h = start_haproxy($sink);
    my $g = start_geomx($sink);
    $port{haproxy} = $h->{port};
    $port{geomx} = $g->{port};

    # 1. connection rate
    for my $t (@targets) {
        my $s = smtp_source( $port{$t}, $n{sessions}, $n{parallel}, 0, 600 );
        record( 'sessions', $t, $n{sessions} / $s );
    }
    # 2. throughput
    for my $t (@targets) {
        my $s = smtp_source( $port{$t}, $n{big_msgs}, $n{big_parallel}, $n{big_len}, 600 );
        record( 'throughput', $t, $n{big_msgs} * $n{big_len} / 1e6 / $s );
    }
    # 4. latency to the banner
    for my $t (@targets) {
        my ( undef, $text ) = timed( 300, $conn_bench, 'latency', $port{$t}, $n{lat_conc}, $n{lat_count}, $n{lat_interval} );
        my ($p50) = $text =~ /p50_us=([\d.]+)/;
        my ($p99) = $text =~ /p99_us=([\d.]+)/;
        record( 'latency_p50', $t, $p50 );
        record( 'latency_p99', $t, $p99 );
    }
    $h->{stop}->();
    $g->{stop}->();

    # 3. idle capacity: a fresh process each, RSS before and with all held
    for my $t (qw(haproxy geomx)) {
        my $p = $t eq 'haproxy' ? start_haproxy($holder) : start_geomx($holder);
        my ( undef, $text ) = timed( 300, $conn_bench, 'idle', $p->{port}, $n{idle}, $p->{pid} );
        my ($kb) = $text =~ /kb_per_conn=([-\d.]+)/ or die "conn_bench: $text";
        record( 'idle_kb', $t, $kb );
        $p->{stop}->();
    }
}

# 6. PROXY v2 to a real Postfix smtpd
my $pf = start_postfix( $dir, 'bench', free_port() );
for my $run ( 1 .. $o{runs} ) {
    for my $t (qw(haproxy geomx)) {
        my $p = $t eq 'haproxy' ? start_haproxy( $pf->{port}, 1 ) : start_geomx( $pf->{port}, 1 );
        my $s = smtp_source( $p->{port}, $n{pf_sessions}, $n{parallel}, 0, 900 );
        record( 'postfix_sessions', $t, $n{pf_sessions} / $s );
        $p->{stop}->();
    }
}
my $pf_warnings = () = slurp( $pf->{log} ) =~ /warning: .*(?:proxy|PROXY|haproxy)/g;
die "Postfix logged PROXY warnings:\n" . slurp( $pf->{log} ) if $pf_warnings;

# 5. geo lookups (the geo benchmark, same run)
my %geo;
if ( !$o{quick} && $o{mmdb} ) {
    my ( undef, $text ) = timed( 600, "$o{build}/bench/geo_lookup_bench", '/usr/share/tor/geoip',
        '/usr/share/tor/geoip6', $o{mmdb}, $o{runs} );
    while ( $text =~ /^  (\S.*?)\s{2,}([\d.]+)\s+([\d.]+)\s+([\d.]+)\s/mg ) {
        $geo{$1} = { geomx_ns => $2 + 0, libmaxminddb_ns => $3 + 0, ratio => $4 + 0 };
    }
}

# --- report -------------------------------------------------------------------

my %med;
for my $s ( keys %result ) { $med{$s}{$_} = median( @{ $result{$s}{$_} } ) for keys %{ $result{$s} } }
sub ratio { my ( $a, $b ) = @_; return defined $a && defined $b && $b != 0 ? $a / $b : undef }
my %added = map { my $m = $_; ( $m => { map { $_ => $med{$m}{$_} - $med{$m}{direct} } qw(haproxy geomx) } ) }
    qw(latency_p50 latency_p99);

my @rows = (
    [ '1. sessions/s (smtp-source, 50 parallel)', 'sessions', 'higher', '>= 1.0' ],
    [ '2. MB/s (4 MB messages, 4 parallel)',      'throughput', 'higher', '>= 1.0' ],
    [ '3. RSS kB per idle connection',            'idle_kb', 'lower', '<= 0.5' ],
    [ '4. banner latency p50 (us)',               'latency_p50', 'lower', '' ],
    [ '4. banner latency p99 (us)',               'latency_p99', 'lower', '' ],
    [ '6. sessions/s, PROXY v2 to Postfix',       'postfix_sessions', 'higher', '>= 1.0' ],
);
my $cpus = `nproc`;
chomp $cpus;
printf "geomx vs haproxy %s (mode tcp), %d thread(s) each, %d CPU(s); medians of %d run(s)%s\n\n",
    ( `haproxy -v` =~ /version (\S+)/ )[0] // '?', $o{threads}, $cpus, $o{runs}, $o{quick} ? ' (QUICK: not a measurement)' : '';
printf "%-42s %10s %10s %10s %12s %12s  %s\n", 'scenario', 'direct', 'haproxy', 'geomx', 'geomx/hap', 'geomx/direct', 'target';
for my $r (@rows) {
    my ( $label, $key, undef, $target ) = @$r;
    my $m = $med{$key};
    printf "%-42s %10s %10.1f %10.1f %12.3f %12s  %s\n", $label,
        defined $m->{direct} ? sprintf( '%.1f', $m->{direct} ) : '-', $m->{haproxy}, $m->{geomx},
        ratio( $m->{geomx}, $m->{haproxy} ),
        defined $m->{direct} ? sprintf( '%.3f', ratio( $m->{geomx}, $m->{direct} ) ) : '-', $target;
}
printf "%-42s %10s %10.1f %10.1f %12s %12s  %s\n", '4. added latency p50 (us, minus direct)', '-',
    $added{latency_p50}{haproxy}, $added{latency_p50}{geomx}, '-', '-', '';
printf "%-42s %10s %10.1f %10.1f %12s %12s  %s\n", '4. added latency p99 (us, minus direct)', '-',
    $added{latency_p99}{haproxy}, $added{latency_p99}{geomx}, '-', '-', "<= 1000 and <= haproxy";
if (%geo) {
    print "\n5. geo lookups, ns (geomx table vs libmaxminddb)\n";
    printf "   %-32s %8.1f %8.1f %8.3f\n", $_, @{ $geo{$_} }{qw(geomx_ns libmaxminddb_ns ratio)} for sort keys %geo;
}

my $json = JSON::PP->new->pretty->canonical;
spit( "$o{out}/proxy.json", $json->encode( {
    date => scalar gmtime, threads => $o{threads}, cpus => $cpus + 0, runs => $o{runs}, quick => $o{quick} ? \1 : \0,
    counts => \%n, runs_raw => \%result, medians => \%med, added_latency_us => \%added, geo => \%geo,
    ratios_geomx_haproxy => { map { $_->[1] => ratio( $med{ $_->[1] }{geomx}, $med{ $_->[1] }{haproxy} ) } @rows },
} ) );

# The plot: one panel per scenario, bars for direct / haproxy / geomx.
my @panels = (
    [ 'sessions/s', 'sessions' ], [ 'MB/s', 'throughput' ], [ 'kB per idle conn', 'idle_kb' ],
    [ 'p99 to banner (us)', 'latency_p99' ], [ 'sessions/s via Postfix, PROXY v2', 'postfix_sessions' ],
);
my $plot = "set terminal pngcairo size 1500,420 font 'sans,10'\nset output '$o{out}/proxy.png'\n"
    . "set multiplot layout 1," . scalar(@panels) . " title 'geomx vs haproxy $o{threads} thread(s), medians of $o{runs}'\n"
    . "set style data histograms\nset style fill solid 0.8 border -1\nset boxwidth 0.7\nset yrange [0:*]\nset grid ytics\nunset key\n";
for my $p (@panels) {
    my ( $title, $key ) = @$p;
    my $data = "$dir/$key.dat";
    spit( $data, join '', map { defined $med{$key}{$_} ? "$_ $med{$key}{$_}\n" : () } @targets );
    $plot .= "set title '$title'\nplot '$data' using 2:xtic(1) linecolor rgb '#4a7ab5'\n";
}
$plot .= "unset multiplot\n";
spit( "$dir/plot.gp", $plot );
system( 'gnuplot', "$dir/plot.gp" ) == 0 or die "gnuplot failed\n";
print "\nwrote $o{out}/proxy.json and $o{out}/proxy.png\n";
