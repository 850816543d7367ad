#!/usr/bin/perl
# A ban flood (issue 15, F2): SOURCES clients, each from its own address
# (PROXY v1 headers from a trusted local sender: the addresses are data, all
# traffic is on loopback), each connecting twice against a [[limit]] of
# 1/h with action "ban": the second connection of each is banned. Meanwhile
# /healthz is asked every 20 ms and an operator runs `geomx block add`.
# Prints, for each binary given (the first is the anchor): the flood's
# duration, /healthz latency (median, p99, max, failures), the operator's
# add, and the time from the last 421 to the last ban in blocks.toml.
# Usage: bench/ban_flood.pl [--sources N] [--clients N] GEOMX [GEOMX...]
use strict;
use warnings;
use Getopt::Long;
use File::Temp qw(tempdir);
use IO::Socket::IP;
use HTTP::Tiny;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use FindBin;
use lib "$FindBin::Bin/../tests/integration";
use GeomxTest qw(wait_for slurp spawn);

my %o = ( sources => 6000, clients => 4, 'limit-seconds' => 600 );
GetOptions( \%o, 'sources=i', 'clients=i', 'limit-seconds=i' ) or die "bad options\n";
my @binaries = @ARGV or die "usage: $0 [--sources N] GEOMX [GEOMX...]\n";
my $dir = tempdir( 'geomx-banflood-XXXXXX', TMPDIR => 1, CLEANUP => 1 );
chmod 0755, $dir;
END { my $status = $?; $_->() for reverse @GeomxTest::cleanup; $? = $status; }
$SIG{PIPE} = 'IGNORE';
my $deadline = time + $o{'limit-seconds'};

