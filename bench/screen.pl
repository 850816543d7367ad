#!/usr/bin/perl
# The SMTP screen benchmark: what screen = "smtp" costs a session. One geomx
# on loopback with three pools in front of the same backend, reached by a
# listener each: "relay" (screen = "none", the byte relay), "screen" (every
# session screened: screen_ttl = "0s") and "cached" (a pass within
# screen_ttl: every session after the first goes straight to the relay).
# Every scenario runs --runs times, the three interleaved; medians and
# ratios against the relay. Writes OUT/screen.json.
#
#   1. MAIL to its reply, p50/p99 (conn_bench mail: banner, EHLO, then the
#      timed MAIL FROM, QUIT), paced clients against conn_bench serve: on a
#      screened pool this is the whole hand-off (connect, the member's 220,
#      the replayed EHLO and its 250, then MAIL and its reply).
#   2. sessions/s: smtp-source (50 parallel, a whole mail transaction each)
#      against smtp-sink.
#
# Usage: screen.pl --build DIR [--out DIR] [--runs N] [--threads N] [--quick]
use strict;
use warnings;
use Getopt::Long;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use FindBin;
use lib "$FindBin::Bin/../tests/integration";
use GeomxTest qw(free_port wait_for slurp spit can_connect spawn start_geomx start_sink timed median);

my %o = ( runs => 5, threads => 1, out => 'bench/results', quick => 0 );
GetOptions( \%o, 'build=s', 'out=s', 'runs=i', 'threads=i', 'quick!' )
    && $o{build} or die "usage: $0 --build DIR [--out DIR] [--runs N] [--threads N] [--quick]\n";
my %n = $o{quick}
    ? ( lat_conc => 50, lat_count => 300, lat_interval => 50, sessions => 300, parallel => 50 )
    : ( lat_conc => 50, lat_count => 5_000, lat_interval => 50, sessions => 10_000, parallel => 50 );
$o{runs} = 1 if $o{quick};
my $geomx = "$o{build}/cli/geomx";
my $conn_bench = "$o{build}/bench/conn_bench";
-x $_ or die "missing $_ (build first)\n" for $geomx, $conn_bench;
system( 'mkdir', '-p', $o{out} ) == 0 or die;
my $dir = tempdir( 'geomx-screenbench-XXXXXX', TMPDIR => 1, CLEANUP => 1 );
chmod 0755, $dir;
END { my $status = $?; $_->() for reverse @GeomxTest::cleanup; $? = $status; }
$SIG{INT} = $SIG{TERM} = sub { exit 130 };
$SIG{PIPE} = 'IGNORE';

sub field { my ( $text, $name ) = @_; my ($v) = $text =~ /\b$name=([-\d.]+)/ or die "no $name in: $text"; $v + 0 }

my $serve = free_port();
spawn( "$dir/serve.log", $conn_bench, 'serve', $serve );
wait_for( 'conn_bench serve', 10, sub { can_connect($serve) } );
my $sink = start_sink( $dir, 'sink' );

my @configs = qw(relay screen cached);
my %screen = ( relay => '', screen => qq(screen = "smtp"\nscreen_ttl = "0s"\n), cached => qq(screen = "smtp"\nscreen_ttl = "1h"\n) );
my $config = <<"TOML";
[server]
hostname = "bench.test"
threads = $o{threads}
max_connections_per_ip = 0
TOML
for my $backend ( [ serve => "127.0.0.1:$serve" ], [ sink => $sink ] ) {
    for my $c (@configs) {
        my $name = "$c-$backend->[0]";
        $config .= qq([[listener]]\nname = "$name"\naddress = "127.0.0.1:0"\n);
        $config .= qq([pool.$name]\nmembers = ["$backend->[1]"]\nbalance = "first"\n$screen{$c});
        $config .= qq([[rule]]\nname = "$name"\nif = { listener = ["$name"] }\npool = "$name"\n);
    }
}
$config .= qq([[rule]]\nname = "rest"\naction = "reject"\n);
my $g = start_geomx( $geomx, $dir, 'screen', $config );
# The screen answers EHLO with what the member's probe saw: one probe each first.
wait_for( 'every member probed', 20, sub {
    my $r = HTTP::Tiny->new( timeout => 5 )->get( "http://127.0.0.1:$g->{admin}/status", GeomxTest::auth($g) );
    return $r->{success} && !grep { $_->{checks} < 1 } map { @{ $_->{members} } } @{ decode_json( $r->{content} )->{pools} };
} );

