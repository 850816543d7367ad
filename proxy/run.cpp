#include "proxy/run.hpp"

#include <malloc.h>
#include <sys/resource.h>

#include <openssl/x509_vfy.h>

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/url.hpp>

#include "proxy/config_tools.hpp"
#include "proxy/endpoint.hpp"
#include "proxy/privileges.hpp"
#include "proxy/server.hpp"

namespace geomx::proxy {
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
  Log log(snapshot->config.server.log_format);
  Server server(snapshot, log);
  server.bind();
  const auto drop = drop_privileges(snapshot->config.server);
  log.event(drop.ok && !drop.warning ? "privileges"
            : drop.ok                ? "warning"
                                     : "error",
            {{"result", drop.message}});
  if (!drop.ok) return 1;
  for (const auto& problem : server.load_blocks()) log.event("warning", {{"problem", problem}});
  log.event("blocks", {{"in_force", std::to_string(server.blocks_in_force())},
                       {"file", server.blocks_file()}});
  for (std::size_t i = 0; i < server.endpoints().size(); ++i)
    log.listening(snapshot->config.listeners[i], from_asio(server.endpoints()[i]));
  const auto admin = server.admin_endpoint();
  log.event("admin_listening",
            {{"address", from_asio(admin).to_string()},
             {"tls", snapshot->config.admin.tls_cert.empty() ? "no" : "yes"},
             {"paths", "/healthz /readyz /metrics /status /blocks /top, POST /reload"}});
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

namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;

// One request to the admin endpoint, all of it within `limit`; HTTPS when
// `ca_file` (the endpoint's own certificate) is given.
asio::awaitable<http::response<http::string_body>> admin_call(asio::io_context& io,
                                                              conf::Endpoint admin,
                                                              std::string ca_file, http::verb verb,
                                                              std::string target,
                                                              std::chrono::seconds limit) {
  http::request<http::empty_body> req{verb, target, 11};
  req.set(http::field::host, admin.to_string());
  req.set(http::field::user_agent, "geomx");
  http::response<http::string_body> res;
  beast::flat_buffer buffer;
  beast::tcp_stream tcp(io);
  tcp.expires_after(limit);
  co_await tcp.async_connect(to_asio(admin), asio::use_awaitable);
  if (ca_file.empty()) {
    co_await http::async_write(tcp, req, asio::use_awaitable);
    co_await http::async_read(tcp, buffer, res, asio::use_awaitable);
    co_return res;
  }
  ssl::context ctx(ssl::context::tls_client);
  ctx.load_verify_file(ca_file);
  X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx.native_handle()),
                              X509_V_FLAG_PARTIAL_CHAIN);  // the certificate itself is the anchor
  ctx.set_verify_mode(ssl::verify_peer);
  ssl::stream<beast::tcp_stream> tls(std::move(tcp), ctx);
  co_await tls.async_handshake(ssl::stream_base::client, asio::use_awaitable);
  co_await http::async_write(tls, req, asio::use_awaitable);
  co_await http::async_read(tls, buffer, res, asio::use_awaitable);
  co_return res;
}

// The commands that talk to the running daemon through the admin endpoint
// the config file names (or --admin ADDR:PORT).
struct AdminClient {
  std::string config_path, admin_override;

  // Reads the file; prints its errors and returns false if it has any.
  bool read(conf::Config& config) const {
    try {
      config = conf::load_config(config_path, {"localhost"});
      return true;
    } catch (const conf::ConfigError& e) {
      print_errors(config_path, e.diagnostics());
      return false;
    }
  }

  // The answer, or nullopt after saying why there was none (exit 2).
  std::optional<http::response<http::string_body>> call(const conf::Config& config, http::verb verb,
                                                        const std::string& target,
                                                        std::chrono::seconds limit) const {
    conf::Endpoint admin = config.admin.listen;
    try {
      if (!admin_override.empty()) admin = conf::parse_endpoint(admin_override);
    } catch (const std::invalid_argument& e) {
      fmt::print(stderr, "geomx: --admin {}: {}\n", admin_override, e.what());
      return std::nullopt;
    }
    asio::io_context io;
    auto answer = asio::co_spawn(
        io, admin_call(io, admin, config.admin.tls_cert, verb, target, limit), asio::use_future);
    io.run();
    try {
      return answer.get();
    } catch (const std::exception& e) {
      fmt::print(stderr, "geomx: no answer from the admin endpoint at {}: {} (is geomx running?)\n",
                 admin.to_string(), e.what());
      return std::nullopt;
    }
  }
};

// `geomx reload`: checks the file as `geomx check` would (a file with errors
// is not sent: the running config stays), then POST /reload, and prints the
// outcome. Exit 0 reloaded, 1 failed (the old config stays), 2 no answer.
int reload_daemon(const AdminClient& client) {
  conf::Config config;
  if (!client.read(config)) {
    fmt::print(stderr, "geomx: not reloaded, the running config stays\n");
    return 1;
  }
  // A large table takes a while to build.
  const auto res =
      client.call(config, http::verb::post, "/reload?format=text", std::chrono::seconds(120));
  if (!res) return 2;
  fmt::print("{}", res->body());
  if (res->result_int() == 200) return 0;
  if (res->result_int() != 422)
    fmt::print(stderr, "geomx: the admin endpoint answered {}\n", res->result_int());
  return 1;
}

