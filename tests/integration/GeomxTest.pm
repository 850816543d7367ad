package GeomxTest;
# Shared by tests/integration/proxy_test.pl and bench/proxy.pl: loopback
# helpers with deadlines, and a throwaway Postfix smtpd in its own folder.
# Cleanups (stop what was started) go on @GeomxTest::cleanup; the caller's
# END block runs them in reverse.
use strict;
use warnings;
use Exporter 'import';
use IO::Select;
use IO::Socket::IP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

our @EXPORT_OK =
    qw(free_port wait_for slurp spit state_dir log_like wait_idle can_connect spawn start_postfix start_geomx start_redis start_unbound start_sink read_line read_reply first_line admin_token auth fleet_node_config timed median);
our @cleanup;

sub free_port {
    my $s = IO::Socket::IP->new( Listen => 1, LocalHost => '127.0.0.1', LocalPort => 0 )
        or die "port: $@";
    my $port = $s->sockport;
    close $s;
    return $port;
}

sub wait_for {
    my ( $what, $seconds, $cond ) = @_;
    my $end = time + $seconds;
    while ( time < $end ) {
        my $r = $cond->();
        return $r if $r;
        sleep 0.02;
    }
    die "timed out after ${seconds}s waiting for $what\n";
}

sub slurp { open my $fh, '<', $_[0] or return ''; local $/; return scalar <$fh> }
sub spit { open my $fh, '>', $_[0] or die "$_[0]: $!"; print $fh $_[1]; close $fh }

sub median {
    my @s = sort { $a <=> $b } @_;
    return $s[ $#s / 2 ] if @s % 2;
    return ( $s[ @s / 2 - 1 ] + $s[ @s / 2 ] ) / 2;
}

# Runs a command to completion within LIMIT seconds, its output (both
# streams) to a file of its own; returns (seconds, output); dies when it
# fails or overruns.
sub timed {
    my ( $limit, @cmd ) = @_;
    require File::Temp;
    my ( undef, $out ) = File::Temp::tempfile( 'geomx-cmd-XXXXXX', TMPDIR => 1, UNLINK => 1 );
    my $start = time;
    my $pid = fork // die;
    if ( $pid == 0 ) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out;
        open STDERR, '>&', \*STDOUT;
        exec @cmd or die "exec $cmd[0]: $!";
    }
    my $status = wait_for( "@cmd", $limit, sub { waitpid( $pid, WNOHANG ) == $pid ? [$?] : undef } );
    my $seconds = time - $start;
    my $text = slurp($out);
    die "failed ($status->[0]): @cmd\n$text" if $status->[0] != 0;
    return ( $seconds, $text );
}

# like() on a log file that geomx writes after the client has its answer
# (a session's line comes when the session ends): wait up to 10 s for the
# pattern, then assert, so a failure still shows the whole log.
sub log_like {
    my ( $file, $re, $name ) = @_;
    my $end = time + 10;
    sleep 0.02 while time < $end && slurp($file) !~ $re;
    require Test::More;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    return Test::More::like( slurp($file), $re, $name );
}

# Until geomx (admin endpoint on ADMIN_PORT) has no session open: each one's
# counts (top, /metrics) and log line are in.
sub wait_idle {
    my ($admin) = @_;
    require HTTP::Tiny;
    wait_for( 'every session to end', 10,
        sub { HTTP::Tiny->new( timeout => 5 )->get("http://127.0.0.1:$admin/metrics")->{content} =~ /^geomx_active_connections 0$/m } );
}

sub can_connect {
    my ($port) = @_;
    return IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $port, Timeout => 1 );
}

