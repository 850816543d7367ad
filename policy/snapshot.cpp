#include "policy/snapshot.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "geo/sources.hpp"

namespace geomx::policy {

std::optional<std::size_t> Snapshot::listener_index(std::string_view name) const {
  const auto& ls = config.listeners;
  auto it = std::find_if(ls.begin(), ls.end(), [&](const auto& l) { return l.name == name; });
  if (it == ls.end()) return std::nullopt;
  return static_cast<std::size_t>(it - ls.begin());
}

namespace {

geo::RangeSet load_list(const conf::List& list, std::vector<conf::Diagnostic>& errors) {
  geo::RangeSet set;
  for (const auto& p : list.cidrs) set.add(p);
  for (const auto& f : list.files) {
    try {
      auto loaded = geo::load_cidr_file(f.path);
      set.v4.insert(set.v4.end(), loaded.v4.begin(), loaded.v4.end());
      set.v6.insert(set.v6.end(), loaded.v6.begin(), loaded.v6.end());
    } catch (const geo::LoadError& e) {
      errors.push_back({f.where, fmt::format("lists.{}.files", list.name), e.what()});
    }
  }
  return set;
}

}  // namespace

std::shared_ptr<const Snapshot> build_snapshot(conf::Config config) {
  auto snap = std::make_shared<Snapshot>();
  snap->config = std::move(config);
  const conf::Config& c = snap->config;
  std::vector<conf::Diagnostic> errors;
  const conf::Position top{c.path, 1, 1};

  geo::TableBuilder builder;
  if (c.geo.databases.empty()) {
    for (const auto& path : geo::default_databases()) {
      try {
        builder.add_database(geo::load_database(path));
      } catch (const geo::LoadError& e) {
        errors.push_back({top, "geo.databases", fmt::format("(default) {}", e.what())});
      }
    }
  }
  for (const auto& db : c.geo.databases) {
    try {
      builder.add_database(geo::load_database(db.path));
    } catch (const geo::LoadError& e) {
      errors.push_back({db.where, "geo.databases", e.what()});
    }
  }

  // Lists first (their bits are list_mask), then one hidden list per rule
  // with CIDRs, so every matcher is a bit test on the one table.
  if (c.lists.size() > geo::max_lists)
    errors.push_back({top, "lists", fmt::format("more than {} lists", geo::max_lists)});
  std::size_t lists = 0;
  for (const auto& list : c.lists) {
    if (lists == geo::max_lists) break;
    builder.add_list(list.name, load_list(list, errors), list.countries);
    snap->list_mask |= std::uint64_t{1} << lists++;
  }
  auto list_bit = [&](const std::string& name) {
    auto it = std::find_if(c.lists.begin(), c.lists.end(), [&](auto& l) { return l.name == name; });
    return std::uint64_t{1} << static_cast<std::size_t>(it - c.lists.begin());
  };
  for (const auto& rule : c.rules) {
    CompiledRule& cr = snap->rules.emplace_back();
    for (const auto& name : rule.match.lists) cr.all_of |= list_bit(name);
    for (const auto& name : rule.match.not_lists) cr.none_of |= list_bit(name);
    cr.countries = rule.match.countries;
    for (const auto& name : rule.match.listeners)
      cr.listeners.push_back(*snap->listener_index(name));
    if (rule.action == conf::Action::route)
      cr.pool = static_cast<std::size_t>(c.find_pool(rule.pool) - c.pools.data());
    if (rule.match.cidrs.empty()) continue;
    if (lists == geo::max_lists) {
      errors.push_back({top, fmt::format("rule.{}", rule.name),
                        fmt::format("more than {} lists and rules with cidr", geo::max_lists)});
      continue;
    }
    geo::RangeSet set;
    for (const auto& p : rule.match.cidrs) set.add(p);
    builder.add_list("rule:" + rule.name, std::move(set));
    cr.all_of |= std::uint64_t{1} << lists++;
  }
  if (!errors.empty()) throw conf::ConfigError(std::move(errors));
  snap->table = std::move(builder).build();
  return snap;
}

}  // namespace geomx::policy
