#!/usr/bin/perl
# The fleet store's cost, in one run on loopback: sessions/s through geomx
# with a [[limit]] (a rate and connections at once) counted on Redis
# ([store]) against the same limit counted locally (interleaved runs, the
# order swapped every run, medians, the ratio; the limit is high enough
# never to refuse, so every session pays for both checks); Redis
# commands per session from INFO commandstats; Redis memory for 1,000,000
# distinct client counters (the real script, read from
# state/fleet_limits.cpp, fed by redis-cli --pipe); geomx's RSS with and
# without the store. Starts its own redis-server, smtp-sink and two geomx.
#
# Usage: fleet.pl --build DIR [--runs N] [--sessions N] [--clients N]
#   DIR holds cli/geomx (a Release build: bench/fleet.sh makes one).
#   --strace: also each geomx's system calls per session (strace -c -f
#   over 2,000 sessions; strace slows it, so not during the timed runs).
use strict;
use warnings;
use Getopt::Long;
use File::Temp qw(tempdir);
use Time::HiRes qw(time);
use HTTP::Tiny;
use POSIX ();
use FindBin;
use lib "$FindBin::Bin/../tests/integration";
use GeomxTest qw(free_port wait_for slurp start_geomx start_sink start_redis);

my %o = ( runs => 7, sessions => 5000, clients => 1_000_000 );
GetOptions( \%o, 'build=s', 'runs=i', 'sessions=i', 'clients=i', 'strace' ) && $o{build}
    or die "usage: $0 --build DIR [--runs N] [--sessions N] [--clients N] [--strace]\n";
my $geomx = "$o{build}/cli/geomx";
-x $geomx or die "missing $geomx (build first)\n";
my $dir = tempdir( 'geomx-fleet-bench-XXXXXX', TMPDIR => 1, CLEANUP => 1 );
chmod 0755, $dir;
END { my $status = $?; $_->() for reverse @GeomxTest::cleanup; $? = $status; }
$SIG{INT} = $SIG{TERM} = sub { exit 130 };
$SIG{PIPE} = 'IGNORE';

my ($redis) = start_redis( $dir, 'redis' );
my $sink = start_sink( $dir, 'sink', undef, '-m', '256' );
sub redis_cli { my $out = `redis-cli -p $redis @_ 2>&1`; chomp $out; return $out }

sub config {
    my ( $name, $store ) = @_;
    my $state = "$dir/state-$name";
    mkdir $state;
    chmod 0777, $state;
    my $toml = <<"TOML";
[server]
hostname = "$name.test"
threads = 1
max_connections_per_ip = 1000
state_dir = "$state"
[geo]
databases = ["/usr/share/tor/geoip", "/usr/share/tor/geoip6"]
[[listener]]
name = "mx"
address = "127.0.0.1:0"
[pool.sink]
members = ["$sink"]
[[limit]]
name = "bench"
rate = "1000000/s"
concurrent = 100000
[[rule]]
name = "all"
pool = "sink"
TOML
    $toml .= qq([store]\nredis = "127.0.0.1:$redis"\nnode = "$name"\n) if $store;
    return $toml;
}
my %g = ( local => start_geomx( $geomx, $dir, 'local', config( 'local', 0 ) ),
          store => start_geomx( $geomx, $dir, 'store', config( 'store', 1 ) ) );
wait_for( 'store up', 10, sub {
    HTTP::Tiny->new->get("http://127.0.0.1:$g{store}{admin}/metrics")->{content} =~ /^geomx_store_up 1$/m } );

