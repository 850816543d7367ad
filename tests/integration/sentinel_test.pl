#!/usr/bin/perl
# A fleet behind Redis Sentinel: a master, a replica and three sentinels
# (real redis-server and redis-sentinel on loopback), two geomx nodes that
# ask the sentinels where the master is. The master is killed (-9) under
# load (every session asks the store: a [[limit]] rate): the sentinels
# promote the replica and both nodes follow it without a restart; no
# session fails, and the new master answers their questions; a block added
# before the failover is still in force and one added after reaches the
# other node. Then the old master comes back as a replica and a manual
# SENTINEL FAILOVER demotes the live master: the nodes follow again. Clients are PROXY v1
# headers from a trusted local sender. Every wait has a deadline.
# Usage: sentinel_test.pl GEOMX TESTDATA_DIR
use strict;
use warnings;
use Test::More;
use IO::Socket::IP;
use Cwd ();
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use FindBin;
use lib $FindBin::Bin;
use GeomxTest qw(free_port wait_for slurp start_geomx start_sink start_redis first_line auth spawn can_connect fleet_node_config);
use HTTP::Tiny;
use JSON::PP qw(decode_json);

my ( $geomx, $testdata ) = @ARGV;
die "usage: $0 GEOMX TESTDATA\n" unless $testdata;
$testdata = Cwd::abs_path($testdata);
my $dir = tempdir( 'geomx-sentinel-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{GEOMX_TEST_KEEP} );
chmod 0755, $dir;
END { my $status = $?; $_->() for reverse @GeomxTest::cleanup; $? = $status; }
$SIG{PIPE} = 'IGNORE';

# The sentinels want a password of their own (requirepass): geomx gives
# it from store.sentinel_password_file.
my $sentinel_secret = 'sentinel-secret';
my %sentinel_port;
sub redis_cli {
    my ( $port, @args ) = @_;
    my $auth = $sentinel_port{$port} ? "--no-auth-warning -a $sentinel_secret" : '';
    my $out  = `redis-cli -p $port $auth @args 2>&1`;
    chomp $out;
    return $out;
}

my ( $master, $master_pid ) = start_redis( $dir, 'master' );
my ($replica) = start_redis( $dir, 'replica', 0, '--replicaof', '127.0.0.1', $master );
wait_for( 'the replica in sync', 10, sub { redis_cli( $replica, 'INFO', 'replication' ) =~ /master_link_status:up/ } );
my @sentinels;
for my $i ( 1 .. 3 ) {
    my $port = free_port();
    open my $fh, '>', "$dir/sentinel$i.conf" or die;
    print $fh "port $port\nbind 127.0.0.1\ndir $dir\nsentinel monitor geomx 127.0.0.1 $master 2\n"
      . "sentinel down-after-milliseconds geomx 1000\nsentinel failover-timeout geomx 5000\n"
      . "requirepass $sentinel_secret\nsentinel sentinel-pass $sentinel_secret\n";
    close $fh;
    $sentinel_port{$port} = 1;
    spawn( "$dir/sentinel$i.log", 'redis-sentinel', "$dir/sentinel$i.conf" );
    wait_for( "sentinel $i", 10, sub { can_connect($port) } );
    push @sentinels, $port;
}
wait_for( 'the sentinels see each other and the replica', 20, sub {
    redis_cli( $sentinels[0], 'SENTINEL', 'master', 'geomx' ) =~ /num-other-sentinels\n2\n/
      && redis_cli( $sentinels[0], 'SENTINEL', 'replicas', 'geomx' ) =~ /\b$replica\b/ } );
my ($sink) = start_sink( $dir, 'sink' ) =~ /:(\d+)$/;
open my $pass, '>', "$dir/sentinel.pass" or die;
print $pass "$sentinel_secret\n";
close $pass;
chmod 0640, "$dir/sentinel.pass";
chown 0, scalar( getgrnam("nogroup") ) // 65534, "$dir/sentinel.pass" if $> == 0;    # geomx runs as nobody:nogroup

sub node_config {
    my ($name) = @_;
    my $list = join ', ', map {qq("127.0.0.1:$_")} @sentinels;
    return fleet_node_config(
        dir => $dir, name => $name, testdata => $testdata, sink => $sink,
        store => qq(sentinels = [$list]\nmaster = "geomx"\nnode = "$name"\n)
          . qq(sentinel_password_file = "$dir/sentinel.pass"\n),
        limits => <<'TOML' );
[lists.counted]
cidrs = ["127.81.0.0/16"]
[[limit]]
name = "every"
rate = "1000000/s"
if = { list = "counted" }
TOML
}
sub http { HTTP::Tiny->new( timeout => 5 ) }
sub status { decode_json( http()->get( "http://127.0.0.1:$_[0]{admin}/status", auth( $_[0] ) )->{content} )->{store} }
sub block_add { my ( $g, $cidr ) = @_; return http()->post( "http://127.0.0.1:$g->{admin}/blocks?cidr=$cidr", auth($g) )->{status} }
sub refused { my ( $g, $client ) = @_; return first_line( $g->{ports}{edge}, $client ) =~ /^554 / }

my $a = start_geomx( $geomx, $dir, 'mx1', node_config('mx1') );
my $b = start_geomx( $geomx, $dir, 'mx2', node_config('mx2') );

subtest '1. both nodes find the master through the sentinels' => sub {
    for my $g ( $a, $b ) {
        wait_for( "store up on $g->{log}", 10, sub { status($g)->{up} } );
        is( status($g)->{redis}, "127.0.0.1:$master (master geomx)", '/status: the master the sentinels named' );
    }
    like( `redis-cli -p $sentinels[0] SENTINEL get-master-addr-by-name geomx 2>&1`, qr/NOAUTH/,
        'the sentinels want a password (so the nodes gave theirs)' );
    unlike( slurp( $a->{log} ), qr/$sentinel_secret/, "the sentinels' password is not in the log" );
    is( block_add( $a, '127.80.1.0/24' ), 200, 'a block added on mx1 before the failover' );
    wait_for( 'it on mx2', 5, sub { refused( $b, '127.80.1.1' ) } );
    pass('in force on mx2');
};

subtest '2. the master killed under load: the replica promoted, both nodes follow it; no session fails' => sub {
    my ( $ok, $failed ) = ( 0, 0 );
    my $load = sub {
        for my $g ( $a, $b ) { first_line( $g->{ports}{edge}, '127.81.0.1' ) =~ /^220 / ? $ok++ : $failed++ }
    };
    $load->() for 1 .. 20;
    my $t0 = time;
    kill 'KILL', $master_pid;
    my ( $promoted, $followed );
    my $end = time + 30;
    while ( time < $end ) {
        $load->();
        $promoted //= time - $t0 if redis_cli( $sentinels[0], 'SENTINEL', 'get-master-addr-by-name', 'geomx' ) =~ /\b$replica\b/;
        if ( !defined $followed && ( status($a)->{redis} // '' ) =~ /:$replica / && status($a)->{up}
            && ( status($b)->{redis} // '' ) =~ /:$replica / && status($b)->{up} ) {
            $followed = time - $t0;
            last;
        }
        sleep 0.05;
    }
    ok( defined $followed, 'both nodes are on the new master' ) or diag slurp( $a->{log} );
    cmp_ok( $followed // 99, '<=', 10, sprintf 'within 10 s of the kill: promoted after %.1f s, both nodes on it after %.1f s', $promoted // -1, $followed // -1 );
    my $answered = status($a)->{limits}{answered};
    $load->() for 1 .. 20;
    is( $failed, 0, "no failed session of $ok + $failed during the failover" );
    cmp_ok( status($a)->{limits}{answered}, '>=', $answered + 15, 'the new master answers the sessions\' rate questions' );
    like( slurp( $a->{log} ), qr/event=store state=down .*serving=/, 'mx1 said the store was down meanwhile' );
};

subtest '3. state across the failover' => sub {
    ok( refused( $a, '127.80.1.1' ) && refused( $b, '127.80.1.1' ), 'the block added before is in force on both' );
    is( redis_cli( $replica, 'HEXISTS', 'geomx:blocks', '127.80.1.0/24' ), '1', '... and in the new master (replicated)' );
    is( block_add( $b, '127.80.2.0/24' ), 200, 'a block added on mx2 after the failover' );
    wait_for( 'it on mx1', 5, sub { refused( $a, '127.80.2.1' ) } );
    pass('reaches mx1');
};

subtest '4. a manual failover demotes the live master: the nodes follow it back' => sub {
    my ($old) = start_redis( $dir, 'old-master', $master, '--replicaof', '127.0.0.1', $replica );
    wait_for( 'the old master a replica in sync', 20, sub { redis_cli( $old, 'INFO', 'replication' ) =~ /master_link_status:up/ } );
    wait_for( 'the sentinels see it as a replica', 30, sub {
        my $r = redis_cli( $sentinels[0], 'SENTINEL', 'replicas', 'geomx' );
        $r =~ /\b$old\b/ && $r !~ /s_down/ } );
    my $t0 = time;
    my $failover;
    wait_for( 'SENTINEL FAILOVER accepted', 20, sub { ( $failover = redis_cli( $sentinels[0], 'SENTINEL', 'FAILOVER', 'geomx' ) ) eq 'OK' } );
    wait_for( 'both nodes on the old master again', 20, sub {
        for my $g ( $a, $b ) { my $s = status($g); return 0 unless $s->{up} && ( $s->{redis} // '' ) =~ /:$old / }
        return 1 } );
    diag sprintf 'both nodes on the promoted instance %.1f s after SENTINEL FAILOVER', time - $t0;
    # Told by +switch-master, before Sentinel reconfigures the old master
    # (its info period is 10 s), which takes writes until then.
    cmp_ok( time - $t0, '<', 8, '... told at the switch, not when the old master is demoted' );
    wait_for( 'the instance they left a replica', 30, sub { redis_cli( $replica, 'ROLE' ) =~ /^slave/ } );
    pass('the instance they left is a replica now');
    is( block_add( $a, '127.80.3.0/24' ), 200, 'a block added on mx1 after it' );
    wait_for( 'it on mx2', 5, sub { refused( $b, '127.80.3.1' ) } );
    pass('reaches mx2');
};

$_->{stop}->() for $a, $b;
unlike( slurp( $a->{log} ) . slurp( $b->{log} ), qr/ERROR: AddressSanitizer|runtime error:/, 'no sanitizer report' );
done_testing();