# One line from socket S within SECONDS (default 10), with a buffer of our
# own (sysread), so select() sees every byte; '' at EOF or timeout. The
# buffer lives in the socket's glob, so it goes with the socket.
sub read_line {
    my ( $s, $seconds ) = @_;
    my $buf = \${*$s}{geomx_read_buffer};
    $$buf //= '';
    my $end = time + ( $seconds // 10 );
    for (;;) {
        return $1 if $$buf =~ s/^([^\n]*\n)//;
        my $left = $end - time;
        return '' if $left <= 0 || !IO::Select->new($s)->can_read($left);
        my $n = sysread( $s, my $chunk, 4096 );
        return '' unless $n;
        $$buf .= $chunk;
    }
}

# One whole SMTP reply from socket S (all its lines) within SECONDS
# (default 10); what arrived before EOF or timeout.
sub read_reply {
    my ( $s, $seconds ) = @_;
    my $end   = time + ( $seconds // 10 );
    my $reply = '';
    for (;;) {
        my $line = read_line( $s, $end - time );
        $reply .= $line;
        return $reply if $line eq '' || $line =~ /^\d{3} /;
    }
}

# Connects to PORT as CLIENT (a PROXY v1 header: the port is trusted; none
# without CLIENT) and returns the first line geomx or the backend answers.
# The bearer token in FILE (as geomx made it), for requests made by hand.
sub admin_token {
    my ($file) = @_;
    return '' unless $file && -e $file;
    my ($token) = slurp($file) =~ /^(\S+)/;
    return $token // '';
}

# Headers that authorize a request to the admin endpoint of G (start_geomx's).
sub auth { my ($g) = @_; return { headers => { Authorization => "Bearer $g->{token}" } } }

sub first_line {
    my ( $port, $client ) = @_;
    my $s = IO::Socket::IP->new( PeerHost => '127.0.0.1', PeerPort => $port, Timeout => 5 ) or return "connect: $!";
    # An IPv6 client comes as TCP6 (its destination ::1; the header is all geomx reads).
    print $s ( $client =~ /:/ ? "PROXY TCP6 $client ::1 40000 25\r\n" : "PROXY TCP4 $client 127.0.0.1 40000 25\r\n" ) if $client;
    my $line = read_line( $s, 10 );
    print $s "QUIT\r\n";
    close $s;
    return $line;
}

# smtp-sink on ADDRESS (default 127.0.0.1:<free port>), naming itself NAME in
# its banner ("220 NAME ESMTP"), its output in DIR/NAME.log, EXTRA options
# before the address; returns the address. Up before it returns.
sub start_sink {
    my ( $dir, $name, $address, @extra ) = @_;
    $address //= '127.0.0.1:' . free_port();
    spawn( "$dir/$name.log", 'smtp-sink', '-u', 'nobody', '-h', $name, @extra, $address, '1024' );
    my ( $host, $port ) = $address =~ /^\[?([^\]]*?)\]?:(\d+)$/ or die "start_sink: $address";
    wait_for( "smtp-sink $name on $address", 10,
        sub { IO::Socket::IP->new( PeerHost => $host, PeerPort => $port, Timeout => 1 ) } );
    return $address;
}

# A throwaway Postfix in its own folder (DESIGN.md): discard delivery,
# PROXY from its upstream, its log in DIR/maillog.
sub start_postfix {
    my ( $dir, $name, $port, $extra ) = @_;
    my $d = "$dir/postfix-$name";
    mkdir $_ for $d, "$d/etc", "$d/queue", "$d/data";
    system( 'chown', 'postfix', "$d/data" );
    open my $main, '>', "$d/etc/main.cf" or die;
    print $main <<"CF";
compatibility_level = 3.6
queue_directory = $d/queue
data_directory = $d/data
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = $name.test
mydestination =
relay_domains = example.test
default_transport = discard:
relay_transport = discard:
smtpd_upstream_proxy_protocol = haproxy
smtpd_peername_lookup = no
mynetworks = 127.0.0.0/8
maillog_file = $d/maillog
maillog_file_prefixes = $d
alias_maps =
alias_database =
local_recipient_maps =
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
CF
    print $main $extra if $extra;
    close $main;
    open my $master, '>', "$d/etc/master.cf" or die;
    print $master "127.0.0.1:$port inet n - n - 200 smtpd\n";
    print $master "$_\n" for (
        'pickup unix n - n 60 1 pickup',    'cleanup unix n - n - 0 cleanup',
        'qmgr unix n - n 300 1 qmgr',       'rewrite unix - - n - - trivial-rewrite',
        'bounce unix - - n - 0 bounce',     'defer unix - - n - 0 bounce',
        'trace unix - - n - 0 bounce',      'verify unix - - n - 1 verify',
        'flush unix n - n 1000? 0 flush',   'proxymap unix - - n - - proxymap',
        'smtp unix - - n - - smtp',         'relay unix - - n - - smtp',
        'error unix - - n - - error',       'retry unix - - n - - error',
        'discard unix - - n - - discard',   'anvil unix - - n - 1 anvil',
        'scache unix - - n - 1 scache',     'postlog unix-dgram n - n - 1 postlogd',
        'tlsmgr unix - - n 1000? 1 tlsmgr'
    );
    close $master;
    system("postfix -c $d/etc start >>$d/start.log 2>&1") == 0
        or die "postfix $name did not start: " . slurp("$d/start.log") . slurp("$d/maillog");
    push @cleanup, sub { system("postfix -c $d/etc stop >/dev/null 2>&1") };
    # The probe sends a v2 LOCAL header, so it leaves no warning in the log
    # (Postfix 3.7 rejects v1 "PROXY UNKNOWN": "bad or missing protocol type").
    wait_for( "postfix $name on $port", 30, sub {
        my $c = can_connect($port) or return;
        print $c "\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00QUIT\r\n";
        return 1;
    } );
    return { dir => $d, port => $port, log => "$d/maillog" };
}

# Starts a process in the background, its output appended to LOG; returns
# (pid, stop). stop: SIGTERM, then SIGKILL after 10 s; also run at the end.
sub spawn {
    my ( $log, @cmd ) = @_;
    my $pid = fork // die "fork: $!";
    if ( $pid == 0 ) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log;
        open STDERR, '>>', $log;
        exec @cmd or die "exec $cmd[0]: $!";
    }
    my $stop = sub {
        return unless $pid;
        kill 'TERM', $pid;
        my $end = time + 10;
        sleep 0.02 while waitpid( $pid, WNOHANG ) == 0 && time < $end;
        if ( kill 0, $pid ) { kill 'KILL', $pid; waitpid $pid, 0 }
        $pid = 0;
    };
    push @cleanup, $stop;
    return ( $pid, $stop );
}

