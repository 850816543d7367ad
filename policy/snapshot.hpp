#pragma once
// Everything one connection's decision reads, built once per (re)load and
// shared immutably: the config, the compiled geo table (databases, lists and
// rule CIDRs in one table) and the rules compiled against it.
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <vector>

#include "conf/config.hpp"
#include "conf/loader.hpp"
#include "geo/table.hpp"

namespace geomx::policy {

struct CompiledRule {
  std::uint64_t all_of = 0;             // list bits that must all be set (lists, the rule's CIDRs)
  std::uint64_t none_of = 0;            // list bits that must all be clear (not_list)
  std::vector<geo::Country> countries;  // any of them, if any
  std::vector<std::size_t> listeners;   // any of them, if any
  std::size_t pool = 0;                 // route: index into config.pools
};

struct Snapshot {
  conf::Config config;
  geo::GeoTable table;
  std::vector<CompiledRule> rules;         // parallel to config.rules
  std::vector<CompiledRule> limit_scopes;  // parallel to config.limits
  std::uint64_t list_mask = 0;             // bits of config.lists (the rest are rule CIDRs)

  std::optional<std::size_t> listener_index(std::string_view name) const;
};

// Loads the geo databases and list files and compiles the rules. Throws
// conf::ConfigError naming the config line of every file that fails to load.
std::shared_ptr<const Snapshot> build_snapshot(conf::Config config);

// Reads, validates and builds the config file at `path` (server.hostname
// defaults to the machine's name): the snapshot, or every diagnostic (the
// config's and those of every file it names), sorted.
struct Loaded {
  std::shared_ptr<const Snapshot> snapshot;
  std::vector<conf::Diagnostic> errors;
};
Loaded load_snapshot(const std::string& path);

// The files a snapshot of this config is built from: its databases (or the
// default ones) and its list files. geo.watch watches them.
std::vector<std::string> data_files(const conf::Config& config);

// Loads every database and list file a (possibly invalid) config names and
// returns the failures: `geomx check` reports them with the config's errors.
std::vector<conf::Diagnostic> check_files(const conf::Config& config);

}  // namespace geomx::policy
