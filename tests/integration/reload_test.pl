#!/usr/bin/perl
# Hot reload against real processes on loopback: SIGHUP, POST /reload and
# `geomx reload` change lists, pools and listeners while sessions run; a
# broken config and a corrupt database change nothing; geo.watch picks up a
# database renamed into place while lookups run. Clients of other countries
# are PROXY headers from a trusted local sender, looked up in .mmdb files
# this test writes with MaxMind's writer. Every wait has a deadline.
# Usage: reload_test.pl GEOMX TESTDATA_DIR
use strict;
use warnings;
use Test::More;
use List::Util qw(max);
use IO::Socket::IP;
use Cwd ();
use File::Temp qw(tempdir);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use FindBin;
use lib $FindBin::Bin;
use GeomxTest qw(free_port wait_for slurp can_connect spawn start_geomx start_sink read_line first_line);
use HTTP::Tiny;
use MaxMind::DB::Writer::Tree;

my ( $geomx, $testdata ) = @ARGV;
die "usage: $0 GEOMX TESTDATA\n" unless $testdata;
my $dir = tempdir( 'geomx-reload-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{GEOMX_TEST_KEEP} );
chmod 0755, $dir;
END { my $status = $?; $_->() for reverse @GeomxTest::cleanup; $? = $status; }
$SIG{PIPE} = 'IGNORE';

sub spit { my ( $f, $text ) = @_; open my $fh, '>', "$f.tmp" or die; print $fh $text; close $fh; rename "$f.tmp", $f or die }

# A country database as geoipupdate delivers it: written beside, renamed over.
sub write_mmdb {
    my ( $file, %networks ) = @_;
    my $tree = MaxMind::DB::Writer::Tree->new(
        ip_version            => 6,
        record_size           => 24,
        database_type         => 'geomx-reload-test',
        languages             => ['en'],
        description           => { en => 'geomx reload test' },
        alias_ipv6_to_ipv4    => 1,
        remove_reserved_networks => 0,
        map_key_type_callback => sub { { country => 'map' }->{ $_[0] } // 'utf8_string' },
    );
    $tree->insert_network( $_, { country => { iso_code => $networks{$_} } } ) for keys %networks;
    open my $fh, '>:raw', "$file.tmp" or die "$file.tmp: $!";
    $tree->write_tree($fh);
    close $fh or die;
    rename "$file.tmp", $file or die "$file: $!";
}

sub metric {
    my ( $g, $name ) = @_;
    my $r = HTTP::Tiny->new( timeout => 5 )->get("http://127.0.0.1:$g->{admin}/metrics");
    return $r->{content} =~ /^\Q$name\E (\S+)$/m ? $1 : undef;
}

# What LOG got after byte OFFSET (the log grows to megabytes under load).
sub log_from {
    my ( $log, $offset ) = @_;
    open my $fh, '<', $log or return '';
    seek $fh, $offset, 0;
    local $/;
    return scalar <$fh> // '';
}

# SIGHUP, then the reload's own log line.
sub hup_and_wait {
    my ( $g, $result ) = @_;
    my $offset = -s $g->{log};
    kill 'HUP', $g->{pid};
    my ($line) = wait_for( 'the reload', 30, sub { log_from( $g->{log}, $offset ) =~ /^(.*event=reload .*)$/m ? $1 : undef } );
    $g->{reloads}++;
    like( $line, qr/result=\Q$result\E/, "reload #$g->{reloads}: $result" );
    return $line;
}

# --- backends: two smtp-sinks that name themselves in the banner ------------
my %sink = map { $_ => ( start_sink( $dir, $_ ) =~ /:(\d+)$/ )[0] } qw(sinka sinkb);

my $db = "$dir/geo/country.mmdb";
my $admin_port = free_port();
mkdir "$dir/geo";
chmod 0755, "$dir/geo";
write_mmdb( $db, '127.77.0.0/16' => 'GB', '127.88.0.0/16' => 'FR' );
spit( "$dir/blocked.txt", "# none yet\n" );

# The config: rules route GB to pool `uk`, the rest to `rest`; a list file
# rejects; the lookup listener rejects with the country in the reply.
sub config {
    my (%o) = @_;
    my $uk_pool   = $o{uk_pool}   // 'uk';
    my $rest      = $o{rest}      // [ $sink{sinkb} ];
    my $extra     = $o{extra}     // '';
    my $watch     = $o{watch}     // 'false';
    my $members   = join ', ', map {"\"127.0.0.1:$_\""} @$rest;
    return <<"TOML";
[server]
hostname = "geomx.test"
threads = 2
max_connections_per_ip = 0
[geo]
databases = ["$db"]
watch = $watch
[[listener]]
name = "mx"
address = "127.0.0.1:0"
[[listener]]
name = "edge"
address = "127.0.0.1:0"
proxy_protocol = "v1"
trusted_proxies = ["127.0.0.1/32"]
[[listener]]
name = "lookup"
address = "127.0.0.1:0"
proxy_protocol = "v1"
trusted_proxies = ["127.0.0.1/32"]
$extra
[admin]
listen = "127.0.0.1:$admin_port"
token_file = "$dir/reload.token"
[lists.blocked]
files = ["$dir/blocked.txt"]
[pool.uk]
members = ["127.0.0.1:$sink{sinka}"]
[pool.rest]
members = [$members]
balance = "round-robin"
[pool.rest.health]
interval = "200ms"
[[rule]]
name = "lookup-gb"
if = { listener = "lookup", country = "GB" }
action = "reject"
reply = "554 5.7.1 looked up GB"
[[rule]]
name = "lookup-fr"
if = { listener = "lookup", country = "FR" }
action = "reject"
reply = "554 5.7.1 looked up FR"
[[rule]]
name = "blocked"
if = { list = "blocked" }
action = "reject"
reply = "554 5.7.1 blocked"
[[rule]]
name = "uk"
if = { country = "GB" }
pool = "$uk_pool"
[[rule]]
name = "rest"
pool = "rest"
TOML
}

my $g = start_geomx( $geomx, $dir, 'reload', config() );
my %port = %{ $g->{ports} };

subtest '1. SIGHUP changes pools and lists; a session open across it finishes on the old config' => sub {
    like( first_line( $port{edge}, '127.77.1.1' ), qr/^220 sinka/, 'GB client -> pool uk (sinka)' );
    # A session that began before the reload.
    my $open = IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $port{edge}, Timeout => 5 ) or die;
    print $open "PROXY TCP4 127.77.1.2 127.0.0.1 40000 25\r\n";
    like( read_line($open), qr/^220 sinka/, 'open session: banner from sinka' );

    spit( "$g->{conf}", config( uk_pool => 'rest' ) );
    hup_and_wait( $g, 'success' );
    is( metric( $g, 'geomx_config_generation' ), 2, 'generation 2' );
    like( first_line( $port{edge}, '127.77.1.1' ), qr/^220 sinkb/, 'after SIGHUP: GB client -> pool rest (sinkb)' );
    print $open "HELO x\r\n";
    like( read_line($open), qr/^250/, 'the open session still talks to sinka after the reload' );
    print $open "QUIT\r\n";
    like( read_line($open), qr/^221/, 'and ends normally' );
    close $open;

    spit( "$dir/blocked.txt", "127.77.1.0/24 # SPAM_09_01_2021\n" );
    hup_and_wait( $g, 'success' );
    like( first_line( $port{edge}, '127.77.1.1' ), qr/^554 5\.7\.1 blocked/, 'list file grew: the client is rejected' );
    like( first_line( $port{edge}, '127.77.2.1' ), qr/^220 sinkb/, 'its neighbour is not' );

    my $r = HTTP::Tiny->new( timeout => 30 )->post( "http://127.0.0.1:$g->{admin}/reload", GeomxTest::auth($g) );
    is( $r->{status}, 200, 'POST /reload: 200' );
    like( $r->{content}, qr/"result":"success","generation":4/, 'POST /reload: JSON with generation 4' );
    my $out = `$geomx reload -c $g->{conf} 2>&1`;
    is( $? >> 8, 0, 'geomx reload: exit 0' );
    like( $out, qr/^reload: success, generation 5$/m, "geomx reload prints: reload: success, generation 5" );
    is( metric( $g, 'geomx_config_reloads_total{result="success"}' ), 4, 'reloads_total success = 4' );
};

subtest '2. listeners: unchanged ones keep their sockets; added ones open, removed ones close' => sub {
    my $extra = qq([[listener]]\nname = "late"\naddress = "127.0.0.1:0"\n);
    spit( "$g->{conf}", config( uk_pool => 'rest', extra => $extra ) );
    my $held = IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $port{mx}, Timeout => 5 ) or die;
    like( read_line($held), qr/^220 sinkb/, 'a session on mx before the reload' );
    hup_and_wait( $g, 'success' );
    my ($late) = slurp( $g->{log} ) =~ /event=listening listener=late address=127\.0\.0\.1:(\d+)/;
    ok( $late, "listener late opened on port $late" );
    like( first_line($late), qr/^220 sinkb/, 'late serves' );
    like( first_line( $port{mx} ), qr/^220 sinkb/, 'mx kept its port' );
    print $held "QUIT\r\n";
    like( read_line($held), qr/^221/, 'the session held across the reload ends normally' );

    spit( "$g->{conf}", config( uk_pool => 'rest' ) );
    hup_and_wait( $g, 'success' );
    like( slurp( $g->{log} ), qr/event=listener_closed listener=late\@127\.0\.0\.1:0/, 'late closed' );
    ok( !can_connect($late), 'nothing listens on its port any more' );
    like( first_line( $port{mx} ), qr/^220 sinkb/, 'mx still serves' );
};

