#!/usr/bin/perl
# A fleet: two geomx nodes sharing their dated blocks through a real
# redis-server on loopback (no persistence: a restart comes back empty).
# A block added on one node refuses the address on the other; a deletion
# frees it; Redis killed under load costs no session, blocks made during
# the outage reach the other node when it is back, and the store is refilled;
# a wrong password or no Redis at start: served from local state, said once.
# Clients are PROXY v1 headers from a trusted local sender. Every wait has a
# deadline. Usage: fleet_test.pl GEOMX TESTDATA_DIR
use strict;
use warnings;
use Test::More;
use IO::Socket::IP;
use Cwd ();
use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes qw(time sleep);
use FindBin;
use lib $FindBin::Bin;
use GeomxTest qw(free_port wait_for slurp start_geomx start_sink start_redis read_line first_line auth fleet_node_config);
use HTTP::Tiny;
use JSON::PP qw(decode_json);

my ( $geomx, $testdata ) = @ARGV;
die "usage: $0 GEOMX TESTDATA\n" unless $testdata;
$testdata = Cwd::abs_path($testdata);
my $dir = tempdir( 'geomx-fleet-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{GEOMX_TEST_KEEP} );
chmod 0755, $dir;
END { my $status = $?; $_->() for reverse @GeomxTest::cleanup; $? = $status; }
$SIG{PIPE} = 'IGNORE';

my ( $redis_port, $redis_pid, $redis_stop ) = start_redis( $dir, 'redis' );
my ($sink) = start_sink( $dir, 'sink' ) =~ /:(\d+)$/;

# A node's config: its own state_dir, the same Redis and key prefix.
sub node_config {
    my ( $name, %o ) = @_;
    return fleet_node_config(
        dir => $dir, name => $name, testdata => $testdata, sink => $sink,
        store  => $o{store} // qq(redis = "127.0.0.1:$redis_port"\nnode = "$name"\ntimeout = "25ms"\n),
        limits => <<'TOML' );
[lists.limited]
cidrs = ["127.70.0.0/16"]
[[limit]]
name = "fleet-rate"
rate = "6/min"
if = { list = "limited" }
[lists.concurrent]
cidrs = ["127.72.0.0/16"]
[[limit]]
name = "fleet-conc"
concurrent = 2
if = { list = "concurrent" }
[lists.both]
cidrs = ["127.73.0.0/16"]
[[limit]]
name = "fleet-both"
rate = "3/min"
concurrent = 1
if = { list = "both" }
TOML
}

# The first line a node answers CLIENT with (PROXY v1 from our trusted sender).
sub banner_for {
    my ( $g, $client ) = @_;
    return first_line( $g->{ports}{edge}, $client );
}
sub refused { return banner_for(@_) =~ /^554 / }
# A connection that stays open: its socket once served (undef otherwise).
sub held {
    my ( $g, $client ) = @_;
    my $s = IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $g->{ports}{edge}, Timeout => 5 ) or die "connect: $!";
    print $s "PROXY TCP4 $client 127.0.0.1 40000 25\r\n";
    return read_line( $s, 10 ) =~ /^220 / ? $s : undef;
}
sub code_for { return banner_for(@_) =~ /^(\d{3})/ ? $1 : 'none' }
my @held;    # 2d's connections, open until 3 has seen them refilled

