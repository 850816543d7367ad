#!/usr/bin/perl
# Writes a country .mmdb with MaxMind's own writer (Debian's
# libmaxmind-db-writer-perl) from range files in the tor-geoipdb format
# (`low,high,CC`, low/high as decimal IPv4 or IPv6 text; `??` = unknown).
# Usage: make-mmdb.pl OUT.mmdb [--alias] [--registered] RANGEFILE...
#   --alias       alias ::ffff:0:0/96, 2001::/32 and 2002::/16 to IPv4 (as GeoLite2 does)
#   --registered  store only registered_country (no country) for every 7th range
use strict;
use warnings;
use MaxMind::DB::Writer::Tree;
use Net::Works::Address;

my $out = shift @ARGV or die "usage: $0 OUT.mmdb [--alias] [--registered] RANGEFILE...\n";
my ( $alias, $registered ) = ( 0, 0 );
my @files;
for (@ARGV) {
    if    ( $_ eq '--alias' )      { $alias      = 1 }
    elsif ( $_ eq '--registered' ) { $registered = 1 }
    else                           { push @files, $_ }
}

my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version               => 6,
    record_size              => 28,
    database_type            => 'geomx-test-country',
    languages                => ['en'],
    description              => { en => 'geomx test data from tor-geoipdb' },
    alias_ipv6_to_ipv4       => $alias,
    remove_reserved_networks => 0,
    map_key_type_callback    => sub {
        return { country => 'map', registered_country => 'map' }->{ $_[0] } // 'utf8_string';
    },
);

my $n = 0;
for my $file (@files) {
    open my $fh, '<', $file or die "$file: $!\n";
    while ( my $line = <$fh> ) {
        next if $line =~ /^\s*(#|$)/;
        chomp $line;
        my ( $lo, $hi, $cc ) = split /,/, $line;
        next if $cc eq '??';
        if ( $lo =~ /^\d+$/ ) {
            $lo = Net::Works::Address->new_from_integer( integer => $lo, version => 4 )->as_string;
            $hi = Net::Works::Address->new_from_integer( integer => $hi, version => 4 )->as_string;
        }
        # Aliased networks cannot be written; they answer with the IPv4 data.
        next if $alias && $lo =~ /^(2002:|2001:0?:|2001::|::ffff:)/i;
        my $key = ( $registered && $n % 7 == 3 ) ? 'registered_country' : 'country';
        $tree->insert_range( $lo, $hi, { $key => { iso_code => $cc } } );
        $n++;
    }
}
open my $fh, '>:raw', "$out.tmp" or die "$out.tmp: $!\n";
$tree->write_tree($fh);
close $fh or die "$out.tmp: $!\n";
rename "$out.tmp", $out or die "$out: $!\n";
print "wrote $out: $n ranges\n";
