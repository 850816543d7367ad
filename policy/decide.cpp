#include "policy/decide.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace geomx::policy {
namespace {

bool matches(const CompiledRule& r, const Client& client, const geo::GeoValue& v) {
  if ((v.lists & r.all_of) != r.all_of || (v.lists & r.none_of) != 0) return false;
  if (!r.countries.empty() &&
      std::find(r.countries.begin(), r.countries.end(), v.country) == r.countries.end())
    return false;
  if (!r.asns.empty() && !std::binary_search(r.asns.begin(), r.asns.end(), v.asn)) return false;
  if (!r.listeners.empty() &&
      std::find(r.listeners.begin(), r.listeners.end(), client.listener) == r.listeners.end())
    return false;
  return true;
}

}  // namespace

bool in_scope(const CompiledRule& r, const Client& client, const geo::GeoValue& v) {
  return matches(r, client, v);
}

// The DNS matchers of a rule whose other matchers hold.
bool reputation_matches(const conf::Match& m, const Reputation& r) {
  if (m.dnsbl_score_min && r.score < *m.dnsbl_score_min) return false;
  if (m.dnsbl_score_max && r.score > *m.dnsbl_score_max) return false;
  if (m.fcrdns && r.fcrdns != *m.fcrdns) return false;
  return true;
}

Decision decide(const Client& client, const Snapshot& snapshot, const MemberStates& states,
                std::uint64_t sequence, const Reputation* reputation) {
  static const Reputation nothing;
  const Reputation& known = reputation ? *reputation : nothing;
  const geo::GeoValue& v = snapshot.table.lookup(client.address);
  Decision d;
  d.country = v.country;
  d.asn = v.asn;
  d.lists = v.lists & snapshot.list_mask;
  for (std::size_t i = 0; i < snapshot.limit_scopes.size(); ++i)
    if (matches(snapshot.limit_scopes[i], client, v)) d.limits.push_back(i);
  // Validation guarantees a final catch-all, so some rule always matches.
  for (std::size_t i = 0; i < snapshot.rules.size(); ++i) {
    if (!matches(snapshot.rules[i], client, v)) continue;
    const conf::Rule& rule = snapshot.config.rules[i];
    if (const auto wants = needs(rule.match)) {
      const auto missing =
          static_cast<std::uint8_t>(wants & ~((known.dnsbl_known ? needs_dnsbl : 0) |
                                              (known.fcrdns_known ? needs_fcrdns : 0)));
      if (missing) {
        d.rule = i;
        d.waits = missing;
        return d;
      }
      if (!reputation_matches(rule.match, known)) continue;
    }
    d.rule = i;
    d.action = rule.action;
    if (rule.action == conf::Action::route) {
      d.pool = snapshot.rules[i].pool;
      const conf::Pool& pool = snapshot.config.pools[d.pool];
      d.order = fallback_order(pool, d.pool, client.address, states, sequence);
      for (auto m : d.order)
        if (states.up(d.pool, m)) {
          d.member = m;
          break;
        }
    }
    return d;
  }
  return d;
}

std::string explain_match(const Decision& d, const Snapshot& snapshot) {
  const conf::Rule& rule = snapshot.config.rules[d.rule];
  const conf::Match& m = rule.match;
  if (m.empty()) return "catch-all";
  std::vector<std::string> why;
  if (!m.lists.empty()) why.push_back(fmt::format("in list {}", fmt::join(m.lists, ", ")));
  if (!m.not_lists.empty())
    why.push_back(fmt::format("not in list {}", fmt::join(m.not_lists, ", ")));
  if (!m.countries.empty()) why.push_back(fmt::format("country {}", d.country.code()));
  if (!m.asns.empty()) {
    const auto org = snapshot.table.organisation(d.asn);
    why.push_back(org.empty() ? fmt::format("AS{}", d.asn) : fmt::format("AS{} ({})", d.asn, org));
  }
  if (!m.cidrs.empty()) why.push_back("in the rule's cidr");
  if (!m.listeners.empty())
    why.push_back("on listener " + fmt::format("{}", fmt::join(m.listeners, ", ")));
  if (m.dnsbl_score_min) why.push_back(fmt::format("dnsbl score >= {}", *m.dnsbl_score_min));
  if (m.dnsbl_score_max) why.push_back(fmt::format("dnsbl score <= {}", *m.dnsbl_score_max));
  if (m.fcrdns) why.push_back(*m.fcrdns ? "reverse DNS confirmed" : "reverse DNS not confirmed");
  return fmt::format("{}", fmt::join(why, "; "));
}

}  // namespace geomx::policy