sub http { HTTP::Tiny->new( timeout => 5 ) }
sub metrics { http()->get("http://127.0.0.1:$_[0]{admin}/metrics")->{content} // '' }
sub status  { decode_json( http()->get( "http://127.0.0.1:$_[0]{admin}/status", auth( $_[0] ) )->{content} ) }
sub block_add {
    my ( $g, $cidr, $comment ) = @_;
    return http()->post( "http://127.0.0.1:$g->{admin}/blocks?cidr=$cidr&comment=" . ( $comment // 'fleet' ), auth($g) );
}
sub block_del {
    my ( $g, $cidr ) = @_;
    return http()->delete( "http://127.0.0.1:$g->{admin}/blocks?cidr=$cidr", auth($g) );
}
sub redis_cli { my $out = `redis-cli -p $redis_port @_ 2>&1`; chomp $out; return $out }
# Like wait_for, polling every 2 ms: for delays of a few ms.
sub poll_until {
    my ( $what, $seconds, $cond ) = @_;
    my $end = time + $seconds;
    while ( time < $end ) { return 1 if $cond->(); sleep 0.002 }
    die "timed out after ${seconds}s waiting for $what\n";
}
sub percentile {
    my ( $p, @v ) = @_;
    @v = sort { $a <=> $b } @v;
    return $v[ int( $p * $#v + 0.5 ) ];
}

my $a = start_geomx( $geomx, $dir, 'mx1', node_config('mx1') );    # restarted in 3b
my $b = start_geomx( $geomx, $dir, 'mx2', node_config('mx2') );

subtest '1. both nodes report the store up, once' => sub {
    for my $g ( $a, $b ) {
        wait_for( "store up on $g->{log}", 10, sub { metrics($g) =~ /^geomx_store_up 1$/m } );
        my @up = slurp( $g->{log} ) =~ /event=store state=up/g;
        is( scalar @up, 1, 'one line for the change' );
        my $s = status($g)->{store};
        ok( $s->{up}, '/status: up' );
        is( $s->{redis}, "127.0.0.1:$redis_port", '/status: where' );
    }
};

subtest '2. a block added on one node refuses on the other within 1 s; a deletion frees it' => sub {
    my @delays;
    for my $i ( 1 .. 100 ) {
        my $cidr = "127.50.$i.0/24";
        my $r    = block_add( $a, $cidr, "fleet-$i" );
        my $t0   = time;
        is( $r->{status}, 200, "add $cidr on mx1" ) or diag $r->{content};
        poll_until( "$cidr refused on mx2", 5, sub { refused( $b, "127.50.$i.7" ) } );
        push @delays, time - $t0;
    }
    my ( $p50, $p99 ) = ( percentile( 0.5, @delays ), percentile( 0.99, @delays ) );
    diag sprintf( 'add on mx1 -> refused on mx2, 100 adds: p50 %.1f ms, p99 %.1f ms, max %.1f ms',
        1000 * $p50, 1000 * $p99, 1000 * percentile( 1, @delays ) );
    cmp_ok( $p99, '<=', 1.0, 'p99 <= 1 s' );
    like( slurp("$dir/state-mx2/blocks.toml"), qr/cidr = ['"]127\.50\.1\.0\/24['"].*?node = ['"]mx1['"]/s,
        "mx2 keeps mx1's block in its own blocks.toml, with the node that made it" );
    my ($listed) = grep { $_->{cidr} eq '127.50.7.0/24' }
        @{ decode_json( http()->get( "http://127.0.0.1:$b->{admin}/blocks", auth($b) )->{content} )->{blocks} };
    is( $listed->{node}, 'mx1', "mx2's block list names mx1" );

    my @freed;
    for my $i ( 1 .. 20 ) {
        my $r = block_del( $b, "127.50.$i.0/24" );
        my $t0 = time;
        is( $r->{status}, 200, "delete 127.50.$i.0/24 on mx2" ) or diag $r->{content};
        poll_until( "127.50.$i.0/24 freed on mx1", 5, sub { banner_for( $a, "127.50.$i.7" ) =~ /^220 / } );
        push @freed, time - $t0;
    }
    diag sprintf( 'delete on mx2 -> served on mx1, 20 deletes: p50 %.1f ms, p99 %.1f ms',
        1000 * percentile( 0.5, @freed ), 1000 * percentile( 0.99, @freed ) );
    is( redis_cli( 'HLEN', 'geomx:blocks' ), 100, 'Redis holds 80 blocks and 20 deletions' );
};

subtest '2b. a [[limit]] rate counts a client across the nodes' => sub {
    # 4 connections to mx1, then 4 to mx2: the 7th and 8th are over 6/min.
    my @answers;
    for my $g ( $a, $a, $a, $a, $b, $b, $b, $b ) {
        push @answers, banner_for( $g, '127.70.0.1' ) =~ /^(\d{3})/ ? $1 : 'none';
    }
    is( "@answers", '220 220 220 220 220 220 421 421', 'served 6, then 421 on whichever node' );
    # Another client of the same limit starts afresh: counted per client.
    like( banner_for( $b, '127.70.0.2' ), qr/^220 /, 'another client is served' );
    my $l = status($b)->{store}{limits};
    cmp_ok( $l->{answered}, '>=', 5, 'mx2 asked the store' );
    like( redis_cli( 'PTTL', 'geomx:rate:fleet-rate:127.70.0.1/32' ), qr/^\d+$/, 'the counter expires' );
    # 40 clients at once: their questions share script calls (one per loop turn).
    my @s = map { IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $b->{ports}{edge}, Timeout => 5 ) or die "connect: $!" } 1 .. 40;
    print { $s[ $_ - 1 ] } "PROXY TCP4 127.70.1.$_ 127.0.0.1 40000 25\r\n" for 1 .. 40;
    my $served = grep { read_line( $_, 5 ) =~ /^220 / } @s;
    close $_ for @s;
    is( $served, 40, '40 new clients at once: all served' );
    my $after = status($b)->{store}{limits};
    my ( $asked, $calls ) = ( $after->{asked} - $l->{asked}, $after->{calls} - $l->{calls} );
    is( $asked, 40, '... 40 questions' );
    cmp_ok( $calls, '<', $asked, "... in $calls script calls" );
};

subtest '2d. a [[limit]] of connections at once counts them across the nodes' => sub {
    my $c = '127.72.0.1';
    push @held, held( $a, $c ), held( $b, $c );
    ok( $held[0] && $held[1], 'one open on mx1, one on mx2: both served (2 at once)' );
    is( code_for( $a, $c ), 421, 'a third on mx1: 421' );
    is( code_for( $b, $c ), 421, 'a third on mx2: 421' );
    is( join( ' ', sort split /\n/, redis_cli( 'HKEYS', "geomx:conc:fleet-conc:$c/32" ) ) =~ s/\/[0-9a-f]{8}//gr,
        'mx1 mx2', 'Redis counts one per node process' );
    # One closes on mx1: the client may open one more, on either node.
    close( shift @held );
    my $t0 = time;
    my $s;
    poll_until( 'a freed slot taken on mx2', 5, sub { $s = held( $b, $c ) } );
    diag sprintf( 'closed on mx1 -> served on mx2: %.1f ms', 1000 * ( time - $t0 ) );
    push @held, $s;
    is( code_for( $a, $c ), 421, 'and then 2 are open again: 421 on mx1' );
    like( banner_for( $a, '127.72.0.2' ), qr/^220 /, 'another client is counted apart' );
    my $l = status($a)->{store}{limits}{concurrent};
    cmp_ok( $l->{over}, '>=', 2, "mx1's store refused $l->{over} of $l->{answered}" );
};

subtest '2e. a [[limit]] with a rate and connections at once asks both in one round trip' => sub {
    my $c   = '127.73.0.1';
    my $key = "geomx:conc:fleet-both:$c/32";
    my ( $la, $lb ) = ( status($a)->{store}{limits}, status($b)->{store}{limits} );
    my $s = held( $a, $c );
    ok( $s, 'one open on mx1: served (rate 1 of 3)' );
    is( code_for( $b, $c ), 421, 'a second at once on mx2: 421 (the rate allows it, the fleet has 1 open)' );
    close $s;
    poll_until( 'the connection given back', 5, sub { redis_cli( 'HLEN', $key ) eq '0' } );
    is( code_for( $b, $c ), 220, 'closed: one more on mx2 is served (rate 3 of 3)' );
    # mx2 gives it back within FleetLimits::release_within (5 ms) and a round trip.
    poll_until( 'the third given back', 5, sub { redis_cli( 'HLEN', $key ) eq '0' } );
    # Over the rate: the hold asked with it is not counted at all (it was
    # answered before the 421, so Redis says so at once).
    is( code_for( $a, $c ), 421, 'the 4th in a minute: 421 (over 3/min)' );
    is( redis_cli( 'HLEN', $key ), '0', '... and no connection of it counted in Redis meanwhile' );
    my $other = held( $a, '127.73.0.2' );
    ok( $other, 'another client is served' );
    close $other;
    poll_until( 'its connection given back', 5, sub { redis_cli( 'HLEN', 'geomx:conc:fleet-both:127.73.0.2/32' ) eq '0' } );
    my ( $ea, $eb ) = ( status($a)->{store}{limits}, status($b)->{store}{limits} );
    is( $ea->{over} - $la->{over} + $eb->{over} - $lb->{over}, 1, 'the store refused one rate' );
    is( $ea->{concurrent}{over} - $la->{concurrent}{over} + $eb->{concurrent}{over} - $lb->{concurrent}{over},
        1, 'and one connection at once (not the one over the rate)' );
    # Each session's two questions went in one script call: 5 calls and 3
    # releases (and one left over from 2d at most), heartbeats apart; 12
    # and more when the rate and the hold were asked one after the other.
    my $calls = $ea->{calls} - $la->{calls} + $eb->{calls} - $lb->{calls}
        - ( $ea->{heartbeats} - $la->{heartbeats} + $eb->{heartbeats} - $lb->{heartbeats} );
    cmp_ok( $calls, '<=', 5 + 3 + 1, "$calls script calls for 5 sessions' 10 questions and 3 releases" );
};

subtest '2c. geomx top --fleet merges every node\'s counts' => sub {
    # 127.71.0.1: 3 connections to mx1 and 2 to mx2; 127.71.0.2: 1 to mx2.
    banner_for( $_, '127.71.0.1' ) for $a, $a, $a, $b, $b;
    banner_for( $b, '127.71.0.2' );
    my $row = sub {
        my ( $g, $client, $query ) = @_;
        my $r = http()->get( "http://127.0.0.1:$g->{admin}/top?n=1000$query", auth($g) );
        return undef unless $r->{status} == 200;
        my $top = decode_json( $r->{content} );
        my ($c) = grep { $_->{address} eq $client } @{ $top->{clients} };
        return { %$top, row => $c };
    };
    my $t0 = time;
    wait_for( 'mx2\'s counts in mx1\'s fleet view', 15,
        sub { my $t = $row->( $a, '127.71.0.1', '&fleet=1' ); $t && $t->{row} && $t->{row}{connections} == 5 } );
    diag sprintf 'mx2\'s counts reached the fleet view in %.1f s (each node writes every 5 s)', time - $t0;
    my $fleet = $row->( $a, '127.71.0.1', '&fleet=1' );
    is_deeply( $fleet->{nodes}, [ 'mx1', 'mx2' ], 'the fleet view names both nodes, this one first' );
    is( $fleet->{row}{connections}, 5, '127.71.0.1: 3 on mx1 + 2 on mx2' );
    is( $row->( $a, '127.71.0.2', '&fleet=1' )->{row}{connections}, 1, '127.71.0.2: seen only on mx2' );
    is( $row->( $a, '127.71.0.1', '' )->{row}{connections}, 3, 'without fleet=1: this node\'s own (3)' );
    my $pid = open( my $fh, '-|' ) // die;
    if ( !$pid ) { open STDERR, '>&', \*STDOUT; exec $geomx, 'top', '--fleet', '--n', '1000', '-c', $a->{conf}, '--admin', "127.0.0.1:$a->{admin}" or POSIX::_exit(127) }
    my $out = do { local $/; <$fh> };
    close $fh;
    is( $? >> 8, 0, 'geomx top --fleet: exit 0' );
    like( $out, qr/^\d+ connections in the last 1m on 2 nodes \(mx1, mx2\)$/m, '... names the nodes' );
    like( $out, qr/^127\.71\.0\.1 +\S+ +5 /m, '... and the summed count' );
    is( http()->get( "http://127.0.0.1:$a->{admin}/top?fleet=2", auth($a) )->{status}, 400, 'fleet=2: 400' );
};

subtest '3. Redis killed under load: no failed session; changes made meanwhile reach the other node; refilled' => sub {
    # Clients through both nodes while Redis dies and comes back empty.
    my ( $ok, $failed ) = ( 0, 0 );
    my $load = sub {
        my ($n) = @_;
        for ( 1 .. $n ) {
            for my $g ( $a, $b ) {
                my $line = banner_for( $g, '127.60.0.9' );
                $line =~ /^220 / ? $ok++ : $failed++;
            }
        }
    };
    $load->(20);
    kill 'KILL', $redis_pid;
    waitpid $redis_pid, 0;
    wait_for( 'store down on mx1', 10, sub { metrics($a) =~ /^geomx_store_up 0$/m } );
    $load->(20);
    is( http()->get("http://127.0.0.1:$a->{admin}/readyz")->{status}, 200, '/readyz stays 200 with the store down' );
    my $top = http()->get( "http://127.0.0.1:$a->{admin}/top?fleet=1", auth($a) );
    is( $top->{status}, 503, '/top?fleet=1 with the store down: 503' );
    like( $top->{content}, qr/is down or did not answer/, '... saying why' );
    like( slurp( $a->{log} ), qr/event=store state=down .*serving=/, 'mx1 says the store is down' );
    # Changes during the outage: kept locally, in force locally.
    is( block_add( $a, '127.61.0.0/24', 'outage' )->{status}, 200, 'add on mx1 while Redis is down' );
    is( block_del( $a, '127.50.30.0/24' )->{status}, 200, 'delete on mx1 while Redis is down' );
    ok( refused( $a, '127.61.0.1' ), 'in force on mx1 at once' );
    ok( !refused( $b, '127.61.0.1' ), 'not yet on mx2' );
    $load->(20);
    # Redis comes back empty on the same port.
    ( undef, $redis_pid, $redis_stop ) = start_redis( $dir, 'redis-again', $redis_port );
    my $t0 = time;
    wait_for( 'outage block on mx2', 10, sub { refused( $b, '127.61.0.1' ) } );
    diag sprintf( 'Redis back: the outage block refused on mx2 after %.2f s', time - $t0 );
    wait_for( 'the outage deletion on mx2', 10, sub { banner_for( $b, '127.50.30.7' ) =~ /^220 / } );
    wait_for( 'Redis refilled', 5, sub { redis_cli( 'HLEN', 'geomx:blocks' ) == 101 } );
    diag sprintf( 'Redis refilled (101 entries) %.2f s after it came back', time - $t0 );
    is( redis_cli( 'HLEN', 'geomx:blocks' ), 101, 'every block and deletion is back in Redis' );
    wait_for( "2d's open connections counted again", 10, sub {
        my $n = 0;
        $n += $_ for split /\n/, redis_cli( 'HVALS', 'geomx:conc:fleet-conc:127.72.0.1/32' );
        return $n == 2;
    } );
    diag sprintf( "Redis back: 2d's connections at once counted again after %.2f s", time - $t0 );
    is( code_for( $a, '127.72.0.1' ), 421, 'and still 2 at once: a third is refused' );
    close $_ for splice @held;
    like( redis_cli( 'HGET', 'geomx:blocks', '127.50.30.0/24' ), qr/^\d+\tmx1\tdeleted$/, 'the deletion kept as one' );
    $load->(20);
    is( $failed, 0, "no failed session ($ok served through both nodes)" );
    my @down = slurp( $a->{log} ) =~ /event=store state=down/g;
    is( scalar @down, 1, 'one log line for the outage, not one per retry or connection' );
};

subtest '3b. kill -9 of a node under load: the other serves on; restarted, it has every block' => sub {
    my ( $ok, $failed ) = ( 0, 0 );
    my $load = sub {
        for ( 1 .. $_[0] ) { banner_for( $b, '127.60.0.9' ) =~ /^220 / ? $ok++ : $failed++ }
    };
    $load->(20);
    # Two connections at once held on mx1 when it dies: mx2 lets the client
    # open more once mx1's word runs out (at most 20 s after its last heartbeat).
    my @mine = ( held( $a, '127.72.0.9' ), held( $a, '127.72.0.9' ) );
    ok( $mine[0] && $mine[1], 'two open on mx1' );
    is( code_for( $b, '127.72.0.9' ), 421, 'so a third on mx2 is refused' );
    kill 'KILL', $a->{pid};
    waitpid $a->{pid}, 0;
    my $t0 = time;
    $load->(20);
    my $s;
    wait_for( "mx1's holds released", 35, sub { $s = held( $b, '127.72.0.9' ) } );
    my $released = time - $t0;
    diag sprintf( "kill -9 of mx1 -> its holds released on mx2 after %.1f s", $released );
    cmp_ok( $released, '<=', 30, '... within 30 s' );
    close $_ for grep { $_ } $s, @mine;
    is( block_add( $b, '127.63.0.0/24', 'while-mx1-was-dead' )->{status}, 200, 'add on mx2 while mx1 is dead' );
    $load->(20);
    is( $failed, 0, "mx2 served every client ($ok) through mx1's death" );
    my $expected = decode_json( http()->get( "http://127.0.0.1:$b->{admin}/blocks", auth($b) )->{content} )->{blocks};
    $a = start_geomx( $geomx, $dir, 'mx1-again', node_config('mx1') );    # same state_dir and node name
    wait_for( 'mx1 up again', 10, sub { metrics($a) =~ /^geomx_store_up 1$/m } );
    my %want = map { $_->{cidr} => 1 } @$expected;
    my $got;
    wait_for( "mx1 has mx2's " . scalar(@$expected) . ' blocks', 10, sub {
        $got = decode_json( http()->get( "http://127.0.0.1:$a->{admin}/blocks", auth($a) )->{content} )->{blocks};
        return join( ' ', sort map { $_->{cidr} } @$got ) eq join( ' ', sort keys %want );
    } );
    ok( refused( $a, '127.63.0.1' ), 'the block added while it was dead is in force on mx1' );
    ok( refused( $a, '127.61.0.1' ), 'so are the older ones' );
};

subtest '3c. 2,500 blocks in Redis are read a page at a time at connect' => sub {
    # Another writer's 2,500 blocks straight into the hash (no announcement):
    # a node learns of them only by reading the hash when it connects.
    my $expires = int(time) + 86400;
    my $version = int(time) * 1000;
    open my $cli, '|-', "redis-cli -p $redis_port >/dev/null" or die;
    for my $i ( 0 .. 2499 ) {
        my $cidr = sprintf '127.90.%d.%d/32', $i / 250, $i % 250;
        print $cli qq(HSET geomx:blocks $cidr "$version\\tmx9\\tblock\\t$version\\t$expires\\tmanual\\tbulk"\n);
    }
    close $cli;
    is( redis_cli( 'HLEN', 'geomx:blocks' ) >= 2500 ? 1 : 0, 1, 'Redis has them' );
    ok( !refused( $b, '127.90.9.249' ), 'mx2 does not know them yet' );
    redis_cli( 'CLIENT', 'KILL', 'TYPE', $_ ) for qw(normal pubsub);    # every node reconnects
    wait_for( 'mx2 has the 2,500', 15, sub {
        my $r = http()->get( "http://127.0.0.1:$b->{admin}/blocks", auth($b) );
        $r->{status} == 200 && ( () = $r->{content} =~ /"by":"mx9"|"node":"mx9"/g ) == 2500 } );
    pass('mx2 merged all 2,500 (HSCAN, pages of 1,000)');
    ok( refused( $b, '127.90.9.249' ) && refused( $a, '127.90.0.0' ), 'in force on both nodes' );
};

subtest '4. a wrong password, or no Redis at start: serves, and says why once' => sub {
    # A Redis that wants a password.
    my ($locked) = start_redis( $dir, 'redis-locked', 0, '--requirepass', 'right-password' );
    my $password_file = sub {
        my ( $name, $text ) = @_;
        open my $fh, '>', "$dir/$name" or die;
        print $fh "$text\n";
        close $fh;
        chmod 0644, "$dir/$name";    # read by nobody (the test runs geomx as nobody)
        return "$dir/$name";
    };
    my $wrong = $password_file->( 'wrong.pass', 'wrong-password' );
    my $c = start_geomx( $geomx, $dir, 'mx3',
        node_config( 'mx3', store => qq(redis = "127.0.0.1:$locked"\nnode = "mx3"\npassword_file = "$wrong"\n) ) );
    wait_for( 'mx3 says the store is down', 10, sub { slurp( $c->{log} ) =~ /event=store state=down/ } );
    like( slurp( $c->{log} ), qr/event=store state=down .*problem="?AUTH: WRONGPASS/, 'the reason: AUTH refused' );
    like( slurp( $c->{log} ), qr/event=warning problem="store.password_file \S+ is readable by every user/,
        'a password file others can read is warned about' );
    unlike( slurp( $c->{log} ), qr/wrong-password/, 'the password is not in the log' );
    unlike( http()->get( "http://127.0.0.1:$c->{admin}/status", auth($c) )->{content}, qr/wrong-password/, 'nor in /status' );
    like( banner_for( $c, '127.62.0.1' ), qr/^220 /, 'mx3 serves' );
    sleep 2.5;    # retries happen meanwhile (100 ms, doubling to 1 s)
    my @down = slurp( $c->{log} ) =~ /event=store state=down/g;
    is( scalar @down, 1, 'said once, not once per retry' );
    $c->{stop}->();
    my $right = $password_file->( 'right.pass', 'right-password' );
    my $e = start_geomx( $geomx, $dir, 'mx5',
        node_config( 'mx5', store => qq(redis = "127.0.0.1:$locked"\nnode = "mx5"\npassword_file = "$right"\n) ) );
    wait_for( 'mx5 up with the right password', 10, sub { metrics($e) =~ /^geomx_store_up 1$/m } );
    unlike( slurp( $e->{log} ), qr/right-password/, 'the password is not in the log' );
    $e->{stop}->();

    my $nowhere = free_port();
    my $d = start_geomx( $geomx, $dir, 'mx4',
        node_config( 'mx4', store => qq(redis = "127.0.0.1:$nowhere"\nnode = "mx4"\n) ) );
    wait_for( 'mx4 says the store is down', 10, sub { slurp( $d->{log} ) =~ /event=store state=down/ } );
    like( slurp( $d->{log} ), qr/problem="?Connection refused/, 'the reason: connection refused' );
    like( banner_for( $d, '127.62.0.1' ), qr/^220 /, 'mx4 serves' );
    is( http()->get("http://127.0.0.1:$d->{admin}/readyz")->{status}, 200, '/readyz 200' );
    $d->{stop}->();
};

subtest '4b. Redis on a unix socket: a node there shares the blocks of one on TCP' => sub {
    # Another Redis, on TCP and on a socket (mode 0777: geomx runs as nobody).
    my ($both) = start_redis( $dir, 'redis-unix', 0, '--unixsocket', "$dir/redis.sock", '--unixsocketperm', '777' );
    my $tcp = start_geomx( $geomx, $dir, 'mx6',
        node_config( 'mx6', store => qq(redis = "127.0.0.1:$both"
node = "mx6"
key_prefix = "u:"
) ) );
    my $unix = start_geomx( $geomx, $dir, 'mx7',
        node_config( 'mx7', store => qq(redis = "unix:$dir/redis.sock"
node = "mx7"
key_prefix = "u:"
) ) );
    wait_for( 'mx7 up on the socket', 10, sub { metrics($unix) =~ /^geomx_store_up 1$/m } );
    is( status($unix)->{store}{redis}, "unix:$dir/redis.sock", '/status: where' );
    is( block_add( $tcp, '127.64.0.0/24', 'over-tcp' )->{status}, 200, 'a block added on the TCP node' );
    wait_for( 'refused on the unix-socket node', 5, sub { refused( $unix, '127.64.0.1' ) } );
    pass('... is in force on the unix-socket node');
    $_->{stop}->() for $tcp, $unix;
};

done_testing();
