#include "cli/run.hpp"

#include <malloc.h>
#include <sys/resource.h>

#include <fmt/format.h>

#include "cli/config_tools.hpp"
#include "daemon/load.hpp"
#include "daemon/privileges.hpp"
#include "daemon/server.hpp"
#include "daemon/token.hpp"
#include "proxy/endpoint.hpp"

namespace geomx::cli {
namespace {

// Each relayed connection takes two descriptors: use all the hard limit
// allows (as haproxy does), and say in the log what that is.
rlim_t raise_file_limit() {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0) return 0;
  if (r.rlim_cur < r.rlim_max) {
    rlimit want = r;
    want.rlim_cur = r.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &want) == 0) r = want;
  }
  return r.rlim_cur;
}

int run_proxy(const std::string& path) {
  const auto snapshot = load_snapshot(path);
  if (!snapshot) return 1;
  malloc_trim(0);  // building the table took about twice its size in scratch memory
  const auto max_files = raise_file_limit();
  proxy::Log log(snapshot->config.server.process.log_format);
  if (const auto problems = daemon::preflight(snapshot->config); !problems.empty()) {
    for (const auto& p : problems) log.event("error", {{"problem", p}});
    return 1;
  }
  daemon::Server server(snapshot, log);
  server.bind();
  // Before the drop: a root-owned token file is read, a new one given to the group.
  const auto token =
      daemon::admin_token(snapshot->config.admin.token_file, snapshot->config.server.process);
  if (!token.problem.empty()) log.event("warning", {{"problem", token.problem}});
  if (token.created)
    log.event("admin_token", {{"action", "created"}, {"file", snapshot->config.admin.token_file}});
  server.set_admin_token(token.token);
  const auto drop = daemon::drop_privileges(snapshot->config.server.process);
  log.event(drop.ok && !drop.warning ? "privileges"
            : drop.ok                ? "warning"
                                     : "error",
            {{"result", drop.message}});
  if (!drop.ok) return 1;
  for (const auto& problem : server.load_blocks()) log.event("warning", {{"problem", problem}});
  log.event("blocks", {{"in_force", std::to_string(server.blocks_in_force())},
                       {"file", server.blocks_file()}});
  try {
    for (const auto& problem : server.open_greylist()) log.event("warning", {{"problem", problem}});
  } catch (const std::exception& e) {
    log.event("error", {{"problem", fmt::format("greylist store: {}", e.what())}});
    return 1;
  }
  for (const auto& problem : server.join_fleet()) log.event("warning", {{"problem", problem}});
  for (std::size_t i = 0; i < server.endpoints().size(); ++i)
    log.listening(snapshot->config.listeners[i], proxy::from_asio(server.endpoints()[i]));
  const auto admin = server.admin_endpoint();
  log.event(
      "admin_listening",
      {{"address", proxy::from_asio(admin).to_string()},
       {"tls", snapshot->config.admin.tls_cert.empty() ? "no" : "yes"},
       {"socket", snapshot->config.admin.socket.empty() ? "none" : snapshot->config.admin.socket},
       {"paths", "/healthz /readyz /metrics; with the token: /status /blocks /top, POST /reload"},
       {"token_file", snapshot->config.admin.token_file}});
  if (snapshot->config.admin.exposed())
    log.event("warning", {{"problem", "admin endpoint on a non-loopback address without TLS"},
                          {"address", snapshot->config.admin.listen.to_string()}});
  const auto max_connections = snapshot->config.server.max_connections;
  if (max_files != 0 && max_files < 2 * rlim_t{max_connections} + 64)
    log.event("warning", {{"problem", "open-file limit too low for max_connections"},
                          {"max_files", std::to_string(max_files)},
                          {"max_connections", std::to_string(max_connections)},
                          {"needs", std::to_string(2 * rlim_t{max_connections} + 64)}});
  log.event("ready",
            {{"config", path},
             {"rules", std::to_string(snapshot->config.rules.size())},
             {"max_files", std::to_string(max_files)},
             {"ipv4_intervals", std::to_string(snapshot->table.interval_count(geo::Family::v4))},
             {"ipv6_intervals", std::to_string(snapshot->table.interval_count(geo::Family::v6))}});
  server.run();
  return 0;
}

}  // namespace

void add_run_command(CLI::App& app, Command& command) {
  auto path = std::make_shared<std::string>();
  auto* run = app.add_subcommand("run", "Run the proxy in the foreground (logs to stderr)");
  *path = default_config;
  run->add_option("-c,--config", *path, "Config file")->capture_default_str();
  run->callback([&command, path] { command = [path] { return run_proxy(*path); }; });
}

}  // namespace geomx::cli
