#!/usr/bin/perl
# Soak tests (issue 15), against a Release geomx and an smtp-sink member on
# loopback; every loop is bounded in count and time.
#  slowloris: SLOW clients held at one stage at a time (before the PROXY
#    header; inside a greet delay; relayed, a byte every 3 s), with a
#    legitimate client every 0.5 s: its banner latency (median, p99) and
#    success rate, and whether the member ever went DOWN.
#  descriptors: geomx under `ulimit -n 256` with 600 connections held: its
#    CPU while out of descriptors (no accept spin), the member's state, and
#    how soon a client is served once they close.
#  --member-max N: the member's max_connections (issue 15, F1): the relayed
#    slow senders beyond it wait in the queue, then get 421, and the member
#    stays UP.
# Usage: bench/soak.pl [--slow N] [--member-max N] [--build DIR]
use strict;
use warnings;
use Getopt::Long;
use File::Temp qw(tempdir);
use IO::Socket::IP;
use IO::Select;
use HTTP::Tiny;
use JSON::PP qw(decode_json);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use FindBin;
use lib "$FindBin::Bin/../tests/integration";
use GeomxTest qw(free_port wait_for slurp spawn read_line);

my %o = ( slow => 5000, build => 'build/release', 'limit-seconds' => 900, 'member-max' => 0 );
GetOptions( \%o, 'slow=i', 'build=s', 'limit-seconds=i', 'member-max=i' ) or die "bad options\n";
my $cap = $o{'member-max'} ? qq(member_max_connections = $o{'member-max'}\nqueue_timeout = "5s"\n) : '';
my $geomx = "$o{build}/cli/geomx";
-x $geomx or die "$geomx: not built\n";
my $dir = tempdir( 'geomx-soak-XXXXXX', TMPDIR => 1, CLEANUP => 1 );
chmod 0755, $dir;
END { my $status = $?; $_->() for reverse @GeomxTest::cleanup; $? = $status; }
$SIG{PIPE} = 'IGNORE';
my $deadline = time + $o{'limit-seconds'};

system("prlimit --pid $$ --nofile=20000:20000 >/dev/null 2>&1");

