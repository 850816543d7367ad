#include "conf/data.hpp"

#include <fmt/format.h>

#include "geo/sources.hpp"

namespace geomx::conf {
namespace {

void load_databases(const Config& c, Data& data, std::vector<Diagnostic>& errors) {
  std::vector<FileRef> databases = c.geo.databases;
  if (databases.empty())
    for (const auto& path : geo::default_databases()) databases.push_back({path, {c.path, 0, 0}});
  for (std::size_t i = 0; i < databases.size(); ++i) {
    try {
      data.databases.push_back(geo::load_database(databases[i].path));
    } catch (const geo::LoadError& e) {
      const bool named = databases[i].where.line != 0;
      errors.push_back({databases[i].where, fmt::format("geo.databases[{}]", i),
                        named ? e.what() : fmt::format("default database: {}", e.what())});
    }
  }
  for (std::size_t i = 0; i < c.geo.asn_databases.size(); ++i) {
    try {
      data.asn_databases.push_back(geo::load_asn_mmdb(c.geo.asn_databases[i].path));
    } catch (const geo::LoadError& e) {
      errors.push_back(
          {c.geo.asn_databases[i].where, fmt::format("geo.asn_databases[{}]", i), e.what()});
    }
  }
}

geo::RangeSet load_list(const List& list, std::vector<Diagnostic>& errors) {
  geo::RangeSet set;
  for (const auto& p : list.cidrs) set.add(p);
  for (std::size_t i = 0; i < list.files.size(); ++i) {
    try {
      auto loaded = geo::load_cidr_file(list.files[i].path);
      set.v4.insert(set.v4.end(), loaded.v4.begin(), loaded.v4.end());
      set.v6.insert(set.v6.end(), loaded.v6.begin(), loaded.v6.end());
    } catch (const geo::LoadError& e) {
      errors.push_back(
          {list.files[i].where, fmt::format("lists.{}.files[{}]", list.name, i), e.what()});
    }
  }
  return set;
}

}  // namespace

Data load_data(const Config& config, std::vector<Diagnostic>& errors) {
  Data data;
  load_databases(config, data, errors);
  for (const auto& list : config.lists) data.lists.push_back(load_list(list, errors));
  return data;
}

Data load_data(const Config& config) {
  std::vector<Diagnostic> errors;
  auto data = load_data(config, errors);
  if (!errors.empty()) {
    sort_diagnostics(errors);
    throw ConfigError(std::move(errors));
  }
  return data;
}

std::vector<std::string> data_files(const Config& config) {
  std::vector<std::string> files;
  for (const auto& d : config.geo.databases) files.push_back(d.path);
  if (config.geo.databases.empty()) files = geo::default_databases();
  for (const auto& d : config.geo.asn_databases) files.push_back(d.path);
  for (const auto& list : config.lists)
    for (const auto& f : list.files) files.push_back(f.path);
  return files;
}

}  // namespace geomx::conf
