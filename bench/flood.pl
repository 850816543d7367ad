#!/usr/bin/perl
# Memory under a flood of sources (issue 8): CONNECTIONS connection attempts,
# each from a different random IPv4 source (PROXY v1 headers from a trusted
# local sender: the addresses are data, all traffic is on loopback), against
# a geomx whose [[limit]] table is bounded at 10,000 clients and whose top
# talkers table is too. Prints geomx's RSS before and as the flood goes on;
# flat is the point. Every attempt must get an SMTP reply.
# Usage: bench/flood.sh [--connections N] [--clients N] [--limit-seconds S]
#        (bench/flood.pl --build DIR ... is what flood.sh runs)
use strict;
use warnings;
use Getopt::Long;
use File::Temp qw(tempdir);
use IO::Socket::IP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use FindBin;
use lib "$FindBin::Bin/../tests/integration";
use GeomxTest qw(free_port wait_for slurp start_geomx);

my %o = ( connections => 200_000, clients => 4, 'limit-seconds' => 600, build => 'build/release' );
GetOptions( \%o, 'connections=i', 'clients=i', 'limit-seconds=i', 'build=s' ) or die "bad options\n";
my $geomx = "$o{build}/cli/geomx";
-x $geomx or die "$geomx: not built\n";
my $dir = tempdir( 'geomx-flood-XXXXXX', TMPDIR => 1, CLEANUP => 1 );
chmod 0755, $dir;
END { my $status = $?; $_->() for reverse @GeomxTest::cleanup; $? = $status; }
$SIG{PIPE} = 'IGNORE';
mkdir "$dir/state";
chmod 0777, "$dir/state";

my $g = start_geomx( $geomx, $dir, 'flood', <<"TOML" );
[server]
hostname = "geomx.test"
threads = 1
state_dir = "$dir/state"
max_connections_per_ip = 0
[[listener]]
name = "edge"
address = "127.0.0.1:0"
proxy_protocol = "v1"
trusted_proxies = ["127.0.0.1/32"]
[[limit]]
name = "per-client"
rate = "30/min"
table_size = 10000
[[rule]]
name = "all"
action = "reject"
reply = "554 5.7.1 flood test"
TOML
my $port = $g->{ports}{edge};

sub rss_kb {
    return slurp("/proc/$g->{pid}/status") =~ /^VmRSS:\s+(\d+) kB/m ? $1 : 0;
}

# One round of N attempts over the clients; returns the attempts that got no reply.
sub flood {
    my ( $n, $seed ) = @_;
    my @kids;
    for my $c ( 1 .. $o{clients} ) {
        my $pid = fork // die "fork: $!";
        if ( !$pid ) {
            srand( $seed * 100 + $c );
            my $end = time + $o{'limit-seconds'};
            my $bad = 0;
            for ( 1 .. int( $n / $o{clients} ) ) {
                last if time > $end;
                my $src = join '.', 1 + int( rand 223 ), int( rand 256 ), int( rand 256 ), 1 + int( rand 254 );
                my $s = IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $port, Timeout => 5 );
                if ( !$s ) { $bad++; next }
                syswrite $s, "PROXY TCP4 $src 127.0.0.1 40000 25\r\n";
                my $reply = '';
                while ( $reply !~ /\n/ ) { sysread( $s, my $buf, 256 ) or last; $reply .= $buf }
                $bad++ unless $reply =~ /^(554|421) /;
                close $s;
            }
            POSIX::_exit( $bad > 250 ? 250 : $bad );
        }
        push @kids, $pid;
    }
    my $bad = 0;
    for (@kids) { waitpid $_, 0; $bad += $? >> 8 }
    return $bad;
}

my $step = int( $o{connections} / 4 );
printf "geomx RSS before the flood: %d kB\n", rss_kb();
my ( $start, $bad ) = ( time, 0 );
my @rss;
for my $i ( 1 .. 4 ) {
    $bad += flood( $step, $i );
    push @rss, rss_kb();
    printf "after %7d attempts: RSS %d kB (%.0f attempts/s)\n", $i * $step, $rss[-1], $i * $step / ( time - $start );
}
my $top = `$geomx top --window 1h --n 1 --admin 127.0.0.1:$g->{admin} -c $g->{conf}`;
my ($total) = $top =~ /^(\d+) connections/;
printf "RSS growth from %d to %d attempts: %+d kB; attempts without a reply: %d; geomx counted %s\n",
    $step, 4 * $step, $rss[-1] - $rss[0], $bad, $total // '?';
die "some attempts got no reply\n" if $bad;
