#include <doctest/doctest.h>

#include "policy/greylist.hpp"
#include "policy/policy_request.hpp"

using namespace geomx;
using namespace std::string_literals;
using policy::GreyRecord;
using policy::GreyVerdict;

namespace {

conf::Greylist settings() {
  conf::Greylist g;
  g.enabled = true;
  g.delay = std::chrono::minutes(35);
  g.retry_window = std::chrono::hours(48);
  g.max_age = std::chrono::hours(24 * 35);
  g.auto_allow = 2;
  return g;
}

}  // namespace

TEST_CASE("addresses are normalised as postgrey does") {
  CHECK(policy::normal_address("Alice+Lists@Example.ORG") == "alice@example.org");
  CHECK(policy::normal_address("<>") == "");
  CHECK(policy::normal_address("") == "");
  CHECK(policy::normal_address("bounce-123-456@lists.example") == "bounce-#-#@lists.example");
  CHECK(policy::normal_address("user2000@example.org") == "user2000@example.org");
  CHECK(policy::normal_address("prvs=1234abcd=bob@example.org") == "bob@example.org");
  CHECK(policy::normal_address("SRS0=HHH=TT=orig.example=carol@forwarder.example") ==
        "carol@orig.example");
  CHECK(policy::normal_address("postmaster") == "postmaster");
}

TEST_CASE("the triplet keys the client network, not the address") {
  const auto g = settings();
  const auto a = policy::make_triplet(g, geo::parse_address("192.0.2.10"), "A@x.test", "r@y.test");
  const auto b = policy::make_triplet(g, geo::parse_address("192.0.2.200"), "a@X.test", "R@y.test");
  const auto c = policy::make_triplet(g, geo::parse_address("192.0.3.10"), "a@x.test", "r@y.test");
  CHECK(a.network == "192.0.2.0/24");
  CHECK(a.key() == b.key());
  CHECK(a.key() != c.key());
  CHECK(a.network_key() == b.network_key());
  CHECK(a.key() != a.network_key());
  const auto v6 = policy::make_triplet(g, geo::parse_address("2001:db8:1:2:3::4"), "", "r@y.test");
  CHECK(v6.network == "2001:db8:1:2::/64");
  // Parts are separated: moving a byte from one to the next is another key.
  CHECK(policy::Triplet{"n", "ab", "c"}.key() != policy::Triplet{"n", "a", "bc"}.key());
  CHECK(policy::to_hex(a.key()).size() == 32);
  // The recipient is lower-cased only (postgrey): its extension is a mailbox.
  const auto plus =
      policy::make_triplet(g, geo::parse_address("192.0.2.10"), "a@x.test", "R+A@y.test");
  CHECK(plus.recipient == "r+a@y.test");
  CHECK(plus.key() !=
        policy::make_triplet(g, geo::parse_address("192.0.2.10"), "a@x.test", "r+b@y.test").key());
}

TEST_CASE("first attempt deferred, early retry deferred, retry after the delay passes") {
  const auto g = settings();
  const std::int64_t t = 1'000'000;
  auto s = policy::greylist_step(g, t, std::nullopt, std::nullopt);
  CHECK(s.verdict == GreyVerdict::new_triplet);
  CHECK(s.remaining == std::chrono::minutes(35));
  REQUIRE(s.triplet);
  CHECK(*s.triplet == GreyRecord{t, t, 0});
  CHECK_FALSE(s.network);

  s = policy::greylist_step(g, t + 600, GreyRecord{t, t, 0}, std::nullopt);
  CHECK(s.verdict == GreyVerdict::early);
  CHECK(s.remaining == std::chrono::seconds(35 * 60 - 600));
  CHECK(*s.triplet == GreyRecord{t, t + 600, 0});

  s = policy::greylist_step(g, t + 35 * 60, GreyRecord{t, t + 600, 0}, std::nullopt);
  CHECK(s.verdict == GreyVerdict::passed);
  CHECK(*s.triplet == GreyRecord{t, t + 35 * 60, 1});
  REQUIRE(s.network);
  CHECK(s.network->passes == 1);

  // Passed before: passes again, and does not count towards auto_allow twice.
  s = policy::greylist_step(g, t + 86400 * 10, GreyRecord{t, t + 35 * 60, 1}, std::nullopt);
  CHECK(s.verdict == GreyVerdict::passed);
  CHECK_FALSE(s.network);
}

TEST_CASE("a retry after retry_window starts again; a triplet unseen past max_age is new") {
  const auto g = settings();
  const std::int64_t t = 1'000'000;
  auto s = policy::greylist_step(g, t + 49 * 3600, GreyRecord{t, t, 0}, std::nullopt);
  CHECK(s.verdict == GreyVerdict::new_triplet);
  CHECK(s.triplet->first == t + 49 * 3600);
  s = policy::greylist_step(g, t + 36 * 86400, GreyRecord{t, t, 3}, std::nullopt);
  CHECK(s.verdict == GreyVerdict::new_triplet);
}

