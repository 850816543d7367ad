#!/usr/bin/perl
# The SMTP screen (a pool's screen = "smtp") against real Postfix smtpd
# members: one behind PROXY v2 (with STARTTLS), one behind XCLIENT
# (smtpd_authorized_xclient_hosts), and an smtp-sink that refuses XCLIENT.
# Clients are swaks and raw sockets bound to 127.x sources, so every
# scenario has an address of its own (the pass cache is per address).
# Usage: screen_test.pl GEOMX TESTDATA_DIR
use strict;
use warnings;
use Test::More;
use IO::Socket::IP;
use Cwd ();
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use FindBin;
use lib $FindBin::Bin;
use GeomxTest qw(free_port wait_for slurp log_like start_postfix start_sink read_line read_reply);
use HTTP::Tiny;
use JSON::PP;

my ( $geomx, $testdata ) = @ARGV;
die "usage: $0 GEOMX TESTDATA\n" unless $testdata;
$testdata = Cwd::abs_path($testdata);
my $dir = tempdir( 'geomx-screen-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{GEOMX_TEST_KEEP} );
chmod 0755, $dir;
END { my $status = $?; $_->() for reverse @GeomxTest::cleanup; $? = $status; }
$SIG{PIPE} = 'IGNORE';

# Postfix logs every permitted RCPT with the client and its HELO name:
# "NOQUEUE: permit: RCPT from unknown[127.1.0.1]: ... helo=<client.test>".
my $permit = "smtpd_log_access_permit_actions = static:all\n";
my $t = "$dir/tls";
mkdir $t;
system("openssl req -x509 -newkey rsa:2048 -nodes -days 10 -subj /CN=member.test -keyout $t/key.pem -out $t/cert.pem 2>/dev/null") == 0
    or die 'openssl req failed';
chmod 0644, "$t/key.pem";
my $p = start_postfix( $dir, 'p', free_port(),
    $permit . "smtpd_tls_cert_file = $t/cert.pem\nsmtpd_tls_key_file = $t/key.pem\nsmtpd_tls_security_level = may\nsmtpd_tls_loglevel = 1\n" );
my $x = start_postfix( $dir, 'x', free_port(),
    $permit . "smtpd_upstream_proxy_protocol =\nsmtpd_authorized_xclient_hosts = 127.0.0.0/8\n" );
my $nox  = start_sink( $dir, 'nox',  undef, '-r', 'XCLIENT' );    # refuses it (450)
my $gone = start_sink( $dir, 'gone', undef, '-q', 'XCLIENT' );    # hangs up on it

my %pool = (
    screen => qq(members = ["127.0.0.1:$p->{port}"]\nproxy_protocol = "v2"\nscreen_ttl = "1h"),
    xc     => qq(members = ["127.0.0.1:$x->{port}"]\nproxy_protocol = "xclient"\nscreen_ttl = "0s"),
    strict => qq(members = ["127.0.0.1:$p->{port}"]\nproxy_protocol = "v2"\nscreen_ttl = "0s"\n)
        . qq(screen_action = { bare_newline = "reject", non_smtp = "reject" }),
    bad    => qq(members = ["$nox"]\nproxy_protocol = "xclient"\nscreen_ttl = "0s"\nhealth = { fall = 1 }),
    broken => qq(members = ["$gone"]\nproxy_protocol = "xclient"\nscreen_ttl = "0s"\nhealth = { fall = 1 }),
);
my $config = <<"TOML";
[server]
hostname = "geomx.test"
threads = 2
[geo]
databases = ["$testdata/edge6.mmdb"]
TOML
for my $name ( sort keys %pool ) {
    $config .= qq([[listener]]\nname = "$name"\naddress = "127.0.0.1:0"\n);
    $config .= qq([pool.$name]\n$pool{$name}\nscreen = "smtp"\n);
    $config .= qq([[rule]]\nname = "$name"\nif = { listener = ["$name"] }\npool = "$name"\n);
}
$config .= qq([[rule]]\nname = "rest"\naction = "reject"\n);
my $g     = GeomxTest::start_geomx( $geomx, $dir, 'screen', $config );
my %ports = %{ $g->{ports} };

sub status { decode_json( HTTP::Tiny->new( timeout => 5 )->get( "http://127.0.0.1:$g->{admin}/status", GeomxTest::auth($g) )->{content} ) }
sub member_of { my ($name) = @_; return ( grep { $_->{name} eq $name } @{ status()->{pools} } )[0]{members}[0] }

# The screen answers EHLO with what each member's probe saw: wait for one probe each.
wait_for( 'every member probed', 20, sub { !grep { member_of($_)->{checks} < 1 } keys %pool } );

sub client {
    my ( $listener, $source ) = @_;
    my $s = IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $ports{$listener}, LocalHost => $source, Timeout => 5 )
        or die "connect: $!";
    $s->autoflush(1);
    return $s;
}