// `geomx block add|del|list`: the daemon's dated blocks. Exit 0 done, 1
// refused (bad CIDR, no such block, state file not writable), 2 no answer.
struct BlockArgs {
  std::string verb, cidr, comment, for_;
  bool json = false, force = false;
};

int block_command(const AdminClient& client, const BlockArgs& a) {
  conf::Config config;
  if (!client.read(config)) return 1;
  boost::urls::url target("/blocks");
  http::verb method = http::verb::get;
  if (a.verb == "add" || a.verb == "del") {
    method = a.verb == "add" ? http::verb::post : http::verb::delete_;
    target.params().append({"cidr", a.cidr});
    if (!a.comment.empty()) target.params().append({"comment", a.comment});
    if (!a.for_.empty()) target.params().append({"for", a.for_});
    if (a.force) target.params().append({"force", "yes"});
  }
  if (!a.json) target.params().append({"format", "text"});
  const auto res =
      client.call(config, method, std::string(target.buffer()), std::chrono::seconds(30));
  if (!res) return 2;
  if (res->result_int() != 200) {
    fmt::print(stderr, "geomx: {}", res->body());
    return 1;
  }
  fmt::print("{}", res->body());
  return 0;
}

}  // namespace

void add_run_command(CLI::App& app, Action& action) {
  auto path = std::make_shared<std::string>();
  auto* run = app.add_subcommand("run", "Run the proxy in the foreground (logs to stderr)");
  run->add_option("-c,--config", *path, "Config file")->required();
  run->callback([&action, path] { action = [path] { return run_proxy(*path); }; });

  // reload, top and block talk to the daemon the config file names.
  auto client = std::make_shared<AdminClient>();
  auto admin_options = [client](CLI::App* c) {
    c->add_option("-c,--config", client->config_path, "Config file (names the admin endpoint)")
        ->required();
    c->add_option("--admin", client->admin_override,
                  "Admin endpoint to call instead of the file's [admin] listen, ADDR:PORT");
  };
  auto* reload = app.add_subcommand(
      "reload",
      "Make the running geomx reload its config (through its admin endpoint) and print the "
      "outcome; exit 0 reloaded, 1 failed (the running config stays), 2 no answer");
  admin_options(reload);
  reload->callback([&action, client] { action = [client] { return reload_daemon(*client); }; });

  struct TopArgs {
    std::string window = "1m";
    std::size_t n = 20;
    bool json = false;
  };
  auto top_args = std::make_shared<TopArgs>();
  auto* top = app.add_subcommand(
      "top", "The running geomx's top talkers: connections, share of all, refused, block");
  top->add_option("--window", top_args->window, "1m or 1h")->check(CLI::IsMember({"1m", "1h"}));
  top->add_option("--n", top_args->n, "How many clients")->check(CLI::Range(1, 10000));
  top->add_flag("--json", top_args->json, "JSON instead of a table");
  admin_options(top);
  top->callback([&action, client, top_args] {
    action = [client, top_args] {
      conf::Config config;
      if (!client->read(config)) return 1;
      const auto res = client->call(config, http::verb::get,
                                    fmt::format("/top?window={}&n={}{}", top_args->window,
                                                top_args->n, top_args->json ? "" : "&format=text"),
                                    std::chrono::seconds(30));
      if (!res) return 2;
      fmt::print("{}", res->body());
      return res->result_int() == 200 ? 0 : 1;
    };
  });

  auto args = std::make_shared<BlockArgs>();
  auto* block = app.add_subcommand("block",
                                   "The running geomx's dated blocks (kept in server.state_dir "
                                   "across restarts): add, del, list");
  block->require_subcommand(1);
  auto* add =
      block->add_subcommand("add", "Block a CIDR (or one address) from the next connection");
  add->add_option("cidr", args->cidr, "CIDR or address")->required();
  add->add_option("--comment", args->comment, "Why (e.g. SPAM_09_01_2021)");
  add->add_option("--for", args->for_, "Expire after this long (e.g. 30d); default: never");
  add->add_flag("--force", args->force,
                "Block a prefix shorter than /8 (IPv4) or /16 (IPv6), 0.0.0.0/0 included");
  admin_options(add);
  auto* del = block->add_subcommand("del", "Delete the block of exactly this CIDR");
  del->add_option("cidr", args->cidr, "CIDR or address")->required();
  admin_options(del);
  auto* list = block->add_subcommand("list", "The blocks in force");
  list->add_flag("--json", args->json, "JSON instead of lines");
  admin_options(list);
  for (auto* c : {add, del, list})
    c->callback([&action, client, args, c] {
      args->verb = c->get_name();
      action = [client, args] { return block_command(*client, *args); };
    });
}

}  // namespace geomx::proxy
