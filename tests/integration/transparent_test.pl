#!/usr/bin/perl
# The outbound NAT guard: a transparent listener behind an nft REDIRECT, in
# a network namespace this test creates and removes, on that namespace's
# loopback only (nothing leaves it). Clients (this script, uid 0) dial port
# 25 on 127.0.0.98, 127.0.0.99 and ::1, where smtp-sinks play remote
# servers; the OUTPUT chain redirects uid 0's port-25 connections to geomx,
# which runs as nobody, so its own connections to the sinks go out as
# dialled. Shown: each client reaches the server it dialled, a [[limit]]
# bans a planted spammer, an operator block is in force, `geomx top` ranks
# the spammer first, a connection that was not redirected is refused, and
# so is geomx's own connection when a bad rule redirects it back.
# Needs root (network namespaces); exits 77 (skipped) without it.
# Usage: transparent_test.pl GEOMX TESTDATA_DIR
use strict;
use warnings;
use Test::More;
use IO::Socket::IP;
use Cwd ();
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use FindBin;
use lib $FindBin::Bin;
use GeomxTest qw(wait_for slurp start_geomx start_sink read_line);

my ( $geomx, $testdata ) = @ARGV;
die "usage: $0 GEOMX TESTDATA\n" unless $testdata;

# --- outside: create the namespace, run this script inside it, remove it ----
if ( !$ENV{GEOMX_NETNS} ) {
    if ( $> != 0 ) { print "1..0 # SKIP needs root to create a network namespace\n"; exit 77 }
    my $ns = "geomx-test-$$";
    system( 'ip', 'netns', 'add', $ns ) == 0 or die "ip netns add $ns failed\n";
    my $removed;
    my $remove = sub {
        return if $removed++;
        system( 'ip', 'netns', 'del', $ns );
    };
    local $SIG{INT} = local $SIG{TERM} = sub { $remove->(); exit 1 };
    $ENV{GEOMX_NETNS} = $ns;
    system( 'ip', 'netns', 'exec', $ns, $^X, $0, @ARGV );
    my $rc = $? == -1 ? 1 : $? & 127 ? 1 : $? >> 8;
    $remove->();
    my $left = `ip netns list`;
    if ( $left =~ /^\Q$ns\E\b/m ) { print STDERR "namespace $ns was not removed\n"; exit 1 }
    print "# namespace $ns removed\n";
    exit $rc;
}