# redis-server on 127.0.0.1:PORT (default: a free one), without persistence
# (a restart comes back empty), its log in DIR/NAME.log, EXTRA options;
# returns (port, pid, stop). Up (PING answered) before it returns.
sub start_redis {
    my ( $dir, $name, $port, @extra ) = @_;
    $port ||= free_port();
    my ( $pid, $stop ) = spawn( "$dir/$name.log", 'redis-server', '--port', $port, '--bind', '127.0.0.1',
        '--save', '', '--appendonly', 'no', '--dir', $dir, @extra );
    wait_for( "redis $name on $port", 10, sub { can_connect($port) } );
    return ( $port, $pid, $stop );
}

# unbound on 127.0.0.1:<free port> as the tests' DNS server: no recursion
# out (module "iterator", loopback only), every query logged to DIR/unbound.log,
# ZONES (server: options, local-zone/local-data lines, and any sections
# after server:) as given. Returns (port, log, pid). Up before it returns.
sub start_unbound {
    my ( $dir, $zones ) = @_;
    my $port = free_port();
    open my $fh, '>', "$dir/unbound.conf" or die "$dir/unbound.conf: $!";
    print $fh <<"CONF";
server:
  interface: 127.0.0.1\@$port
  port: $port
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$dir"
  pidfile: "$dir/unbound.pid"
  use-syslog: no
  logfile: ""
  log-queries: yes
  verbosity: 1
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  do-not-query-localhost: no
$zones
remote-control:
  control-enable: no
CONF
    close $fh;
    my $log = "$dir/unbound.log";
    my ($pid) = spawn( $log, 'unbound', '-d', '-c', "$dir/unbound.conf" );
    wait_for( 'unbound', 10, sub { slurp($log) =~ /start of service/ } );
    return ( $port, $log, $pid );
}

# A fleet node's config (fleet_test.pl, sentinel_test.pl): its own
# state_dir under DIR, a PROXY v1 listener for our trusted sender, every
# client to the smtp-sink on port SINK, the test's own LIMITS (lists and
# [[limit]]s) and the [store] body STORE.
# DIR/state-NAME, made writable for geomx's user (it writes there after
# dropping to nobody); returns its path.
sub state_dir {
    my ( $dir, $name ) = @_;
    my $state = "$dir/state-$name";
    mkdir $state;
    chmod 0777, $state;
    return $state;
}

sub fleet_node_config {
    my (%o) = @_;
    my $state = state_dir( $o{dir}, $o{name} );
    return <<"TOML";
[server]
hostname = "$o{name}.test"
threads = 2
state_dir = "$state"
[geo]
databases = ["$o{testdata}/edge6.mmdb"]
[[listener]]
name = "edge"
address = "127.0.0.1:0"
proxy_protocol = "v1"
trusted_proxies = ["127.0.0.1/32"]
[pool.sink]
members = ["127.0.0.1:$o{sink}"]
$o{limits}
[[rule]]
name = "all"
pool = "sink"
[store]
$o{store}
TOML
}

# `geomx run` on CONFIG (written to DIR/NAME.toml) until it logs ready; its
# admin endpoint on a port of its own, and user "nobody" when run as root
# (geomx refuses root without server.user). Returns {pid, stop, log, conf,
# ports (listener name => port), admin (port)}.
sub start_geomx {
    my ( $geomx, $dir, $name, $config ) = @_;
    my $conf = "$dir/$name.toml";
    $config .= qq([admin]\nlisten = "127.0.0.1:0"\n) unless $config =~ /^\[admin\]/m;
    # The admin token in the test's directory, not in the default state_dir.
    $config =~ s/^\[admin\]\n/[admin]\ntoken_file = "$dir\/$name.token"\n/m unless $config =~ /^token_file *=/m;
    $config =~ s/^\[server\]\n/[server]\nuser = "nobody"\n/m if $> == 0 && $config !~ /^(user|allow_root) *=/m;
    open my $fh, '>', $conf or die "$conf: $!";
    print $fh $config;
    close $fh;
    my $log = "$dir/$name.log";
    my ( $pid, $stop ) = spawn( $log, $geomx, 'run', '-c', $conf );
    my $exited;
    wait_for( "geomx $name ready", 30,
        sub { $exited = waitpid( $pid, WNOHANG ) == $pid; slurp($log) =~ /event=ready/ || $exited } );
    my %ports = slurp($log) =~ /event=listening listener=(\S+) address=(?:127\.0\.0\.1|\[::1\]):(\d+)/g;
    die "geomx $name did not start: " . slurp($log) if $exited || !%ports;
    my ($admin) = slurp($log) =~ /event=admin_listening address=127\.0\.0\.1:(\d+)/;
    my ($token_file) = slurp($conf) =~ /^token_file = "([^"]+)"/m;
    return { pid => $pid, stop => $stop, log => $log, conf => $conf, ports => \%ports, admin => $admin, token => admin_token($token_file) };
}

1;