subtest '2b. the only listener replaced: the new one serves, and so does the next' => sub {
    my $one = sub {
        my ($name) = @_;
        return <<"TOML";
[server]
hostname = "geomx.test"
threads = 2
[geo]
databases = ["$db"]
[[listener]]
name = "$name"
address = "127.0.0.1:0"
[pool.p]
members = ["127.0.0.1:$sink{sinkb}"]
[[rule]]
name = "all"
pool = "p"
TOML
    };
    my $solo = start_geomx( $geomx, $dir, 'solo', $one->('first') );
    for my $name (qw(second third)) {
        my $config = $one->($name);
        $config =~ s/^\[server\]\n/[server]\nuser = "nobody"\n/m if $> == 0;
        spit( $solo->{conf}, $config . qq([admin]\nlisten = "127.0.0.1:$solo->{admin}"\ntoken_file = "$dir/solo.token"\n) );
        hup_and_wait( $solo, 'success' );
        my ($p) = slurp( $solo->{log} ) =~ /event=listening listener=$name address=127\.0\.0\.1:(\d+)/;
        ok( $p, "listener $name opened" );
        like( first_line($p), qr/^220 sinkb/, "$name serves (both I/O threads kept running with no listener for a moment)" ) for 1 .. 4;
    }
    $solo->{stop}->();
    like( slurp( $solo->{log} ), qr/event=stopped/, 'and it stops cleanly' );
};

