#pragma once
// The data files a config names, loaded: the country databases (or the
// default ones) and the lists' CIDR files. Reading them is here, so that
// compiling the snapshot (policy/) is pure.
#include <string>
#include <vector>

#include "conf/config.hpp"
#include "conf/loader.hpp"
#include "geo/range.hpp"
#include "geo/table.hpp"

namespace geomx::conf {

struct Data {
  std::vector<geo::GeoData> databases;      // priority order
  std::vector<geo::GeoData> asn_databases;  // priority order
  std::vector<geo::RangeSet> lists;         // parallel to config.lists: cidrs and files
};

// Every file that fails becomes a diagnostic at the config line that names
// it (a default database's at line 0).
Data load_data(const Config& config, std::vector<Diagnostic>& errors);
// The same, throwing ConfigError with every failure.
Data load_data(const Config& config);

// The files load_data reads: its databases (or the default ones) and its
// list files. geo.watch watches them.
std::vector<std::string> data_files(const Config& config);

}  // namespace geomx::conf
