// Who may ask what of the admin endpoint: the token on the paths that change
// or reveal state, the Host and Origin checks against DNS rebinding and
// cross-site requests, and the token file geomx makes.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <filesystem>

#include "admin/access.hpp"
#include "daemon/token.hpp"
#include "geo/sources.hpp"
#include "support/temp_dir.hpp"

namespace geomx::admin {
namespace {

const Access access{"0123456789abcdef0123456789abcdef", {"localhost", "mx.example.net"}};
const std::string bearer = "Bearer 0123456789abcdef0123456789abcdef";

unsigned status(std::string_view method, std::string_view target, Headers h) {
  const auto r = refuse({method, target}, h, access);
  return r ? r->status : 0;  // 0: may go on
}

TEST_CASE("access: read-only health paths open, the rest need the token") {
  for (const auto* path : {"/healthz", "/readyz", "/metrics", "/metrics?x=1", "/nope"})
    CHECK(status("GET", path, {"127.0.0.1:9025", "", ""}) == 0);
  for (const auto* path : {"/blocks", "/blocks?format=text", "/status", "/top?n=3", "/reload"}) {
    CAPTURE(path);
    const auto r = refuse({"GET", path}, {"127.0.0.1:9025", "", ""}, access);
    REQUIRE(r);
    CHECK(r->status == 401);
    CHECK(r->challenge);
    CHECK(status("POST", path, {"127.0.0.1:9025", "", bearer}) == 0);
    CHECK(status("POST", path, {"127.0.0.1:9025", "", "bearer 0123456789abcdef0123456789abcdef"}) ==
          0);
    CHECK(status("POST", path, {"127.0.0.1:9025", "", "Bearer 0123456789abcdef0123456789abcdeF"}) ==
          401);
    CHECK(status("POST", path, {"127.0.0.1:9025", "", "Bearer "}) == 401);
    CHECK(status("POST", path, {"127.0.0.1:9025", "", "Basic Zm9vOmJhcg=="}) == 401);
    CHECK(status("POST", path, {"127.0.0.1:9025", "", bearer + "0"}) == 401);
  }
  // No token could be loaded: refused, and the answer says where to look.
  const Access none{"", {"localhost"}};
  const auto r = refuse({"POST", "/reload"}, {"localhost", "", "Bearer x"}, none);
  REQUIRE(r);
  CHECK(r->status == 503);
}

TEST_CASE("access: the Host names this endpoint; a foreign Origin is refused") {
  for (const auto* host : {"127.0.0.1", "127.0.0.1:9025", "[::1]:9025", "[::1]", "localhost:9025",
                           "LOCALHOST", "mx.example.net:9025", "192.0.2.7:80"})
    CHECK_MESSAGE(status("GET", "/blocks", {host, "", bearer}) == 0, host);
  // A DNS-rebinding page's own name, or what is not a Host at all.
  for (const auto* host : {"evil.example", "evil.example:9025", "::1", "[::1", "[::1]x",
                           "localhost.evil.example", ":9025", "127.0.0.1:9025:1"})
    CHECK_MESSAGE(status("GET", "/healthz", {host, "", bearer}) == 403, host);
  CHECK(status("GET", "/healthz", {"", "", bearer}) == 400);
  // Origin: a page of this endpoint may ask; any other, or "null", may not.
  CHECK(status("POST", "/blocks", {"127.0.0.1:9025", "http://127.0.0.1:9025", bearer}) == 0);
  CHECK(status("POST", "/blocks", {"127.0.0.1:9025", "https://localhost", bearer}) == 0);
  for (const auto* origin :
       {"http://evil.example", "https://evil.example:9025", "null", "file://", "http://"})
    CHECK_MESSAGE(status("POST", "/blocks", {"127.0.0.1:9025", origin, bearer}) == 403, origin);
  // The Host check comes first: a rebinding page learns nothing of the paths.
  CHECK(status("GET", "/metrics", {"evil.example", "", ""}) == 403);
}

TEST_CASE("access: host_names are localhost, server.hostname and admin.hosts, lower case") {
  conf::Config c;
  c.server.hostname = "MX.Example.NET";
  c.admin.hosts = {"Admin.Example.NET"};
  const auto names = host_names(c);
  CHECK(names == std::vector<std::string>{"localhost", "mx.example.net", "admin.example.net"});
}

TEST_CASE("token_matches: equal tokens only") {
  CHECK(token_matches("abc", "abc"));
  CHECK_FALSE(token_matches("abc", "abd"));
  CHECK_FALSE(token_matches("ab", "abc"));
  CHECK_FALSE(token_matches("", "abc"));
}

TEST_CASE("admin token: made when missing (0640), read back, refused when unfit") {
  test::TempDir dir;
  const auto path = dir.path("admin.token");
  const auto made = daemon::admin_token(path, {});
  CHECK(made.created);
  CHECK(made.problem.empty());
  CHECK(made.token.size() == 64);
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);
  const auto again = daemon::admin_token(path, {});
  CHECK_FALSE(again.created);
  CHECK(again.token == made.token);
  CHECK(daemon::token_of(geo::read_input_file(path, 4096)) == made.token);

  dir.write("short.token", "abc\n");
  const auto bad = daemon::admin_token(dir.path("short.token"), {});
  CHECK(bad.token.empty());
  CHECK(bad.problem.find("16 to 256 printable characters") != std::string::npos);
  std::filesystem::create_directory(dir.root() / "dir.token");
  const auto d = daemon::admin_token(dir.path("dir.token"), {});
  CHECK(d.token.empty());
  CHECK(d.problem.find("is a directory, not a regular file") != std::string::npos);
  const auto open = dir.write("open.token", "  0123456789abcdef0123  \nmore\n");
  ::chmod(open.c_str(), 0644);
  const auto o = daemon::admin_token(open, {});
  CHECK(o.token == "0123456789abcdef0123");
  CHECK(o.problem.find("readable by every user") != std::string::npos);
  const auto nowhere = daemon::admin_token(dir.path("missing/admin.token"), {});
  CHECK(nowhere.token.empty());
  CHECK(nowhere.problem.find("could not be created") != std::string::npos);
}

}  // namespace
}  // namespace geomx::admin
