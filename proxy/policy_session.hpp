#pragma once
// The policy listener (mode = "policy"): Postfix's check_policy_service
// asks here at RCPT (and at other stages, which get DUNNO unless a block
// applies). One connection carries many requests; each is answered in
// order, from the runtime current when it came. From trusted_proxies only;
// a malformed request closes the connection.
#include <string>

#include "proxy/io.hpp"
#include "proxy/registry.hpp"
#include "proxy/server_state.hpp"

namespace geomx::proxy {

asio::awaitable<void> run_policy_session(Socket socket, tcp::endpoint peer, std::string listener,
                                         ServerState& state, SessionRegistry& registry);

// What one request got, for /metrics and the log.
enum class PolicyResult : std::uint8_t {
  greylisted,    // new triplet: deferred
  early,         // retried before the delay: deferred again
  passed,        // retried after the delay, or passed before
  auto_allowed,  // its network passed greylist.auto_allow times
  skipped,       // greylist.skip matched
  blocked,       // a dated block or ban: 554
  dunno,         // not greylisted (another stage, greylisting off)
  store_error,   // the store did not answer within store.timeout: DUNNO
};
inline constexpr std::size_t policy_results = 8;
std::string_view to_string(PolicyResult r);

}  // namespace geomx::proxy
