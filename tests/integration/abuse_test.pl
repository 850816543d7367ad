#!/usr/bin/perl
# Abuse controls against a real geomx and smtp-sink on loopback: dated
# blocks added and deleted with `geomx block` through the admin endpoint,
# in force on the next connection, kept across SIGHUP, kill -9 and restart,
# expiring when they should; a corrupt state file is kept aside. Clients
# are PROXY v1 headers from a trusted local sender. Every wait has a deadline.
# Usage: abuse_test.pl GEOMX TESTDATA_DIR
use strict;
use warnings;
use Test::More;
use IO::Socket::IP;
use IO::Socket::UNIX;
use Cwd ();
use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes qw(time sleep clock_gettime CLOCK_MONOTONIC);
use FindBin;
use lib $FindBin::Bin;
use GeomxTest qw(free_port wait_for slurp log_like wait_idle start_geomx start_sink read_line first_line);
use HTTP::Tiny;
use JSON::PP qw(decode_json);

my ( $geomx, $testdata ) = @ARGV;
die "usage: $0 GEOMX TESTDATA\n" unless $testdata;
$testdata = Cwd::abs_path($testdata);
my $dir = tempdir( 'geomx-abuse-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{GEOMX_TEST_KEEP} );
chmod 0755, $dir;
END { my $status = $?; $_->() for reverse @GeomxTest::cleanup; $? = $status; }
$SIG{PIPE} = 'IGNORE';

my $state = "$dir/state";
mkdir $state;
chmod 0777, $state;    # geomx writes it after dropping to nobody
my ($sink) = start_sink( $dir, 'sink' ) =~ /:(\d+)$/;
my $admin = free_port();
# A listener behind our trusted local PROXY sender (every client here).
sub listener_toml {
    my ($name) = @_;
    return qq([[listener]]\nname = "$name"\naddress = "127.0.0.1:0"\nproxy_protocol = "v1"\ntrusted_proxies = ["127.0.0.1/32"]\n);
}
# CONFIG with TOML put in before its [pool.sink] table.
sub before_pool {
    my ( $config, $toml ) = @_;
    $config =~ s/^\[pool\.sink\]/$toml\[pool.sink]/m or die "no [pool.sink] in the config";
    return $config;
}
my $edge = listener_toml('edge');
my $config = <<"TOML";
[server]
hostname = "geomx.test"
threads = 2
state_dir = "$state"
[geo]
databases = ["$testdata/edge6.mmdb"]
${edge}[pool.sink]
members = ["127.0.0.1:$sink"]
[[rule]]
name = "all"
pool = "sink"
[admin]
listen = "127.0.0.1:$admin"
TOML

# geomx ARGS (no shell): (exit status, stdout and stderr).
sub cli {
    my $pid = open( my $fh, '-|' ) // die "fork: $!";
    if ( !$pid ) {
        open STDERR, '>&', \*STDOUT;
        exec $geomx, @_ or POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ( $? >> 8, $out );
}

my $g = start_geomx( $geomx, $dir, 'abuse', $config );
my $port = $g->{ports}{edge};
my $conf = $g->{conf};

subtest '1. geomx block: in force on the next connection, listed, deleted' => sub {
    like( first_line( $port, '127.99.1.1' ), qr/^220 sink/, 'before: served' );
    my ( $rc, $out ) = cli( 'block', 'add', '127.99.0.0/16', '--comment', 'SPAM_09_01_2021', '-c', $conf );
    is( $rc, 0, "block add: exit 0" );
    like( first_line( $port, '127.99.1.1' ), qr/^554 5\.7\.1 geomx\.test access denied/, 'the next connection: 554' );
    like( first_line( $port, '127.98.1.1' ), qr/^220 sink/, 'its neighbour is served' );
    log_like( $g->{log}, qr/event=session .*client=127\.99\.1\.1:40000 .*end=blocked error="blocked by 127\.99\.0\.0\/16 \(operator: SPAM_09_01_2021\)"/,
        'logged with the block and its comment' );
    ( $rc, $out ) = cli( 'block', 'list', '-c', $conf );
    like( $out, qr/^127\.99\.0\.0\/16 +\S+ until deleted +operator +SPAM_09_01_2021$/m, 'block list shows it' );
    ( $rc, $out ) = cli( 'block', 'list', '--json', '-c', $conf );
    like( $out, qr/"cidr":"127\.99\.0\.0\/16","comment":"SPAM_09_01_2021"/, 'and as JSON' );
    like( slurp("$state/blocks.toml"), qr/cidr = '127\.99\.0\.0\/16'/, 'in the state file' );

    ( $rc, $out ) = cli( 'block', 'add', '127.97.0.1/16', '-c', $conf );
    is( $rc, 1, 'a CIDR with host bits: exit 1' );
    like( $out, qr/host bits set; the network is 127\.97\.0\.0\/16/, "and why: $out" );
    ( $rc, $out ) = cli( 'block', 'del', '127.96.0.0/16', '-c', $conf );
    is( $rc, 1, 'deleting a block that is not there: exit 1' );
    ( $rc, $out ) = cli( 'block', 'list', '--admin', '127.0.0.1:' . free_port(), '-c', $conf );
    is( $rc, 2, 'no daemon there: exit 2' );
    ( $rc, $out ) = cli( 'block', 'add', '0.0.0.0/0', '-c', $conf );
    is( $rc, 1, 'block add 0.0.0.0/0: refused (exit 1)' );
    like( $out, qr/0\.0\.0\.0\/0 is shorter than \/8.*--force/, "and why: $out" );
    like( first_line( $port, '127.98.1.1' ), qr/^220 sink/, 'nobody blocked' );
    ( $rc, $out ) = cli( 'block', 'add', 'fd00::/8', '--force', '--comment', 'on purpose', '-c', $conf );
    is( $rc, 0, 'with --force (fd00::/8): added' );
    ( $rc, $out ) = cli( 'block', 'del', 'fd00::/8', '-c', $conf );
    is( $rc, 0, 'and deleted' );
};

subtest '2. blocks survive SIGHUP, and kill -9 right after an add' => sub {
    kill 'HUP', $g->{pid};
    wait_for( 'reload', 20, sub { slurp( $g->{log} ) =~ /event=reload .*result=success/ } );
    like( first_line( $port, '127.99.2.2' ), qr/^554/, 'blocked after SIGHUP' );
    my ( $rc, $out ) = cli( 'block', 'add', '127.95.0.0/24', '--comment', 'added last', '-c', $conf );
    is( $rc, 0, 'another block added' );
    kill 'KILL', $g->{pid};    # right after the acknowledgement
    waitpid $g->{pid}, 0;
    $g = start_geomx( $geomx, $dir, 'abuse2', $config );
    $port = $g->{ports}{edge};
    $conf = $g->{conf};    # its own admin token
    like( slurp( $g->{log} ), qr/event=blocks in_force=2 /, 'restarted with both blocks' );
    like( first_line( $port, '127.99.3.3' ), qr/^554/, 'the first still in force' );
    like( first_line( $port, '127.95.0.9' ), qr/^554/, 'the one added just before kill -9 too' );
    ( $rc, $out ) = cli( 'block', 'del', '127.99.0.0/16', '-c', $conf );
    is( $rc, 0, 'block del: exit 0' );
    like( first_line( $port, '127.99.3.3' ), qr/^220 sink/, 'deleted: served again' );
};

subtest '3. a block with --for expires when it should' => sub {
    # Times are whole seconds: a block made at second S for 3s ends at S + 3,
    # which is more than 2 s after the request was sent (and at least 2 s
    # after the add, for the CLI's exit and one connection under ASan).
    my $asked = time;
    my ( $rc, $out ) = cli( 'block', 'add', '127.94.0.0/16', '--for', '3s', '-c', $conf );
    is( $rc, 0, 'added for 3s' );
    like( first_line( $port, '127.94.1.1' ), qr/^554/, 'blocked now' );
    my $freed = wait_for( 'the block to expire', 10, sub { first_line( $port, '127.94.1.1' ) =~ /^220 sink/ ? time : 0 } );
    cmp_ok( $freed - $asked, '>', 2, sprintf 'served again %.2fs after the add was asked for (expiry 3s, whole seconds)', $freed - $asked );
    cmp_ok( $freed - $asked, '<', 4.5, 'and not much later' );
    ( $rc, $out ) = cli( 'block', 'list', '-c', $conf );
    unlike( $out, qr/127\.94/, 'no longer listed' );
};

subtest '4. a corrupt state file is reported and kept aside, not dropped' => sub {
    $g->{stop}->();
    open my $fh, '>', "$state/blocks.toml" or die;
    print $fh "[[block]]\ncidr = 'not a cidr\n";
    close $fh;
    $g = start_geomx( $geomx, $dir, 'abuse3', $config );
    my $log = slurp( $g->{log} );
    like( $log, qr/event=warning problem=".*blocks\.toml does not parse .*kept as .*blocks\.toml\.corrupt-\d+/, 'reported' );
    my @aside = glob "$state/blocks.toml.corrupt-*";
    is( scalar @aside, 1, 'kept aside' );
    like( slurp( $aside[0] ), qr/not a cidr/, 'with what it held' );
    like( $log, qr/event=blocks in_force=0 /, 'geomx serves with no blocks' );
    like( first_line( $g->{ports}{edge}, '127.95.0.9' ), qr/^220 sink/, 'and serves' );
};

subtest '5. [[limit]]: over its rate a client gets 421 while another is served; a ban blocks, then expires' => sub {
    $g->{stop}->();
    my $limits = $config;
    $limits =~ s/^(state_dir = .*)$/$1\nmax_bans = 1/m;
    $limits = before_pool( $limits, join '', map( { listener_toml($_) } qw(conc bans longban) ), <<'TOML' );
[[limit]]
name = "rate"
if = { listener = "edge" }
rate = "3/min"
[[limit]]
name = "conc"
if = { listener = "conc" }
concurrent = 2
[[limit]]
name = "longflood"
if = { listener = "longban" }
rate = "2/h"
action = "ban"
ban_for = "1h"
aggregate_v4 = 24
[[limit]]
name = "flood"
if = { listener = "bans" }
rate = "2/h"
action = "ban"
ban_for = "3s"
aggregate_v4 = 24
TOML
    $g = start_geomx( $geomx, $dir, 'limits', $limits );
    my %p = %{ $g->{ports} };
    like( first_line( $p{edge}, '127.93.1.1' ), qr/^220 sink/, "client A: connection $_ of 3 served" ) for 1 .. 3;
    like( first_line( $p{edge}, '127.93.1.1' ), qr/^421 4\.7\.0 geomx\.test too many connections/, 'client A: the 4th within the minute: 421' );
    like( first_line( $p{edge}, '127.93.1.2' ), qr/^220 sink/, 'client B at the same time: served' );
    log_like( $g->{log}, qr/event=session .*client=127\.93\.1\.1:\d+ .*action=tempfail .*end=limited error="limit rate: over 3\/1m"/,
        'logged: end=limited, which limit and why' );

    # concurrent = 2: two held, the third refused, one closed, the next served.
    my @held = map { IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $p{conc}, Timeout => 5 ) } 1 .. 2;
    for my $s (@held) {
        print $s "PROXY TCP4 127.92.1.1 127.0.0.1 40000 25\r\n";
        like( read_line( $s, 5 ), qr/^220 sink/, 'held session open' );
    }
    like( first_line( $p{conc}, '127.92.1.1' ), qr/^421/, 'a third at once: 421' );
    close $held[0];
    wait_for( 'the held session to end', 10, sub { first_line( $p{conc}, '127.92.1.1' ) =~ /^220 sink/ } );
    pass('one closed: the next is served');
    close $held[1];

    # ban: the third connection within the hour bans 127.91.1.0/24 for 3 s
    # (whole seconds: 2 to 3 s after the 421, time for the CLI under ASan).
    like( first_line( $p{bans}, '127.91.1.1' ), qr/^220 sink/, "client C: connection $_ of 2 served" ) for 1 .. 2;
    like( first_line( $p{bans}, '127.91.1.1' ), qr/^421/, 'client C: the 3rd: 421, and banned' );
    my $banned = time;
    my ( $rc, $out ) = cli( 'block', 'list', '-c', $g->{conf} );
    like( $out, qr/^127\.91\.1\.0\/24 .* limit:flood +limit flood: over 2\/1h$/m, "the ban is a dated block from the limit" );
    like( first_line( $p{edge}, '127.91.1.77' ), qr/^554 5\.7\.1 geomx\.test access denied/, 'its /24 is refused on every listener' );
    wait_for( 'the ban to expire', 10, sub { first_line( $p{edge}, '127.91.1.77' ) =~ /^220 sink/ } );
    my $lasted = time - $banned;
    cmp_ok( $lasted, '>', 1.5, sprintf 'the ban expired %.1fs after it was made (ban_for 3s)', $lasted );
    cmp_ok( $lasted, '<', 5, '... not much later' );

    # max_bans = 1: with one ban in force (1 h), the next offender gets 421s but no ban.
    first_line( $p{longban}, '127.90.6.1' ) for 1 .. 3;
    wait_for( 'the 1h ban', 10, sub { ( cli( 'block', 'list', '-c', $g->{conf} ) )[1] =~ /^127\.90\.6\.0\/24 /m } );
    first_line( $p{bans}, '127.90.5.1' ) for 1 .. 3;
    wait_for( 'the max_bans warning', 10, sub { slurp( $g->{log} ) =~ /event=warning problem="ban not added: server\.max_bans in force" max_bans=1 cidr=127\.90\.5\.0\/24/ } );
    pass('a second ban past max_bans = 1: not added, and a warning says so');
    like( first_line( $p{bans}, '127.90.5.1' ), qr/^421/, 'that client still gets 421, not 554' );
    is( ( cli( 'block', 'del', '127.90.6.0/24', '-c', $g->{conf} ) )[0], 0, 'the 1h ban deleted' );
};

subtest '6. geomx top ranks a heavy sender first with its share; refusals are logged by sample' => sub {
    $g->{stop}->();
    my $top = $config;
    $top =~ s/^state_dir = .*$/state_dir = "$state"\nrefusal_log_sample = 3/m;
    $top = before_pool( $top, listener_toml('refuse') );
    $top =~ s/^\[\[rule\]\]\nname = "all"/[[rule]]\nname = "refused"\nif = { listener = "refuse" }\naction = "reject"\n[[rule]]\nname = "all"/m;
    $g = start_geomx( $geomx, $dir, 'top', $top );
    my %p = %{ $g->{ports} };
    my $ok = 0;
    $ok += first_line( $p{edge}, '127.90.0.1' ) =~ /^220 sink/ for 1 .. 60;
    for my $c ( 1 .. 10 ) { $ok += first_line( $p{edge}, "127.90.1.$c" ) =~ /^220 sink/ for 1 .. 2 }
    # The sample counts per minute of geomx's monotonic clock: keep the 20
    # refusals inside one (the same clock; at most 15 s of waiting).
    my $into = POSIX::fmod( clock_gettime(CLOCK_MONOTONIC), 60 );
    sleep 60.2 - $into if $into > 45;
    $ok += first_line( $p{refuse}, '127.89.0.1' ) =~ /^554/ for 1 .. 20;
    is( $ok, 100, '100 connections: 60 from the heavy sender, 2 each from 10 others, 20 refused' );
    # A session is counted (top, metrics, log) when it ends, just after the client's close.
    wait_idle( $g->{admin} );
    # 1h: these seconds are all in whole buckets (1m weighs the minute before by how
    # much of it is still inside the window, so its sums are approximate).
    my ( $rc, $out ) = cli( 'top', '--window', '1h', '--n', '3', '-c', $g->{conf} );
    is( $rc, 0, 'geomx top: exit 0' );
    like( $out, qr/^100 connections in the last 1h\n.*\n127\.90\.0\.1 +\S+ +60 +60\.0% +0 +-\n127\.89\.0\.1 +\S+ +20 +20\.0% +20 +-\n/,
        "ranked first with 60.0%, then the refused one:\n$out" );
    ( $rc, $out ) = cli( 'top', '--window', '1h', '--json', '-c', $g->{conf} );
    like( $out, qr/^\{"window":"1h","total":100,"clients":\[\{"address":"127\.90\.0\.1","country":"[^"]+","connections":60,"share":0\.6000,/,
        'and as JSON' );
    ( $rc, $out ) = cli( 'top', '--n', '1', '-c', $g->{conf} );
    like( $out, qr/^127\.90\.0\.1 /m, 'first in the 1m window too' );
    my $lines = () = slurp( $g->{log} ) =~ /event=session conn=\d+ client=127\.89\.0\.1:/g;
    is( $lines, 3, '20 refusals from one client: 3 log lines (refusal_log_sample = 3)' );
    my $r = HTTP::Tiny->new( timeout => 5 )->get("http://127.0.0.1:$g->{admin}/metrics");
    like( $r->{content}, qr/^geomx_connection_ends_total\{end="rejected"\} 20$/m, 'metrics count all 20' );
    # The minute ends (at most 60 s), then one line says how many were left out.
    wait_for( 'the suppressed line', 80, sub { slurp( $g->{log} ) =~ /event=suppressed client=127\.89\.0\.1 refused=17 / } );
    pass('"suppressed" line: 17 more from 127.89.0.1');
};

subtest '7. a burst over the limit at once makes one ban, one write' => sub {
    $g->{stop}->();
    my $burst = before_pool( $config, <<'TOML' );
[[limit]]
name = "burst"
rate = "1/h"
action = "ban"
ban_for = "1h"
aggregate_v4 = 24
TOML
    $g = start_geomx( $geomx, $dir, 'burst', $burst );
    # 30 clients of one /24 send their headers before any reads its answer:
    # most sessions are over the limit before the first ban is written.
    my @s = map { IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $g->{ports}{edge}, Timeout => 5 ) } 1 .. 30;
    print { $s[ $_ - 1 ] } "PROXY TCP4 127.90.8.$_ 127.0.0.1 40000 25\r\n" for 1 .. 30;
    my %answers;
    $answers{ substr( read_line( $_, 5 ), 0, 3 ) || 'none' }++ for @s;
    close $_ for @s;
    is( $answers{220}, 1, 'one served (rate 1/h)' );
    is( ( $answers{421} // 0 ) + ( $answers{554} // 0 ), 29, 'the other 29 refused: 421 over the limit, or 554 once the ban is in force' )
        or diag explain \%answers;
    wait_idle( $g->{admin} );
    # Bans are posted before the 421 is sent, and added on the control thread,
    # which answers this request after them.
    wait_for( 'the ban', 10, sub { ( cli( 'block', 'list', '-c', $g->{conf} ) )[1] =~ /^127\.90\.8\.0\/24 /m } );
    my $over = $answers{421} // 0;
    my $added = () = slurp( $g->{log} ) =~ /event=block action=added cidr=127\.90\.8\.0\/24 /g;
    is( $added, 1, "one ban added for the $over sessions over the limit" );
};

subtest '8. IPv6: a /64 is one client for max_connections_per_ip, [[limit]]s and bans' => sub {
    $g->{stop}->();
    my $v6 = $config;
    mkdir "$state/v6";    # no bans from the subtests before: max_bans = 1 counts this one's
    chmod 0777, "$state/v6";
    $v6 =~ s/^state_dir = .*$/state_dir = "$state\/v6"\nmax_connections_per_ip = 3\nmax_bans = 1/m;
    $v6 = before_pool( $v6, listener_toml('bans') . <<'TOML' );
[[limit]]
name = "flood6"
if = { listener = "bans" }
rate = "1/h"
action = "ban"
ban_for = "1h"
TOML
    $g = start_geomx( $geomx, $dir, 'v6', $v6 );
    my %p = %{ $g->{ports} };
    # Five addresses of one /64 held open: three served, the rest refused.
    my @held;
    my %answers;
    for my $i ( 1 .. 5 ) {
        my $s = IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $p{edge}, Timeout => 5 ) or die "connect: $!";
        print $s "PROXY TCP6 2001:db8:5:6::$i ::1 40000 25\r\n";
        my $line = read_line( $s, 5 );
        $answers{ substr( $line, 0, 3 ) || 'none' }++;
        push @held, $s;
    }
    is( $answers{220}, 3, 'three addresses of 2001:db8:5:6::/64 served at once' ) or diag explain \%answers;
    is( $answers{421}, 2, 'the 4th and 5th: 421 (max_connections_per_ip = 3 counts the /64)' );
    like( first_line( $p{edge}, '2001:db8:5:7::1' ), qr/^220 sink/, 'the next /64 is another client' );
    close $_ for @held;

    # A ban covers the /64: its other addresses are refused, and no second ban takes a slot.
    like( first_line( $p{bans}, '2001:db8:9:9::1' ), qr/^220 sink/, 'first connection of the hour served' );
    like( first_line( $p{bans}, '2001:db8:9:9::2' ), qr/^421/, 'a second address of the /64: over the limit, banned' );
    wait_for( 'the /64 ban', 10, sub { ( cli( 'block', 'list', '-c', $g->{conf} ) )[1] =~ m{^2001:db8:9:9::/64 }m } );
    pass('the ban is 2001:db8:9:9::/64');
    like( first_line( $p{bans}, "2001:db8:9:9:$_\::1" ), qr/^554 5\.7\.1/, "address $_ of the /64: blocked, no new ban" ) for 1 .. 20;
    unlike( slurp( $g->{log} ), qr/ban not added: server\.max_bans/, 'max_bans = 1 was never reached' );
    like( first_line( $p{bans}, '2001:db8:9:a::1' ), qr/^220 sink/, 'another /64 is served' );
    is( ( cli( 'block', 'del', '2001:db8:9:9::/64', '-c', $g->{conf} ) )[0], 0, 'the ban deleted' );
};

subtest '9. tarpitted clients hold tarpit_max slots, not max_connections' => sub {
    $g->{stop}->();
    my $pit = $config;
    $pit =~ s/^(state_dir = .*)$/$1\nmax_connections = 4\ntarpit_max = 6\ntarpit_duration = "30s"/m;
    $pit =~ s/^\[\[rule\]\]\nname = "all"/[[rule]]\nname = "pit"\nif = { cidr = ["127.88.0.0\/16"] }\naction = "tarpit"\nreply = "421 4.7.0 slow down"\n[[rule]]\nname = "all"/m
        or die 'no rule "all"';
    $g = start_geomx( $geomx, $dir, 'pit', $pit );
    my $port = $g->{ports}{edge};
    my $gauge = sub { ( HTTP::Tiny->new( timeout => 5 )->get("http://127.0.0.1:$g->{admin}/metrics")->{content} // '' ) =~ /^geomx_tarpitted_connections (\d+)$/m ? $1 : -1 };
    # One at a time: until it reaches the tarpit, a client holds one of max_connections.
    my @pit;
    for my $i ( 1 .. 6 ) {
        my $s = IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $port, Timeout => 5 ) or die "connect: $!";
        print $s "PROXY TCP4 127.88.0.$i 127.0.0.1 40000 25\r\n";
        push @pit, $s;
        wait_for( "$i clients in the tarpit", 10, sub { $gauge->() == $i } );
    }
    pass('six tarpitted (more than max_connections = 4)');
    like( first_line( $port, '127.99.1.1' ), qr/^220 sink/, "client $_ beside them: served" ) for 1 .. 3;
    my $t0 = time;
    like( first_line( $port, '127.88.1.1' ), qr/^421 4\.7\.0 slow down/, 'a 7th for the tarpit (tarpit_max = 6): the whole reply at once' );
    cmp_ok( time - $t0, '<', 3, '... not a byte a second' );
    close $_ for @pit;
    wait_for( 'the tarpit to empty', 10, sub { $gauge->() == 0 } );
    pass('closed: the tarpit is empty');
    log_like( $g->{log}, qr/event=session .*client=127\.88\.1\.1:\d+ .*end=tarpitted error="tarpit full \(server\.tarpit_max\): replied at once"/,
        'the refusal says why' );
};

subtest '10. block list: 60,000 blocks listed whole; the CLI says what failed' => sub {
    $g->{stop}->();
    my $many = "$state/many";
    mkdir $many;
    chmod 0777, $many;
    open my $fh, '>', "$many/blocks.toml" or die;
    for my $i ( 0 .. 59_999 ) {
        printf $fh qq([[block]]\ncidr = "10.%d.%d.0/24"\ncomment = "bulk %d %s"\ncreated = 1800000000\norigin = "operator"\n), $i >> 8, $i & 255, $i, 'x' x 100;
    }
    close $fh;
    chmod 0666, "$many/blocks.toml";
    ( my $cfg = $config ) =~ s/^state_dir = .*$/state_dir = "$many"/m;
    $g = start_geomx( $geomx, $dir, 'many', $cfg );
    like( slurp( $g->{log} ), qr/event=blocks in_force=60000 /, '60,000 blocks in force' );
    my ( $rc, $out ) = cli( 'block', 'list', '-c', $g->{conf} );
    is( $rc, 0, 'geomx block list: exit 0' );
    my $lines = () = $out =~ /^10\.\d+\.\d+\.0\/24 /mg;
    is( $lines, 60_000, 'every block listed' );
    like( $out, qr/^10\.234\.95\.0\/24 .* bulk 59999 x{100}$/m, 'the last one too' );
    cmp_ok( length $out, '>', 8 << 20, sprintf 'a listing of %.1f MB (over the 8 MB a response was held to)', length($out) / 1e6 );
    # Nothing listening: the error says so, and names the address.
    ( $cfg = $g->{conf} ) =~ s/\.toml$/-down.toml/;
    ( my $down = slurp( $g->{conf} ) ) =~ s/^listen = .*$/listen = "127.0.0.1:1"/m;
    open $fh, '>', $cfg or die;
    print $fh $down;
    close $fh;
    ( $rc, $out ) = cli( 'block', 'list', '-c', $cfg );
    is( $rc, 2, 'no admin endpoint: exit 2' );
    like( $out, qr/^geomx: the admin endpoint at 127\.0\.0\.1:1: cannot connect: Connection refused \(is geomx running\?\)$/m, '... and it says why' );
};

subtest '11. the admin endpoint: a token for what changes or reveals state; Host, Origin; idle connections cannot lock it' => sub {
    $g->{stop}->();
    $g = start_geomx( $geomx, $dir, 'admin', $config );
    my $url = "http://127.0.0.1:$g->{admin}";
    my $http = HTTP::Tiny->new( timeout => 5 );
    my ($token_file) = slurp( $g->{conf} ) =~ /^token_file = "([^"]+)"/m;
    is( ( stat $token_file )[2] & 07777, 0640, 'geomx made the token file, mode 0640' );
    like( slurp( $g->{log} ), qr/event=admin_token action=created file=\Q$token_file\E/, '... and said so' );
    # Without the token (anyone on the host): the world blocked, as before the fix.
    my $r = $http->post("$url/blocks?cidr=0.0.0.0/0&force=yes");
    is( $r->{status}, 401, 'POST /blocks without the token: 401' );
    like( $r->{headers}{'www-authenticate'} // '', qr/^Bearer /, '... with a Bearer challenge' );
    like( first_line( $g->{ports}{edge}, '127.99.7.7' ), qr/^220 sink/, 'and the next client is served' );
    is( $http->get("$url/$_")->{status}, 401, "GET /$_ without the token: 401" ) for qw(blocks status top);
    is( $http->get("$url/$_")->{status}, 200, "GET /$_: open (200)" ) for qw(healthz readyz metrics);
    # A DNS-rebinding page and a cross-site form, even with the token.
    my %auth = ( Authorization => "Bearer $g->{token}" );
    # (HTTP::Tiny sets Host itself: this request is written by hand.)
    my $raw = IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $g->{admin}, Timeout => 5 ) or die "connect: $!";
    print $raw "POST /blocks?cidr=192.0.2.0/24 HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer $g->{token}\r\nContent-Length: 0\r\n\r\n";
    like( read_line( $raw, 5 ), qr{^HTTP/1\.1 403 }, 'Host: evil.example: 403' );
    close $raw;
    is( $http->post( "$url/blocks?cidr=192.0.2.0/24", { headers => { %auth, Origin => 'http://evil.example' } } )->{status}, 403, 'Origin: http://evil.example: 403' );
    is( $http->post( "$url/blocks?cidr=192.0.2.0/24&comment=ok", { headers => \%auth } )->{status}, 200, 'with the token: 200' );
    is( ( cli( 'block', 'del', '192.0.2.0/24', '-c', $g->{conf} ) )[0], 0, 'geomx block del: the CLI finds the token from the config' );
    # Unauthenticated reloads cost nothing.
    my $cpu = sub { my @f = split ' ', slurp("/proc/$g->{pid}/stat"); return ( $f[13] + $f[14] ) / POSIX::sysconf(POSIX::_SC_CLK_TCK) };
    my $before = $cpu->();
    my $refused = grep { $http->post("$url/reload")->{status} == 401 } 1 .. 101;
    my $spent = $cpu->() - $before;
    is( $refused, 101, '101 POST /reload without the token: 401 each' );
    unlike( slurp( $g->{log} ), qr/event=reload trigger=admin/, '... and no reload ran' );
    cmp_ok( $spent, '<', 5, sprintf '... for %.2f CPU s in geomx (ASan build)', $spent );
    # 40 idle connections (the cap is 32): the operator still gets in.
    my @idle = grep {defined} map { IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $g->{admin}, Timeout => 5 ) } 1 .. 40;
    is( scalar @idle, 40, '40 idle connections opened' );
    my $healthy = grep { $http->get("$url/healthz")->{status} == 200 } 1 .. 20;
    is( $healthy, 20, '/healthz 20 of 20 meanwhile' );
    my ( $rc, $out ) = cli( 'block', 'add', '192.0.2.0/24', '-c', $g->{conf} );
    is( $rc, 0, 'geomx block add meanwhile: exit 0' ) or diag $out;
    is( ( cli( 'block', 'del', '192.0.2.0/24', '-c', $g->{conf} ) )[0], 0, 'and del' );
    close $_ for @idle;
    # A token file the CLI cannot read: it says so (not "is geomx running?").
    ( my $bad = slurp( $g->{conf} ) ) =~ s/^token_file = .*$/token_file = "$dir\/missing.token"/m;
    open my $fh, '>', "$dir/badtoken.toml" or die;
    print $fh $bad;
    close $fh;
    ( $rc, $out ) = cli( 'block', 'list', '-c', "$dir/badtoken.toml" );
    is( $rc, 2, 'a missing token file: exit 2' );
    like( $out, qr/refused the request \(401\).*\n.*the admin token: \Q$dir\E\/missing\.token: No such file or directory/, '... and it says why' );
};

subtest '12. a member holds max_connections sessions; more wait in its queue, then 421; probes never wait' => sub {
    $g->{stop}->();
    ( my $capped = $config ) =~ s/^(members = \["127\.0\.0\.1:\d+"\])$/$1\nmember_max_connections = 3\nqueue_timeout = "2s"\nmax_queue = 2\n[pool.sink.health]\ninterval = "200ms"/m
        or die 'no members line';
    $g = start_geomx( $geomx, $dir, 'capped', $capped );
    my $port = $g->{ports}{edge};
    my $status = sub { decode_json( HTTP::Tiny->new( timeout => 5 )->get( "http://127.0.0.1:$g->{admin}/status", GeomxTest::auth($g) )->{content} )->{pools}[0]{members}[0] };
    # Three slow senders hold the member's three slots.
    my @held = map {
        my $s = IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $port, Timeout => 5 ) or die "connect: $!";
        print $s "PROXY TCP4 127.86.0.$_ 127.0.0.1 40000 25\r\n";
        like( read_line( $s, 5 ), qr/^220 sink/, "slow sender $_: served" );
        $s;
    } 1 .. 3;
    is( $status->()->{active}, 3, 'the member has 3 sessions (its max_connections)' );
    # A fourth waits in the queue and is served when a slot frees: woken by
    # the release (0.5 s into its wait; its once-a-second retry would be
    # another 0.5 s later), three times.
    my @woken;
    for my $n ( 1 .. 3 ) {
        my $fourth = IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $port, Timeout => 5 ) or die;
        print $fourth "PROXY TCP4 127.86.1.$n 127.0.0.1 40000 25\r\n";
        is( read_line( $fourth, 0.5 ), '', "waiter $n waits (no banner yet)" );
        my $t0 = time;
        close shift @held;
        like( read_line( $fourth, 3 ), qr/^220 sink/, '... and is served when one of the three closes' );
        push @woken, time - $t0;
        push @held, $fourth;
    }
    @woken = sort { $a <=> $b } @woken;
    cmp_ok( $woken[-1], '<', 0.3, sprintf 'woken by the release, not by polling: %.1f, %.1f and %.1f ms from close to banner', map { 1000 * $_ } @woken );
    # All three held again: with the queue full (max_queue 2), the third waiter gets 421 at once;
    # the others get 421 after queue_timeout.
    my @wait = map {
        my $s = IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $port, Timeout => 5 ) or die;
        print $s "PROXY TCP4 127.86.2.$_ 127.0.0.1 40000 25\r\n";
        sleep 0.1;
        $s;
    } 1 .. 3;
    my $t0 = time;
    like( read_line( $wait[2], 2 ), qr/^421 4\.3\.2 /, 'a third waiter with the queue full: 421 at once' );
    like( read_line( $wait[0], 5 ), qr/^421 4\.3\.2 geomx\.test service temporarily unavailable/, 'a waiter: 421 after queue_timeout' );
    my $waited = time - $t0;
    cmp_ok( $waited, '>', 1.2, sprintf 'after about queue_timeout (2s): %.2fs', $waited );
    like( read_line( $wait[1], 5 ), qr/^421 4\.3\.2 /, 'the other waiter too' );
    log_like( $g->{log}, qr/event=session .*client=127\.86\.2\.1:\d+ .*end=member_full error="every member left at max_connections for queue_timeout 2s"/, 'logged: end=member_full, and why' );
    # The probes run beside the held sessions: the member stays UP.
    my $checks = $status->()->{checks};
    wait_for( 'more probes', 5, sub { $status->()->{checks} > $checks + 2 } );
    is( $status->()->{state}, 'up', 'probes went on: the member is UP' );
    unlike( slurp( $g->{log} ), qr/event=health .*state=down/, 'never DOWN' );
    close $_ for @held, @wait;
    wait_for( 'the member idle', 10, sub { $status->()->{active} == 0 } );
    pass('every slot released');
};

