#!/usr/bin/perl
# The policy listener (mode = "policy") behind a real Postfix smtpd's
# check_policy_service: greylisting with a short delay, the X-Geomx header
# on the delivered mail (Postfix relays to an smtp-sink that dumps each
# message), auto_allow, skip, a block at RCPT, the triplets surviving a
# restart and a kill -9 (this node's store), two nodes on one Redis (the
# first attempt on A, the retry on B), and the protocol's bad inputs from a
# raw client. swaks and raw clients bind 127.x sources: 127.1/16 is GB (in
# list "english": skipped), 127.2/16 CN (edge6.mmdb).
# Usage: policy_test.pl GEOMX TESTDATA_DIR
use strict;
use warnings;
use Test::More;
use IO::Socket::IP;
use IO::Select;
use Cwd ();
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use FindBin;
use lib $FindBin::Bin;
use GeomxTest qw(free_port wait_for slurp spawn start_postfix start_sink start_redis can_connect);
use HTTP::Tiny;

my ( $geomx, $testdata ) = @ARGV;
die "usage: $0 GEOMX TESTDATA\n" unless $testdata;
$testdata = Cwd::abs_path($testdata);
my $dir = tempdir( 'geomx-policy-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{GEOMX_TEST_KEEP} );
chmod 0755, $dir;
END { my $status = $?; $_->() for reverse @GeomxTest::cleanup; $? = $status; }
$SIG{PIPE} = 'IGNORE';

my $delay = 3;    # seconds: greylist.delay in the tests
my $mail  = "$dir/mail";
mkdir $mail;
chmod 0777, $mail;
my $sink = start_sink( $dir, 'sink', undef, '-d', "$mail/msg." );

sub node_config {
    my (%o) = @_;
    my $state = GeomxTest::state_dir( $dir, $o{name} );
    return <<"TOML";
[server]
hostname = "$o{name}.test"
threads = 2
state_dir = "$state"
[geo]
databases = ["$testdata/edge6.mmdb"]
[[listener]]
name = "mx"
address = "127.0.0.1:0"
[[listener]]
name = "policy"
address = "127.0.0.1:$o{port}"
mode = "policy"
trusted_proxies = ["127.0.0.1/32"]
[lists.english]
countries = ["GB", "US", "IE", "CA", "AU", "NZ"]
[pool.sink]
members = ["$sink"]
[pool.quarantine]
members = ["$sink"]
[[rule]]
name = "english"
if = { list = ["english"] }
pool = "sink"
[[rule]]
name = "quarantine"
pool = "quarantine"
[greylist]
delay = "${delay}s"
retry_window = "1h"
auto_allow = 2
skip = { list = ["english"] }
[policy]
header = "X-Geomx"
[admin]
listen = "127.0.0.1:$o{admin}"
$o{extra}
TOML
}

my $port_a  = free_port();
my $admin_a = free_port();
my $a      = GeomxTest::start_geomx( $geomx, $dir, 'a', node_config( name => 'a', port => $port_a, admin => $admin_a, extra => '' ) );
my $p      = start_postfix( $dir, 'p', free_port(), <<"CF" );
smtpd_upstream_proxy_protocol =
relay_transport = relay:[127.0.0.1]:@{[ ( split /:/, $sink )[1] ]}
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:$port_a, permit
smtp_helo_name = p.test
CF

sub swaks {
    my ( $source, $from, $to ) = @_;
    my $out = qx(swaks --server 127.0.0.1:$p->{port} --local-interface $source --from $from --to $to --helo client.test --header 'Subject: greylist test' --timeout 20 2>&1);
    return $out;
}
sub rcpt_reply { my ($out) = @_; my ($r) = $out =~ /RCPT TO:[^\n]*\n\s*<(?:-|\*\*)\s+(\d{3}[ -][^\n]*)/; return $r // "none: $out" }

sub metric {
    my ( $g, $name ) = @_;
    my $m = HTTP::Tiny->new( timeout => 5 )->get("http://127.0.0.1:$g->{admin}/metrics")->{content};
    my ($v) = $m =~ /^\Q$name\E (\d+)$/m;
    return $v // -1;
}

# 1. The first attempt is greylisted, a retry before the delay too, one after it passes.
my $t0  = time;
my $out = swaks( '127.2.0.10', 'alice+list@sender.test', 'u1@example.test' );
like( rcpt_reply($out), qr/^450 4\.2\.0 .*Greylisted, please retry in \d+ seconds/, 'first attempt: 450 4.2.0' );
$out = swaks( '127.2.0.10', 'alice@sender.test', 'U1@Example.test' );
like( rcpt_reply($out), qr/^450 4\.2\.0 .*retry in [123] seconds?/, 'retry before the delay (same triplet after normalisation): 450 again, less time left' );
sleep 0.05 while time < $t0 + $delay + 0.2;    # the clock is the thing tested
$out = swaks( '127.2.0.10', 'alice@sender.test', 'u1@example.test' );
like( rcpt_reply($out), qr/^250/, 'retry after the delay: 250' );
like( $out, qr/<-\s+250 2\.0\.0 Ok: queued/, 'the message is queued' );
my $dump = wait_for( 'the message at the sink', 30, sub { my @f = glob("$mail/msg.*"); @f ? $f[0] : undef } );
wait_for( 'the dump written', 10, sub { slurp($dump) =~ /greylist test/ } );
like( slurp($dump), qr/^X-Geomx: country=CN list=- rule=quarantine node=a\.test\r?$/m, 'the delivered message has the X-Geomx header' );
my @headers = slurp($dump) =~ /^X-Geomx:/mg;
is( scalar @headers, 1, 'one header per message' );

# 2. auto_allow = 2: after a second network pass, a new sender from 127.2.0.0/24 passes at once.
$t0 = time;
like( rcpt_reply( swaks( '127.2.0.11', 'bob@other.test', 'u2@example.test' ) ), qr/^450/, 'a second triplet of the network: 450' );
sleep 0.05 while time < $t0 + $delay + 0.2;
like( rcpt_reply( swaks( '127.2.0.11', 'bob@other.test', 'u2@example.test' ) ), qr/^250/, 'its retry passes (the network\'s second pass)' );
like( rcpt_reply( swaks( '127.2.0.12', 'carol@new.test', 'u3@example.test' ) ), qr/^250/, 'auto_allow: a new sender from the network passes at once' );
like( rcpt_reply( swaks( '127.2.1.12', 'carol@new.test', 'u3@example.test' ) ), qr/^450/, '... and one from the next /24 is greylisted' );
is( metric( $a, 'geomx_policy_requests_total{result="auto_allowed"}' ), 1, 'counted auto_allowed' );

# 3. skip: a client in the english list is never greylisted.
like( rcpt_reply( swaks( '127.1.0.5', 'dave@uk.test', 'u4@example.test' ) ), qr/^250/, 'skip: GB passes at once' );
is( metric( $a, 'geomx_policy_requests_total{result="skipped"}' ), 1, 'counted skipped' );

# 4. A block from the front end applies at RCPT.
system( $geomx, 'block', 'add', '-c', $a->{conf}, '127.2.0.66', '--comment', 'policy test' ) == 0 or die 'block add failed';
like( rcpt_reply( swaks( '127.2.0.66', 'eve@bad.test', 'u5@example.test' ) ), qr/^554 5\.7\.1/, 'a blocked client: 554 5.7.1' );

# The raw protocol, for what swaks cannot send.
sub request {
    my (%attr) = @_;
    my %base = ( request => 'smtpd_access_policy', protocol_state => 'RCPT', protocol_name => 'ESMTP',
        helo_name => 'client.test', queue_id => '', instance => 'i' . int( rand(1e9) ), size => 0 );
    my %all = ( %base, %attr );
    return join( '', map {"$_=$all{$_}\n"} sort keys %all ) . "\n";
}
sub ask {
    my ( $port, $req, $source ) = @_;
    my $s = IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $port, Timeout => 5, $source ? ( LocalHost => $source ) : () ) or die "connect: $!";
    print $s $req;
    my $reply = read_reply_policy($s);
    close $s;
    return $reply;
}
sub read_reply_policy {
    my ($s) = @_;
    my $buf = '';
    my $sel = IO::Select->new($s);
    my $end = time + 10;
    while ( $buf !~ /\n\n/ && time < $end ) {
        last unless $sel->can_read( $end - time );
        my $n = sysread( $s, $buf, 65536, length $buf );
        last unless $n;
    }
    return $buf =~ /^action=(.*)\n\n/ ? $1 : undef;
}

# 5. The triplets survive a restart (SIGTERM) and a kill -9 (this node's store).
my %t3 = ( client_address => '127.2.3.4', sender => 'frank@restart.test', recipient => 'u6@example.test' );
my %t4 = ( client_address => '127.2.4.4', sender => 'grace@kill.test',    recipient => 'u7@example.test' );
$t0 = time;
like( ask( $port_a, request(%t3) ), qr/^450 /, 'triplet 3: first attempt 450' );
like( ask( $port_a, request(%t4) ), qr/^450 /, 'triplet 4: first attempt 450' );
$a->{stop}->();
$a = GeomxTest::start_geomx( $geomx, $dir, 'a2', node_config( name => 'a', port => $port_a, admin => $admin_a, extra => '' ) );
sleep 0.05 while time < $t0 + $delay + 0.2;
like( ask( $port_a, request(%t3) ), qr/^PREPEND X-Geomx: country=CN/, 'after a restart the retry passes (triplet kept in state_dir)' );
kill 'KILL', $a->{pid};
waitpid $a->{pid}, 0;
$a = GeomxTest::start_geomx( $geomx, $dir, 'a3', node_config( name => 'a', port => $port_a, admin => $admin_a, extra => '' ) );
like( ask( $port_a, request(%t4) ), qr/^PREPEND X-Geomx:/, 'after a kill -9 the retry passes too (journal written before the answer)' );
like( slurp("$a->{log}"), qr/event=policy client=127\.2\.4\.4 result=passed/, 'the log says passed' );

# 6. Protocol robustness, from a raw client.
sub closed_without_answer {
    my ($bytes) = @_;
    my $s = IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $port_a, Timeout => 5 ) or die "connect: $!";
    print $s $bytes;
    my $buf = '';
    my $sel = IO::Select->new($s);
    my $end = time + 10;
    while ( time < $end ) {
        last unless $sel->can_read( $end - time );
        my $n = sysread( $s, $buf, 65536, length $buf );
        last unless $n;
    }
    close $s;
    return time < $end && $buf eq '';
}
ok( closed_without_answer("hello there\n\n"),                          'a line that is not name=value: closed, no answer' );
ok( closed_without_answer("request=smtpd_access_policy\nclient_address=1.2.3.4\n=x\n\n"), 'an empty name: closed' );
ok( closed_without_answer("request=other\n\n"),                        'another request type: closed' );
ok( closed_without_answer( request( sender => 'x' x 20000 ) ),          'a 20,000-byte value: closed' );
ok( closed_without_answer( join( '', map {"a$_=b\n"} 1 .. 200 ) . "\n" ), '200 attributes: closed' );
ok( closed_without_answer( "\0" x 100 ),                                'NUL bytes: closed' );
{
    my $s = IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $port_a, Timeout => 5 ) or die;
    print $s join( '', map { request( client_address => '127.1.0.9', sender => "s$_\@uk.test", recipient => 'r@example.test' ) } 1 .. 100 );
    my $buf = '';
    my $sel = IO::Select->new($s);
    my $end = time + 20;
    while ( ( () = $buf =~ /\n\n/g ) < 100 && time < $end ) {
        last unless $sel->can_read( $end - time );
        last unless sysread( $s, $buf, 65536, length $buf );
    }
    my @answers = $buf =~ /^action=(.*)\n\n/mg;
    is( scalar @answers, 100, '100 pipelined requests on one connection: 100 answers' );
    ok( !grep( { !/^PREPEND X-Geomx: country=GB list=english rule=english node=a\.test$/ } @answers ), '... each the GB verdict' );
    close $s;
}
{
    # 1,000 connections at once, each asking once.
    my @socks;
    for my $i ( 1 .. 1000 ) {
        my $s = IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $port_a, Timeout => 5 ) or last;
        push @socks, $s;
    }
    is( scalar @socks, 1000, '1,000 connections open at once' );
    print $_ request( client_address => '127.1.0.8', sender => 'many@uk.test', recipient => 'r@example.test' ) for @socks;
    my $answered = 0;
    for my $s (@socks) { $answered++ if defined read_reply_policy($s) }
    is( $answered, 1000, '... and all 1,000 answered' );
    close $_ for @socks;
}
is( ask( $port_a, request( client_address => '127.1.0.7', sender => 'x@uk.test', recipient => 'r@example.test', protocol_state => 'DATA' ) ), 'DUNNO', 'another stage than RCPT: DUNNO' );
is( ask( $port_a, request(%t4), '127.0.0.2' ), undef, 'a peer outside trusted_proxies: closed' );
like( slurp( $a->{log} ), qr/event=policy_refused listener=policy peer=127\.0\.0\.2:\d+/, '... and logged' );
ok( kill( 0, $a->{pid} ), 'geomx is alive after all of it' );
cmp_ok( metric( $a, 'geomx_policy_errors_total{reason="malformed"}' ), '>=', 6, 'malformed requests counted' );

