#pragma once
// Greylisting, the pure half: the triplet (client network, sender,
// recipient) as postgrey forms it, its key in the store, and what one
// request makes of the records kept (the clock passed in). The store is
// state/greylist.hpp's; the listener proxy/policy_session.hpp's.
#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "conf/config.hpp"
#include "geo/address.hpp"
#include "policy/decide.hpp"

namespace geomx::policy {

// postgrey's normal form of an address: lower case, the "+extension"
// dropped, a BATV tag (prvs=TAG=user) and an SRS rewrite
// (SRS0=HASH=TT=domain=user@forwarder: user@domain) undone, and numbers
// that are a whole word of the local part (VERP) made "#". "<>" stays "".
std::string normal_address(std::string_view address);

// The record of a triplet, or of a client network (passes: the triplets
// of it that passed, for auto_allow). Unix seconds.
struct GreyRecord {
  std::int64_t first = 0, last = 0;
  std::uint32_t passes = 0;
  friend bool operator==(const GreyRecord&, const GreyRecord&) = default;
};
// "first last passes", and back (nullopt: not a record).
std::string encode(const GreyRecord& r);
std::optional<GreyRecord> decode_grey(std::string_view text);

// 128 bits of SHA-256: what the store keys a triplet or a network by
// (fixed size, whatever the addresses' length; the same on every node).
using GreyKey = std::array<std::uint8_t, 16>;
std::string to_hex(const GreyKey& k);

// The sender normal_address() makes; the recipient is lower-cased only
// (postgrey's): its extension names a mailbox.
struct Triplet {
  std::string network;  // "192.0.2.0/24"
  std::string sender, recipient;
  GreyKey key() const;          // of the triplet
  GreyKey network_key() const;  // of the client network alone
};
Triplet make_triplet(const conf::Greylist& g, const geo::Address& client, std::string_view sender,
                     std::string_view recipient);

enum class GreyVerdict : std::uint8_t {
  new_triplet,   // first seen (or seen again after retry_window / max_age): deferred
  early,         // retried before delay: deferred again
  passed,        // retried after delay (or passed before): accepted
  auto_allowed,  // the client network passed auto_allow times: accepted at once
};
std::string_view to_string(GreyVerdict v);
inline bool deferred(GreyVerdict v) {
  return v == GreyVerdict::new_triplet || v == GreyVerdict::early;
}

// One request's outcome, and what to keep (nullopt: nothing to write).
struct GreyStep {
  GreyVerdict verdict = GreyVerdict::new_triplet;
  std::optional<GreyRecord> triplet, network;  // records to write (with TTL max_age)
  std::chrono::seconds remaining{0};           // deferred: until the delay is over
};
GreyStep greylist_step(const conf::Greylist& g, std::int64_t now,
                       const std::optional<GreyRecord>& triplet,
                       const std::optional<GreyRecord>& network);

// The geo verdict header's line for a client decided `d` ("X-Geomx:
// country=RU list=- rule=quarantine dnsbl=3 node=mx1"); dnsbl only with
// [dnsbl] sites ("-": not asked).
std::string verdict_header(const Snapshot& snap, const Decision& d, std::optional<int> dnsbl_score);

// "35 minutes", "1 minute", "40 seconds".
std::string remaining_text(std::chrono::seconds s);
// The configured reply with "{remaining}" filled in.
std::string grey_reply(const conf::Greylist& g, std::chrono::seconds remaining);

}  // namespace geomx::policy