sub median { my @v = sort { $a <=> $b } @_; return $v[ $#v / 2 ] }
# Commands geomx sent (each a request on the wire; pipelined ones share a
# round trip), and all Redis ran: the scripts' own calls (TIME, GET, SET,
# HGET, HGETALL, HINCRBY, HSET, EXPIRE, PUBLISH, HDEL) are counted by
# commandstats too.
my %inner = map { $_ => 1 } qw(time get set hget hset hgetall hincrby expire publish hdel);
sub commands {
    my ( $sent, $all, $stats ) = ( 0, 0, redis_cli( 'INFO', 'commandstats' ) );
    while ( $stats =~ /^cmdstat_(\w+):calls=(\d+)/mg ) {
        next if $1 eq 'info' || $1 eq 'dbsize';    # this benchmark's own
        $all += $2;
        $sent += $2 unless $inner{$1};
    }
    return ( $sent, $all );
}
# sessions/s of N smtp-source sessions (50 parallel) through geomx NAME.
sub rate {
    my ($name) = @_;
    my $t0 = time;
    my $out = `timeout 300 smtp-source -s 50 -m $o{sessions} -t bench\@example.com 127.0.0.1:$g{$name}{ports}{mx} 2>&1`;
    die "smtp-source through $name: $out" if $? || $out =~ /\S/;
    return $o{sessions} / ( time - $t0 );
}

# CPU seconds (user + system) a process has used so far.
my $hz = `getconf CLK_TCK` + 0 || 100;
sub cpu { my @f = split ' ', ( slurp("/proc/$_[0]/stat") =~ /\)\s(.*)/ )[0]; return ( $f[11] + $f[12] ) / $hz }
my ($redis_pid) = `redis-cli -p $redis INFO server` =~ /^process_id:(\d+)/m;
my ( %rates, %cpu, $calls, $all_calls, $store_sessions );
sub run_store {
    my @before = commands();
    my ( $s0, $r0 ) = ( cpu( $g{store}{pid} ), cpu($redis_pid) );
    push @{ $rates{store} }, rate('store');
    $cpu{store} += cpu( $g{store}{pid} ) - $s0;
    $cpu{redis} += cpu($redis_pid) - $r0;
    my @after = commands();
    $calls += $after[0] - $before[0];
    $all_calls += $after[1] - $before[1];
    $store_sessions += $o{sessions};
}
sub run_local {
    my $c0 = cpu( $g{local}{pid} );
    push @{ $rates{local} }, rate('local');
    $cpu{local} += cpu( $g{local}{pid} ) - $c0;
}
for my $run ( 1 .. $o{runs} ) {
    if ( $run % 2 ) { run_local(); run_store() } else { run_store(); run_local() }
    printf "run %d: local %.0f sessions/s, store %.0f sessions/s\n", $run, $rates{local}[-1], $rates{store}[-1];
}
my ( $local, $store ) = ( median( @{ $rates{local} } ), median( @{ $rates{store} } ) );
printf "sessions/s, median of %d runs of %d: local limit %.0f, limit on the store %.0f, ratio %.3f   [target >= 0.9]\n",
    $o{runs}, $o{sessions}, $local, $store, $store / $local;
printf "Redis commands geomx sent per session (INFO commandstats, PINGs included): %.3f   [target <= 1]\n",
    $calls / $store_sessions;
printf "  all commands Redis ran per session, the scripts' own calls included: %.3f\n", $all_calls / $store_sessions;
my $per = 1e6 / ( $o{runs} * $o{sessions} );
printf "CPU per session: geomx with the local limit %.0f us; geomx with the store %.0f us, redis-server %.0f us (the machine's cores are shared by all of them and the load)\n",
    $cpu{local} * $per, $cpu{store} * $per, $cpu{redis} * $per;
sub rss_kb { my ($kb) = slurp("/proc/$_[0]/status") =~ /^VmRSS:\s+(\d+)/m; return $kb }
printf "geomx RSS after the runs: local %d kB, store %d kB, ratio %.3f\n", rss_kb( $g{local}{pid} ),
    rss_kb( $g{store}{pid} ), rss_kb( $g{store}{pid} ) / rss_kb( $g{local}{pid} );

if ( $o{strace} ) {
    for my $name (qw(local store)) {
        my $out = "$dir/strace-$name";
        my $pid = fork // die;
        if ( !$pid ) { open STDERR, '>', '/dev/null'; exec 'strace', '-c', '-f', '-o', $out, '-p', $g{$name}{pid} or POSIX::_exit(127) }
        select( undef, undef, undef, 1 );    # attached (strace says so only on stderr)
        local $o{sessions} = 2000;
        rate($name);
        kill 'INT', $pid;
        waitpid $pid, 0;
        # % time, seconds, usecs/call, calls, [errors,] syscall
        my %calls;
        for ( split /\n/, slurp($out) ) { $calls{$2} = $1 if /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$/ }
        my $total = delete $calls{total} // die "strace -c: " . slurp($out);
        my @top = ( sort { $calls{$b} <=> $calls{$a} } keys %calls )[ 0 .. 11 ];
        printf "system calls per session, geomx %s: %.1f (%s)\n", $name, $total / 2000,
            join( ', ', map { sprintf '%s %.1f', $_, $calls{$_} / 2000 } grep {defined} @top );
    }
}

# 1,000,000 distinct clients' counters, made by the script geomx loads.
my ($script) = slurp("$FindBin::Bin/../state/fleet_limits.cpp") =~ /R"lua\((.*?)\)lua"/s or die 'no script';
open my $fh, '>', "$dir/rate.lua" or die;
print $fh $script;
close $fh;
my $sha = `redis-cli -p $redis -x SCRIPT LOAD < $dir/rate.lua`;
chomp $sha;
$sha =~ /^[0-9a-f]{40}$/ or die "SCRIPT LOAD: $sha";
my $mem0 = redis_cli( 'INFO', 'memory' ) =~ /^used_memory:(\d+)/m ? $1 : die;
my $keys0 = redis_cli('DBSIZE');
open my $pipe, '|-', "redis-cli -p $redis --pipe >$dir/pipe.out 2>&1" or die;
for my $i ( 0 .. $o{clients} - 1 ) {
    my $key = sprintf 'geomx:rate:bench:10.%d.%d.%d/32', $i >> 16 & 255, $i >> 8 & 255, $i & 255;
    # A rate of 1 per hour: each counter lives an hour.
    # KEYS: the processes alive, the key; ARGV: the process, the holds'
    # TTL, no release, one rate, no hold, its interval and burst.
    my @a = ( 'EVALSHA', $sha, 2, 'geomx:conc:alive', $key, 'bench/0', 60, 0, 1, 0, 3_600_000_000, 30 );
    print $pipe '*' . @a . "\r\n" . join( '', map { '$' . length($_) . "\r\n$_\r\n" } @a );
}
close $pipe or die "redis-cli --pipe: " . slurp("$dir/pipe.out");
my $mem1 = redis_cli( 'INFO', 'memory' ) =~ /^used_memory:(\d+)/m ? $1 : die;
my $made = redis_cli('DBSIZE') - $keys0;
printf "Redis memory for %d client counters: %.1f MiB, %.0f bytes per client (keys expire with the allowance)\n",
    $made, ( $mem1 - $mem0 ) / 1048576, ( $mem1 - $mem0 ) / $made;
