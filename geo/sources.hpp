#pragma once
// Loaders for the sources the table is compiled from. Each either returns
// complete data or throws LoadError naming the file (and line) and the
// reason: never a partial result.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "geo/range.hpp"
#include "geo/table.hpp"

namespace geomx::geo {

class LoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Every input file is read through these: only a regular file (a FIFO
// would hang the loader, a device such as /dev/zero never ends), of at most
// `max_bytes`. Throw LoadError naming the file.
inline constexpr std::uint64_t max_text_file = std::uint64_t{256} << 20;    // lists, range files
inline constexpr std::uint64_t max_database_file = std::uint64_t{2} << 30;  // .mmdb
void check_input_file(const std::string& path, std::uint64_t max_bytes);
std::string read_input_file(const std::string& path, std::uint64_t max_bytes);

// `low,high,CC` range files: tor-geoipdb's geoip (decimal IPv4) and geoip6
// (IPv6 text), and DB-IP / IP2Location lite style CSV (quoted fields, text or
// decimal addresses, extra columns ignored). `??`, `-` or empty = unknown.
GeoData load_range_file(const std::string& path);
// The same for text already read; `name` is used in error messages.
GeoData parse_range_file(const std::string& text, const std::string& name);

// A MaxMind DB: the whole search tree is walked once and flattened. Country
// is country.iso_code, else registered_country.iso_code.
GeoData load_mmdb(const std::string& path);

// An ASN database (GeoLite2-ASN schema .mmdb): spans carry GeoValue::asn,
// and organisations the autonomous_system_organization of each number.
GeoData load_asn_mmdb(const std::string& path);

// .mmdb files by name, everything else as a range file.
GeoData load_database(const std::string& path);

// One address or prefix per line; `#` starts a comment; blank lines skipped.
RangeSet load_cidr_file(const std::string& path);
// The same for text already read; `name` is used in error messages.
RangeSet parse_cidr_list(const std::string& text, const std::string& name);

// The MaxMind country database if one is installed, else tor-geoipdb's files.
std::vector<std::string> default_databases();

// Loads `databases` (priority order) and compiles them into one table.
// `asn_databases` (GeoLite2-ASN .mmdb files, priority order) add the AS.
GeoTable build_table(const std::vector<std::string>& databases,
                     const std::vector<std::string>& asn_databases = {});

}  // namespace geomx::geo