sub reply { return read_reply(@_) }

# A session on LISTENER from SOURCE through our banner and EHLO.
sub greeted {
    my ( $listener, $source ) = @_;
    my $s = client( $listener, $source );
    like( reply($s), qr/^220 geomx\.test/, 'banner' );
    print $s "EHLO client.test\r\n";
    like( reply($s), qr/^250 /m, 'EHLO' );
    return $s;
}

sub swaks {
    my ( $listener, $source, $to, @extra ) = @_;
    return scalar `swaks --server 127.0.0.1:$ports{$listener} --local-interface $source --ehlo client.test --from a\@client.test --to $to --timeout 10 @extra 2>&1`;
}

sub session_line {
    my ($source) = @_;
    my ($line) = grep { /event=session .*client=\Q$source\E:/ } split /\n/, slurp( $g->{log} );
    return $line // '';
}
sub count { my ( $file, $re ) = @_; return scalar grep { /$re/ } split /\n/, slurp($file) }

subtest 'a normal client through the screen: delivered once, with its own address and HELO' => sub {
    my $out = swaks( 'screen', '127.1.0.1', 'one@example.test' );
    like( $out, qr/^<-  220 geomx\.test ESMTP/m,            'the client is greeted by the screen' );
    unlike( $out, qr/^<-  250-PIPELINING/m,                  'PIPELINING is not announced' );
    like( $out, qr/^<-  250-STARTTLS/m,                      'the member\'s STARTTLS (from its probe) is' );
    like( $out, qr/^<-  250 2\.0\.0 Ok: queued as/m,         'the message is queued' ) or diag($out);
    log_like( $g->{log}, qr/client=127\.1\.0\.1:\d+ .*pool=screen .*screen=pass helo=client\.test /,
        'geomx logs screen=pass and the HELO name' );
    log_like( $p->{log}, qr/permit: RCPT from unknown\[127\.1\.0\.1\]: .*to=<one\@example\.test> proto=ESMTP helo=<client\.test>/,
        'Postfix sees the real client address and its HELO name' );
    wait_for( 'delivery', 10, sub { count( $p->{log}, qr/to=<one\@example\.test>.*status=sent/ ) } );
    is( count( $p->{log}, qr/to=<one\@example\.test>.*status=sent/ ), 1, 'the message reaches Postfix once' );
};

subtest 'a second session from a passed client skips the screen' => sub {
    my $s = client( 'screen', '127.1.0.1' );
    like( reply($s), qr/^220 p\.test ESMTP/, 'the first bytes are the member\'s banner' );
    print $s "EHLO client.test\r\n";
    like( reply($s), qr/^250-PIPELINING/m, 'and the member\'s own EHLO reply' );
    print $s "QUIT\r\n";
    like( reply($s), qr/^221 /, 'QUIT' );
    close $s;
    log_like( $g->{log}, qr/client=127\.1\.0\.1:\d+ .*screen=cached /, 'logged screen=cached' );
};

