#pragma once
// PROXY protocol v1 and v2 (haproxy's doc/proxy-protocol.txt), sans I/O:
// bytes in, a result out, so the codec is unit-tested and fuzzed without
// sockets. Strict: anything the spec does not allow is an error.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "conf/config.hpp"

namespace geomx::proxy {

struct ProxyHeader {
  // None for v2 LOCAL, v1 UNKNOWN and v2 UNSPEC: use the connection's own
  // addresses (health checks, the proxy's own traffic).
  std::optional<conf::Endpoint> source, destination;
  std::size_t length = 0;  // bytes of the header; what follows is the SMTP stream
};

enum class ParseStatus { complete, incomplete, invalid };

struct ParseResult {
  ParseStatus status = ParseStatus::incomplete;
  ProxyHeader header;
  std::string_view error;  // invalid: why, for the log
};

// Postfix reads at most 536 bytes of header; so do we.
inline constexpr std::size_t max_proxy_header = 536;
inline constexpr std::size_t max_proxy_v1_line = 107;

// Parses a header at the start of what has arrived so far. `accepted` is the
// listener's setting (v1, v2 or any; never none). Incomplete means: read
// more and call again with everything.
ParseResult parse_proxy_header(std::span<const std::uint8_t> data, conf::ProxyProtocol accepted);

// Headers geomx sends to a pool member, in the same first write as the
// client's bytes. Without addresses: v1 "PROXY UNKNOWN", v2 LOCAL (health
// probes).
std::string make_proxy_header(conf::ProxyProtocol version, const conf::Endpoint* source,
                              const conf::Endpoint* destination);

}  // namespace geomx::proxy
