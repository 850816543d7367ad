#pragma once
// The one structured log: a line per session whatever its end, and a few
// events (start, listening, health, stop), as logfmt or JSON with fixed keys.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "conf/config.hpp"
#include "policy/health_board.hpp"
#include "proxy/session_record.hpp"

namespace spdlog {
class logger;
}

namespace geomx::proxy {

// A quoted string valid in JSON and in logfmt: quotes, backslashes and
// control characters are escaped (\uXXXX), valid UTF-8 is kept as it is, and
// a byte that is not UTF-8 is escaped on its own (\u00XX), so a value stays
// on one line and is valid JSON whatever a peer sent.
void append_quoted(std::string& out, std::string_view v);

class Log {
 public:
  explicit Log(conf::LogFormat format);
  ~Log();
  void session(const SessionRecord& r) const;
  // A one-off event: `event` plus key=value pairs (values quoted as needed).
  void event(std::string_view event,
             std::initializer_list<std::pair<std::string_view, std::string>> fields = {}) const;
  // A listener is open at `bound` (at start, and when a reload adds one).
  void listening(const conf::Listener& l, const conf::Endpoint& bound) const;
  // A member went UP or DOWN.
  void health(const policy::MemberHealth& m, const policy::HealthChange& c) const;

  // The lines as written (without the newline), `ts` given: for tests.
  std::string session_line(const SessionRecord& r, std::string_view ts) const;
  std::string event_line(
      std::string_view ts, std::string_view event,
      std::initializer_list<std::pair<std::string_view, std::string>> fields) const;

 private:
  conf::LogFormat format_;
  std::shared_ptr<spdlog::logger> out_;
};

}  // namespace geomx::proxy
