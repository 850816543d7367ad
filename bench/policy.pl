#!/usr/bin/perl
# The policy service benchmark (issue 19): requests/s of geomx's policy
# listener on one thread with this node's store and with Redis, against
# postgrey (Debian's, the anchor) on the same machine in the same run,
# interleaved --runs times; then memory per held triplet with 1,000,000
# triplets, in geomx's memory (RSS) and in Redis (used_memory). Every
# request is a triplet of its own (a new triplet: a store write, the
# answer 450), from policy_bench's CONNECTIONS connections each waiting
# for its answer as smtpd does. Writes OUT/policy.json.
# Usage: policy.pl --build DIR [--out DIR] [--runs N] [--quick]
use strict;
use warnings;
use Getopt::Long;
use File::Temp qw(tempdir);
use JSON::PP;
use HTTP::Tiny;
use Time::HiRes qw(time sleep);
use FindBin;
use lib "$FindBin::Bin/../tests/integration";
use GeomxTest qw(free_port wait_for slurp spit can_connect spawn start_geomx start_redis median);

my %o = ( runs => 5, out => 'bench/results', quick => 0, connections => 16 );
GetOptions( \%o, 'build=s', 'out=s', 'runs=i', 'quick!', 'connections=i' )
    && $o{build} or die "usage: $0 --build DIR [--out DIR] [--runs N] [--quick]\n";
my %n = $o{quick} ? ( requests => 20_000, seconds => 10, held => 50_000 ) : ( requests => 200_000, seconds => 20, held => 1_000_000 );
$o{runs} = 1 if $o{quick};
my $geomx = "$o{build}/cli/geomx";
my $client = "$o{build}/bench/policy_bench";
-x $_ or die "missing $_ (build first)\n" for $geomx, $client;
system( 'mkdir', '-p', $o{out} ) == 0 or die;
my $dir = tempdir( 'geomx-policybench-XXXXXX', TMPDIR => 1, CLEANUP => 1 );
chmod 0755, $dir;
END { my $status = $?; $_->() for reverse @GeomxTest::cleanup; $? = $status; }
$SIG{INT} = $SIG{TERM} = sub { exit 130 };
$SIG{PIPE} = 'IGNORE';

sub field { my ( $text, $name ) = @_; my ($v) = $text =~ /\b$name=([-\d.]+)/ or die "no $name in: $text"; $v + 0 }
sub rss_kb { my ($pid) = @_; my ($kb) = slurp("/proc/$pid/status") =~ /^VmRSS:\s+(\d+)/m; return $kb }

my ($redis) = start_redis( $dir, 'redis' );
sub geomx_config {
    my ( $name, $port, $extra ) = @_;
    my $state = GeomxTest::state_dir( $dir, $name );
    return <<"TOML";
[server]
hostname = "$name.bench.test"
threads = 1
state_dir = "$state"
[[listener]]
name = "mx"
address = "127.0.0.1:0"
[[listener]]
name = "policy"
address = "127.0.0.1:$port"
mode = "policy"
trusted_proxies = ["127.0.0.1/32"]
[pool.p]
members = ["127.0.0.1:9"]
health = { probe = "tcp", interval = "1h" }
[[rule]]
name = "all"
pool = "p"
[greylist]
delay = "35m"
max_records = 5000000
$extra
TOML
}
my %port = ( local => free_port(), redis => free_port(), postgrey => free_port() );
my %g;
$g{local} = start_geomx( $geomx, $dir, 'local', geomx_config( 'local', $port{local}, '' ) );
$g{redis} = start_geomx( $geomx, $dir, 'redis-node',
    geomx_config( 'redisnode', $port{redis}, qq([store]\nredis = "127.0.0.1:$redis"\ntimeout = "100ms"\n) ) );
wait_for( 'geomx on redis', 20, sub { HTTP::Tiny->new->get("http://127.0.0.1:$g{redis}{admin}/metrics")->{content} =~ /^geomx_store_up 1$/m } );

