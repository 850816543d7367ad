// The admin endpoint's answers without a socket: each route, its errors,
// and time passed in (a block expires without the test sleeping).
#include <doctest/doctest.h>

#include <filesystem>

#include "admin/routes.hpp"
#include "support/snapshot.hpp"

namespace geomx::admin {
namespace {

struct Fixture {
  test::TempDir dir;
  proxy::Log log{conf::LogFormat::logfmt};
  proxy::ServerState state{test::small_snapshot(dir), log};
  Now now{1'800'000'000, std::chrono::steady_clock::time_point(std::chrono::hours(1000))};
  Reply get(std::string_view target, std::string_view method = "GET") {
    return answer({method, target}, state, now);
  }
};

bool has(const std::string& body, std::string_view part) {
  return body.find(part) != std::string::npos;
}

TEST_CASE_FIXTURE(Fixture, "routes: health, unknown paths and methods") {
  CHECK(get("/healthz").status == 200);
  CHECK(get("/healthz").body == "ok\n");
  const auto missing = get("/nope");
  CHECK(missing.status == 404);
  CHECK(has(missing.body, "/healthz /readyz /metrics /status /blocks /top"));
  const auto post = get("/status", "POST");
  CHECK(post.status == 405);
  CHECK(post.allow == "GET, HEAD");
  const auto reload = get("/reload");
  CHECK(reload.status == 405);
  CHECK(reload.allow == "POST");
  CHECK(get("/blocks", "PUT").allow == "GET, HEAD, POST, DELETE");
}

TEST_CASE_FIXTURE(Fixture, "routes: readyz names the pools with no member up") {
  CHECK(get("/readyz").status == 200);
  for (const auto& m : state.health.all())
    if (m->pool == "quarantine") m->up = false;
  const auto r = get("/readyz");
  CHECK(r.status == 503);
  CHECK(r.content_type == "application/json");
  CHECK(r.body == "{\"ready\":false,\"reason\":\"no member up\",\"pools\":[\"quarantine\"]}\n");
}

TEST_CASE_FIXTURE(Fixture, "routes: blocks added, listed, expired by the clock, deleted") {
  const auto added = get("/blocks?cidr=127.2.0.0/16&comment=SPAM_09_01_2021&for=60s", "POST");
  REQUIRE(added.status == 200);
  CHECK(has(added.body, "\"cidr\":\"127.2.0.0/16\""));
  CHECK(has(added.body, "\"created\":1800000000"));
  CHECK(has(added.body, "\"expires\":1800000060"));
  CHECK(std::filesystem::exists(dir.root() / "blocks.toml"));  // kept before the answer
  CHECK(state.blocks.find(geo::parse_address("127.2.3.4"), now.unix));

  const auto listed = get("/blocks?format=text");
  CHECK(listed.content_type == "text/plain; charset=utf-8");
  CHECK(has(listed.body, "127.2.0.0/16"));
  CHECK(has(listed.body, "SPAM_09_01_2021"));
  now.unix += 61;
  CHECK(get("/blocks").body == "{\"blocks\":[]}\n");
  now.unix -= 61;

  CHECK(get("/blocks?cidr=127.2.0.0/16", "DELETE").status == 200);
  CHECK(get("/blocks?cidr=127.2.0.0/16", "DELETE").status == 404);
}

TEST_CASE_FIXTURE(Fixture, "routes: blocks refuse what they cannot mean") {
  CHECK(get("/blocks?cidr=banana", "POST").status == 400);
  const auto world = get("/blocks?cidr=0.0.0.0/0", "POST");
  CHECK(world.status == 400);
  CHECK(has(world.body, "force=yes"));
  CHECK(get("/blocks?cidr=2001:db8::/8", "POST").status == 400);
  CHECK(get("/blocks?cidr=0.0.0.0/0&force=yes", "POST").status == 200);
  CHECK(get("/blocks?cidr=192.0.2.1&for=0s", "POST").status == 400);
  CHECK(get("/blocks?cidr=192.0.2.1&for=soon", "POST").status == 400);
  CHECK(get("/blocks?cidr=%zz", "POST").status == 400);
  // A comment is one line of text: a newline would forge a line of `block list`.
  const auto forged = get("/blocks?cidr=192.0.2.9&comment=x%0a198.51.100.0/24%20fake", "POST");
  CHECK(forged.status == 400);
  CHECK(has(forged.body, "comment: at most 1024 bytes of UTF-8 text on one line"));
  CHECK(get("/blocks?cidr=192.0.2.9&comment=%ff", "POST").status == 400);
  CHECK(get("/blocks?cidr=192.0.2.9&comment=%c2%85", "POST").status == 400);
  CHECK(get("/blocks?cidr=192.0.2.9&comment=" + std::string(1025, 'x'), "POST").status == 400);
  CHECK_FALSE(has(get("/blocks").body, "192.0.2.9"));  // none of them added
  const auto utf8 = get("/blocks?cidr=192.0.2.9&comment=caf%c3%a9", "POST");
  CHECK(utf8.status == 200);
  CHECK(has(utf8.body, "\"comment\":\"caf\xc3\xa9\""));  // JSON keeps UTF-8 as UTF-8
  CHECK(get("/blocks?cidr=192.0.2.9", "DELETE").status == 200);
}

TEST_CASE_FIXTURE(Fixture, "routes: top talkers over the window, with their blocks") {
  CHECK(get("/top?window=2h").status == 400);
  CHECK(get("/top?n=0").status == 400);
  CHECK(get("/top?n=12abc").status == 400);
  const auto client = geo::parse_address("127.1.0.9");
  for (int i = 0; i < 3; ++i)
    state.top.record(client, geo::Country::parse("GB"), i == 0, now.steady);
  state.top.record(geo::parse_address("127.2.0.1"), geo::Country::parse("CN"), false, now.steady);
  CHECK(get("/blocks?cidr=127.1.0.0/24", "POST").status == 200);
  const auto top = get("/top?n=1");
  REQUIRE(top.status == 200);
  CHECK(has(top.body, "\"total\":4"));
  CHECK(has(top.body,
            "{\"address\":\"127.1.0.9\",\"country\":\"GB\",\"connections\":3,\"share\":0.7500,"
            "\"refused\":1,\"block\":\"127.1.0.0/24\"}"));
  CHECK_FALSE(has(top.body, "127.2.0.1"));  // n=1
}

TEST_CASE_FIXTURE(Fixture, "routes: status and metrics describe the running config") {
  const auto status = get("/status");
  CHECK(status.content_type == "application/json");
  CHECK(has(status.body, "\"generation\":1"));
  CHECK(has(status.body, "\"name\":\"quarantine\""));
  CHECK(has(status.body, "\"address\":\"127.0.0.1:2503\""));
  const auto metrics = get("/metrics");
  CHECK(metrics.content_type == "text/plain; version=0.0.4; charset=utf-8");
  CHECK(has(metrics.body, "geomx_member_up{pool=\"primary\",member=\"127.0.0.1:2501\"} 1"));
}

TEST_CASE("reload replies: JSON, and text as geomx reload prints it") {
  ReloadOutcome ok{true, 2, {}, {"server.threads changed: takes effect at the next restart"}};
  CHECK(reload_reply(ok).status == 200);
  CHECK(reload_reply(ok).body ==
        "{\"result\":\"success\",\"generation\":2,\"errors\":[],\"warnings\":[\"server.threads "
        "changed: takes effect at the next restart\"]}\n");
  ReloadOutcome failed{false, 1, {"geomx.toml:3:1: pool: \"x\""}, {}};
  const auto text = reload_reply(failed, true);
  CHECK(text.status == 422);
  CHECK(text.body ==
        "reload: failed, the running config stays (generation 1)\n"
        "error: geomx.toml:3:1: pool: \"x\"\n");
}

}  // namespace
}  // namespace geomx::admin
