#pragma once
// DNS reputation, the pure half: the names a client is queried by, what a
// DNSBL's replies mean, and what the rules read once the answers are in.
// The queries themselves are proxy/dns.hpp's (c-ares on the I/O thread).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.hpp"
#include "geo/address.hpp"

namespace geomx::policy {

// What the DNS said of a client, as far as it has answered. A rule with a
// DNS matcher is decided only once what it reads is known: answered, or
// given up on at dns.timeout (an unanswered site counts 0, an unanswered
// PTR is not confirmed).
struct Reputation {
  bool dnsbl_known = false;  // every [dnsbl] site answered or given up on
  int score = 0;             // the sum of the weights of the sites that list the client
  bool fcrdns_known = false;
  bool fcrdns = false;  // a PTR name of the client resolves back to it
};

// What a rule waits for (Decision::waits): bits.
enum Needs : std::uint8_t { needs_dnsbl = 1, needs_fcrdns = 2 };
std::uint8_t needs(const conf::Match& m);

// "4.3.2.1.zone" for 1.2.3.4; IPv6 by reversed nibbles ("b.a.9.8....zone").
std::string dnsbl_name(const geo::Address& client, std::string_view zone);
// The client's PTR name: "4.3.2.1.in-addr.arpa", "...ip6.arpa".
std::string reverse_name(const geo::Address& client);

// 127.255.255.0/24 and 127.0.0.255: a list's "you may not query me" replies
// (Spamhaus's for open and public resolvers), never a listing.
bool refuses_resolver(std::uint32_t reply);

enum class SiteResult : std::uint8_t { listed, not_listed, refused, error, timeout };
std::string_view to_string(SiteResult r);

// One site's answer: listed when a reply passes its filter, refused when
// any reply is a refusal (the list said nothing of the client), not listed
// otherwise (no reply, NXDOMAIN, or replies outside the filter).
SiteResult judge(const conf::DnsblSite& site, const std::vector<std::uint32_t>& replies);

}  // namespace geomx::policy
