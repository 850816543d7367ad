#pragma once
// Who may ask what of the admin endpoint, decided before any route runs.
// /healthz, /readyz and /metrics are open (scrapers, load balancers);
// /blocks, /reload, /status and /top change or reveal state and need the
// bearer token (or come over [admin] socket, whose file permissions admit
// the client). Every request must name this endpoint in its Host header
// (an IP address, localhost, server.hostname or one of admin.hosts), and a
// request a browser sends from a page of another origin is refused: a DNS
// rebinding page gives its own name as Host, a cross-site form its Origin.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "admin/routes.hpp"
#include "conf/config.hpp"

namespace geomx::admin {

struct Headers {
  std::string_view host, origin, authorization;
};

struct Access {
  std::string token;               // empty: none could be loaded; protected paths answer 503
  std::vector<std::string> names;  // Host names besides IP addresses (lower case)
  bool local = false;              // over [admin] socket: its file permissions admitted the client
};

// The names a request may give as its Host (without the port).
std::vector<std::string> host_names(const conf::Config& config);

// A path that changes or reveals state: it needs the token.
bool needs_token(std::string_view path);

// The token compared in constant time (their SHA-256 digests, so neither
// the length nor a prefix shows in the time taken).
bool token_matches(std::string_view presented, std::string_view token);

// nullopt when the request may go on; else the answer that refuses it
// (400 no Host, 403 a foreign Host or Origin, 401 no or a wrong token).
std::optional<Reply> refuse(const Request& request, const Headers& headers, const Access& access);

}  // namespace geomx::admin