sub pct { my ( $p, @v ) = @_; @v = sort { $a <=> $b } @v; return @v ? $v[ int( $p * $#v + 0.5 ) ] : -1 }

# The n-th source: 10.x.y.z, one each.
sub source { my ($i) = @_; return sprintf '10.%d.%d.%d', ( $i >> 16 ) & 255, ( $i >> 8 ) & 255, $i & 255 }

sub run_one {
    my ( $geomx, $name ) = @_;
    my $state = "$dir/$name-state";
    mkdir $state;
    chmod 0777, $state;
    my $user = $> == 0 ? qq(user = "nobody"\n) : '';
    my $admin = GeomxTest::free_port();
    my $conf = "$dir/$name.toml";
    open my $fh, '>', $conf or die;
    print $fh <<"TOML";
[server]
hostname = "geomx.test"
threads = 2
${user}state_dir = "$state"
max_connections_per_ip = 0
max_bans = 100000
[[listener]]
name = "edge"
address = "127.0.0.1:0"
proxy_protocol = "v1"
trusted_proxies = ["127.0.0.1/32"]
[[limit]]
name = "flood"
rate = "1/h"
action = "ban"
ban_for = "1h"
table_size = 100000
[[rule]]
name = "all"
action = "reject"
reply = "554 5.7.1 flood test"
[admin]
listen = "127.0.0.1:$admin"
TOML
    close $fh;
    my $log = "$dir/$name.log";
    my ( $pid, $stop ) = spawn( $log, $geomx, 'run', '-c', $conf );
    wait_for( "$name ready", 30, sub { slurp($log) =~ /event=ready/ } );
    my ($port) = slurp($log) =~ /event=listening listener=edge address=127\.0\.0\.1:(\d+)/;

    # /healthz every 20 ms, in a child, until told to stop.
    my $lat = "$dir/$name.healthz";
    my $prober = fork // die;
    if ( !$prober ) {
        my $http = HTTP::Tiny->new( timeout => 30 );
        open my $out, '>', $lat or die;
        $out->autoflush(1);
        my $stopping = 0;
        local $SIG{TERM} = sub { $stopping = 1 };
        while ( !$stopping && time < $deadline ) {
            my $t0 = time;
            my $r = $http->get("http://127.0.0.1:$admin/healthz");
            printf $out "%.6f %d\n", time - $t0, $r->{status};
            sleep 0.02;
        }
        POSIX::_exit(0);
    }

    # The flood: each client takes its share of the sources, two connections each.
    my $t0 = time;
    my @kids;
    for my $c ( 0 .. $o{clients} - 1 ) {
        my $kid = fork // die;
        if ( !$kid ) {
            my $bad = 0;
            for ( my $i = $c; $i < $o{sources}; $i += $o{clients} ) {
                for my $round ( 1, 2 ) {
                    last if time > $deadline;
                    my $s = IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $port, Timeout => 10 ) or ( $bad++, next );
                    print $s 'PROXY TCP4 ' . source($i) . " 127.0.0.1 40000 25\r\n";
                    my $line = GeomxTest::read_line( $s, 10 );
                    $bad++ unless $line =~ /^(554|421) /;
                    close $s;
                }
            }
            POSIX::_exit( $bad > 250 ? 250 : $bad );
        }
        push @kids, $kid;
    }
    # An operator's add in the middle of it.
    sleep 0.5;
    my $a0 = time;
    my $out = `$geomx block add 192.0.2.0/24 --comment operator -c $conf 2>&1`;
    my $add_rc = $? >> 8;
    my $add = time - $a0;
    my $bad = 0;
    for (@kids) { waitpid $_, 0; $bad += $? >> 8 }
    my $flood = time - $t0;
    # The last ban durable: blocks.toml holds every source's /32 (and the operator's block).
    my $want = $o{sources} + ( $add_rc == 0 ? 1 : 0 );
    my $count = sub { my $t = slurp("$state/blocks.toml") // ''; my $n = () = $t =~ /^\[\[block\]\]/mg; $n };
    wait_for( "$want blocks in $state/blocks.toml", $o{'limit-seconds'}, sub { $count->() >= $want } );
    my $durable = time - $t0 - $flood;
    kill 'TERM', $prober;
    waitpid $prober, 0;
    my @l = map { [split] } split /\n/, slurp($lat);
    my @ok = map { $_->[0] * 1000 } grep { $_->[1] == 200 } @l;
    my $failed = grep { $_->[1] != 200 } @l;
    my $writes = () = slurp($log) =~ /event=block action=added/g;
    $stop->();
    return {
        flood => $flood, durable => $durable, bad => $bad, add => $add, add_rc => $add_rc, add_out => $out,
        p50 => pct( 0.5, @ok ), p99 => pct( 0.99, @ok ), max => pct( 1, @ok ), probes => scalar @l, failed => $failed,
        bans => $writes,
    };
}

my @r;
for my $i ( 0 .. $#binaries ) {
    push @r, run_one( $binaries[$i], "g$i" );
    my $x = $r[-1];
    printf "%-28s %d sources x 2 in %.1fs (%d without a reply); %d bans logged; last ban in blocks.toml %.2fs after the flood\n",
        $binaries[$i], $o{sources}, $x->{flood}, $x->{bad}, $x->{bans}, $x->{durable};
    printf "%-28s /healthz: %d asked, %d failed, median %.1f ms, p99 %.1f ms, max %.1f ms; operator's block add: rc %d in %.2fs\n",
        '', $x->{probes}, $x->{failed}, $x->{p50}, $x->{p99}, $x->{max}, $x->{add_rc}, $x->{add};
}
if ( @r > 1 ) {
    my ( $a, $b ) = @r[ 0, 1 ];
    printf "ratios (second / first): flood time %.3f, healthz p99 %.3f, time to the last ban durable %.3f, block add %.3f\n",
        $b->{flood} / $a->{flood}, $b->{p99} / ( $a->{p99} || 1 ), ( $b->{flood} + $b->{durable} ) / ( $a->{flood} + $a->{durable} ), $b->{add} / ( $a->{add} || 1 );
}
