#pragma once
// What one session was, for its log line and its counts: who, what the
// policy decided, where it went, how many bytes, and how it ended.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "conf/config.hpp"
#include "geo/table.hpp"

namespace geomx::proxy {

// How a session ended: one log word and (later) one counter each.
enum class EndReason {
  client_closed,
  server_closed,
  idle_timeout,
  pregreet,
  rejected,
  dropped,
  tarpitted,
  proxy_header_error,
  untrusted_proxy,
  connect_failed,
  no_member,
  member_full,  // every member at max_connections for the pool's queue_timeout (or queue full)
  too_busy,
  too_many_from_ip,
  blocked,
  limited,
  not_redirected,  // transparent listener: no original destination, or geomx itself
  screened,        // a screen test's action "drop" or "reject"
  shutdown,
  error,
};
std::string_view to_string(EndReason);
// Ends where geomx turned the client away (policy, limits, blocks, bad PROXY
// headers, pregreet), as opposed to a relay that ended.
bool refused(EndReason);

struct SessionRecord {
  std::uint64_t conn = 0;
  conf::Endpoint client;  // the real client (from the PROXY header if any)
  conf::Endpoint peer;    // who connected to us (differs behind a proxy)
  // Views into the session's snapshot, which outlives the record.
  std::string_view listener;
  std::optional<geo::Country> country;  // "-" until the policy decided
  std::uint32_t asn = 0;                // 0: unknown (or no asn_databases): not logged
  std::string_view as_org;              // the ASN database's organisation for asn
  std::string_view rule = "-";
  std::string_view action = "-";
  std::string_view pool = "-";
  std::string member = "-";
  bool pregreet = false;
  std::string_view greet;  // "cached": the greeting-pass cache skipped the delay
  // A screen = "smtp" pool: "pass", "cached" (a pass within screen_ttl), or
  // the tests failed ("a,b"); and the client's HELO/EHLO name.
  std::string screen, helo;
  // DNS reputation, when asked: the score of the [dnsbl] sites that answered,
  // the ones that list the client, the ones given up on or in error (each
  // "a,b"); the PTR name that resolves back to the client ("unknown": none).
  std::optional<int> dnsbl;
  std::string dnsbl_sites, dnsbl_timeout, dnsbl_error, ptr;
  std::uint64_t bytes_in = 0, bytes_out = 0;  // from the client, to the client
  std::chrono::milliseconds duration{0};
  EndReason end = EndReason::error;
  std::string error;  // detail for proxy_header_error, connect_failed, error
};

}  // namespace geomx::proxy
