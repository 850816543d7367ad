#include "state/fleet.hpp"

#include "geo/address.hpp"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>
#include <boost/asio/post.hpp>

namespace geomx::state {

Fleet::Fleet(asio::io_context& io, FleetOptions options, BlockList& blocks, LocalCache& local,
             std::function<std::int64_t()> now)
    : io_(io),
      options_(std::move(options)),
      now_(std::move(now)),
      commands_(io, options_.redis),
      events_(io, options_.redis),
      blocks_(commands_, blocks, options_.key_prefix, options_.node,
              [this](std::string m) {
                if (on_warning) on_warning(std::move(m));
              }),
      limits_(commands_, options_.key_prefix, options_.node),
      top_(commands_, options_.key_prefix, options_.node),
      cache_(commands_, options_.key_prefix, local),
      publish_(io),
      release_timer_(io) {
  auto state = [this](bool& told) {
    return [this, &told](bool up, const std::string& why) {
      told = true;
      if (!up && !why.empty()) why_ = why;
      changed();
    };
  };
  // The subscriber has no PING of its own: when the command connection
  // finds Redis gone (no answer to a PING), the subscriber is made again too.
  commands_.on_state = [this, told = state(commands_told_)](bool up, const std::string& why) {
    told(up, why);
    if (!up) events_.reconnect(why);
  };
  events_.on_state = state(events_told_);
  for (std::size_t i = 0; i < options_.sentinels.size(); ++i) {
    // Told of a failover at once (+switch-master), not when the old master
    // is reconfigured (up to Sentinel's 10 s info period later, during
    // which it still takes writes): both connections go to the new one.
    auto& switches =
        switches_.emplace_back(std::make_unique<RedisConnection>(io, options_.sentinels[i]));
    switches->subscribe({"+switch-master"}, [this](const std::string&, std::string payload) {
      if (payload.substr(0, payload.find(' ')) != options_.master) return;
      commands_.reconnect("the sentinels switched the master: " + payload);
      events_.reconnect("the sentinels switched the master: " + payload);
    });
    sentinels_.push_back(std::make_unique<RedisConnection>(io, options_.sentinels[i]));
    sentinel_told_.push_back(false);
    sentinels_.back()->on_state = [this, i](bool, const std::string&) {
      sentinel_told_[i] = true;
      for (auto& done : std::exchange(locating_, {})) locate(std::move(done));
    };
  }
  if (!sentinels_.empty()) {
    commands_.locate = events_.locate = [this](std::function<void(RedisConnection::Where)> done) {
      locate(std::move(done));
    };
  }
  events_.subscribe({blocks_.key()},
                    [this](const std::string&, std::string payload) { blocks_.message(payload); });
}

Fleet::~Fleet() {
  stop();
}

void Fleet::start() {
  for (auto& s : sentinels_) s->start();
  for (auto& s : switches_) s->start();
  commands_.start();
  events_.start();
  publish();
}

void Fleet::stop() {
  up_ = false;  // what /metrics says after the drain, and no more questions
  publish_.cancel();
  // The last connections given back are sent now, not left to the timer.
  {
    const std::lock_guard lock(releases_mutex_);
    releases_posted_ = false;
  }
  release_timer_.cancel();
  take_releases();
  limits_.flush();
  events_.stop();
  commands_.stop();
  for (auto& s : sentinels_) s->stop();
  for (auto& s : switches_) s->stop();
  locating_.clear();
}

std::string Fleet::address() const {
  if (sentinels_.empty()) return options_.redis.address();
  if (commands_.options().host.empty())
    return fmt::format("master {} (not located yet)", options_.master);
  return fmt::format("{} (master {})", commands_.options().address(), options_.master);
}

void Fleet::locate(std::function<void(RedisConnection::Where)> done) {
  // Each search begins at the next sentinel: one with a stale view (cut
  // off from the others) cannot pin every retry to a master that is gone.
  ask_sentinel(next_sentinel_++ % sentinels_.size(), 0, std::move(done));
}

void Fleet::ask_sentinel(std::size_t start, std::size_t tried,
                         std::function<void(RedisConnection::Where)> done) {
  const auto n = sentinels_.size();
  for (; tried < n; ++tried) {
    auto& sentinel = *sentinels_[(start + tried) % n];
    if (!sentinel.up()) continue;
    sentinel.command(
        {"SENTINEL", "get-master-addr-by-name", options_.master},
        [this, start, tried, done = std::move(done)](std::optional<RedisReply> r) mutable {
          // ["10.0.0.5", "6379"], or nil: this sentinel does not know the master.
          if (r && r->type == RedisReply::Type::array && r->elements.size() == 2) {
            unsigned port = 0;
            const auto& host = r->elements[0].str;
            const auto& p = r->elements[1].str;
            const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
            const auto address = geo::try_parse_address(host);
            if (ec == std::errc() && end == p.data() + p.size() && port > 0 && port < 65536 &&
                address) {
              // The password goes to the master: say so once if it is not on this host.
              if (!address->is_loopback() && !warned_remote_master_ && on_warning) {
                warned_remote_master_ = true;
                on_warning(fmt::format(
                    "store: the master the sentinels name, {}, is not on this host: hiredis 0.14 "
                    "has no TLS, so the password and the fleet's state cross the network in the "
                    "clear (keep Redis on a private network, or behind stunnel)",
                    host));
              }
              return done(std::pair{host, static_cast<std::uint16_t>(port)});
            }
          }
          ask_sentinel(start, tried + 1, std::move(done));
        });
    return;
  }
  // None up: wait for the first word of those that have not said yet.
  if (std::find(sentinel_told_.begin(), sentinel_told_.end(), false) != sentinel_told_.end())
    return locating_.push_back(std::move(done));
  done(std::nullopt);
}

void Fleet::publish() {
  if (up_) limits_.heartbeat();
  if (up_ && top_source) {
    const auto now = now_();
    top_.publish("1m", top_source(std::chrono::minutes(1)), now);
    top_.publish("1h", top_source(std::chrono::minutes(60)), now);
  }
  publish_.expires_after(publish_every);
  publish_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) publish();
  });
}

