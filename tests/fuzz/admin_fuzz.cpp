// libFuzzer target for the admin endpoint's request handling, through the
// pure functions the server calls (no socket): the access check (Host,
// Origin, the token), then the route. Input: lines METHOD, TARGET, HOST,
// ORIGIN, AUTHORIZATION ("T" stands for the right bearer token, so the
// fuzzer reaches the routes). Every answer has a status, and every refusal
// or error a body that says why.
// The state lives in a directory of its own (in /dev/shm when it is there:
// an added block is written durably).
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "admin/access.hpp"
#include "conf/data.hpp"
#include "conf/loader.hpp"
#include "policy/snapshot.hpp"
#include "proxy/server_state.hpp"

namespace {

using namespace geomx;

// Made afresh every 4,096 inputs: the blocks the inputs add would otherwise
// grow without end, and each add rewrites them all (a fuzzing cost, not a
// product one: max_bans and operators bound them in use).
proxy::ServerState& server_state() {
  static const std::string dir = [] {
    const std::string base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    return base + "/geomx-admin-fuzz-" + std::to_string(getpid());
  }();
  static proxy::Log log(conf::LogFormat::logfmt);
  static std::unique_ptr<proxy::ServerState> s;
  static unsigned uses = 0;
  if (!s || ++uses % 4096 == 0) {
    s.reset();
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/ranges") << "127.1.0.0,127.1.255.255,GB\n";
    auto config = conf::parse_config("[server]\nstate_dir = \"" + dir +
                                         "\"\n[geo]\ndatabases = [\"ranges\"]\n"
                                         "[[listener]]\nname = \"mx\"\naddress = \"127.0.0.1:0\"\n"
                                         "[pool.p]\nmembers = [\"127.0.0.1:2501\"]\n"
                                         "[[rule]]\nname = \"all\"\npool = \"p\"\n",
                                     dir + "/geomx.toml", {"fuzz.test"});
    auto data = conf::load_data(config);
    s = std::make_unique<proxy::ServerState>(
        policy::build_snapshot(std::move(config), std::move(data)), log);
  }
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string_view field[5];
  for (auto& f : field) {
    const auto nl = in.find('\n');
    f = in.substr(0, nl);
    in = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
  }
  const std::string token = "fuzz-token-0123456789";
  const std::string bearer = "Bearer " + token;
  auto& state = server_state();
  const admin::Access access{token, admin::host_names(state.current()->snapshot->config)};
  const admin::Request request{field[0], field[1]};
  const admin::Headers headers{field[2], field[3], field[4] == "T" ? bearer : field[4]};
  admin::Reply reply;
  if (auto refused = admin::refuse(request, headers, access)) {
    reply = *refused;
    if (reply.status != 400 && reply.status != 401 && reply.status != 403) std::abort();
  } else {
    const auto now = admin::Now{1'800'000'000, std::chrono::steady_clock::now()};
    reply = admin::answer(request, state, now);
  }
  // A refusal or an error says why (a list of no blocks is empty text).
  if (reply.status < 200 || reply.status > 599 || (reply.status >= 400 && reply.body.empty()))
    std::abort();
  return 0;
}
