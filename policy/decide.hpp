#pragma once
// The routing decision: pure and deterministic, so that `geomx explain`
// shows exactly what the proxy does.
#include <optional>
#include <string>
#include <vector>

#include "policy/balance.hpp"
#include "policy/reputation.hpp"
#include "policy/snapshot.hpp"

namespace geomx::policy {

struct Client {
  geo::Address address;      // the real client (from the PROXY header if any)
  std::size_t listener = 0;  // index into config.listeners
};

struct Decision {
  conf::Action action = conf::Action::reject;
  std::size_t rule = 0;  // index into config.rules
  geo::Country country;
  std::uint32_t asn = 0;    // 0: unknown (or no asn_databases)
  std::uint64_t lists = 0;  // bits of config.lists the client is in
  // route only:
  std::size_t pool = 0;
  std::vector<std::size_t> order;     // members in fallback order
  std::optional<std::size_t> member;  // the first member in `order` that is up; none: 421
  std::vector<std::size_t> limits;    // config.limits whose scope the client is in
  // Not decided yet: rule `rule` reads DNS answers `reputation` does not
  // have (Needs bits). Decide again once they are in.
  std::uint8_t waits = 0;
};

// Rules are tried in order; one with a DNS matcher is tried only when
// reached, with what `reputation` knows (nullptr: nothing yet).
Decision decide(const Client& client, const Snapshot& snapshot, const MemberStates& states,
                std::uint64_t sequence, const Reputation* reputation = nullptr);

// Whether a client looked up as `v` is in a compiled scope (the matchers
// other than DNS: a rule's, a [[limit]]'s, greylist.skip).
bool in_scope(const CompiledRule& r, const Client& client, const geo::GeoValue& v);
// Whether what the DNS said holds a matcher set's DNS matchers (none: true).
bool reputation_matches(const conf::Match& m, const Reputation& r);

// Why the rule matched, in words ("country US; in list english").
std::string explain_match(const Decision& d, const Snapshot& snapshot);

}  // namespace geomx::policy
