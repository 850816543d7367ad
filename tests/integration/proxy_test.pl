#!/usr/bin/perl
# geomx run against real processes on loopback: three Postfix smtpd backends
# (each with smtpd_upstream_proxy_protocol = haproxy), smtp-sink, haproxy
# and swaks. Clients of other countries are emulated by binding 127.x
# sources that the test .mmdb maps, or by PROXY headers from a trusted
# local sender. Every wait has a deadline.
# Usage: proxy_test.pl GEOMX TESTDATA_DIR
use strict;
use warnings;
use Test::More;
use IO::Socket::IP;
use IO::Select;
use IO::Socket::UNIX;
use Socket qw(SOCK_DGRAM);
use Cwd ();
use File::Temp qw(tempdir);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use FindBin;
use lib $FindBin::Bin;
use GeomxTest qw(free_port wait_for slurp can_connect spawn start_postfix start_sink read_line read_reply);
use HTTP::Tiny;
use JSON::PP;

my ( $geomx, $testdata ) = @ARGV;
die "usage: $0 GEOMX TESTDATA\n" unless $testdata;
$testdata = Cwd::abs_path($testdata);
my $dir = tempdir( 'geomx-proxy-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{GEOMX_TEST_KEEP} );  # keep it to debug
chmod 0755, $dir;
END { my $status = $?; $_->() for reverse @GeomxTest::cleanup; $? = $status; }
$SIG{PIPE} = 'IGNORE';

sub start_geomx { return GeomxTest::start_geomx( $geomx, $dir, @_ ) }

sub client {
    my (%o) = @_;
    my $s = IO::Socket::IP->new(
        PeerHost => $o{host} // '127.0.0.1',
        PeerPort => $o{port},
        ( $o{bind} ? ( LocalHost => $o{bind} ) : () ),
        Timeout => 5
    ) or return;
    $s->autoflush(1);
    print $s $o{proxy} if defined $o{proxy};
    return $s;
}

sub proxy_v1 { my ( $src, $port ) = @_; return "PROXY TCP4 $src 127.0.0.1 $port 25\r\n" }

# A full mail transaction on an open connection: true when every step got
# the expected code.
sub deliver {
    my ($s) = @_;
    return 0 unless read_reply($s) =~ /^220 /m;
    for ( [ 'EHLO client.test', 250 ], [ 'MAIL FROM:<a@client.test>', 250 ],
        [ 'RCPT TO:<b@example.test>', 250 ], [ 'DATA', 354 ],
        [ "Subject: t\r\n\r\nhello\r\n.", 250 ], [ 'QUIT', 221 ] )
    {
        print $s "$_->[0]\r\n";
        return 0 unless read_reply($s) =~ /^$_->[1] /m;
    }
    return 1;
}

sub log_lines { my ( $file, $re ) = @_; return scalar grep { /$re/ } split /\n/, slurp($file) }

# GET from a geomx admin endpoint: (status, body).
sub admin_get {
    my ( $g, $path ) = @_;
    my $r = HTTP::Tiny->new( timeout => 5 )->get( "http://127.0.0.1:$g->{admin}$path", GeomxTest::auth($g) );
    return ( $r->{status}, $r->{content} );
}

# --- the deployment under test ------------------------------------------------
my %pf = map { $_ => start_postfix( $dir, $_, free_port() ) } qw(a b q);
my $main = start_geomx( 'main', <<"TOML" );
[server]
hostname = "geomx.test"
threads = 2
tarpit_duration = "3s"
[geo]
databases = ["$testdata/edge6.mmdb"]
asn_databases = ["$testdata/test-asn.mmdb"]
[[listener]]
name = "mx"
address = "127.0.0.1:0"
[[listener]]
name = "mx-v1"
address = "127.0.0.1:0"
[[listener]]
name = "edge"
address = "127.0.0.1:0"
proxy_protocol = "any"
trusted_proxies = ["127.0.0.1/32"]
[[listener]]
name = "strict"
address = "127.0.0.1:0"
proxy_protocol = "any"
trusted_proxies = ["127.9.9.9/32"]
[lists.english]
countries = ["GB", "US"]
[pool.primary]
members = ["127.0.0.1:$pf{a}{port}", "127.0.0.1:$pf{b}{port}"]
proxy_protocol = "v2"
[pool.v1]
members = ["127.0.0.1:$pf{a}{port}"]
proxy_protocol = "v1"
[pool.quarantine]
members = ["127.0.0.1:$pf{q}{port}"]
balance = "first"
proxy_protocol = "v2"
greet_delay = "2s"
greet_banner = "220-geomx.test ESMTP"
[[rule]]
name = "as-refuse"
if = { asn = "AS64511", cidr = "127.2.99.0/24" }
action = "reject"
reply = "554 5.7.1 AS64511 is refused here"
[[rule]]
name = "refuse"
if = { cidr = "127.5.0.0/16" }
action = "reject"
[[rule]]
name = "silence"
if = { cidr = "127.6.0.0/16" }
action = "drop"
[[rule]]
name = "slow"
if = { cidr = "127.7.0.0/16" }
action = "tarpit"
[[rule]]
name = "v1"
if = { listener = "mx-v1" }
pool = "v1"
[[rule]]
name = "english"
if = { list = "english" }
pool = "primary"
[[rule]]
name = "rest"
pool = "quarantine"
TOML
my %port = %{ $main->{ports} };

subtest '1. swaks delivers through geomx; Postfix logs the real client, PROXY v2 and v1' => sub {
    for ( [ 'mx', '127.1.4.5', 'v2' ], [ 'mx-v1', '127.1.4.6', 'v1' ] ) {
        my ( $listener, $src, $version ) = @$_;
        my $out = `swaks --server 127.0.0.1:$port{$listener} --local-interface $src --to user\@example.test --from a\@client.test 2>&1`;
        is( $? >> 8, 0, "swaks from $src via $listener ($version) exits 0" ) or diag $out;
        like( $out, qr/<-  250 2\.0\.0 Ok: queued/, 'message queued' );
        wait_for( "postfix a logs $src", 10, sub { slurp( $pf{a}{log} ) =~ /client=unknown\[\Q$src\E\]/ } );
        like( slurp( $pf{a}{log} ), qr/connect from unknown\[\Q$src\E\]/,
            "Postfix saw $src, not geomx's 127.0.0.1 ($version)" );
    }
    unlike( slurp( $pf{a}{log} ), qr/warning:.*(haproxy|proxy)/i, 'no PROXY warnings in the Postfix log' );
};

subtest '2. source split halves and the delayed quarantine' => sub {
    my $low = client( port => $port{mx}, bind => '127.1.0.7' );
    ok( deliver($low), 'lower half (127.1.0.7, GB) delivers' );
    close $low;
    my $high = client( port => $port{edge}, proxy => proxy_v1( '198.51.100.7', 4242 ) );
    ok( deliver($high), 'upper half (198.51.100.7 via a trusted PROXY sender, GB) delivers' );
    close $high;
    wait_for( 'both sessions logged', 10,
        sub { log_lines( $main->{log}, 'client=(127\.1\.0\.7|198\.51\.100\.7):' ) == 2 } );
    my $log = slurp( $main->{log} );
    like( $log, qr/client=127\.1\.0\.7:\d+ listener=mx country=GB asn=64496 as_org="Example GB Net" rule=english .* member=127\.0\.0\.1:$pf{a}{port} /,
        'lower half on member a' );
    like( $log,
        qr/client=198\.51\.100\.7:4242 peer=127\.0\.0\.1:\d+ listener=edge country=GB rule=english .* member=127\.0\.0\.1:$pf{b}{port} /,
        'upper half on member b' );
    wait_for( 'b logs 198.51.100.7', 10, sub { slurp( $pf{b}{log} ) =~ /connect from unknown\[198\.51\.100\.7\]/ } );
    pass('Postfix b saw 198.51.100.7');

    my $t0       = time;
    my $q        = client( port => $port{mx}, bind => '127.2.0.9' );
    my $teaser   = read_line($q);
    my $t_teaser = time - $t0;
    my $banner   = read_reply( $q, 10 );
    my $t_banner = time - $t0;
    like( $teaser, qr/^220-geomx\.test ESMTP/, sprintf( 'teaser at once (%.3fs)', $t_teaser ) );
    cmp_ok( $t_teaser, '<', 1, 'teaser before the delay' );
    like( $banner, qr/^220 q\.test ESMTP/m, 'the quarantine backend banner ends the reply' );
    cmp_ok( $t_banner, '>=', 1.95, sprintf( 'backend banner only after greet_delay (%.3fs)', $t_banner ) );
    print $q "QUIT\r\n";
    like( read_reply($q), qr/^221 /m, 'QUIT answered' );
    wait_for( 'q logs 127.2.0.9', 10, sub { slurp( $pf{q}{log} ) =~ /connect from unknown\[127\.2\.0\.9\]/ } );
};

subtest '2b. reject, drop, tarpit; client bytes right after the PROXY header' => sub {
    my $r = client( port => $port{mx}, bind => '127.5.0.1' );
    is( read_reply($r), "554 5.7.1 geomx.test access denied\r\n", 'reject: the default reply' );
    is( read_line( $r, 5 ), '', '... then closed' );
    my $d = client( port => $port{mx}, bind => '127.6.0.1' );
    is( read_line( $d, 5 ), '', 'drop: closed without a byte' );
    my $t0 = time;
    my $t  = client( port => $port{mx}, bind => '127.7.0.1' );
    my $got = '';
    while ( defined( my $n = sysread( $t, my $c, 100 ) ) ) { last unless $n; $got .= $c }
    my $took = time - $t0;
    like( $got, qr/^421 ?$/, "tarpit: a byte a second ('$got')" );
    cmp_ok( $took, '>=', 2, sprintf( '... for tarpit_duration (%.1fs)', $took ) );
    cmp_ok( $took, '<', 6, '... then closed' );
    wait_for( 'logged', 10, sub {
        my $log = slurp( $main->{log} );
        $log =~ /client=127\.5\.0\.1:\d+ .*rule=refuse action=reject .*end=rejected/
            && $log =~ /client=127\.6\.0\.1:\d+ .*action=drop .*end=dropped/
            && $log =~ /client=127\.7\.0\.1:\d+ .*action=tarpit .*end=tarpitted/;
    } );
    pass('each logged with its end');
    # A client that pipelines behind the header: its bytes reach the member.
    my $p = client( port => $port{edge}, proxy => proxy_v1( '198.51.100.8', 4244 ) . "EHLO early.test\r\n" );
    like( read_reply($p), qr/^220 b\.test/m, 'banner of member b' );
    like( read_reply($p), qr/^250 /m, 'the EHLO sent with the header was answered' );
    print $p "QUIT\r\n";
    like( read_reply($p), qr/^221 /m, 'QUIT' );
    close $p;
};

subtest '2c. asn: a rule on the AS (test-asn.mmdb), and asn= as_org= in the session log' => sub {
    my $s = client( port => $port{mx}, bind => '127.2.99.1' );
    like( read_reply($s), qr/^554 5\.7\.1 AS64511 is refused here/, 'AS64511 from 127.2.99.1 refused by its rule' );
    close $s;
    wait_for( 'refusal logged', 10, sub {
        slurp( $main->{log} ) =~ /client=127\.2\.99\.1:\d+ .*country=CN asn=64511 as_org="Example CN Net" rule=as-refuse action=reject/;
    } );
    pass('logged with its AS and organisation');
    ok( slurp( $main->{log} ) =~ /client=127\.1\.\d+\.\d+:\d+ .*country=GB asn=64496 as_org="Example GB Net" rule=english/,
        'a GB client of AS64496 is logged with it' );
};

subtest '3. pregreet: dropped, and the quarantine backend never sees it' => sub {
    my $t0 = time;
    my $s  = client( port => $port{mx}, bind => '127.2.0.10' );
    like( read_line($s), qr/^220-/, 'teaser' );
    print $s "EHLO too.early\r\n";
    my $rest = read_reply( $s, 5 );
    my $t    = time - $t0;
    is( $rest, '', 'connection closed without a reply' );
    cmp_ok( $t, '<', 1.5, sprintf( 'closed before the delay ended (%.3fs)', $t ) );
    wait_for( 'pregreet logged', 10,
        sub { slurp( $main->{log} ) =~ /client=127\.2\.0\.10:\d+ .*pregreet=yes .* end=pregreet/ } );
    # Wait past greet_delay: a late connect to q would have been logged by now.
    my $settle = time + 2.5;
    sleep 0.1 while time < $settle;
    unlike( slurp( $pf{q}{log} ), qr/127\.2\.0\.10/, 'Postfix q has no trace of 127.2.0.10' );
};

subtest '5. two hops: haproxy send-proxy-v2 -> geomx -> Postfix; untrusted headers refused' => sub {
    my $hport = free_port();
    open my $cfg, '>', "$dir/haproxy.cfg" or die;
    print $cfg <<"CFG";
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend mx
    bind 127.0.0.1:$hport
    default_backend geomx
backend geomx
    server g1 127.0.0.1:$port{edge} send-proxy-v2
CFG
    close $cfg;
    spawn( "$dir/haproxy.log", 'haproxy', '-db', '-f', "$dir/haproxy.cfg" );
    wait_for( 'haproxy', 10, sub { can_connect($hport) } );
    my $out = `swaks --server 127.0.0.1:$hport --local-interface 127.1.9.9 --to user\@example.test --from a\@client.test 2>&1`;
    is( $? >> 8, 0, 'swaks through haproxy and geomx' ) or diag $out;
    wait_for( 'Postfix logs 127.1.9.9', 10, sub { slurp( $pf{a}{log} ) =~ /connect from unknown\[127\.1\.9\.9\]/ } );
    pass('Postfix logged the original client 127.1.9.9 across both hops');

    my $s = client( port => $port{strict}, proxy => proxy_v1( '127.1.9.9', 4243 ) );
    is( read_reply( $s, 5 ), '', 'the same header from an untrusted peer: closed, nothing sent' );
    wait_for( 'untrusted logged', 10, sub { slurp( $main->{log} ) =~ /listener=strict .* end=untrusted_proxy/ } );
    my $bad = client( port => $port{edge}, proxy => "PROXY TCP4 1.2.3.4 5.6.7.8 99999 25\r\n" );
    is( read_reply( $bad, 5 ), '', 'a malformed header: closed, nothing sent' );
    wait_for( 'header error logged', 10,
        sub { slurp( $main->{log} ) =~ /end=proxy_header_error error="v1 port is not a number 0-65535"/ } );
};

subtest '4a. health checks: probes leave Postfix silent; DOWN within interval x fall + timeout; UP after rise' => sub {
    my $hc = start_geomx( 'health', <<"TOML" );
[server]
hostname = "geomx.test"
threads = 1
[geo]
databases = ["$testdata/edge6.mmdb"]
[[listener]]
name = "mx"
address = "127.0.0.1:0"
[pool.hc]
members = ["127.0.0.1:$pf{a}{port}", "127.0.0.1:$pf{b}{port}"]
balance = "first"
proxy_protocol = "v2"
[pool.hc.health]
interval = "200ms"
timeout = "500ms"
rise = 2
fall = 3
[[listener]]
name = "solo"
address = "127.0.0.1:0"
[pool.solo]
members = ["127.0.0.1:$pf{a}{port}"]
proxy_protocol = "v2"
[pool.solo.health]
interval = "200ms"
timeout = "500ms"
[[rule]]
name = "solo"
if = { listener = "solo" }
pool = "solo"
[[rule]]
name = "all"
pool = "hc"
TOML
    my $hport = $hc->{ports}{mx};
    my $since = length slurp( $pf{a}{log} );
    my $probes = sub { scalar( () = substr( slurp( $pf{a}{log} ), $since ) =~ /disconnect from \S+ ehlo=1 quit=1 commands=2/g ) };
    # GEOMX_HEALTH_SOAK=60: probe for 60 s (300 probes) before looking at the log.
    my $soak = $ENV{GEOMX_HEALTH_SOAK} // 2;
    wait_for( "probes of member a for ${soak}s", $soak * 2 + 20, sub { $probes->() >= $soak * 5 } );
    my $a_log = substr( slurp( $pf{a}{log} ), $since );
    is( scalar( () = $a_log =~ /warning:/g ), 0, sprintf( 'no warning in Postfix a\'s log after %d probes (v2 LOCAL header, banner, EHLO, QUIT)', $probes->() ) );
    unlike( slurp( $hc->{log} ), qr/event=health/, 'no state change while both are up' );
    is( ( admin_get( $hc, '/healthz' ) )[0], 200, '/healthz 200' );
    is( ( admin_get( $hc, '/readyz' ) )[0], 200, '/readyz 200 while every routed pool has a member up' );

    system("postfix -c $pf{a}{dir}/etc stop >/dev/null 2>&1");
    wait_for( 'a refuses', 20, sub { !can_connect( $pf{a}{port} ) } );
    my $t0 = time;
    wait_for( 'a marked down', 10, sub { slurp( $hc->{log} ) =~ /event=health pool=hc member=127\.0\.0\.1:$pf{a}{port} state=down/ } );
    my $down = time - $t0;
    cmp_ok( $down, '<=', 0.2 * 3 + 0.5, sprintf( 'member a DOWN %.3fs after it stopped answering (interval x fall + timeout = 1.1s)', $down ) );
    my $ok = 0;
    for my $i ( 1 .. 20 ) {
        my $s = client( port => $hport, bind => "127.1.0.$i" ) or next;
        $ok += deliver($s);
        close $s;
    }
    is( $ok, 20, '20 of 20 sessions delivered while a is down' );
    wait_for( '20 sessions logged', 10, sub { log_lines( $hc->{log}, "member=127\\.0\\.0\\.1:$pf{b}{port} " ) >= 20 } );
    is( log_lines( $hc->{log}, 'end=connect_failed' ), 0, '... none saw a connect failure, all went to b' );
    my ( $rs, $rbody ) = admin_get( $hc, '/readyz' );
    is( $rs, 503, '/readyz 503 while pool solo has no member up' );
    like( $rbody, qr/"pools":\["solo"\]/, '... and names it' );
    my ( $ms, $metrics ) = admin_get( $hc, '/metrics' );
    is( $ms, 200, '/metrics 200' );
    open my $mf, '>', "$dir/metrics.txt" or die;
    print $mf $metrics;
    close $mf;
    my $promtool = `promtool check metrics < $dir/metrics.txt 2>&1`;
    is( $?, 0, 'promtool check metrics accepts a scrape taken during traffic' ) or diag($promtool);
    like( $metrics, qr/^geomx_member_up\{pool="hc",member="127\.0\.0\.1:$pf{a}{port}"\} 0$/m, 'member a is 0 in geomx_member_up' );
    like( $metrics, qr/^geomx_member_up\{pool="hc",member="127\.0\.0\.1:$pf{b}{port}"\} 1$/m, 'member b is 1' );
    like( $metrics, qr/^geomx_connections_total\{listener="mx",rule="all",action="route",pool="hc",country="GB"\} 20$/m,
        'the 20 sessions counted by listener, rule, action, pool and country' );
    like( $metrics, qr/^geomx_member_connect_failures_total\{pool="hc",member="127\.0\.0\.1:$pf{a}{port}"\} \d+$/m, 'connect failures per member' );
    like( $metrics, qr/^geomx_decision_seconds_count \d+$/m, 'decision latency histogram' );
    my $status = decode_json( ( admin_get( $hc, '/status' ) )[1] );
    my ($hcpool) = grep { $_->{name} eq 'hc' } @{ $status->{pools} };
    is_deeply( [ map { $_->{state} } @{ $hcpool->{members} } ], [ 'down', 'up' ], '/status: a down, b up' );

    system("postfix -c $pf{a}{dir}/etc start >/dev/null 2>&1");
    wait_for( 'a answers', 30, sub { can_connect( $pf{a}{port} ) } );
    my $t1 = time;
    wait_for( 'a marked up', 10, sub { slurp( $hc->{log} ) =~ /event=health pool=hc member=127\.0\.0\.1:$pf{a}{port} state=up after="2 successes"/ } );
    diag( sprintf( 'member a UP %.3fs after it answered again (rise 2 x interval 200ms)', time - $t1 ) );
    is( log_lines( $hc->{log}, 'event=health pool=hc .*state=down' ), 1, 'one line per state change' );
    wait_for( '/readyz 200 again', 10, sub { ( admin_get( $hc, '/readyz' ) )[0] == 200 } );
    pass('/readyz 200 once solo\'s member is back');
    my $s = client( port => $hport, bind => '127.1.0.99' );
    ok( deliver($s), 'a session after the recovery delivers' );
    close $s;
    wait_for( 'it went to a', 10, sub { slurp( $hc->{log} ) =~ /client=127\.1\.0\.99:\d+ .*member=127\.0\.0\.1:$pf{a}{port} / } );
    pass('member a has its clients back');
    kill 'TERM', $hc->{pid};
    waitpid $hc->{pid}, 0;
};

subtest '4b. STARTTLS probe reads the certificate: self-signed, valid for 10 days' => sub {
    my $t = "$dir/tls";
    mkdir $t;
    system("openssl req -x509 -newkey rsa:2048 -nodes -days 10 -subj /CN=tls.test -keyout $t/key.pem -out $t/cert.pem 2>/dev/null") == 0
        or die 'openssl req failed';
    my $tp = start_postfix( $dir, 't', free_port(),
        "smtpd_tls_cert_file = $t/cert.pem\nsmtpd_tls_key_file = $t/key.pem\nsmtpd_tls_security_level = may\nsmtpd_tls_loglevel = 1\n" );
    my $g = start_geomx( 'tls', <<"TOML" );
[server]
hostname = "geomx.test"
threads = 1
[geo]
databases = ["$testdata/edge6.mmdb"]
[[listener]]
name = "mx"
address = "127.0.0.1:0"
[pool.t]
members = ["127.0.0.1:$tp->{port}"]
proxy_protocol = "v2"
[pool.t.health]
interval = "200ms"
starttls = true
[[rule]]
name = "all"
pool = "t"
[admin]
listen = "127.0.0.1:0"
hosts = ["tls.test"]
tls_cert = "$t/cert.pem"
tls_key = "$t/key.pem"
TOML
    # The admin endpoint speaks HTTPS with this config (the same certificate).
    my $https = sub {
        my ($path) = @_;
        return scalar `curl -s --max-time 5 -H 'Authorization: Bearer $g->{token}' --cacert $t/cert.pem --resolve tls.test:$g->{admin}:127.0.0.1 https://tls.test:$g->{admin}$path`;
    };
    is( $https->('/healthz'), "ok\n", 'admin over HTTPS: /healthz' );
    isnt( ( admin_get( $g, '/healthz' ) )[0], 200, '... and not over plain HTTP' );
    my $member = wait_for( 'certificate seen', 20, sub {
        my $st = decode_json( $https->('/status') || '{}' );
        my $m = $st->{pools}[0]{members}[0];
        return $m->{certificate} ? $m : undef;
    } );
    my $days = $member->{certificate}{days_left};
    ok( $days == 9 || $days == 10, "days to expiry reported: $days" );
    like( $member->{certificate}{subject}, qr/CN=tls\.test/, "subject: $member->{certificate}{subject}" );
    is( $member->{state}, 'up', 'the member is up' );
    like( $https->('/metrics'),
        qr/^geomx_member_certificate_expiry_days\{pool="t",member="127\.0\.0\.1:$tp->{port}"\} (9|10)$/m, 'and in /metrics' );
    wait_for( '3 TLS probes', 10, sub { ( () = slurp( $tp->{log} ) =~ /TLS connection established/g ) >= 3 } );
    my $tlog = slurp( $tp->{log} );
    is( scalar( () = $tlog =~ /warning:/g ), 0, 'no warning in the TLS Postfix\'s log' ) or diag($tlog);
    kill 'TERM', $g->{pid};
    waitpid $g->{pid}, 0;
};

subtest '4. failover: member a killed, 1,000 sequential sessions from its half all complete' => sub {
    system("postfix -c $pf{a}{dir}/etc stop >/dev/null 2>&1");
    wait_for( 'a down', 20, sub { !can_connect( $pf{a}{port} ) } );
    my $before = log_lines( $main->{log}, "member=127\\.0\\.0\\.1:$pf{b}{port} " );
    my ( $ok, $t0 ) = ( 0, time );
    for my $i ( 1 .. 1000 ) {
        my $s = client( port => $port{mx}, bind => '127.1.0.' . ( 1 + $i % 250 ) ) or next;
        $ok += deliver($s);
        close $s;
        last if time - $t0 > 300;
    }
    is( $ok, 1000, sprintf( '1000 of 1000 sessions delivered through member b (%.1fs)', time - $t0 ) );
    wait_for( 'sessions logged', 20,
        sub { log_lines( $main->{log}, "member=127\\.0\\.0\\.1:$pf{b}{port} " ) - $before >= 1000 } );
    is( log_lines( $main->{log}, 'end=connect_failed' ), 0, 'no client saw a connect failure' );
};

# --- limits and drain on a second instance, in front of smtp-sink --------------
my ($sink) = start_sink( $dir, 'sink' ) =~ /:(\d+)$/;
my $lim = start_geomx( 'limits', <<"TOML" );
[server]
hostname = "geomx.test"
threads = 2
max_connections = 120
max_connections_per_ip = 50
drain_timeout = "10s"
[geo]
databases = ["$testdata/edge6.mmdb"]
[[listener]]
name = "mx"
address = "127.0.0.1:0"
[[listener]]
name = "short"
address = "127.0.0.1:0"
[pool.sink]
members = ["127.0.0.1:$sink"]
[pool.short]
members = ["127.0.0.1:$sink"]
idle_timeout = "2s"
fin_timeout = "500ms"
[[rule]]
name = "short"
if = { listener = "short" }
pool = "short"
[[rule]]
name = "all"
pool = "sink"
TOML
my $lport = $lim->{ports}{mx};

subtest '6. idle_timeout and fin_timeout end stalled sessions' => sub {
    my $t0 = time;
    my $idle = client( port => $lim->{ports}{short}, bind => '127.1.30.1' );
    like( read_reply($idle), qr/^220 /m, 'banner' );
    is( read_reply( $idle, 5 ), '', 'an idle client is closed' );
    my $t = time - $t0;
    cmp_ok( $t, '>=', 1.95, sprintf( '... after idle_timeout (%.2fs)', $t ) );
    cmp_ok( $t, '<', 4, '... not much later' );
    my $half = client( port => $lim->{ports}{short}, bind => '127.1.30.2' );
    read_reply($half);
    print $half "QUIT\r\n";
    like( read_reply($half), qr/^221 /m, 'QUIT answered; the backend closes, the client keeps its half' );
    my $t221 = time;
    # While this client still holds its socket, geomx ends the session.
    wait_for( 'half-closed session ended', 10,
        sub { slurp( $lim->{log} ) =~ /client=127\.1\.30\.2:\d+ .* end=server_closed/ } );
    my $after = time - $t221;
    cmp_ok( $after, '>=', 0.4, sprintf( 'ended by fin_timeout after the close (%.2fs)', $after ) );
    cmp_ok( $after, '<', 1.5, '... well before idle_timeout' );
    close $half;
    like( slurp( $lim->{log} ), qr/client=127\.1\.30\.1:\d+ .* end=idle_timeout/, 'the idle one logged as idle_timeout' );
};

subtest '7. limits: the 51st connection from one address, and max_connections' => sub {
    my @held;
    for my $i ( 1 .. 50 ) {
        my $s = client( port => $lport, bind => '127.1.7.7' );
        my $r = read_reply($s);
        fail("connection $i from 127.1.7.7: $r") unless $r =~ /^220 /m;
        push @held, $s;
    }
    pass('50 connections from 127.1.7.7 served');
    my $extra = client( port => $lport, bind => '127.1.7.7' );
    like( read_reply($extra), qr/^421 4\.7\.0 geomx\.test too many connections from your address/,
        '51st from 127.1.7.7 gets 421 4.7.0' );
    # Until it has closed, the refused connection holds a slot (a descriptor).
    close $extra;
    wait_for( 'refusal logged', 10, sub { slurp( $lim->{log} ) =~ /end=too_many_from_ip/ } );
    my $other = client( port => $lport, bind => '127.1.7.8' );
    like( read_reply($other), qr/^220 /m, 'another address still gets through' );
    push @held, $other;
    my $fillers = 0;
    for my $i ( 1 .. 69 ) {
        my $s = client( port => $lport, bind => "127.1.8.$i" );
        $fillers++ if read_reply($s) =~ /^220 /m;
        push @held, $s;
    }
    is( $fillers, 69, 'connections 52-120 from other addresses all served' );
    my $t0   = time;
    my $busy = client( port => $lport, bind => '127.1.9.1' );
    like( read_reply( $busy, 5 ), qr/^421 4\.3\.2 geomx\.test too busy/, 'connection 121 gets 421 4.3.2' );
    cmp_ok( time - $t0, '<', 1, sprintf( '... quickly (%.3fs)', time - $t0 ) );
    close $_ for @held, $busy;
    wait_for( 'held sessions closed', 20, sub { log_lines( $lim->{log}, 'event=session' ) >= 124 } );
};

subtest '8. SIGTERM during 100 open sessions: all complete, exit 0' => sub {
    my @s;
    for my $i ( 1 .. 100 ) {
        my $c = client( port => $lport, bind => "127.1.20.$i" );
        read_reply($c);
        print $c "EHLO c$i.test\r\n";
        push @s, $c;
    }
    is( scalar( grep { read_reply($_) =~ /^250 /m } @s ), 100, '100 sessions open, EHLO answered' );
    my $before = log_lines( $lim->{log}, 'event=session' );
    kill 'TERM', $lim->{pid};
    wait_for( 'stop logged', 10, sub { slurp( $lim->{log} ) =~ /event=stop / } );
    wait_for( 'listener closed', 10, sub { !can_connect($lport) } );
    pass('new connections are refused once draining');
    my $done = 0;
    for my $c (@s) {
        print $c "QUIT\r\n";
        $done++ if read_reply($c) =~ /^221 /m;
        close $c;
    }
    is( $done, 100, 'all 100 sessions completed after SIGTERM' );
    my $t0     = time;
    my $status = wait_for( 'geomx exit', 15,
        sub { waitpid( $lim->{pid}, WNOHANG ) == $lim->{pid} ? [$?] : undef } );
    is( $status->[0], 0, sprintf( 'geomx exited 0 (%.2fs after the last QUIT)', time - $t0 ) );
    is( log_lines( $lim->{log}, 'end=shutdown' ), 0, 'none had to be cut at the drain deadline' );
    cmp_ok( log_lines( $lim->{log}, 'event=session' ) - $before, '>=', 100, 'every session logged its end' );
};

subtest '9. the drain deadline closes what is left, exit 0' => sub {
    my $g = start_geomx( 'drain', <<"TOML" );
[server]
hostname = "geomx.test"
threads = 1
drain_timeout = "1s"
[geo]
databases = ["$testdata/edge6.mmdb"]
[[listener]]
name = "mx"
address = "127.0.0.1:0"
[[listener]]
name = "mx6"
address = "[::1]:0"
[pool.sink]
members = ["127.0.0.1:$sink"]
[[rule]]
name = "all"
pool = "sink"
TOML
    my $six = client( host => '::1', port => $g->{ports}{mx6} );
    ok( $six && deliver($six), 'an IPv6 client on [::1] delivers' );
    # Wait for the member's close after QUIT: a client that closed first
    # would race it, and the session would end client_closed.
    is( read_line( $six, 2 ), '', '... and sees the close after QUIT' ) if $six;
    close $six if $six;
    wait_for( 'v6 logged', 10, sub { slurp( $g->{log} ) =~ /client=\[::1\]:\d+ listener=mx6 country=ZZ .*end=server_closed/ } );
    my $c = client( port => $g->{ports}{mx}, bind => '127.1.40.1' );
    like( read_reply($c), qr/^220 /m, 'a session is open' );
    my $t0 = time;
    kill 'TERM', $g->{pid};
    my $status = wait_for( 'geomx exit', 10, sub { waitpid( $g->{pid}, WNOHANG ) == $g->{pid} ? [$?] : undef } );
    my $took = time - $t0;
    is( $status->[0], 0, 'exit 0' );
    cmp_ok( $took, '>=', 0.9, sprintf( 'after drain_timeout (%.2fs)', $took ) );
    cmp_ok( $took, '<', 3, '... not much later' );
    like( slurp( $g->{log} ), qr/client=127\.1\.40\.1:\d+ .* end=shutdown/, 'the session ended as shutdown' );
    is( read_line( $c, 2 ), '', 'the client sees the close' );
};

# Every thread of PID (/proc/PID/task/*): no effective, permitted or ambient
# capability, and no_new_privs set.
sub threads_hold_nothing {
    my ( $pid, $how ) = @_;
    my @tasks = glob "/proc/$pid/task/*";
    cmp_ok( scalar @tasks, '>=', 4, "$how: " . scalar(@tasks) . ' threads (main, 2 I/O, loader)' );
    my @kept;
    for my $task (@tasks) {
        my $st = slurp("$task/status");
        my %f = $st =~ /^(CapEff|CapPrm|CapAmb|NoNewPrivs):\s+(\S+)$/mg;
        push @kept, "$task: @{[ %f ]}" if grep( { ( $f{$_} // '' ) ne '0000000000000000' } qw(CapEff CapPrm CapAmb) ) || ( $f{NoNewPrivs} // '' ) ne '1';
    }
    is_deeply( \@kept, [], "$how: every thread holds no capability and has NoNewPrivs 1" );
}

subtest '10. privileges: root drops to server.user with no capabilities; root without a user is refused' => sub {
    plan skip_all => 'needs root' if $> != 0;
    my $status = slurp("/proc/$main->{pid}/status");
    my ($uid) = $status =~ /^Uid:\s+(\d+)/m;
    my ($caps) = $status =~ /^CapEff:\s+(\S+)/m;
    isnt( $uid, 0, "geomx runs as uid $uid (nobody), not root" );
    is( $caps, '0000000000000000', 'CapEff is empty' );
    like( slurp( $main->{log} ), qr/event=privileges result="now nobody \(uid \d+, gid \d+\), no capabilities"/, 'logged' );
    ok( can_connect( $port{mx} ), 'and it still serves on the port it bound as root' );
    threads_hold_nothing( $main->{pid}, 'root -> nobody' );

    # As the packaged unit starts it: user nobody with an ambient
    # CAP_NET_BIND_SERVICE (systemd AmbientCapabilities=). Capabilities are
    # per thread: a thread started before the drop would keep it.
    my $copy = "$dir/geomx-unprivileged";    # a path nobody can execute
    system( 'cp', $geomx, $copy ) == 0 or die "cp: $?";
    chmod 0755, $copy;
    my $cfg = "$dir/ambient.toml";
    open my $afh, '>', $cfg or die;
    print $afh qq([server]\nthreads = 2\n[geo]\ndatabases = ["$testdata/edge6.mmdb"]\n[[listener]]\nname = "mx"\naddress = "127.0.0.1:0"\n[[rule]]\nname = "all"\naction = "drop"\n[admin]\nlisten = "127.0.0.1:0"\ntoken_file = "$dir/ambient.token"\n);
    close $afh;
    my $alog = "$dir/ambient.log";
    my ( $apid, $astop ) = spawn( $alog, 'setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups',
        '--inh-caps=+net_bind_service', '--ambient-caps=+net_bind_service', $copy, 'run', '-c', $cfg );
    wait_for( 'geomx as nobody ready', 30, sub { slurp($alog) =~ /event=ready/ } );
    # setpriv execs geomx: the same pid.
    like( slurp($alog), qr/event=privileges result="serving as uid \d+"/, 'started as nobody: serving as its uid' );
    threads_hold_nothing( $apid, 'ambient CAP_NET_BIND_SERVICE' );
    $astop->();
    # No user and no allow_root, as root: refused before serving.
    my $conf = "$dir/root.toml";
    open my $fh, '>', $conf or die;
    print $fh qq([[listener]]\nname = "mx"\naddress = "127.0.0.1:0"\n[[rule]]\nname = "all"\naction = "drop"\n[admin]\nlisten = "127.0.0.1:0"\n);
    close $fh;
    my $out = `$geomx run -c $conf 2>&1`;
    isnt( $? >> 8, 0, 'geomx run as root without server.user exits non-zero' );
    like( $out, qr/event=error result="refusing to serve as root: set server.user/, '... and says why' );
    unlike( $out, qr/event=ready/, '... before serving' );
};

subtest '11. systemd: READY=1, WATCHDOG=1 from every thread, RELOADING=1 on SIGHUP, STOPPING=1' => sub {
    my $path = "$dir/notify.sock";
    my $ns = IO::Socket::UNIX->new( Type => SOCK_DGRAM, Local => $path ) or die "notify socket: $!";
    chmod 0777, $path;    # geomx writes to it after dropping to nobody
    local $ENV{NOTIFY_SOCKET} = $path;
    local $ENV{WATCHDOG_USEC} = 400_000;
    my $g = start_geomx( 'notify', <<"TOML" );
[server]
hostname = "geomx.test"
threads = 2
[geo]
databases = ["$testdata/edge6.mmdb"]
[[listener]]
name = "mx"
address = "127.0.0.1:0"
[pool.sink]
members = ["127.0.0.1:$sink"]
[[rule]]
name = "all"
pool = "sink"
TOML
    my $got = '';
    my $sel = IO::Select->new($ns);
    my $read_until = sub {
        my ( $re, $seconds ) = @_;
        my $end = time + $seconds;
        while ( $got !~ $re && time < $end ) {
            next unless $sel->can_read(0.1);
            my $msg;
            $ns->recv( $msg, 4096 );
            $got .= "$msg\n";
        }
        return $got =~ $re;
    };
    ok( $read_until->( qr/READY=1/, 10 ), 'READY=1 once serving' );
    ok( $read_until->( qr/WATCHDOG=1\n(?:.*\n)*WATCHDOG=1/, 5 ), 'WATCHDOG=1, repeatedly (every WATCHDOG_USEC/2 while both I/O threads answer)' );
    kill 'HUP', $g->{pid};
    ok( $read_until->( qr/RELOADING=1(?:.*\n)*READY=1/, 10 ), 'SIGHUP: RELOADING=1, then READY=1' );
    like( slurp( $g->{log} ), qr/event=reload trigger=sighup result=success generation=2/, 'and the reload is logged' );
    ok( kill( 0, $g->{pid} ) && can_connect( $g->{ports}{mx} ), 'still serving after SIGHUP' );
    kill 'TERM', $g->{pid};
    ok( $read_until->( qr/STOPPING=1/, 10 ), 'STOPPING=1 on SIGTERM' );
    waitpid $g->{pid}, 0;
};

done_testing();