subtest '13. the admin socket: mode 0660 for the group, no token needed, the CLI\'s default; a stale one replaced, a live one not' => sub {
    $g->{stop}->();
    my $run = "$dir/run";
    mkdir $run;
    chmod 0755, $run;
    my $sock = "$run/admin.sock";
    ( my $with_socket = $config ) =~ s/^\[admin\]\n/[admin]\nsocket = "$sock"\n/m or die 'no [admin]';
    $g = start_geomx( $geomx, $dir, 'sock', $with_socket );
    ok( -S $sock, 'geomx made the socket' );
    is( ( stat $sock )[2] & 07777, 0660, '... mode 0660' );
    my $group = ( getpwnam 'nobody' )[3];
    is( ( stat $sock )[5], $group, '... given to server.user\'s group' ) if $> == 0;
    log_like( $g->{log}, qr/event=admin_listening .*socket=\Q$sock\E/, '... and logged it' );
    # The CLI with a token file it cannot read: only the socket can admit it.
    ( my $cli_conf = slurp( $g->{conf} ) ) =~ s/^token_file = .*$/token_file = "$dir\/missing.token"/m;
    open my $fh, '>', "$dir/sock-cli.toml" or die;
    print $fh $cli_conf;
    close $fh;
    my ( $rc, $out ) = cli( 'block', 'add', '192.0.2.0/24', '--comment', 'over the socket', '-c', "$dir/sock-cli.toml" );
    is( $rc, 0, 'geomx block add without a token: through the socket, exit 0' ) or diag $out;
    like( first_line( $g->{ports}{edge}, '192.0.2.5' ), qr/^554 /, '... in force: the next client from it gets 554' );
    ( $rc, $out ) = cli( 'block', 'list', '-c', "$dir/sock-cli.toml", '--admin', "127.0.0.1:$g->{admin}" );
    is( $rc, 2, 'the same over TCP (--admin): refused' );
    like( $out, qr/refused the request \(401\)/, '... 401, the token is needed there' );
    ( $rc, $out ) = cli( 'block', 'del', '192.0.2.0/24', '-c', "$g->{conf}", '--admin', "unix:$sock" );
    is( $rc, 0, '--admin unix:PATH' ) or diag $out;
    # Host and Origin are checked there too (curl speaks HTTP over the socket).
    my $code = sub { scalar `curl -s -o /dev/null -w '%{http_code}' --max-time 5 --unix-socket $sock @_` };
    is( $code->('http://localhost/status'), '200', 'GET /status over the socket, no token: 200' );
    is( $code->("-H 'Host: evil.example' http://localhost/status"), '403', '... with a foreign Host: 403' );
    if ( $> == 0 ) {
        # connect(2) as another user: errno (0 when it got in).
        my $connect_as = sub {
            my ( $uid, $gid ) = @_;
            my $pid = fork // die;
            if ( !$pid ) {
                POSIX::setgid($gid);
                POSIX::setuid($uid);
                my $s = IO::Socket::UNIX->new( Peer => $sock );
                POSIX::_exit( $s ? 0 : $! + 0 );
            }
            waitpid $pid, 0;
            return $? >> 8;
        };
        is( $connect_as->( 65534, $group ), 0, 'user nobody (in the group) may connect' );
        is( $connect_as->( 1, 1 ), POSIX::EACCES, 'user daemon (not in it): EACCES' );
    }
    # A second geomx with the same socket is refused: the first one answers there.
    ( my $second = slurp( $g->{conf} ) ) =~ s/^listen = "127\.0\.0\.1:$admin"$/listen = "127.0.0.1:0"/m or die;
    open $fh, '>', "$dir/sock2.toml" or die;
    print $fh $second;
    close $fh;
    system("timeout 30 $geomx run -c $dir/sock2.toml >$dir/sock2.log 2>&1 </dev/null");
    isnt( $? >> 8, 0, 'a second geomx on the same socket: refused' );
    like( slurp("$dir/sock2.log"), qr/admin socket \Q$sock\E: another process answers on it/, '... and it says why' );
    ok( -S $sock, '... and the first one\'s socket is still there' );
    is( ( cli( 'block', 'list', '-c', "$dir/sock-cli.toml" ) )[0], 0, '... and answers' );
    # kill -9 leaves the socket file: the next start replaces it.
    kill 'KILL', $g->{pid};
    waitpid $g->{pid}, 0;
    ok( -S $sock, 'kill -9: the socket file is left' );
    $g = start_geomx( $geomx, $dir, 'sock-again', $with_socket );
    is( ( cli( 'block', 'list', '-c', "$dir/sock-cli.toml" ) )[0], 0, '... and the next geomx replaces it and answers' );
    # Something that is not a socket is never removed.
    $g->{stop}->();
    unlink $sock;
    open $fh, '>', $sock or die;
    print $fh "keep me\n";
    close $fh;
    ( $rc, $out ) = cli( 'check', '-c', $g->{conf} );
    is( $rc, 1, 'a file at the socket path: geomx check fails' );
    like( $out, qr/admin socket \Q$sock\E: something else is there \(not a socket\)/, '... and says why' );
    is( slurp($sock), "keep me\n", '... and the file is kept' );
    unlink $sock;
    $g = start_geomx( $geomx, $dir, 'abuse2', $config );
};

$g->{stop}->();
unlike( slurp( $g->{log} ), qr/ERROR: AddressSanitizer|runtime error:/, 'no sanitizer report' );
done_testing();