subtest '3. a broken config and a corrupt database change nothing' => sub {
    my $gen = metric( $g, 'geomx_config_generation' );
    my $good = slurp( $g->{conf} );
    ( my $broken = $good ) =~ s/pool = "rest"\n(?!balance)/pool = "nowhere"\n/;
    $broken =~ s/threads = 2/threads = "two"/;
    spit( "$g->{conf}", $broken );
    hup_and_wait( $g, 'failure' );
    my $log = slurp( $g->{log} );
    like( $log, qr/event=reload_error error="\Q$g->{conf}\E:\d+:\d+: server\.threads: /, 'logged with file:line:column (threads)' );
    like( $log, qr/event=reload_error error="\Q$g->{conf}\E:\d+:\d+: rule\[\d\]\.pool: no pool named \\"nowhere\\"/,
        'logged with file:line:column (pool)' );
    my $out = `$geomx reload -c $g->{conf} 2>&1`;
    is( $? >> 8, 1, 'geomx reload: exit 1' );
    like( $out, qr/:\d+:\d+: server\.threads: .*\n.*:\d+:\d+: rule\[\d\]\.pool: .*\n.*: 2 errors\ngeomx: not reloaded, the running config stays/,
        'geomx reload checks the file first and says why' );
    my $r = HTTP::Tiny->new( timeout => 30 )->post( "http://127.0.0.1:$g->{admin}/reload?format=text", GeomxTest::auth($g) );
    is( $r->{status}, 422, 'POST /reload: 422' );
    like( $r->{content}, qr/^reload: failed, the running config stays \(generation $gen\)\nerror: .*:\d+:\d+: /,
        'and the errors, one a line' );
    is( metric( $g, 'geomx_config_generation' ), $gen, "generation stays $gen" );
    is( metric( $g, 'geomx_config_reloads_total{result="failure"}' ), 2, 'reloads_total failure = 2' );
    like( first_line( $port{edge}, '127.77.2.1' ), qr/^220 sinkb/, 'a session after it routes as before' );

    spit( "$g->{conf}", $good );
    spit( "$db.bad", "this is not a MaxMind database\n" x 100 );
    rename "$db", "$db.good" or die;
    rename "$db.bad", "$db" or die;
    hup_and_wait( $g, 'failure' );
    like( slurp( $g->{log} ), qr/event=reload_error error="\Q$g->{conf}\E:\d+:\d+: geo\.databases\[0\]: \Q$db\E: /,
        'the corrupt database is named, at the config line that names it' );
    my $out2 = `$geomx reload -c $g->{conf} 2>&1`;
    is( $? >> 8, 1, 'geomx reload: exit 1' );
    like( $out2, qr/^reload: failed, the running config stays \(generation $gen\)\nerror: .*geo\.databases\[0\]: /,
        'geomx reload prints the daemon\'s answer' );
    is( metric( $g, 'geomx_config_reloads_total{result="failure"}' ), 4, 'reloads_total failure = 4' );
    like( first_line( $port{lookup}, '127.77.9.9' ), qr/^554 5\.7\.1 looked up GB/, 'lookups use the old data' );
    like( first_line( $port{edge}, '127.77.2.1' ), qr/^220 sinkb/, 'sessions route as before' );
    rename "$db.good", "$db" or die;
    hup_and_wait( $g, 'success' );
};

subtest '4. reload under load: 20,000 smtp-source sessions, 20 SIGHUPs changing lists and pools' => sub {
    my $sessions = $ENV{GEOMX_RELOAD_SESSIONS} // 20000;
    my $out = "$dir/smtp-source.out";
    my $start = time;
    my ( $pid, $stop ) = spawn( $out, 'smtp-source', '-4', '-s', 20, '-m', $sessions, '-f', 'load@example.org',
        '-t', 'sink@example.test', '-M', 'client.test', "127.0.0.1:$port{mx}" );
    my ( $during, $status ) = ( 0, undef );
    my $ended = sub { $status //= waitpid( $pid, WNOHANG ) == $pid ? $? >> 8 : undef; defined $status };
    for my $i ( 1 .. 20 ) {
        # Alternate the pool `rest` between one and two members, and grow the list.
        my @rest = $i % 2 ? ( $sink{sinka}, $sink{sinkb} ) : ( $sink{sinkb} );
        spit( "$dir/blocked.txt", join '', map {"127.66.$_.0/24\n"} 1 .. $i );
        spit( "$g->{conf}", config( uk_pool => 'rest', rest => \@rest ) );
        sleep 0.05;    # files older than the reload: geomx reads them at once
        hup_and_wait( $g, 'success' );
        $during++ unless $ended->();
        sleep 0.05;
    }
    is( $during, 20, '20 reloads while smtp-source was running' );
    wait_for( 'smtp-source', 600, $ended );
    my $took = time - $start;
    is( $status, 0, 'smtp-source exit 0' );
    my $errors = slurp($out);
    is( $errors, '', 'smtp-source reported no error' );
    my $ends = () = slurp( $g->{log} ) =~ /event=session .* pool=rest /g;
    my $failed = () = slurp( $g->{log} ) =~ /event=session .*end=(?:connect_failed|no_member|too_busy|error)/g;
    is( $failed, 0, 'no session failed in geomx' );
    diag( sprintf '%d sessions in %.1fs (%.0f/s) across 20 reloads; geomx logged %d relayed sessions to pool rest',
        $sessions, $took, $sessions / $took, $ends );
};

subtest '5. geo.watch: a database renamed into place answers within 2 s, lookups never fail' => sub {
    spit( "$g->{conf}", config( uk_pool => 'rest', watch => 'true' ) );
    hup_and_wait( $g, 'success' );
    my $rate     = $ENV{GEOMX_WATCH_RATE} // 1000;    # lookups a second, all clients together
    my $seconds  = 6;
    my $clients  = 4;
    my $t0       = time + 0.5;
    my @kids;
    for my $c ( 1 .. $clients ) {
        my $pid = fork // die;
        if ( !$pid ) {
            open my $fh, '>', "$dir/lookups.$c" or die;
            my $n = 0;
            sleep max( 0, $t0 - time );
            while ( ( my $now = time ) < $t0 + $seconds ) {
                my $due = $t0 + $n * $clients / $rate;
                if ( $due > $now ) { sleep $due - $now; next }
                my $ip = sprintf '127.77.%d.%d', $c, $n % 250 + 1;
                my $line = first_line( $port{lookup}, $ip );
                $line =~ s/\r?\n//;
                printf $fh "%.6f %s\n", time, $line;
                $n++;
            }
            close $fh;
            POSIX::_exit(0);
        }
        push @kids, $pid;
    }
    sleep max( 0, $t0 + 2 - time );
    write_mmdb( $db, '127.77.0.0/16' => 'FR' );    # GB -> FR, renamed into place
    my $renamed = time;
    waitpid $_, 0 for @kids;
    my ( $total, $bad, $first_new, $last_old ) = ( 0, 0, undef, 0 );
    for my $c ( 1 .. $clients ) {
        open my $fh, '<', "$dir/lookups.$c" or die;
        while (<$fh>) {
            my ( $t, $line ) = /^(\S+) (.*)$/;
            $total++;
            if    ( $line =~ /looked up GB/ ) { $last_old = $t if $t > $last_old }
            elsif ( $line =~ /looked up FR/ ) { $first_new = $t if !defined $first_new || $t < $first_new }
            else                              { $bad++; diag("bad answer: $line") if $bad < 5 }
        }
    }
    my $achieved = $total / $seconds;
    is( $bad, 0, "$total lookups, none failed" );
    ok( defined $first_new, 'the new data answered' );
    my $lag = $last_old - $renamed;
    cmp_ok( $lag, '<', 2, sprintf 'the last answer from the old data came %.3fs after the rename', $lag );
    # Paced clients: the rate shows the test ran under load. A busy shared
    # machine may fall behind; the figure is printed, the floor is loose.
    cmp_ok( $achieved, '>=', $rate * 0.5, sprintf '%.0f lookups/s (asked for %d)', $achieved, $rate );
    like( slurp( $g->{log} ), qr/event=reload trigger="watch \Q$db\E" result=success/, 'the watch reloaded it' );
    diag( sprintf 'rename -> first new answer %.3fs, last old answer %.3fs; %d lookups at %.0f/s, 0 errors',
        $first_new - $renamed, $lag, $total, $achieved );

    # A write in place (no rename) is never loaded half-written: geomx waits
    # until the file stops changing, and a file that is not a database fails.
    open my $fh, '>', $db or die;
    print $fh "half a database";
    close $fh;
    wait_for( 'the watch to try it', 10, sub { slurp( $g->{log} ) =~ /trigger="watch \Q$db\E" result=failure/ } );
    like( first_line( $port{lookup}, '127.77.3.3' ), qr/looked up FR/, 'the data before it still answers' );
};

subtest '6. SIGHUPs during a reload are served together by one more reload' => sub {
    # Real country data (both tor-geoipdb files): a reload takes long
    # enough that the signals arrive while one is running.
    my $h = start_geomx( $geomx, $dir, 'hups', <<"TOML" );
[server]
threads = 1
[geo]
databases = ["/usr/share/tor/geoip", "/usr/share/tor/geoip6"]
[[listener]]
name = "mx"
address = "127.0.0.1:0"
[[rule]]
name = "all"
action = "drop"
TOML
    my $offset = -s $h->{log};
    kill 'HUP', $h->{pid};
    my ($first) = wait_for( 'a first reload', 30, sub { log_from( $h->{log}, $offset ) =~ /event=reload .*result=success .*took=(\d+)ms/ ? $1 : undef } );
    $offset = -s $h->{log};
    my $t0 = time;
    for ( 1 .. 20 ) { kill 'HUP', $h->{pid}; sleep 0.02 }
    my $span = time - $t0;
    # Done when the reloads stop: none new for two reload times.
    my ( $count, $since, $last ) = ( 0, time, 0 );
    while ( time - $since < max( 2, 2 * $first / 1000 ) && time - $t0 < 120 ) {
        $count = () = log_from( $h->{log}, $offset ) =~ /event=reload /g;
        ( $since, $last ) = ( time, $count ) if $count != $last;
        sleep 0.05;
    }
    my @took = log_from( $h->{log}, $offset ) =~ /event=reload .*took=(\d+)ms/g;
    my $took = ( sort { $a <=> $b } @took )[ @took / 2 ] // $first;
    # Each reload covers every SIGHUP before it began: at most one reload
    # per reload time of signals, plus the one running and the one after.
    my $most = int( $span * 1000 / max( $took, 1 ) ) + 2;
    cmp_ok( $count, '<=', $most, sprintf '20 SIGHUPs in %.2fs, reloads of %dms: %d reloads (at most %d)', $span, $took, $count, $most );
    cmp_ok( $count, '>=', 1, 'and at least one reload after them' );
    $h->{stop}->();
};

$g->{stop}->();
like( slurp( $g->{log} ), qr/event=stopped/, 'geomx stopped cleanly' );
unlike( slurp( $g->{log} ), qr/ERROR: AddressSanitizer|runtime error:/, 'no sanitizer report' );
done_testing();
