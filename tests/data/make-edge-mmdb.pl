#!/usr/bin/perl
# Writes the small hand-made .mmdb files whose edge cases the tests pin:
#   OUT_DIR/edge6.mmdb  IPv6 tree with IPv4 aliased (::ffff:0:0/96, 2001::/32,
#                       2002::/16), registered_country-only networks, a record
#                       without any country, nested networks, 127.x test subnets
#   OUT_DIR/edge4.mmdb  IPv4-only tree
use strict;
use warnings;
use MaxMind::DB::Writer::Tree;

my $dir = shift @ARGV or die "usage: $0 OUT_DIR\n";

my @networks = (
    [ '1.0.0.0/24',      { country => 'AU' } ],
    [ '1.0.1.0/24',      { registered_country => 'CN' } ],
    [ '1.0.2.0/23',      { country => 'JP', registered_country => 'US' } ],
    [ '1.0.4.0/22',      {} ],                                 # no country at all
    [ '2.0.0.0/8',       { country => 'FR' } ],
    [ '2.1.0.0/16',      { country => 'DE' } ],                # nested in 2.0.0.0/8
    [ '127.1.0.0/16',    { country => 'GB' } ],
    [ '127.2.0.0/16',    { country => 'CN' } ],
    [ '127.2.128.0/17',  { registered_country => 'RU' } ],
    [ '128.0.0.0/1',     { country => 'BR' } ],
    [ '198.51.100.0/24', { country => 'GB' } ],                # upper half of the split
    [ '0.0.0.0/32',      { country => 'AQ' } ],
    [ '255.255.255.255/32', { country => 'KP' } ],
    [ '2001:db8::/32',   { country => 'NL' } ],
    [ '2001:db8:1::/48', { registered_country => 'GB' } ],
    [ '2a00::/12',       { country => 'SE' } ],
    [ '2a00:1::/32',     {} ],
    [ '8000::/1',        { country => 'IS' } ],
    [ 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128', { country => 'KP' } ],
);

sub record {
    my $spec = shift;
    my %r = ( continent => { code => 'EU' } );
    $r{$_} = { iso_code => $spec->{$_} } for keys %$spec;
    return \%r;
}

sub write_db {
    my ( $file, $version, @nets ) = @_;
    my $tree = MaxMind::DB::Writer::Tree->new(
        ip_version               => $version,
        record_size              => 24,
        database_type            => 'geomx-edge',
        languages                => ['en'],
        description              => { en => 'geomx edge cases' },
        alias_ipv6_to_ipv4       => $version == 6 ? 1 : 0,
        remove_reserved_networks => 0,
        merge_strategy           => 'none',
        map_key_type_callback    => sub {
            return { country => 'map', registered_country => 'map', continent => 'map' }->{ $_[0] }
                // 'utf8_string';
        },
    );
    $tree->insert_network( $_->[0], record( $_->[1] ) ) for @nets;
    open my $fh, '>:raw', "$file.tmp" or die "$file.tmp: $!\n";
    $tree->write_tree($fh);
    close $fh or die "$file.tmp: $!\n";
    rename "$file.tmp", $file or die "$file: $!\n";
}

write_db( "$dir/edge6.mmdb", 6, @networks );
write_db( "$dir/edge4.mmdb", 4, grep { $_->[0] !~ /:/ } @networks );
print "wrote $dir/edge6.mmdb $dir/edge4.mmdb\n";