void Fleet::top(std::string_view window,
                std::function<void(std::optional<std::vector<FleetTop::NodeReport>>)> done) {
  if (!up_) return done(std::nullopt);
  top_.others(window, now_(), std::move(done));
}

void Fleet::changed() {
  // The first word waits until both connections have told theirs: a start
  // says "up" or "down" once, not "down" then "up".
  if (!commands_told_ || !events_told_) return;
  const bool up = commands_.up() && events_.up();
  if (told_ && up == up_.load()) return;
  up_ = up;
  told_ = true;
  since_ = now_();
  if (up) why_.clear();
  if (on_state) on_state(up, up ? "" : why_);
  // Subscribed before the merge: nothing announced in between is missed.
  if (up) {
    limits_.connected();
    blocks_.connected(now_());
  }
}

std::shared_ptr<void> Fleet::ask(LimitQuestion q, std::function<void(LimitAnswers)> done) {
  std::shared_ptr<FleetLimits::Ticket> ticket;
  if (q.concurrent > 0)
    ticket = limits_.ticket(q.limit, q.client);  // reads only what is set at construction
  asio::post(io_, [this, q = std::move(q), ticket, done = std::move(done)]() mutable {
    take_releases();  // they go with this question
    if (!up_) return done({});
    // Both answers come in one reply: the second to arrive says them.
    struct Answers {
      std::function<void(LimitAnswers)> done;
      LimitAnswers answers;
      int pending;
    };
    auto a = std::make_shared<Answers>(
        Answers{std::move(done), {}, (q.rate > 0 ? 1 : 0) + (ticket ? 1 : 0)});
    if (a->pending == 0) return a->done({});
    const auto answer = [a](std::size_t i) {
      return [a, i](std::optional<bool> allowed) {
        a->answers[i] = allowed;
        if (--a->pending == 0) a->done(a->answers);
      };
    };
    if (q.rate > 0) limits_.rate(q.limit, q.client, q.rate, q.per_us, q.burst, answer(0));
    if (ticket) limits_.hold(ticket, q.concurrent, answer(1), q.rate > 0);
  });
  if (!ticket) return nullptr;
  // Destroyed on the session's thread: the release goes to the store's.
  return {ticket.get(), [this, ticket](void*) { give_back(ticket); }};
}

void Fleet::give_back(std::shared_ptr<FleetLimits::Ticket> ticket) {
  {
    const std::lock_guard lock(releases_mutex_);
    releases_.push_back(std::move(ticket));
    if (std::exchange(releases_posted_, true)) return;  // a timer will take it
  }
  asio::post(io_, [this] {
    release_timer_.expires_after(FleetLimits::release_within);
    release_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      {
        const std::lock_guard lock(releases_mutex_);
        releases_posted_ = false;
      }
      take_releases();
      limits_.soon();
    });
  });
}

void Fleet::take_releases() {
  std::vector<std::shared_ptr<FleetLimits::Ticket>> taken;
  {
    const std::lock_guard lock(releases_mutex_);
    taken.swap(releases_);
  }
  for (const auto& t : taken) limits_.release(*t);
}

}  // namespace geomx::state
