#pragma once
// One client connection, start to end: PROXY header in, limits, decision,
// reject/drop/tarpit or the routed path (greet delay with pregreet
// detection, connect with failover, PROXY header out), then the relay takes
// the sockets; one log line whatever the end. The steps are in session.cpp
// (admission and the decision), inbound.cpp (what the client's side says
// before the relay) and upstream.cpp (the member's side).
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "policy/decide.hpp"
#include "policy/smtp_screen.hpp"
#include "proxy/dns_check.hpp"
#include "proxy/io.hpp"
#include "proxy/registry.hpp"
#include "proxy/server_state.hpp"
#include "proxy/session_record.hpp"
#include "proxy/upstream.hpp"

namespace geomx::proxy {

// `peer` as accept(2) gave it: no getpeername per connection. `listener` is
// the key of the socket it came in on.
asio::awaitable<void> run_session(Socket socket, tcp::endpoint peer, std::string listener,
                                  ServerState& state, SessionRegistry& registry);

class Session final : public SessionRegistry::Live {
 public:
  using Clock = std::chrono::steady_clock;
  Session(Socket client, const tcp::endpoint& peer, const Runtime& runtime, std::size_t listener,
          ServerState& state, SessionRegistry& registry);

  asio::awaitable<void> run();

  // SessionRegistry::Live. Until the relay, every wait has its own deadline.
  void check_idle(Clock::time_point) override {}
  void shut_down() override {
    shutdown_ = true;
    close_both();
    if (queue_wait_) queue_wait_->cancel();
  }

 private:
  static constexpr std::size_t max_pending = 4096;  // client bytes held before relaying

  const std::string& hostname() const { return snap_->config.server.hostname; }
  // session.cpp: admission, the decision and the refusals.
  asio::awaitable<bool> admit();
  asio::awaitable<void> reply_and_close(std::string_view line, EndReason end);
  asio::awaitable<bool> within_limits(const std::vector<std::size_t>& limits);
  // Asks the fleet's store a [[limit]]'s questions and waits for the
  // answers, at most store.timeout (then all are nullopt); `fleet_hold`
  // is the connection's handle when one at once was asked for.
  asio::awaitable<state::Fleet::LimitAnswers> ask_fleet(state::Fleet::LimitQuestion q,
                                                        std::shared_ptr<void>& fleet_hold);
  asio::awaitable<void> tarpit(std::string_view reply);
  // The decision, waiting for the DNS answers a rule reads (dns.timeout after accept at most).
  asio::awaitable<policy::Decision> decide();
  // inbound.cpp: the client's side before the relay.
  asio::awaitable<bool> read_proxy_header();
  asio::awaitable<bool> read_original_destination();
  asio::awaitable<bool> greet_delay(const conf::Pool& pool);
  asio::awaitable<bool> wait_greeting(const conf::Pool& pool);  // the delay itself
  // A pregreet refused: closed (pregreet "drop"), or 554 5.5.1 ("reject").
  asio::awaitable<void> refuse_pregreet(const conf::Pool& pool);
  // The value of `key` in the cache ([store]: the fleet's), or nullopt when
  // it has none or has not answered within store.timeout.
  asio::awaitable<std::optional<std::string>> cached(const std::string& key);
  // screen.cpp: a screen = "smtp" pool. screen(): false when the session
  // ended there; true to hand off (screen_ set) or, for a client that
  // passed within screen_ttl, to relay at once (screen_ empty). `first`:
  // the member whose capabilities the client is offered.
  asio::awaitable<bool> screen(const conf::Pool& pool, std::size_t pool_index, std::size_t first);
  // After connect(): the member gets the client's session replayed.
  asio::awaitable<bool> replay(const conf::Pool& pool);
  // `refusal`: a well-formed reply that is not `want`, whole (the member
  // turned this client away: not the member's failure).
  asio::awaitable<std::optional<std::string>> member_reply(std::string& buf, char want,
                                                           std::string_view step,
                                                           conf::Duration timeout,
                                                           std::string& refusal);
  asio::awaitable<bool> tell(std::string_view text);  // to the client; false: it is gone
  // rec_.screen and rec_.helo; `handed_off`: a clean screen is a "pass",
  // else "unfinished" (QUIT, a timeout or a disconnect before MAIL).
  void note_screen(bool handed_off);
  // upstream.cpp: the member's side, and the hand-over to the relay.
  asio::awaitable<DialResult> dial(const conf::Endpoint& endpoint, conf::Duration timeout);
  asio::awaitable<bool> connect(std::vector<std::size_t> order, std::size_t pool_index,
                                const conf::Pool& pool);
  asio::awaitable<void> pass();
  asio::awaitable<bool> send_first(const conf::Pool& pool);
  void relay(const conf::Pool& pool);

  void close_both() {
    boost::system::error_code ec;
    client_.close(ec);
    backend_.close(ec);
  }
  void finish(EndReason end);

  const Runtime& runtime_;  // run_session holds it while this runs
  Socket client_, backend_;
  ServerState& state_;
  std::shared_ptr<const policy::Snapshot> snap_;  // the whole session uses the one it began with
  const conf::Listener& listener_;
  std::size_t listener_index_;
  Clock::time_point start_;
  std::optional<conf::Endpoint> dest_;  // ... as the PROXY header or the NAT gave it
  SessionRecord rec_;
  std::vector<std::uint8_t> pending_;  // client bytes to relay once connected
  bool shutdown_ = false;
  // connect()'s wait in a member queue, which shut_down ends.
  asio::steady_timer* queue_wait_ = nullptr;
  SessionRegistry& registry_;
  std::optional<policy::ConnectionSlots::Slot> slot_, ip_slot_;  // held until the relay ends
  std::shared_ptr<const policy::HealthView> view_;               // the members' health
  policy::MemberSlot member_;                                    // the one connected to
  std::vector<policy::LimitTable::Hold> holds_;                  // [[limit]] concurrent counts
  std::unique_ptr<OwnConnections::Entry> own_;  // action "pass": our end, while it lasts
  std::shared_ptr<DnsCheck> dns_;               // the reputation checks, when configured
  std::unique_ptr<policy::SmtpScreen> screen_;  // a screen pool's, until the hand-off
};

}  // namespace geomx::proxy
