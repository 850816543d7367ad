// `geomx reload`, `geomx top` and `geomx block`: commands that ask the
// running daemon through its admin endpoint.
#include <functional>
#include <memory>

#include <fmt/format.h>
#include <boost/url/url.hpp>

#include "cli/admin_client.hpp"
#include "cli/run.hpp"

namespace geomx::cli {
namespace {

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

struct TopArgs {
  std::string window = "1m";
  std::size_t n = 20;
  bool json = false, fleet = false;
};

// `geomx top`: the running geomx's top talkers. Exit 0, 1 refused, 2 no answer.
int top_command(const AdminClient& client, const TopArgs& a) {
  conf::Config config;
  if (!client.read(config)) return 1;
  const auto res = client.call(config, http::verb::get,
                               fmt::format("/top?window={}&n={}{}{}", a.window, a.n,
                                           a.json ? "" : "&format=text", a.fleet ? "&fleet=1" : ""),
                               std::chrono::seconds(30));
  if (!res) return 2;
  fmt::print("{}", res->body());
  return res->result_int() == 200 ? 0 : 1;
}

// Every command here names the daemon by its config file (or --admin).
using AdminOptions = std::function<void(CLI::App*)>;

void add_top(CLI::App& app, Command& command, const AdminOptions& admin_options,
             std::shared_ptr<AdminClient> client) {
  auto args = std::make_shared<TopArgs>();
  auto* top = app.add_subcommand(
      "top", "The running geomx's top talkers: connections, share of all, refused, block");
  top->add_option("--window", args->window, "1m or 1h")->check(CLI::IsMember({"1m", "1h"}));
  top->add_option("--n", args->n, "How many clients")->check(CLI::Range(1, 10000));
  top->add_flag("--json", args->json, "JSON instead of a table");
  top->add_flag("--fleet", args->fleet,
                "Every node's counts together (with a [store]: the others' as of the last few "
                "seconds)");
  admin_options(top);
  top->callback([&command, client, args] {
    command = [client, args] { return top_command(*client, *args); };
  });
}

void add_block(CLI::App& app, Command& command, const AdminOptions& admin_options,
               std::shared_ptr<AdminClient> client) {
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
    c->callback([&command, client, args, c] {
      args->verb = c->get_name();
      command = [client, args] { return block_command(*client, *args); };
    });
}

}  // namespace

void add_daemon_commands(CLI::App& app, Command& command) {
  auto client = std::make_shared<AdminClient>();
  const AdminOptions admin_options = [client](CLI::App* c) {
    client->config_path = default_config;
    c->add_option("-c,--config", client->config_path, "Config file (names the admin endpoint)")
        ->capture_default_str();
    c->add_option("--admin", client->admin_override,
                  "Admin endpoint to call instead of the file's [admin] socket or listen: "
                  "ADDR:PORT, or unix:PATH");
  };
  auto* reload = app.add_subcommand(
      "reload",
      "Make the running geomx reload its config (through its admin endpoint) and print the "
      "outcome; exit 0 reloaded, 1 failed (the running config stays), 2 no answer");
  admin_options(reload);
  reload->callback([&command, client] { command = [client] { return reload_daemon(*client); }; });
  add_top(app, command, admin_options, client);
  add_block(app, command, admin_options, client);
}

}  // namespace geomx::cli
