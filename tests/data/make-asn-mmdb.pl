#!/usr/bin/perl
# Writes a GeoLite2-ASN-schema .mmdb with MaxMind's own writer (Debian's
# libmaxmind-db-writer-perl): autonomous_system_number (uint32) and
# autonomous_system_organization per network. The networks are the ranges
# of tor-geoipdb's files (so they cut across the country data), each given
# a made-up AS (2- and 4-byte numbers, some organisations in UTF-8), every
# 10th left out; and 127.1.0.0/16 = AS64496, 127.2.0.0/16 = AS64511 for the
# integration tests' clients.
# Usage: make-asn-mmdb.pl OUT.mmdb RANGEFILE...
use strict;
use warnings;
use utf8;
use MaxMind::DB::Writer::Tree;
use Net::Works::Address;

my $out = shift @ARGV or die "usage: $0 OUT.mmdb RANGEFILE...\n";
my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version               => 6,
    record_size              => 28,
    database_type            => 'GeoLite2-ASN',
    languages                => ['en'],
    description              => { en => 'geomx test AS data over tor-geoipdb ranges' },
    remove_reserved_networks => 0,
    map_key_type_callback    => sub {
        return { autonomous_system_number => 'uint32' }->{ $_[0] } // 'utf8_string';
    },
);

my $n = 0;
my $insert = sub {
    my ( $lo, $hi, $asn, $org ) = @_;
    $tree->insert_range( $lo, $hi,
        { autonomous_system_number => $asn, autonomous_system_organization => $org } );
    $n++;
};
$insert->( '127.1.0.0', '127.1.255.255', 64496, 'Example GB Net' );
$insert->( '127.2.0.0', '127.2.255.255', 64511, 'Example CN Net' );
my $i = 0;
for my $file (@ARGV) {
    open my $fh, '<', $file or die "$file: $!\n";
    while ( my $line = <$fh> ) {
        next if $line =~ /^\s*(#|$)/;
        chomp $line;
        my ( $lo, $hi ) = split /,/, $line;
        next if ++$i % 10 == 0;
        if ( $lo =~ /^\d+$/ ) {
            $lo = Net::Works::Address->new_from_integer( integer => $lo, version => 4 )->as_string;
            $hi = Net::Works::Address->new_from_integer( integer => $hi, version => 4 )->as_string;
        }
        next if $lo =~ /^127\./;
        my $asn = $i % 5 == 0 ? 4200000000 + $i % 1000 : 1 + ( $i * 7919 ) % 65000;
        my $org = $asn % 7 == 0 ? "Société $asn" : "Test Org $asn";    # one name per AS, as in GeoLite2-ASN
        $insert->( $lo, $hi, $asn, $org );
    }
}
open my $fh, '>:raw', "$out.tmp" or die "$out.tmp: $!\n";
$tree->write_tree($fh);
close $fh or die "$out.tmp: $!\n";
rename "$out.tmp", $out or die "$out: $!\n";
print "wrote $out: $n networks\n";
