#include "policy/snapshot.hpp"

#include <unistd.h>

#include <algorithm>
#include <cassert>

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

// Loads every database the config names (or the defaults) into `builder`;
// failures become diagnostics at the line that names the file.
void load_databases(const conf::Config& c, geo::TableBuilder& builder,
                    std::vector<conf::Diagnostic>& errors) {
  std::vector<conf::FileRef> databases = c.geo.databases;
  if (databases.empty())
    for (const auto& path : geo::default_databases()) databases.push_back({path, {c.path, 0, 0}});
  for (std::size_t i = 0; i < databases.size(); ++i) {
    try {
      builder.add_database(geo::load_database(databases[i].path));
    } catch (const geo::LoadError& e) {
      const bool named = databases[i].where.line != 0;
      errors.push_back({databases[i].where, fmt::format("geo.databases[{}]", i),
                        named ? e.what() : fmt::format("default database: {}", e.what())});
    }
  }
}

geo::RangeSet load_list(const conf::List& list, std::vector<conf::Diagnostic>& errors) {
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

std::shared_ptr<const Snapshot> build_snapshot(conf::Config config) {
  auto snap = std::make_shared<Snapshot>();
  snap->config = std::move(config);
  const conf::Config& c = snap->config;
  std::vector<conf::Diagnostic> errors;
  geo::TableBuilder builder;
  load_databases(c, builder, errors);
  // Lists first (their bits are list_mask), then the rules' hidden lists,
  // so every matcher is a bit test on the one table. conf checked the count.
  std::size_t lists = 0;
  for (const auto& list : c.lists) {
    builder.add_list(list.name, load_list(list, errors), list.countries);
    snap->list_mask |= std::uint64_t{1} << lists++;
  }
  for (const auto& rule : c.rules) snap->rules.push_back(compile_rule(*snap, rule, builder, lists));
  for (const auto& limit : c.limits) {  // no CIDRs in a scope: no hidden list
    conf::Rule scope{limit.name, limit.match, conf::Action::reject, {}, {}};
    snap->limit_scopes.push_back(compile_rule(*snap, scope, builder, lists));
  }
  if (errors.empty()) {
    try {
      snap->table = std::move(builder).build();
    } catch (const std::logic_error& e) {  // overlapping data, beyond the index's limits
      errors.push_back({{c.path, 0, 0}, "geo", e.what()});
    }
  }
  if (!errors.empty()) {
    conf::sort_diagnostics(errors);
    throw conf::ConfigError(std::move(errors));
  }
  return snap;
}

namespace {

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

}  // namespace

Loaded load_snapshot(const std::string& path) {
  try {
    std::vector<conf::Diagnostic> errors;
    conf::Config config =
        conf::parse_config(conf::read_config_file(path), path, {host_name()}, errors);
    if (errors.empty()) return {build_snapshot(std::move(config)), {}};
    auto file_errors = check_files(config);
    errors.insert(errors.end(), file_errors.begin(), file_errors.end());
    conf::sort_diagnostics(errors);
    return {nullptr, std::move(errors)};
  } catch (const conf::ConfigError& e) {
    return {nullptr, e.diagnostics()};
  }
}

std::vector<std::string> data_files(const conf::Config& config) {
  std::vector<std::string> files;
  for (const auto& d : config.geo.databases) files.push_back(d.path);
  if (config.geo.databases.empty()) files = geo::default_databases();
  for (const auto& list : config.lists)
    for (const auto& f : list.files) files.push_back(f.path);
  return files;
}

std::vector<conf::Diagnostic> check_files(const conf::Config& config) {
  std::vector<conf::Diagnostic> errors;
  geo::TableBuilder builder;
  load_databases(config, builder, errors);
  for (const auto& list : config.lists) load_list(list, errors);
  return errors;
}

}  // namespace geomx::policy
