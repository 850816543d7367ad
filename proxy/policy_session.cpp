#include "proxy/policy_session.hpp"

#include <array>
#include <mutex>

#include <fmt/format.h>
#include <boost/asio/write.hpp>

#include "policy/decide.hpp"
#include "policy/greylist.hpp"
#include "policy/policy_request.hpp"
#include "proxy/answer_within.hpp"
#include "proxy/clock.hpp"
#include "proxy/dns_check.hpp"
#include "proxy/endpoint.hpp"

namespace geomx::proxy {

namespace {

using policy::GreyRecord;
using Records = std::array<std::optional<GreyRecord>, 2>;  // the triplet's, the network's

// Postfix closes an idle policy connection after 300 s
// (smtpd_policy_service_max_idle); one it forgot is closed here after this.
constexpr auto idle_limit = std::chrono::minutes(10);

class PolicySession final : public SessionRegistry::Live {
 public:
  PolicySession(Socket socket, const tcp::endpoint& peer, std::size_t listener, ServerState& state)
      : socket_(std::move(socket)), peer_(from_asio(peer)), listener_(listener), state_(state) {}

  asio::awaitable<void> run();
  void check_idle(SessionRegistry::Clock::time_point now) override {
    if (now - last_ > idle_limit) close();
  }
  void shut_down() override { close(); }
  void drain() override {
    draining_ = true;
    if (!busy_) close();  // between requests: Postfix opens another to the next geomx
  }

 private:
  struct Answer {
    std::string action;
    PolicyResult result = PolicyResult::dunno;
    std::string detail;  // for the log
  };
  asio::awaitable<Answer> answer(const policy::PolicyRequest& req);
  asio::awaitable<std::optional<Records>> records(state::GreyStore& store, const policy::Triplet& t,
                                                  std::chrono::milliseconds timeout);
  void close() {
    boost::system::error_code ignored;
    socket_.close(ignored);
  }

