#include "admin/access.hpp"

#include <algorithm>
#include <cctype>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "geo/address.hpp"

namespace geomx::admin {
namespace {

constexpr const char* text_plain = "text/plain; charset=utf-8";

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// "name", "name:port", "[v6]" or "[v6]:port" -> the name (or address);
// nullopt when it is none of them.
std::optional<std::string> host_of(std::string_view authority) {
  std::string_view host = authority;
  if (!host.empty() && host.front() == '[') {
    const auto close = host.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    const auto rest = host.substr(close + 1);
    host = host.substr(1, close - 1);
    if (!rest.empty() && (rest.front() != ':' || rest.size() == 1)) return std::nullopt;
  } else if (const auto colon = host.find(':'); colon != std::string_view::npos) {
    if (host.find(':', colon + 1) != std::string_view::npos) return std::nullopt;
    host = host.substr(0, colon);
  }
  if (host.empty()) return std::nullopt;
  return lower(host);
}

bool is_address(const std::string& host) {
  try {
    geo::parse_address(host);
    return true;
  } catch (const geo::ParseError&) {
    return false;
  }
}

// A name of this endpoint: an IP address (no DNS rebinding through one),
// or a configured name.
bool ours(std::string_view authority, const Access& access) {
  const auto host = host_of(authority);
  if (!host) return false;
  return is_address(*host) ||
         std::find(access.names.begin(), access.names.end(), *host) != access.names.end();
}

Reply refusal(unsigned status, std::string body) {
  Reply r{status, text_plain, std::move(body)};
  return r;
}

}  // namespace

std::vector<std::string> host_names(const conf::Config& config) {
  std::vector<std::string> names{"localhost"};
  if (!config.server.hostname.empty()) names.push_back(lower(config.server.hostname));
  for (const auto& h : config.admin.hosts) names.push_back(lower(h));
  return names;
}

bool needs_token(std::string_view path) {
  return path == "/blocks" || path == "/reload" || path == "/status" || path == "/top";
}

bool token_matches(std::string_view presented, std::string_view token) {
  unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(presented.data()), presented.size(), a);
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), b);
  return CRYPTO_memcmp(a, b, sizeof a) == 0;
}

std::optional<Reply> refuse(const Request& request, const Headers& headers, const Access& access) {
  if (headers.host.empty()) return refusal(400, "a Host header is required\n");
  if (!ours(headers.host, access))
    return refusal(403,
                   "Host: not a name of this endpoint (an IP address, localhost, "
                   "server.hostname or admin.hosts)\n");
  if (!headers.origin.empty()) {
    const auto scheme = headers.origin.find("://");
    const bool web =
        headers.origin.starts_with("http://") || headers.origin.starts_with("https://");
    if (!web || !ours(headers.origin.substr(scheme + 3), access))
      return refusal(403, "Origin: a page of another site may not ask this endpoint\n");
  }
  const auto path = request.target.substr(0, request.target.find('?'));
  if (!needs_token(path) || access.local) return std::nullopt;
  if (access.token.empty())
    return refusal(503,
                   "no admin token could be loaded (see the log's event=warning): this path is "
                   "refused until geomx restarts with one\n");
  constexpr std::string_view bearer = "Bearer ";
  const auto& auth = headers.authorization;
  if (auth.size() <= bearer.size() ||
      !std::equal(bearer.begin(), bearer.end(), auth.begin(),
                  [](char x, char y) {
                    return std::tolower(static_cast<unsigned char>(x)) ==
                           std::tolower(static_cast<unsigned char>(y));
                  }) ||
      !token_matches(auth.substr(bearer.size()), access.token)) {
    Reply r = refusal(401,
                      "this path needs the admin token: Authorization: Bearer TOKEN (from "
                      "admin.token_file; `geomx` commands read it from the config)\n");
    r.challenge = true;
    return r;
  }
  return std::nullopt;
}

}  // namespace geomx::admin