# postgrey 1.37 (Net::Server::Multiplex: one process), its BerkeleyDB in the temp dir.
my $pgdb = "$dir/postgrey";
mkdir $pgdb;
system( 'chown', 'postgrey', $pgdb ) if $> == 0;
my @pg = ( 'postgrey', "--inet=127.0.0.1:$port{postgrey}", "--dbdir=$pgdb", '--delay=2100', "--pidfile=$dir/postgrey.pid", '--max-age=35', '--retry-window=2' );
push @pg, '--user=postgrey', '--group=postgrey' if $> == 0;
my ( $pg_pid ) = spawn( "$dir/postgrey.log", @pg );
wait_for( 'postgrey', 20, sub { can_connect( $port{postgrey} ) } );
chomp( my $pg_version = qx(dpkg-query -W -f='\${Version}' postgrey 2>/dev/null) );

my @targets = qw(local redis postgrey);
my %net = ( local => 100, redis => 140, postgrey => 180 );    # each its own client addresses
my %rows;
my $offset = 0;
for my $run ( 1 .. $o{runs} ) {
    for my $t (@targets) {
        my $out = qx($client $port{$t} $o{connections} $n{requests} $n{seconds} $offset $net{$t});
        die "policy_bench $t failed: $out" if $? != 0;
        push @{ $rows{$t} }, $out;
        printf "run %d %-9s %s", $run, $t, $out;
    }
    $offset += $n{requests};
}
my %m;
for my $t (@targets) {
    $m{$t}{rps}    = median( map { field( $_, 'rps' ) } @{ $rows{$t} } );
    $m{$t}{p50_us} = median( map { field( $_, 'p50_us' ) } @{ $rows{$t} } );
    $m{$t}{p99_us} = median( map { field( $_, 'p99_us' ) } @{ $rows{$t} } );
}

# Memory per held triplet: 1,000,000 new ones into each geomx store.
sub redis_used { my ($v) = qx(redis-cli -p $redis info memory) =~ /^used_memory:(\d+)/m; return $v }
sub records { my ($g) = @_; my ($v) = HTTP::Tiny->new->get("http://127.0.0.1:$g->{admin}/metrics")->{content} =~ /^geomx_greylist_records (\d+)$/m; return $v // 0 }
my %mem;
{
    my $before_rss = rss_kb( $g{local}{pid} );
    my $before_n   = records( $g{local} );
    my $out = qx($client $port{local} $o{connections} $n{held} 600 10000000 20);
    my $added = records( $g{local} ) - $before_n;
    $mem{local} = { added => $added, rss_kb_delta => rss_kb( $g{local}{pid} ) - $before_rss,
        bytes_per_triplet => ( rss_kb( $g{local}{pid} ) - $before_rss ) * 1024 / ( $added || 1 ),
        journal_bytes => -s "$dir/state-local/greylist.journal", snapshot_bytes => ( -s "$dir/state-local/greylist.db" ) // 0, client => $out };
    my $keys_before = qx(redis-cli -p $redis dbsize) + 0;
    my $used_before = redis_used();
    $out = qx($client $port{redis} $o{connections} $n{held} 600 10000000 60);
    my $keys = ( qx(redis-cli -p $redis dbsize) + 0 ) - $keys_before;
    $mem{redis} = { added => $keys, used_delta => redis_used() - $used_before,
        bytes_per_triplet => ( redis_used() - $used_before ) / ( $keys || 1 ), client => $out };
}

my $json = JSON::PP->new->canonical->pretty;
spit( "$o{out}/policy.json", $json->encode( { runs => $o{runs}, requests_per_run => $n{requests}, connections => $o{connections},
    medians => \%m, raw => \%rows, memory => \%mem, postgrey_version => $pg_version } ) );
printf "\npolicy listener, %d interleaved runs of %d new triplets, %d connections, geomx threads = 1\n", $o{runs}, $n{requests}, $o{connections};
printf "%-22s %12s %10s %10s %14s\n", 'target', 'requests/s', 'p50 us', 'p99 us', 'vs postgrey';
for my $t (@targets) {
    printf "%-22s %12.0f %10.0f %10.0f %14.2f\n", ( $t eq 'postgrey' ? "postgrey $pg_version" : "geomx $t store" ),
        $m{$t}{rps}, $m{$t}{p50_us}, $m{$t}{p99_us}, $m{$t}{rps} / $m{postgrey}{rps};
}
printf "\nheld triplets: local %d added, %.1f bytes each (RSS), journal %d bytes; redis %d keys, %.1f bytes each (used_memory)\n",
    $mem{local}{added}, $mem{local}{bytes_per_triplet}, $mem{local}{journal_bytes}, $mem{redis}{added}, $mem{redis}{bytes_per_triplet};
