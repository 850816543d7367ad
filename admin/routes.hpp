#pragma once
// The admin endpoint's answers ([admin] listen, default 127.0.0.1:9025),
// request in, reply out: no sockets here (admin/server.hpp is the I/O).
//   GET /healthz  200 while the process serves
//   GET /readyz   200 when the geo table is loaded and every pool a rule
//                 routes to has an UP member; else 503 naming the empty pools
//   GET /metrics  Prometheus text exposition
//   GET /status   JSON: listeners, pools, members and their health, counters
//   POST /reload  reloads the config (as SIGHUP does) and answers with the
//                 outcome: 200 {"result":"success",...} or 422 with the errors
//                 (?format=text: one line each, as `geomx reload` prints them)
//   GET /blocks   the dated blocks in force (JSON; ?format=text: lines)
//   POST /blocks?cidr=C[&comment=T][&for=30d]  adds one, kept before the answer
//   DELETE /blocks?cidr=C                     deletes one
//   GET /top?window=1m|1h&n=20  top talkers: connections, share, refused, block
//                 (&fleet=1: every node's, through the store)
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/server_state.hpp"
#include "state/fleet_top.hpp"

namespace geomx::admin {

struct Request {
  std::string_view method, target;
};

struct Reply {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::string allow = "GET, HEAD";  // for a 405
  bool challenge = false;           // a 401: WWW-Authenticate: Bearer
};

// The time a request is answered at: blocks expire by the wall clock, top
// talkers count by the steady one.
struct Now {
  std::int64_t unix = 0;
  std::chrono::steady_clock::time_point steady;
  static Now read();
};

// The answer to every request but POST /reload and GET /top?fleet=1.
Reply answer(const Request& request, proxy::ServerState& state, const Now& now);

// GET /top?fleet=1 (with a [store]): what the server asks the fleet for
// before it answers.
bool wants_fleet_top(const Request& request);
// Its answer: this node's live counts merged with `others` (the other
// nodes' reports, state/fleet_top.hpp); nullopt: the store is down or did
// not answer (503).
Reply fleet_top_answer(const Request& request, proxy::ServerState& state, const Now& now,
                       const std::optional<std::vector<state::FleetTop::NodeReport>>& others);

// The outcome of one reload, for the log, POST /reload and `geomx reload`.
struct ReloadOutcome {
  bool ok = false;
  std::uint64_t generation = 0;       // the one serving afterwards
  std::vector<std::string> errors;    // FILE:LINE:COLUMN: key: message, when !ok
  std::vector<std::string> warnings;  // settings that need a restart, and the like
};
// POST /reload's answer: JSON, or lines of text (?format=text, for `geomx reload`).
Reply reload_reply(const ReloadOutcome& outcome, bool text = false);

// The query parameters of a request target (decoded); none if it does not parse.
std::optional<std::map<std::string, std::string>> query_of(std::string_view target);

}  // namespace geomx::admin
