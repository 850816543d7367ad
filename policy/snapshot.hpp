#pragma once
// Everything one connection's decision reads, built once per (re)load and
// shared immutably: the config, the compiled geo table (databases, lists and
// rule CIDRs in one table) and the rules compiled against it.
#include <cstdint>
#include <memory>
#include <vector>

#include "conf/config.hpp"
#include "conf/data.hpp"
#include "conf/loader.hpp"
#include "geo/table.hpp"

namespace geomx::policy {

struct CompiledRule {
  std::uint64_t all_of = 0;             // list bits that must all be set (lists, the rule's CIDRs)
  std::uint64_t none_of = 0;            // list bits that must all be clear (not_list)
  std::vector<geo::Country> countries;  // any of them, if any
  std::vector<std::uint32_t> asns;      // any of them, if any (sorted)
  std::vector<std::size_t> listeners;   // any of them, if any
  std::size_t pool = 0;                 // route: index into config.pools
};

struct Snapshot {
  conf::Config config;
  geo::GeoTable table;
  std::vector<CompiledRule> rules;         // parallel to config.rules
  std::vector<CompiledRule> limit_scopes;  // parallel to config.limits
  CompiledRule greylist_skip;              // config.greylist.skip (when has_skip)
  std::uint64_t list_mask = 0;             // bits of config.lists (the rest are rule CIDRs)
  // What a session asks the DNS at accept (policy::Needs bits): the [dnsbl]
  // sites when there are any, the PTR check when a rule reads it.
  std::uint8_t lookups = 0;

  std::optional<std::size_t> listener_index(std::string_view name) const;
};

// Compiles the config's data (conf::load_data) and rules into one table.
// Pure; throws conf::ConfigError when the data are beyond the index's limits.
std::shared_ptr<const Snapshot> build_snapshot(conf::Config config, conf::Data data);

}  // namespace geomx::policy