subtest 'STARTTLS through the hand-off: TLS with the member, mail delivered' => sub {
    my $out = swaks( 'screen', '127.1.0.2', 'tls@example.test', '--tls' );
    like( $out, qr/^=== TLS started with cipher/m,          'TLS negotiated' ) or diag($out);
    like( $out, qr/peer.*CN=member\.test/mi,                'the client sees the member\'s certificate' );
    like( $out, qr/^ ?<~  250 2\.0\.0 Ok: queued as/m,       'the message is queued inside TLS' );
    log_like( $p->{log}, qr/Anonymous TLS connection established from unknown\[127\.1\.0\.2\]/, 'Postfix: TLS with the real client' );
    log_like( $g->{log}, qr/client=127\.1\.0\.2:\d+ .*screen=pass helo=client\.test /, 'geomx: screen=pass' );
};

subtest 'XCLIENT pool: Postfix gets the address and HELO from XCLIENT' => sub {
    my $out = swaks( 'xc', '127.1.0.20', 'xc@example.test' );
    like( $out, qr/^<-  250 2\.0\.0 Ok: queued as/m, 'the message is queued' ) or diag($out);
    unlike( $out, qr/XCLIENT/, 'XCLIENT is not offered to the client' );
    log_like( $x->{log}, qr/permit: RCPT from unknown\[127\.1\.0\.20\]: .*to=<xc\@example\.test> proto=ESMTP helo=<client\.test>/,
        'Postfix logs the client\'s address and HELO' );
    log_like( $g->{log}, qr/client=127\.1\.0\.20:\d+ .*pool=xc .*screen=pass helo=client\.test /, 'geomx: screen=pass' );
};

# A violation: nothing of the session reaches a member.
sub unseen {
    my ( $source, $name ) = @_;
    wait_for( "the session of $source logged", 10, sub { session_line($source) } );
    is( count( $p->{log}, qr/\[\Q$source\E\]/ ), 0, "$name: nothing reached the member" );
}

subtest 'pipelining where none was announced: rejected' => sub {
    my $s = client( 'screen', '127.1.0.3' );
    like( reply($s), qr/^220 geomx\.test/, 'banner' );
    print $s "EHLO client.test\r\nMAIL FROM:<a\@client.test>\r\nRCPT TO:<b\@example.test>\r\n";
    like( reply($s), qr/^550 5\.5\.1 /m, '550 5.5.1' );
    is( read_line( $s, 5 ), '', 'then closed' );
    like( session_line('127.1.0.3') || wait_for( 'log', 10, sub { session_line('127.1.0.3') } ),
        qr/screen=pipelining .*end=screened/, 'logged screen=pipelining end=screened' );
    unseen( '127.1.0.3', 'pipelining' );
};

subtest 'GET / is dropped (default), rejected where configured' => sub {
    my $s = client( 'screen', '127.1.0.4' );
    like( reply($s), qr/^220 geomx\.test/, 'banner' );
    print $s "GET / HTTP/1.0\r\n";
    is( read_line( $s, 5 ), '', 'dropped: closed without a reply' );
    log_like( $g->{log}, qr/client=127\.1\.0\.4:\d+ .*screen=non_smtp .*end=screened/, 'logged screen=non_smtp' );
    unseen( '127.1.0.4', 'GET /' );
    $s = client( 'strict', '127.1.0.5' );
    like( reply($s), qr/^220 geomx\.test/, 'banner' );
    print $s "CONNECT example.test:25 HTTP/1.0\r\n";
    like( reply($s), qr/^521 5\.7\.0 /, 'reject: 521 5.7.0' );
    is( read_line( $s, 5 ), '', 'then closed' );
    unseen( '127.1.0.5', 'CONNECT' );
};

