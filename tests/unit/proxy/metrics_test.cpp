// The /metrics exposition: what sessions, decisions and reloads add up to,
// and promtool (Prometheus's own checker) accepts the text.
#include <doctest/doctest.h>

#include <ctime>

#include <cstdio>
#include <string>

#include "proxy/metrics.hpp"
#include "support/snapshot.hpp"

namespace geomx::proxy {
namespace {

std::string promtool(const test::TempDir& dir, const std::string& text) {
  const auto file = dir.write("metrics.txt", text);
  const std::string command = "promtool check metrics < " + file + " 2>&1; echo rc=$?";
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[512];
  while (const auto n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  pclose(p);
  return out;
}

TEST_CASE("metrics: sessions counted by labels and end, and promtool accepts the text") {
  test::TempDir dir;
  const auto snap = test::small_snapshot(dir);
  policy::HealthBoard board;
  const policy::HealthView view(
      board, *snap, policy::HealthBoard::Clock::now());  // the members, as a runtime holds them
  Metrics m;
  m.config_loaded(3);
  m.reloaded(true);
  m.reloaded(false);
  SessionRecord r;
  r.listener = "mx";
  r.rule = "english";
  r.action = "route";
  r.pool = "primary";
  r.country = geo::Country::parse("GB");
  r.bytes_in = 100;
  r.bytes_out = 250;
  r.end = EndReason::client_closed;
  m.session(r);
  m.session(r);
  r.end = EndReason::proxy_header_error;
  r.pregreet = true;
  r.rule = "with \"quote\"";
  m.session(r);
  m.decision(std::chrono::nanoseconds(300));
  m.decision(std::chrono::milliseconds(5));
  const auto text = m.render(*snap, board, {4});
  auto has = [&](std::string_view s) { return text.find(s) != std::string::npos; };
  CHECK(
      has("geomx_connections_total{listener=\"mx\",rule=\"english\",action=\"route\","
          "pool=\"primary\",country=\"GB\"} 2\n"));
  CHECK(has("rule=\"with \\\"quote\\\"\""));
  CHECK(has("geomx_connection_ends_total{end=\"client_closed\"} 2\n"));
  CHECK(has("geomx_proxy_header_errors_total 1\n"));
  CHECK(has("geomx_pregreet_total 1\n"));
  CHECK(has("geomx_relayed_bytes_total{direction=\"in\"} 300\n"));
  CHECK(has("geomx_relayed_bytes_total{direction=\"out\"} 750\n"));
  CHECK(has("geomx_decision_seconds_bucket{le=\"5e-07\"} 1\n"));
  CHECK(has("geomx_decision_seconds_bucket{le=\"+Inf\"} 2\n"));
  CHECK(has("geomx_decision_seconds_count 2\n"));
  CHECK(has("geomx_config_generation 3\n"));
  CHECK(has("geomx_config_reloads_total{result=\"failure\"} 1\n"));
  CHECK(has("geomx_active_connections 4\n"));
  // The build and the process, as Prometheus's client libraries name them.
  CHECK(has("geomx_build_info{version=\""));
  for (const char* name : {"process_cpu_seconds_total ", "process_resident_memory_bytes ",
                           "process_virtual_memory_bytes ", "process_open_fds ", "process_max_fds ",
                           "process_start_time_seconds "})
    CHECK_MESSAGE(has(std::string("\n") + name), name);
  {
    const auto at = text.find("\nprocess_start_time_seconds ");
    REQUIRE(at != std::string::npos);
    const double started = std::stod(text.substr(at + 28));
    const double now = static_cast<double>(std::time(nullptr));
    CHECK(started > now - 3600);  // this test process started within the hour
    CHECK(started <= now + 1);
  }
  CHECK(has("geomx_member_up{pool=\"quarantine\",member=\"127.0.0.1:2503\"} 1\n"));
  const auto checked = promtool(dir, text);
  CHECK_MESSAGE(checked.ends_with("rc=0\n"), checked);
}

}  // namespace
}  // namespace geomx::proxy