TEST_CASE("auto_allow: a network with enough passes skips greylisting; 0 is off") {
  auto g = settings();
  const std::int64_t t = 1'000'000;
  auto s = policy::greylist_step(g, t, std::nullopt, GreyRecord{t - 100, t - 100, 2});
  CHECK(s.verdict == GreyVerdict::auto_allowed);
  CHECK(s.network->last == t);  // kept alive
  s = policy::greylist_step(g, t, std::nullopt, GreyRecord{t - 100, t - 10, 2});
  CHECK(s.verdict == GreyVerdict::auto_allowed);
  CHECK_FALSE(s.network);  // written at most once a minute
  s = policy::greylist_step(g, t, std::nullopt, GreyRecord{t - 100, t - 100, 1});
  CHECK(s.verdict == GreyVerdict::new_triplet);
  g.auto_allow = 0;
  s = policy::greylist_step(g, t, std::nullopt, GreyRecord{t, t, 100});
  CHECK(s.verdict == GreyVerdict::new_triplet);
}

TEST_CASE("records encode and decode; the reply says the time left") {
  const GreyRecord r{1700000000, 1700000100, 7};
  CHECK(policy::decode_grey(policy::encode(r)) == r);
  CHECK_FALSE(policy::decode_grey("1 2"));
  CHECK_FALSE(policy::decode_grey("1 2 x"));
  CHECK_FALSE(policy::decode_grey("1 2 3 "));
  CHECK(policy::remaining_text(std::chrono::seconds(1)) == "1 second");
  CHECK(policy::remaining_text(std::chrono::seconds(40)) == "40 seconds");
  CHECK(policy::remaining_text(std::chrono::seconds(61)) == "2 minutes");
  CHECK(policy::remaining_text(std::chrono::seconds(2100)) == "35 minutes");
  CHECK(policy::grey_reply(settings(), std::chrono::seconds(60)) ==
        "450 4.2.0 Greylisted, please retry in 1 minute");
}

TEST_CASE("policy requests: whole, in fragments, many on one connection") {
  const std::string one =
      "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\n"
      "sender=a@x.test\nrecipient=b@y.test\nsender=c@x.test\n\n";
  policy::PolicyReader r;
  policy::PolicyRequest req;
  for (char c : one + one) {
    r.feed(std::string_view(&c, 1));
    const auto st = r.next(req);
    REQUIRE(st != policy::PolicyReader::Status::malformed);
  }
  CHECK(req.get("client_address") == "192.0.2.1");
  CHECK(req.get("sender") == "c@x.test");  // the last one
  CHECK(req.get("absent") == "");
  CHECK(r.pending() == 0);
  policy::PolicyReader many;
  std::string all;
  for (int i = 0; i < 100; ++i) all += one;
  many.feed(all);
  int n = 0;
  while (many.next(req) == policy::PolicyReader::Status::request) ++n;
  CHECK(n == 100);
  CHECK(policy::policy_reply("450 a\r\nb") == "action=450 a  b\n\n");
}

TEST_CASE("a peer that keeps a request unfinished does not grow the buffer") {
  policy::PolicyReader r;
  policy::PolicyRequest req;
  r.feed("request=smtpd_access_policy\n");
  for (int i = 0; i < 10000; ++i) {
    // The end of one request and the beginning of the next in each read.
    r.feed("client_address=192.0.2.1\n\nrequest=smtpd_access_policy\n");
    REQUIRE(r.next(req) == policy::PolicyReader::Status::request);
    REQUIRE(r.next(req) == policy::PolicyReader::Status::more);
    REQUIRE(r.pending() < 100);
  }
}

TEST_CASE("malformed requests are refused, whatever follows") {
  auto malformed = [](std::string bytes) {
    policy::PolicyReader r;
    policy::PolicyRequest req;
    r.feed(bytes);
    const auto st = r.next(req);
    const bool bad = st == policy::PolicyReader::Status::malformed && !r.error().empty();
    r.feed("request=smtpd_access_policy\n\n");
    return bad && r.next(req) == policy::PolicyReader::Status::malformed;
  };
  CHECK(malformed("hello\n\n"));
  CHECK(malformed("=value\n"));
  CHECK(malformed("\n"));
  CHECK(malformed("request=junk\n\n"));
  CHECK(malformed("client_address=1.2.3.4\n\n"));
  CHECK(malformed("a=" + std::string(policy::PolicyReader::max_line + 1, 'x')));
  CHECK(malformed("a=b\0c\n"s));
  CHECK(malformed(std::string(10, '\0')));
  std::string lots;
  for (std::size_t i = 0; i <= policy::PolicyReader::max_attributes; ++i) lots += "a=b\n";
  CHECK(malformed(lots));
  std::string big;
  for (int i = 0; i < 10; ++i) big += "a=" + std::string(15000, 'x') + "\n";
  CHECK(malformed(big));
}