subtest 'bare newlines: logged (default), or rejected in EHLO and in MAIL' => sub {
    my $s = client( 'screen', '127.1.0.6' );
    like( reply($s), qr/^220 geomx\.test/, 'banner' );
    print $s "EHLO client.test\n";
    like( reply($s), qr/^250 /m, 'default (log): EHLO answered' );
    print $s "MAIL FROM:<a\@client.test>\n";
    like( reply($s), qr/^250 /, 'and MAIL handed to the member' );
    print $s "QUIT\r\n";
    like( reply($s), qr/^221 /, 'QUIT from the member' );
    close $s;
    log_like( $g->{log}, qr/client=127\.1\.0\.6:\d+ .*member=127\.0\.0\.1:$p->{port} .*screen=bare_newline helo=client\.test /,
        'relayed, logged screen=bare_newline' );
    log_like( $p->{log}, qr/connect from unknown\[127\.1\.0\.6\]/, 'the member had the session' );

    $s = client( 'strict', '127.1.0.7' );
    like( reply($s), qr/^220 geomx\.test/, 'banner' );
    print $s "EHLO client.test\n";
    like( reply($s), qr/^550 5\.5\.1 /, 'reject in EHLO: 550 5.5.1' );
    is( read_line( $s, 5 ), '', 'then closed' );
    unseen( '127.1.0.7', 'bare LF in EHLO' );

    $s = client( 'strict', '127.1.0.8' );
    like( reply($s), qr/^220 geomx\.test/, 'banner' );
    print $s "EHLO client.test\r\n";
    like( reply($s), qr/^250 /m, 'EHLO with CRLF answered' );
    print $s "MAIL FROM:<a\@client.test>\n";
    like( reply($s), qr/^550 5\.5\.1 /, 'reject in MAIL: 550 5.5.1' );
    unseen( '127.1.0.8', 'bare LF in MAIL' );
    like( session_line('127.1.0.8'), qr/screen=bare_newline helo=client\.test .*end=screened/, 'logged' );
};

subtest 'a member that refuses the replay: its reply to the client, not counted against it' => sub {
    my $before = member_of('bad')->{connect_failures};
    my $s      = greeted( 'bad', '127.1.0.9' );
    print $s "MAIL FROM:<a\@client.test>\r\n";
    like( reply($s), qr/^4\d\d /, 'the member\'s own 4xx to XCLIENT' );
    is( read_line( $s, 5 ), '', 'then closed' );
    log_like( $g->{log}, qr/client=127\.1\.0\.9:\d+ .*end=server_closed error="?replay: XCLIENT: the member refused: /, 'logged' );
    is( member_of('bad')->{connect_failures}, $before, 'no failure counted: a client could cause it at will' );
};

subtest 'a member that hangs up on the replay: 421 4.3.2, counted against it' => sub {
    my $before = member_of('broken')->{connect_failures};
    my $s      = greeted( 'broken', '127.1.0.10' );
    print $s "MAIL FROM:<a\@client.test>\r\n";
    like( reply($s), qr/^421 4\.3\.2 /, '421 4.3.2' );
    log_like( $g->{log}, qr/client=127\.1\.0\.10:\d+ .*end=connect_failed error="?replay: XCLIENT: closed/, 'logged' );
    is( member_of('broken')->{connect_failures}, $before + 1, 'the member has one more failure' );
    log_like( $g->{log}, qr/event=health pool=broken .*state=down/, 'and went down (fall = 1)' );
};

subtest 'a client that quits before MAIL is not a pass' => sub {
    my $s = greeted( 'screen', '127.1.0.11' );
    print $s "QUIT\r\n";
    like( reply($s), qr/^221 /, 'QUIT' );
    log_like( $g->{log}, qr/client=127\.1\.0\.11:\d+ .*screen=unfinished /, 'logged screen=unfinished' );
    my $again = client( 'screen', '127.1.0.11' );
    like( reply($again), qr/^220 geomx\.test/, 'and screened again next time' );
};

my $metrics = HTTP::Tiny->new( timeout => 5 )->get("http://127.0.0.1:$g->{admin}/metrics")->{content};
like( $metrics, qr/^geomx_screen_total\{pool="screen",result="pass"\} [1-9]/m, '/metrics counts passes per pool' );
like( $metrics, qr/^geomx_screen_total\{pool="screen",result="pipelining"\} 1$/m, '... and each test\'s failures' );
unlike( slurp( $g->{log} ), qr/event=session_error/, 'no session error' );

done_testing();