my %result;    # scenario -> config -> [values of each run]
sub record { my ( $s, $t, $v ) = @_; push @{ $result{$s}{$t} }, $v + 0 }
# A pass for 127.0.0.1 on the cached pools before the runs.
timed( 60, $conn_bench, 'mail', $g->{ports}{"cached-$_"}, 1, 1, 0 ) for qw(serve sink);
for my $run ( 1 .. $o{runs} ) {
    print STDERR "run $run of $o{runs}\n";
    for my $c (@configs) {
        my ( undef, $text ) = timed( 300, $conn_bench, 'mail', $g->{ports}{"$c-serve"}, $n{lat_conc}, $n{lat_count}, $n{lat_interval} );
        record( 'mail_p50', $c, field( $text, 'p50_us' ) );
        record( 'mail_p99', $c, field( $text, 'p99_us' ) );
    }
    for my $c (@configs) {
        my ( $s, $text ) = timed( 600, 'smtp-source', '-4', '-s', $n{parallel}, '-m', $n{sessions}, '-f', 'bench@example.org',
            '-t', 'sink@example.test', '-M', 'client.test', "127.0.0.1:$g->{ports}{\"$c-sink\"}" );
        die "smtp-source reported errors:\n$text" if $text =~ /\S/;
        record( 'sessions', $c, $n{sessions} / $s );
    }
}
$g->{stop}->();
my $log = slurp( $g->{log} );
die "geomx reported an error:\n$log" if $log =~ /Sanitizer|runtime error|session_error/;
# Every screened session passed (none failed a test, none was refused).
my %outcome;
$outcome{"$1 $2"}++ while $log =~ /pool=(\S+) .*?screen=(\S+) /g;
my @bad = grep { !/ (pass|cached)$/ } keys %outcome;
die "sessions that did not pass the screen: @bad\n$log" if @bad;
my $screened = grep { / pass$/ } keys %outcome;
die "no session was screened\n" unless $screened;

# --- report -------------------------------------------------------------------

my %med;
for my $s ( keys %result ) { $med{$s}{$_} = median( @{ $result{$s}{$_} } ) for keys %{ $result{$s} } }
sub ratio { my ( $a, $b ) = @_; return defined $a && defined $b && $b != 0 ? $a / $b : undef }
my $cpus = `nproc`;
chomp $cpus;
printf "geomx, screen = \"smtp\" vs the byte relay, %d thread(s), %d CPU(s); medians of %d run(s)%s\n\n",
    $o{threads}, $cpus, $o{runs}, $o{quick} ? ' (QUICK: not a measurement)' : '';
printf "%-40s %10s %10s %10s %12s %12s\n", 'scenario', 'relay', 'screen', 'cached', 'screen/relay', 'cached/relay';
my @rows = (
    [ '1. MAIL to reply p50 (us)',                        'mail_p50' ],
    [ '1. MAIL to reply p99 (us)',                        'mail_p99' ],
    [ "2. sessions/s (smtp-source, $n{parallel} parallel)", 'sessions' ],
);
for my $r (@rows) {
    my ( $label, $key ) = @$r;
    printf "%-40s %10.1f %10.1f %10.1f %12.3f %12.3f\n", $label, @{ $med{$key} }{@configs},
        ratio( $med{$key}{screen}, $med{$key}{relay} ), ratio( $med{$key}{cached}, $med{$key}{relay} );
}
printf "%-40s %10s %10.1f %10.1f\n", "1. added p$_ (us)", '-', $med{"mail_p$_"}{screen} - $med{"mail_p$_"}{relay},
    $med{"mail_p$_"}{cached} - $med{"mail_p$_"}{relay}
    for qw(50 99);
printf "\nscreen outcomes in the log: %s\n", join( ', ', map {"$_ x$outcome{$_}"} sort keys %outcome );

my $json = JSON::PP->new->pretty->canonical;
spit( "$o{out}/screen.json", $json->encode( {
    date => scalar gmtime, threads => $o{threads}, cpus => $cpus + 0, runs => $o{runs}, quick => $o{quick} ? \1 : \0,
    counts => \%n, runs_raw => \%result, medians => \%med, outcomes => \%outcome,
} ) );
print "\nwrote $o{out}/screen.json\n";
