#include "policy/snapshot.hpp"

#include <algorithm>
#include <cassert>

#include "policy/reputation.hpp"

namespace geomx::policy {

std::optional<std::size_t> Snapshot::listener_index(std::string_view name) const {
  const auto& ls = config.listeners;
  auto it = std::find_if(ls.begin(), ls.end(), [&](const auto& l) { return l.name == name; });
  if (it == ls.end()) return std::nullopt;
  return static_cast<std::size_t>(it - ls.begin());
}

namespace {

std::size_t list_index(const conf::Config& c, const std::string& name) {
  auto it = std::find_if(c.lists.begin(), c.lists.end(), [&](auto& l) { return l.name == name; });
  assert(it != c.lists.end());  // validated by conf
  return static_cast<std::size_t>(it - c.lists.begin());
}

// Compiles rule matchers to list bits; a rule's CIDRs become a hidden list.
CompiledRule compile_rule(const Snapshot& s, const conf::Rule& rule, geo::TableBuilder& builder,
                          std::size_t& lists) {
  const conf::Config& c = s.config;
  CompiledRule cr;
  for (const auto& name : rule.match.lists) cr.all_of |= std::uint64_t{1} << list_index(c, name);
  for (const auto& name : rule.match.not_lists)
    cr.none_of |= std::uint64_t{1} << list_index(c, name);
  cr.countries = rule.match.countries;
  cr.asns = rule.match.asns;
  std::sort(cr.asns.begin(), cr.asns.end());
  for (const auto& name : rule.match.listeners) cr.listeners.push_back(*s.listener_index(name));
  if (rule.action == conf::Action::route)
    cr.pool = static_cast<std::size_t>(c.find_pool(rule.pool) - c.pools.data());
  if (!rule.match.cidrs.empty()) {
    geo::RangeSet set;
    for (const auto& p : rule.match.cidrs) set.add(p);
    builder.add_list("rule:" + rule.name, std::move(set));
    cr.all_of |= std::uint64_t{1} << lists++;
  }
  return cr;
}

}  // namespace

std::shared_ptr<const Snapshot> build_snapshot(conf::Config config, conf::Data data) {
  auto snap = std::make_shared<Snapshot>();
  snap->config = std::move(config);
  const conf::Config& c = snap->config;
  geo::TableBuilder builder;
  for (auto& d : data.databases) builder.add_database(std::move(d));
  for (auto& d : data.asn_databases) builder.add_asn_database(std::move(d));
  // Lists first (their bits are list_mask), then the rules' hidden lists,
  // so every matcher is a bit test on the one table. conf checked the count.
  std::size_t lists = 0;
  for (std::size_t i = 0; i < c.lists.size(); ++i) {
    builder.add_list(c.lists[i].name, std::move(data.lists.at(i)), c.lists[i].countries,
                     c.lists[i].asns);
    snap->list_mask |= std::uint64_t{1} << lists++;
  }
  for (const auto& rule : c.rules) {
    snap->rules.push_back(compile_rule(*snap, rule, builder, lists));
    snap->lookups |= needs(rule.match) & needs_fcrdns;
  }
  if (!c.dnsbl_sites.empty()) snap->lookups |= needs_dnsbl;
  for (const auto& limit : c.limits) {  // no CIDRs in a scope: no hidden list
    conf::Rule scope{limit.name, limit.match, conf::Action::reject, {}, {}};
    snap->limit_scopes.push_back(compile_rule(*snap, scope, builder, lists));
  }
  if (c.greylist.has_skip) {
    conf::Rule scope{"greylist.skip", c.greylist.skip, conf::Action::reject, {}, {}};
    snap->greylist_skip = compile_rule(*snap, scope, builder, lists);
    snap->lookups |= needs(c.greylist.skip) & needs_fcrdns;
  }
  try {
    snap->table = std::move(builder).build();
  } catch (const std::logic_error& e) {  // overlapping data, beyond the index's limits
    throw conf::ConfigError({{{c.path, 0, 0}, "geo", e.what()}});
  }
  return snap;
}

}  // namespace geomx::policy
