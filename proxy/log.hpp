#pragma once
// The one structured log: a line per connection whatever its end, and a few
// events (start, listening, stop), as logfmt or JSON with fixed keys.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "conf/config.hpp"
#include "geo/table.hpp"

namespace spdlog {
class logger;
}

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
  too_busy,
  too_many_from_ip,
  blocked,
  limited,
  not_redirected,  // transparent listener: no original destination, or geomx itself
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
  std::string_view rule = "-";
  std::string_view action = "-";
  std::string_view pool = "-";
  std::string member = "-";
  bool pregreet = false;
  std::uint64_t bytes_in = 0, bytes_out = 0;  // from the client, to the client
  std::chrono::milliseconds duration{0};
  EndReason end = EndReason::error;
  std::string error;  // detail for proxy_header_error, connect_failed, error
};

// A quoted string valid in JSON and in logfmt: quotes, backslashes, control
// characters and bytes beyond ASCII (as \u00XX) are escaped, so a value
// stays on one line and is valid JSON whatever a peer sent.
void append_quoted(std::string& out, std::string_view v);

class Log {
 public:
  explicit Log(conf::LogFormat format);
  ~Log();
  void session(const SessionRecord& r);
  // A one-off event: `event` plus key=value pairs (values quoted as needed).
  void event(std::string_view event,
             std::initializer_list<std::pair<std::string_view, std::string>> fields = {});
  // A listener is open at `bound` (at start, and when a reload adds one).
  void listening(const conf::Listener& l, const conf::Endpoint& bound);

 private:
  conf::LogFormat format_;
  std::shared_ptr<spdlog::logger> out_;
};

}  // namespace geomx::proxy
