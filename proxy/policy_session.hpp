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

}  // namespace geomx::proxy
