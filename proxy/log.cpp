#include "proxy/log.hpp"

#include <algorithm>
#include <cstdint>

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "conf/text.hpp"

namespace geomx::proxy {

void append_quoted(std::string& out, std::string_view v) {
  out += '"';
  for (std::size_t i = 0; i < v.size();) {
    const auto cp = conf::utf8_at(v, i);
    if (cp.length == 0) {  // not UTF-8: the byte, escaped on its own
      fmt::format_to(std::back_inserter(out), "\\u{:04x}", static_cast<unsigned char>(v[i]));
      ++i;
      continue;
    }
    if (cp.value == '"' || cp.value == '\\') {
      out += '\\';
      out += v[i];
    } else if (conf::is_control(cp.value) || cp.value == 0x2028 || cp.value == 0x2029) {
      fmt::format_to(std::back_inserter(out), "\\u{:04x}", static_cast<std::uint32_t>(cp.value));
    } else {
      out.append(v.substr(i, cp.length));  // UTF-8 stays UTF-8
    }
    i += cp.length;
  }
  out += '"';
}

namespace {

// logfmt quotes a value only when it must; JSON always quotes.
void append(std::string& line, conf::LogFormat format, std::string_view key,
            std::string_view value) {
  if (format == conf::LogFormat::json) {
    if (line.size() > 1) line += ',';
    append_quoted(line, key);
    line += ':';
    append_quoted(line, value);
    return;
  }
  line += ' ';
  line += key;
  line += '=';
  const bool plain = !value.empty() && std::all_of(value.begin(), value.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c > 0x20 && c < 0x7f && c != '"' && c != '=' && c != '\\';
  });
  if (plain)
    line += value;
  else
    append_quoted(line, value);
}

std::string timestamp() {
  const auto now = std::chrono::system_clock::now();
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}Z",
                     fmt::gmtime(std::chrono::system_clock::to_time_t(now)), ms.count());
}

}  // namespace

Log::Log(conf::LogFormat format)
    : format_(format),
      out_(std::make_shared<spdlog::logger>("geomx",
                                            std::make_shared<spdlog::sinks::stderr_sink_mt>())) {
  out_->set_pattern("%v");
  out_->flush_on(spdlog::level::info);
}

Log::~Log() = default;

void Log::session(const SessionRecord& r) const {
  out_->info(session_line(r, timestamp()));
}

std::string Log::session_line(const SessionRecord& r, std::string_view ts) const {
  std::string line = format_ == conf::LogFormat::json ? "{" : "";
  const auto f = format_;
  if (f == conf::LogFormat::logfmt) {
    line += "ts=";
    line += ts;
    line += " event=session";
  } else {
    append(line, f, "ts", ts);
    append(line, f, "event", "session");
  }
  append(line, f, "conn", std::to_string(r.conn));
  append(line, f, "client", r.client.to_string());
  if (!(r.peer == r.client)) append(line, f, "peer", r.peer.to_string());
  append(line, f, "listener", r.listener);
  append(line, f, "country", r.country ? r.country->code() : "-");
  if (r.asn) {
    append(line, f, "asn", std::to_string(r.asn));
    if (!r.as_org.empty()) append(line, f, "as_org", r.as_org);
  }
  append(line, f, "rule", r.rule);
  append(line, f, "action", r.action);
  if (r.dnsbl) {
    append(line, f, "dnsbl", std::to_string(*r.dnsbl));
    if (!r.dnsbl_sites.empty()) append(line, f, "sites", r.dnsbl_sites);
    if (!r.dnsbl_timeout.empty()) append(line, f, "dnsbl_timeout", r.dnsbl_timeout);
    if (!r.dnsbl_error.empty()) append(line, f, "dnsbl_error", r.dnsbl_error);
  }
  if (!r.ptr.empty()) append(line, f, "ptr", r.ptr);
  append(line, f, "pool", r.pool);
  append(line, f, "member", r.member);
  append(line, f, "pregreet", r.pregreet ? "yes" : "no");
  if (!r.greet.empty()) append(line, f, "greet", r.greet);
  if (!r.screen.empty()) append(line, f, "screen", r.screen);
  if (!r.helo.empty()) append(line, f, "helo", r.helo);
  append(line, f, "bytes_in", std::to_string(r.bytes_in));
  append(line, f, "bytes_out", std::to_string(r.bytes_out));
  append(line, f, "ms", std::to_string(r.duration.count()));
  append(line, f, "end", to_string(r.end));
  if (!r.error.empty()) append(line, f, "error", r.error);
  if (f == conf::LogFormat::json) line += "}";
  return line;
}

void Log::listening(const conf::Listener& l, const conf::Endpoint& bound) const {
  event("listening", {{"listener", l.name},
                      {"address", bound.to_string()},
                      {"mode", std::string(conf::to_string(l.mode))},
                      {"proxy_protocol", std::string(conf::to_string(l.proxy_protocol))}});
}

void Log::health(const policy::MemberHealth& m, const policy::HealthChange& c) const {
  const auto member = m.address.to_string();
  if (c.up)
    event("health", {{"pool", m.pool},
                     {"member", member},
                     {"state", "up"},
                     {"after", fmt::format("{} successes", c.after)},
                     {"source", std::string(c.source)}});
  else
    event("health", {{"pool", m.pool},
                     {"member", member},
                     {"state", "down"},
                     {"after", fmt::format("{} failures", c.after)},
                     {"source", std::string(c.source)},
                     {"error", c.error}});
}

void Log::event(std::string_view event,
                std::initializer_list<std::pair<std::string_view, std::string>> fields) const {
  out_->info(event_line(timestamp(), event, fields));
}

std::string Log::event_line(
    std::string_view ts, std::string_view event,
    std::initializer_list<std::pair<std::string_view, std::string>> fields) const {
  std::string line = format_ == conf::LogFormat::json ? "{" : "";
  const auto f = format_;
  if (f == conf::LogFormat::logfmt) {
    line += "ts=";
    line += ts;
    line += " event=";
    line += event;
  } else {
    append(line, f, "ts", ts);
    append(line, f, "event", event);
  }
  for (const auto& [k, v] : fields) append(line, f, k, v);
  if (f == conf::LogFormat::json) line += "}";
  return line;
}

}  // namespace geomx::proxy