sub pct { my ( $p, @v ) = @_; @v = sort { $a <=> $b } @v; return @v ? $v[ int( $p * $#v + 0.5 ) ] : -1 }
# The member: an smtp-sink allowed as many descriptors as the slow clients
# need. It serves 256 connections at once (its -m default) and leaves the
# rest in the listen queue, as a Postfix with 256 smtpd processes would:
# without --member-max below 256, the relayed slow senders fill it and its
# probes time out.
my $sink = free_port();
spawn( "$dir/sink.log", 'prlimit', '--nofile=20000:20000', 'smtp-sink', '-u', 'nobody', '-h', 'sink', "127.0.0.1:$sink", '4096' );
wait_for( 'smtp-sink', 10, sub { IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $sink, Timeout => 1 ) } );

sub start {
    my ( $name, $toml, $nofile ) = @_;
    my $admin = free_port();
    my $user = $> == 0 ? qq(user = "nobody"\n) : '';
    my $conf = "$dir/$name.toml";
    open my $fh, '>', $conf or die;
    print $fh qq([server]\nhostname = "soak.test"\nthreads = 2\n${user}state_dir = "$dir"\nmax_connections_per_ip = 0\n$toml\n[admin]\nlisten = "127.0.0.1:$admin"\ntoken_file = "$dir/$name.token"\n);
    close $fh;
    my $log = "$dir/$name.log";
    my ( $pid, $stop ) = spawn( $log, 'prlimit', "--nofile=$nofile:$nofile", $geomx, 'run', '-c', $conf );
    wait_for( "$name ready", 30, sub { slurp($log) =~ /event=ready/ } );
    my %ports = slurp($log) =~ /event=listening listener=(\S+) address=127\.0\.0\.1:(\d+)/g;
    my ($token) = slurp("$dir/$name.token") =~ /^(\S+)/;
    return { pid => $pid, stop => $stop, log => $log, ports => \%ports, admin => $admin, token => $token };
}

sub member_state {
    my ($g) = @_;
    my $r = HTTP::Tiny->new( timeout => 5 )->get( "http://127.0.0.1:$g->{admin}/status", { headers => { Authorization => "Bearer $g->{token}" } } );
    return $r->{status} == 200 ? decode_json( $r->{content} )->{pools}[0]{members}[0]{state} : "status $r->{status}";
}

sub cpu_seconds { my ($pid) = @_; my @f = split ' ', slurp("/proc/$pid/stat"); return ( $f[13] + $f[14] ) / POSIX::sysconf(POSIX::_SC_CLK_TCK) }

# --- slowloris --------------------------------------------------------------
my $g = start( 'slowloris', <<"TOML", 20000 );
max_connections = 40000
[[listener]]
name = "edge"
address = "127.0.0.1:0"
proxy_protocol = "v1"
trusted_proxies = ["127.0.0.1/32"]
proxy_timeout = "60s"
[[listener]]
name = "delay"
address = "127.0.0.1:0"
proxy_protocol = "v1"
trusted_proxies = ["127.0.0.1/32"]
[[listener]]
name = "relay"
address = "127.0.0.1:0"
proxy_protocol = "v1"
trusted_proxies = ["127.0.0.1/32"]
[pool.sink]
members = ["127.0.0.1:$sink"]
idle_timeout = "60s"
${cap}[pool.sink.health]
interval = "500ms"
[pool.delayed]
members = ["127.0.0.1:$sink"]
greet_delay = "60s"
[[rule]]
name = "delayed"
if = { listener = "delay" }
pool = "delayed"
[[rule]]
name = "all"
pool = "sink"
TOML
my %stage = (
    'before the PROXY header' => sub { },    # connect, send nothing
    'in the greet delay'      => sub { my ( $s, $i ) = @_; print $s 'PROXY TCP4 ' . sprintf( '10.1.%d.%d', $i >> 8, $i & 255 ) . " 127.0.0.1 40000 25\r\n" },
    'relayed, a byte every 3s' => sub { my ( $s, $i ) = @_; print $s 'PROXY TCP4 ' . sprintf( '10.2.%d.%d', $i >> 8, $i & 255 ) . " 127.0.0.1 40000 25\r\n" },
);
my %port_of = ( 'before the PROXY header' => 'edge', 'in the greet delay' => 'delay', 'relayed, a byte every 3s' => 'relay' );
for my $name ( 'before the PROXY header', 'in the greet delay', 'relayed, a byte every 3s' ) {
    my $port = $g->{ports}{ $port_of{$name} };
    my @slow;
    for my $i ( 1 .. $o{slow} ) {
        last if time > $deadline;
        my $s = IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $port, Timeout => 5 ) or last;
        $stage{$name}->( $s, $i );
        push @slow, $s;
    }
    my $held = @slow;
    # 20 legitimate clients, one every 0.5 s, while the slow ones are held (the relayed
    # ones send a byte every 3 s, keeping their idle_timeout fresh).
    my @lat;
    my ( $ok, $down ) = ( 0, 0 );
    my $next_byte = time + 3;
    for my $k ( 1 .. 20 ) {
        my $t0 = time;
        my $line = GeomxTest::first_line( $g->{ports}{relay}, sprintf '10.9.%d.%d', $k, $k );
        push @lat, ( time - $t0 ) * 1000;
        $ok++ if $line =~ /^220 /;
        $down++ if member_state($g) ne 'up';
        if ( $name =~ /^relayed/ && time >= $next_byte ) { print $_ 'x' for @slow; $next_byte = time + 3 }
        sleep 0.5;
    }
    printf "slowloris %-26s %5d held: legitimate client %d/20 served, banner median %.1f ms, p99 %.1f ms; member not UP in %d of 20 looks\n",
        $name, $held, $ok, pct( 0.5, @lat ), pct( 0.99, @lat ), $down;
    close $_ for @slow;
    wait_for( 'the slow ones to end', 60, sub { ( HTTP::Tiny->new->get("http://127.0.0.1:$g->{admin}/metrics")->{content} // '' ) =~ /^geomx_active_connections 0$/m } );
}
my $downs = () = slurp( $g->{log} ) =~ /event=health .*state=down/g;
printf "slowloris: the member went DOWN %d times%s\n", $downs,
    $downs ? ' (first: ' . ( slurp( $g->{log} ) =~ /^(.*event=health .*state=down.*)$/m )[0] . ')' : '';
$g->{stop}->();

# --- descriptor exhaustion ----------------------------------------------------
$g = start( 'descriptors', <<"TOML", 256 );
max_connections = 10000
[[listener]]
name = "relay"
address = "127.0.0.1:0"
proxy_protocol = "v1"
trusted_proxies = ["127.0.0.1/32"]
[pool.sink]
members = ["127.0.0.1:$sink"]
[pool.sink.health]
interval = "200ms"
[[rule]]
name = "all"
pool = "sink"
TOML
my @held;
for my $i ( 1 .. 600 ) {
    my $s = IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $g->{ports}{relay}, Timeout => 2 ) or last;
    print $s 'PROXY TCP4 ' . sprintf( '10.3.%d.%d', $i >> 8, $i & 255 ) . " 127.0.0.1 40000 25\r\n";
    push @held, $s;
}
sleep 1;
my $c0 = cpu_seconds( $g->{pid} );
my $looks = 0;
my $down = 0;
for ( 1 .. 15 ) { sleep 0.2; $looks++; $down++ if member_state($g) ne 'up' }
my $cpu = ( cpu_seconds( $g->{pid} ) - $c0 ) / 3;
my $served_held = grep { my $l = read_line( $_, 0.01 ); $l =~ /^220 / } @held;
close $_ for @held;
my $t0 = time;
my $back = wait_for( 'served again', 30, sub { GeomxTest::first_line( $g->{ports}{relay}, '10.4.0.1' ) =~ /^220 / ? time : 0 } );
my $downs2 = () = slurp( $g->{log} ) =~ /event=health .*state=down/g;
my $local = () = slurp( $g->{log} ) =~ /event=health_error/g;
printf "descriptors: ulimit -n 256, %d connections held: geomx CPU %.0f%% of a core while out of descriptors; member not UP in %d of %d looks (DOWN logged %d times, health_error %d)\n",
    scalar @held, $cpu * 100, $down, $looks, $downs2, $local;
printf "descriptors: served again %.2fs after they closed\n", $back - $t0;
$g->{stop}->();