  Socket socket_;
  conf::Endpoint peer_;
  std::size_t listener_;
  ServerState& state_;
  SessionRegistry::Clock::time_point last_ = SessionRegistry::Clock::now();
  bool busy_ = false, draining_ = false;
  std::string prepended_instance_;  // the message whose header was given (once per message)
};

asio::awaitable<void> PolicySession::run() {
  const auto runtime = state_.current();
  const conf::Listener& l = runtime->snapshot->config.listeners[listener_];
  const bool trusted = std::any_of(l.trusted_proxies.begin(), l.trusted_proxies.end(),
                                   [&](const geo::Prefix& p) { return p.contains(peer_.address); });
  if (!trusted) {
    state_.metrics.policy_refused();
    state_.log.event(
        "policy_refused",
        {{"listener", l.name}, {"peer", peer_.to_string()}, {"why", "not in trusted_proxies"}});
    co_return;
  }
  policy::PolicyReader reader;
  std::array<char, 4096> buf;
  std::string out;
  for (;;) {
    auto [ec, n] = co_await socket_.async_read_some(asio::buffer(buf), nothrow);
    if (ec) co_return;
    busy_ = true;
    last_ = SessionRegistry::Clock::now();
    reader.feed({buf.data(), n});
    policy::PolicyRequest req;
    for (;;) {
      const auto status = reader.next(req);
      if (status == policy::PolicyReader::Status::more) break;
      if (status == policy::PolicyReader::Status::malformed) {
        // Answered so far: sent; then closed, never a guess.
        if (!out.empty()) co_await asio::async_write(socket_, asio::buffer(out), nothrow);
        state_.metrics.policy_malformed();
        state_.log.event("policy_error", {{"listener", l.name},
                                          {"peer", peer_.to_string()},
                                          {"error", reader.error()},
                                          {"action", "closed"}});
        co_return;
      }
      const auto a = co_await answer(req);
      // The header once per message: for the first recipient that passes.
      if (a.action.starts_with("PREPEND ")) prepended_instance_ = req.get("instance");
      state_.metrics.policy_request(a.result);
      if (a.result != PolicyResult::dunno || !a.detail.empty())
        state_.log.event("policy", {{"client", std::string(req.get("client_address"))},
                                    {"result", std::string(to_string(a.result))},
                                    {"detail", a.detail},
                                    {"action", a.action}});
      out += policy::policy_reply(a.action);
    }
    // Requests that came together are answered in one write.
    if (!out.empty()) {
      auto [wec, written] = co_await asio::async_write(socket_, asio::buffer(out), nothrow);
      if (wec) co_return;
      out.clear();
    }
    busy_ = reader.pending() > 0;  // a request begun: a drain waits for it
    if (draining_) co_return;
  }
}

asio::awaitable<std::optional<Records>> PolicySession::records(state::GreyStore& store,
                                                               const policy::Triplet& t,
                                                               std::chrono::milliseconds timeout) {
  const auto keys = std::array{t.key(), t.network_key()};
  if (store.immediate()) {  // this node's: answers in the call
    Records r;
    for (std::size_t i = 0; i < 2; ++i) store.get(keys[i], [&r, i](auto v) { r[i] = v; });
    co_return r;
  }
  co_return co_await answer_within<std::optional<Records>>(
      socket_.get_executor(), timeout, [&](auto reply) {
        struct Both {
          std::mutex m;
          Records r;
          int left = 2;
          std::function<void(std::optional<Records>)> done;
        };
        auto both = std::make_shared<Both>();
        both->done = std::move(reply);
        for (std::size_t i = 0; i < 2; ++i)
          store.get(keys[i], [both, i](std::optional<GreyRecord> v) {
            std::lock_guard lock(both->m);
            both->r[i] = v;
            if (--both->left == 0) both->done(std::optional<Records>(both->r));
          });
      });
}

asio::awaitable<PolicySession::Answer> PolicySession::answer(const policy::PolicyRequest& req) {
  const auto runtime = state_.current();
  const policy::Snapshot& snap = *runtime->snapshot;
  const conf::Config& c = snap.config;
  const auto now = unix_now();
  const auto address = geo::try_parse_address(req.get("client_address"));
  if (!address) co_return Answer{"DUNNO", PolicyResult::dunno, "no client_address"};
  if (const auto block = state_.blocks.find(*address, now))
    co_return Answer{fmt::format("554 5.7.1 {} access denied", c.server.hostname),
                     PolicyResult::blocked,
                     fmt::format("blocked by {} ({}{}{})", block->cidr.to_string(), block->origin,
                                 block->comment.empty() ? "" : ": ", block->comment)};
  const bool rcpt = req.get("protocol_state") == "RCPT";
  if (!rcpt) co_return Answer{"DUNNO", PolicyResult::dunno, {}};
  // The verdict the front end's rules give this client, and its DNS
  // reputation when a matcher or the header reads it.
  policy::Client who{*address, snap.listener_index(c.policy.listener).value_or(0)};
  std::shared_ptr<DnsCheck> dns;
  const bool wants_dns = (c.greylist.has_skip && policy::needs(c.greylist.skip)) ||
                         (!c.policy.header.empty() && !c.dnsbl_sites.empty());
  if (wants_dns && snap.lookups) {
    dns = std::make_shared<DnsCheck>(socket_.get_executor(), runtime->snapshot, state_, *address);
    dns->start(snap.lookups);
    co_await dns->wait(snap.lookups, DnsCheck::Clock::now() + c.dns.timeout);
  }
  const auto d = policy::decide(who, snap, *runtime->view, 0, dns ? &dns->reputation() : nullptr);
  std::string pass = "DUNNO";
  const auto instance = req.get("instance");
  if (!c.policy.header.empty() && (instance.empty() || instance != prepended_instance_)) {
    pass = "PREPEND " + policy::verdict_header(
                            snap, d, dns ? std::optional(dns->reputation().score) : std::nullopt);
  }
  if (!c.greylist.enabled) co_return Answer{pass, PolicyResult::dunno, {}};
  const geo::GeoValue& v = snap.table.lookup(*address);
  if (c.greylist.has_skip && policy::in_scope(snap.greylist_skip, who, v) &&
      policy::reputation_matches(c.greylist.skip, dns ? dns->reputation() : policy::Reputation{}))
    co_return Answer{pass, PolicyResult::skipped, {}};
  auto* store = state_.grey.load();
  if (!store) co_return Answer{pass, PolicyResult::dunno, "no greylist store"};
  const auto t =
      policy::make_triplet(c.greylist, *address, req.get("sender"), req.get("recipient"));
  const auto found = co_await records(*store, t, c.store.timeout);
  if (!found) co_return Answer{pass, PolicyResult::store_error, "greylist store did not answer"};
  const auto step = policy::greylist_step(c.greylist, now, (*found)[0], (*found)[1]);
  // A triplet that never passed is worth keeping only until its retry
  // window closes (most spam never retries); one that passed, max_age.
  using std::chrono::duration_cast;
  using std::chrono::seconds;
  const auto max_age = duration_cast<seconds>(c.greylist.max_age);
  if (step.triplet)
    store->put(t.key(), *step.triplet,
               step.triplet->passes > 0
                   ? max_age
                   : duration_cast<seconds>(c.greylist.retry_window) + seconds(60));
  if (step.network) store->put(t.network_key(), *step.network, max_age);
  const auto detail =
      fmt::format("{} {} -> {}", t.network, t.sender.empty() ? "<>" : t.sender, t.recipient);
  switch (step.verdict) {
    case policy::GreyVerdict::new_triplet:
      co_return Answer{policy::grey_reply(c.greylist, step.remaining), PolicyResult::greylisted,
                       detail};
    case policy::GreyVerdict::early:
      co_return Answer{policy::grey_reply(c.greylist, step.remaining), PolicyResult::early, detail};
    case policy::GreyVerdict::passed:
      co_return Answer{pass, PolicyResult::passed, detail};
    case policy::GreyVerdict::auto_allowed:
      co_return Answer{pass, PolicyResult::auto_allowed, detail};
  }
  co_return Answer{pass, PolicyResult::dunno, {}};
}

}  // namespace

asio::awaitable<void> run_policy_session(Socket socket, tcp::endpoint peer, std::string listener,
                                         ServerState& state, SessionRegistry& registry) {
  SessionCount::Hold counted(state.sessions);
  try {
    const auto runtime = state.current();
    const auto index = runtime->listener(listener);
    if (!index) co_return;
    PolicySession session(std::move(socket), peer, *index, state);
    SessionRegistry::Registration registered(registry, session, co_await asio::this_coro::executor);
    co_await session.run();
  } catch (const std::exception& e) {
    state.log.event("session_error", {{"error", e.what()}});
  }
}

}  // namespace geomx::proxy