# --- inside the namespace ---------------------------------------------------
$testdata = Cwd::abs_path($testdata);
my $dir = tempdir( 'geomx-transparent-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{GEOMX_TEST_KEEP} );
chmod 0755, $dir;
END { my $status = $?; $_->() for reverse @GeomxTest::cleanup; $? = $status; }
$SIG{PIPE} = 'IGNORE';

system( 'ip', 'link', 'set', 'lo', 'up' ) == 0 or die "ip link set lo up failed\n";
like( `ip -o addr show dev lo`, qr/inet 127\.0\.0\.1\/8/, "namespace $ENV{GEOMX_NETNS}: its own loopback is up" );
is( `ip -o link show | grep -vc ': lo:'` + 0, 0, 'and it has no other interface' );

# The "remote" servers: smtp-sinks on port 25 that name themselves, each
# dumping the mail it takes into a folder of its own.
my %dump;
for my $name (qw(far98 far99 far6)) {
    $dump{$name} = "$dir/dump-$name";
    mkdir $dump{$name};
    chmod 0777, $dump{$name};
}
start_sink( $dir, 'far98', '127.0.0.98:25', '-d', "$dump{far98}/%H%M%S." );
start_sink( $dir, 'far99', '127.0.0.99:25', '-d', "$dump{far99}/%H%M%S." );
start_sink( $dir, 'far6', '[::1]:25', '-d', "$dump{far6}/%H%M%S." );

my $state = "$dir/state";
mkdir $state;
chmod 0777, $state;
my $g = start_geomx( $geomx, $dir, 'gateway', <<"TOML" );
[server]
hostname = "gw.test"
threads = 2
state_dir = "$state"
[geo]
databases = ["$testdata/edge6.mmdb"]
[[listener]]
name = "out4"
address = "127.0.0.1:0"
mode = "transparent"
[[listener]]
name = "out6"
address = "[::1]:0"
mode = "transparent"
[[listener]]
name = "loop"
address = "127.0.0.1:0"
mode = "transparent"
[[limit]]
name = "outbound"
if = { listener = ["out4", "out6"] }
rate = "5/min"
action = "ban"
ban_for = "1h"
[[rule]]
name = "outbound"
if = { listener = ["out4", "out6", "loop"] }
action = "pass"
[[rule]]
name = "rest"
action = "reject"
TOML
my ( $p4, $p6, $ploop ) = @{ $g->{ports} }{qw(out4 out6 loop)};
ok( $p4 && $p6, "geomx listens on 127.0.0.1:$p4 and [::1]:$p6" );
like( slurp( $g->{log} ), qr/event=listening listener=out4 \S+ mode=transparent/, 'logged as transparent' );

# Port 25 from uid 0 (this script and swaks) goes to geomx; geomx (nobody)
# is not redirected.
open my $nft, '|-', 'nft', '-f', '-' or die "nft: $!";
print $nft <<"NFT";
table inet geomx_test {
  chain output {
    type nat hook output priority -100; policy accept;
    meta nfproto ipv4 meta skuid 0 tcp dport 25 redirect to :$p4
    meta nfproto ipv6 meta skuid 0 tcp dport 25 redirect to :$p6
  }
}
NFT
ok( close($nft), 'nft REDIRECT rules loaded' );

# A connection from SOURCE to HOST:25, as dialled (the NAT redirects it).
sub dial {
    my ( $host, $source ) = @_;
    return IO::Socket::IP->new( PeerHost => $host, PeerPort => 25, LocalHost => $source, Timeout => 5 );
}

# One whole mail by our own SMTP client: the replies, one per line.
sub send_mail {
    my ( $host, $source, $tag ) = @_;
    my $s = dial( $host, $source ) or return "connect: $!";
    my @said = ( read_line($s) );
    for my $cmd ( "HELO client.test", "MAIL FROM:<a\@client.test>", "RCPT TO:<b\@far.test>", "DATA",
        "Subject: $tag\r\n\r\n$tag\r\n.", "QUIT" )
    {
        print $s "$cmd\r\n";
        push @said, read_line($s);
    }
    close $s;
    return join '', @said;
}

# The first line a client at SOURCE gets when it dials HOST:25.
sub greeting {
    my ( $host, $source ) = @_;
    my $s = dial( $host, $source ) or return "connect: $!";
    my $line = read_line($s);
    print $s "QUIT\r\n";
    close $s;
    return $line;
}

sub dumped {
    my ( $name, $tag ) = @_;
    for my $f ( glob "$dump{$name}/*" ) { return 1 if slurp($f) =~ /\Q$tag\E/ }
    return 0;
}

# geomx ARGS for the running daemon (its admin endpoint is on port 0).
sub cli {
    my $out = `$geomx @_ -c $g->{conf} --admin 127.0.0.1:$g->{admin} 2>&1`;
    return ( $? >> 8, $out );
}

subtest '1. each client reaches the server it dialled, through geomx' => sub {
    my $out = `swaks --server 127.0.0.99:25 --local-interface 127.0.5.1 --helo client.test --from a\@client.test --to b\@far.test --header 'Subject: swaks-99' --body swaks-99 2>&1`;
    is( $? >> 8, 0, 'swaks to 127.0.0.99:25 from 127.0.5.1: exit 0' );
    like( $out, qr/^<-  220 far99 ESMTP/m, 'the banner is far99\'s' );
    like( $out, qr/^<-  250 2\.0\.0 Ok/m, 'the mail was taken' );
    ok( wait_for( 'far99 to dump the mail', 10, sub { dumped( 'far99', 'swaks-99' ) } ), 'far99 has it' );

    like( send_mail( '127.0.0.98', '127.0.5.2', 'mail-98' ), qr/^220 far98 ESMTP.*^250 2\.0\.0 Ok.*^221/ms,
        '127.0.0.98:25 from 127.0.5.2: far98 answers and takes the mail' );
    ok( wait_for( 'far98 to dump the mail', 10, sub { dumped( 'far98', 'mail-98' ) } ), 'far98 has it' );
    ok( !dumped( 'far99', 'mail-98' ), 'and far99 does not' );

    like( send_mail( '::1', '::1', 'mail-6' ), qr/^220 far6 ESMTP.*^250 2\.0\.0 Ok.*^221/ms,
        '[::1]:25 (IPv6, IP6T_SO_ORIGINAL_DST): far6 answers and takes the mail' );
    ok( wait_for( 'far6 to dump the mail', 10, sub { dumped( 'far6', 'mail-6' ) } ), 'far6 has it' );

    my $log = wait_for( 'three session lines', 10, sub { my $l = slurp( $g->{log} ); ( () = $l =~ /event=session .*end=(?:client|server)_closed/g ) >= 3 ? $l : undef } );
    like( $log, qr/event=session .*client=127\.0\.5\.1:\d+ listener=out4 .*rule=outbound action=pass .*member=127\.0\.0\.99:25 .*end=(?:client|server)_closed/,
        'logged per internal client, with the original destination' );
    like( $log, qr/event=session .*client=\[::1\]:\d+ listener=out6 .*action=pass .*member=\[::1\]:25 /, 'the IPv6 one too' );
};

subtest '2. a planted spammer: over its rate, banned; the others go on' => sub {
    my @answers = map { greeting( '127.0.0.99', '127.0.66.6' ) } 1 .. 6;
    is( scalar( grep { /^220 far99/ } @answers ), 5, 'its first 5 in the minute reach far99' );
    like( $answers[5], qr/^421 4\.7\.0 gw\.test too many connections/, 'the 6th: 421, and a ban' );
    # The ban is written (fsync) on geomx's control thread, after the 421.
    wait_for( 'the ban', 10, sub { ( cli( 'block', 'list' ) )[1] =~ /^127\.0\.66\.6\/32 /m } );
    push @answers, map { greeting( '127.0.0.99', '127.0.66.6' ) } 1 .. 2;
    like( $answers[6], qr/^554 5\.7\.1 gw\.test access denied/, 'then: 554, blocked' );
    like( $answers[7], qr/^554 5\.7\.1/, 'still blocked' );
    like( greeting( '127.0.0.98', '127.0.66.6' ), qr/^554 5\.7\.1/, 'whatever it dials' );
    like( greeting( '127.0.0.99', '127.0.5.3' ), qr/^220 far99/, 'a neighbour at the same time is served' );
    my ( $rc, $out ) = cli( 'block', 'list' );
    like( $out, qr/^127\.0\.66\.6\/32 .*limit:outbound/m, "block list: the ban, origin limit:outbound" );
    # Logged when the session ends (and counted for top just before): all three, for subtest 4.
    wait_for( 'three blocked sessions logged', 10, sub {
        ( () = slurp( $g->{log} ) =~ /event=session .*client=127\.0\.66\.6:\d+ .*end=blocked error="blocked by 127\.0\.66\.6\/32 \(limit:outbound/g ) >= 3
    } );
    pass('logged: end=blocked with the ban, three times');
};

subtest '3. an operator block, from the CLI' => sub {
    like( greeting( '127.0.0.99', '127.0.77.7' ), qr/^220 far99/, 'before: served' );
    my ( $rc, $out ) = cli( 'block', 'add', '127.0.77.0/24', '--comment', 'SPAM_09_01_2021' );
    is( $rc, 0, "geomx block add 127.0.77.0/24: exit 0 $out" );
    like( greeting( '127.0.0.99', '127.0.77.7' ), qr/^554 5\.7\.1 gw\.test access denied/, 'the next connection: 554' );
    like( greeting( '127.0.0.99', '127.0.78.7' ), qr/^220 far99/, 'the next /24 is served' );
};

subtest '4. geomx top ranks the spammer first' => sub {
    my ( $rc, $out ) = cli( 'top', '--window', '1h', '--n', '5' );
    is( $rc, 0, 'geomx top: exit 0' );
    my @rows = grep { /^(?:\d+\.){3}\d+ |^\[/ } split /\n/, $out;    # client rows, ranked
    like( $rows[0] // '', qr/^127\.0\.66\.6 +\S+ +9 +\S+% +4 +127\.0\.66\.6\/32/, "first: 127.0.66.6, 9 connections, 4 refused, its ban ($rows[0])" );
    ( $rc, $out ) = cli( 'top', '--window', '1h', '--json' );
    my ($total) = $out =~ /"total":(\d+)/;
    my ($share) = $out =~ /"address":"127\.0\.66\.6".*?"share":([\d.]+)/;
    ok( $total && $share && abs( $share - 9 / $total ) < 0.0001, "share 9/$total = " . ( $share // '?' ) );
};

subtest '5. a connection that was not redirected is refused (no loop)' => sub {
    my $s = IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $p4, LocalHost => '127.0.5.9', Timeout => 5 );
    like( read_line($s), qr/^554 5\.4\.6 gw\.test routing loop detected/, "straight to geomx's port: 554 5.4.6" );
    close $s;
    like( wait_for( 'the log line', 10, sub { slurp( $g->{log} ) =~ /(event=session .*client=127\.0\.5\.9:.*)/ ? $1 : undef } ),
        qr/end=not_redirected error="not redirected: 127\.0\.0\.1:$p4 is geomx's own listener"/, 'logged: end=not_redirected' );
    like( greeting( '127.0.0.99', '127.0.5.10' ), qr/^220 far99/, 'geomx goes on relaying' );
};

subtest '6. geomx check and a pass rule outside a transparent listener' => sub {
    my $out = `$geomx check -c $g->{conf} 2>&1`;
    is( $? >> 8, 0, 'geomx check: exit 0' );
    like( $out, qr/^listener  out4 127\.0\.0\.1:0 transparent/m, 'check: the listener is transparent' );
    like( $out, qr/-> pass to the address the client dialled/m, 'check: the rule passes' );
    my $bad = "$dir/bad.toml";
    open my $fh, '>', $bad or die;
    print $fh qq([[listener]]\nname = "mx"\naddress = "127.0.0.1:0"\n[[rule]]\nname = "all"\naction = "pass"\n);
    close $fh;
    $out = `$geomx check -c $bad 2>&1`;
    is( $? >> 8, 1, 'pass on an mx listener: check fails' );
    like( $out, qr/bad\.toml:6:\d+: rule\[0\]\.action: pass relays to the address the client dialled/, "and says why: $out" );
};

subtest "7. geomx's own connection redirected back to it: a loop, refused" => sub {
    # The mistake docs/nat-guard.md warns of: geomx's user not excluded.
    my @rule = ( qw(nft add rule inet geomx_test output meta nfproto ipv4 meta skuid 65534 tcp dport 25 redirect to), ":$ploop" );
    is( system(@rule), 0, "nft: geomx's own port-25 connections go to the loop listener too" );
    like( greeting( '127.0.0.99', '127.0.5.20' ), qr/^554 5\.4\.6 gw\.test routing loop detected/,
        'the client gets 554 5.4.6, relayed back through the hops' );
    my $line = wait_for( 'the looped session', 10,
        sub { slurp( $g->{log} ) =~ /(event=session [^\n]*listener=loop [^\n]*end=not_redirected [^\n]*)/ ? $1 : undef } );
    like( $line, qr/error="looped: 127\.0\.0\.1:\d+ is geomx's own relay; exclude geomx's user from the REDIRECT"/, 'logged: looped, and what to do' );
    # The innermost hop ends first; count once the client's own session has ended.
    wait_for( "the client's session", 10, sub { slurp( $g->{log} ) =~ /event=session [^\n]*client=127\.0\.5\.20:/ } );
    my $hops = () = slurp( $g->{log} ) =~ /event=session [^\n]*listener=loop /g;
    cmp_ok( $hops, '<', 50, "stopped after $hops hop(s), before max_connections_per_ip (50) would" );
    diag("loop stopped after $hops hop(s)");
};

$g->{stop}->();
unlike( slurp( $g->{log} ), qr/AddressSanitizer|runtime error|event=session_error/, 'no sanitizer report or session error' );
done_testing();