# 7. Two nodes on one Redis: the first attempt on A, the retry on B passes.
my ( $redis, $redis_pid ) = start_redis( $dir, 'redis' );
my $store   = qq([store]\nredis = "127.0.0.1:$redis"\ntimeout = "200ms"\n);
$a->{stop}->();
my $port_b = free_port();
$a = GeomxTest::start_geomx( $geomx, $dir, 'a4', node_config( name => 'a', port => $port_a, admin => $admin_a, extra => $store ) );
my $b = GeomxTest::start_geomx( $geomx, $dir, 'b', node_config( name => 'b', port => $port_b, admin => free_port(), extra => $store ) );
wait_for( 'both nodes on the store', 20, sub { metric( $a, 'geomx_store_up' ) == 1 && metric( $b, 'geomx_store_up' ) == 1 } );
my %t5 = ( client_address => '127.2.5.5', sender => 'heidi@fleet.test', recipient => 'u8@example.test' );
$t0 = time;
like( ask( $port_a, request(%t5) ), qr/^450 /, 'fleet: first attempt on A: 450' );
like( ask( $port_b, request(%t5) ), qr/^450 4\.2\.0 .*retry in [123] seconds?/, 'fleet: an early retry on B: 450 with the time A started' );
sleep 0.05 while time < $t0 + $delay + 0.2;
like( ask( $port_b, request(%t5) ), qr/^PREPEND X-Geomx: country=CN .* node=b\.test$/, 'fleet: the retry on B passes' );
chomp( my $keys = qx(redis-cli -p $redis --scan --pattern 'geomx:cache:grey:*' | wc -l) );
cmp_ok( $keys + 0, '>=', 2, "fleet: the triplet and its network in Redis ($keys keys)" );

# 8. Redis killed -9 under requests: every request is answered (from the
# node's own copy of the cache, or let through at store.timeout), none fails.
{
    my $answered = 0;
    my $killed = 0;
    my $failed = 0;
    for my $i ( 1 .. 400 ) {
        if ( $i == 100 ) { kill 'KILL', $redis_pid; $killed = 1 }
        my $r = ask( $i % 2 ? $port_a : $port_b, request( client_address => "127.2.9." . ( $i % 250 ), sender => "k$i\@kill.test", recipient => 'r@example.test' ) );
        defined $r ? $answered++ : $failed++;
    }
    is( $failed, 0, "Redis killed -9 after 100 of 400 requests: $answered answered, $failed failed" );
    wait_for( 'both nodes see the store down', 20, sub { metric( $a, 'geomx_store_up' ) == 0 && metric( $b, 'geomx_store_up' ) == 0 } );
    like( ask( $port_b, request(%t5) ), qr/^PREPEND X-Geomx:/, 'with Redis gone, B still passes the triplet it passed (its own copy)' );
}

done_testing();
