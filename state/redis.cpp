#include "state/redis.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>
#include <boost/asio/post.hpp>

namespace geomx::state {

std::string RedisOptions::address() const {
  if (host.empty()) return "unix:" + unix_path;
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

namespace {

RedisReply copy(const redisReply& r) {
  RedisReply out;
  switch (r.type) {
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::status;
      break;
    case REDIS_REPLY_ERROR:
      out.type = RedisReply::Type::error;
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::integer;
      out.integer = r.integer;
      return out;
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::string;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::array;
      for (std::size_t i = 0; i < r.elements; ++i) out.elements.push_back(copy(*r.element[i]));
      return out;
    default:
      return out;  // nil
  }
  out.str.assign(r.str, r.len);
  return out;
}

RedisConnection* self_of(const redisAsyncContext* ac) {
  return static_cast<RedisConnection*>(ac->data);
}

// privdata carries a command's id; 0 is the subscription's.
void* id_data(std::uint64_t id) {
  return reinterpret_cast<void*>(static_cast<std::uintptr_t>(id));
}

}  // namespace

RedisConnection::RedisConnection(asio::io_context& io, RedisOptions options)
    : io_(io),
      options_(std::move(options)),
      retry_(io),
      connect_deadline_(io),
      ping_(io),
      expiry_(io) {}

RedisConnection::~RedisConnection() {
  stop();
}

void RedisConnection::subscribe(
    std::vector<std::string> channels,
    std::function<void(const std::string& channel, std::string payload)> on_message) {
  channels_ = std::move(channels);
  message_ = std::move(on_message);
}

void RedisConnection::start() {
  stopped_ = false;
  connect();
}

void RedisConnection::stop() {
  stopped_ = true;
  locating_ = false;
  ++locate_round_;
  retry_.cancel();
  ping_.cancel();
  connect_deadline_.cancel();
  // What is queued goes out first (one write, not waited for: the free
  // below would drop it).
  if (ac_ && (ac_->c.flags & REDIS_CONNECTED)) redisAsyncHandleWrite(ac_);
  if (ac_) drop("stopped");
  // Commands queued while down were never sent.
  for (auto& [id, p] : std::exchange(pending_, {})) p.done(std::nullopt);
}

void RedisConnection::connect() {
  if (stopped_ || ac_ || locating_) return;
  if (!locate) return connect_to();
  locating_ = true;
  locate([this, round = locate_round_](Where where) {
    if (round != locate_round_ || stopped_) return;
    locating_ = false;
    if (!where) return lost("no sentinel answered where the master is");
    options_.host = where->first;
    options_.port = where->second;
    connect_to();
  });
}

void RedisConnection::connect_to() {
  ++generation_;
  refused_ = false;
  ac_ = options_.host.empty() ? redisAsyncConnectUnix(options_.unix_path.c_str())
                              : redisAsyncConnect(options_.host.c_str(), options_.port);
  if (!ac_ || ac_->err) {
    const std::string why = ac_ ? ac_->errstr : "out of memory";
    if (ac_) redisAsyncFree(std::exchange(ac_, nullptr));
    return lost(why);
  }
  ac_->data = this;
  // A peer gone without a word is noticed (the subscriber has no PING).
  // TCP only: on a unix socket hiredis's TCP_KEEPIDLE fails (EOPNOTSUPP)
  // and leaves the context in error, so `unix:` never came up.
  if (!options_.host.empty()) redisEnableKeepAlive(&ac_->c);
  attach();
  redisAsyncSetConnectCallback(ac_, &RedisConnection::on_connect);
  redisAsyncSetDisconnectCallback(ac_, &RedisConnection::on_disconnect);
  connect_deadline_.expires_after(options_.timeout);
  connect_deadline_.async_wait([this, g = generation_](boost::system::error_code ec) {
    if (!ec && g == generation_ && ac_ && !up_)
      drop(fmt::format("no answer within {} ms", options_.timeout.count()));
  });
  // hiredis completes a connect on the first write: the handshake is it.
  handshake();
}

// AUTH, SELECT, then PING or SUBSCRIBE: the connection is up when the last
// is answered. Sent at once (pipelined), before anything else.
void RedisConnection::handshake() {
  auto refused = [this, g = generation_](const char* what) {
    return [this, g, what](std::optional<RedisReply> r) {
      if (g != generation_ || !r || !r->is_error()) return;
      refused_ = true;  // the PING or SUBSCRIBE after it does not make it up
      // Dropped from outside hiredis's callback.
      asio::post(io_, [this, g, why = fmt::format("{}: {}", what, r->str)] {
        if (g == generation_ && ac_) drop(why);
      });
    };
  };
  if (!options_.password.empty()) {
    std::vector<std::string> auth{"AUTH"};
    if (!options_.user.empty()) auth.push_back(options_.user);
    auth.push_back(options_.password);
    send(std::move(auth), refused("AUTH"));
  }
  if (options_.db != 0) send({"SELECT", std::to_string(options_.db)}, refused("SELECT"));
  if (locate)  // what a sentinel named may have been demoted since
    send({"ROLE"}, [this, g = generation_](std::optional<RedisReply> r) {
      if (g != generation_ || !r) return;
      if (r->type == RedisReply::Type::array && !r->elements.empty() &&
          r->elements[0].str == "master")
        return;
      refused_ = true;
      asio::post(io_, [this, g] {
        if (g == generation_ && ac_) drop("ROLE: not the master (a replica, or demoted)");
      });
    });
  if (channels_.empty()) {
    send({"PING"}, [this, g = generation_](std::optional<RedisReply> r) {
      if (g == generation_ && r && !r->is_error() && !refused_) {
        set_state(true, "");
        heartbeat();
      }
    });
    return;
  }
  std::vector<const char*> argv{"SUBSCRIBE"};
  std::vector<std::size_t> lengths{9};
  for (const auto& c : channels_) {
    argv.push_back(c.c_str());
    lengths.push_back(c.size());
  }
  redisAsyncCommandArgv(ac_, &RedisConnection::on_message, id_data(0),
                        static_cast<int>(argv.size()), argv.data(), lengths.data());
}

void RedisConnection::command(std::vector<std::string> argv, Done done) {
  if (!up_ || !ac_) return done(std::nullopt);
  send(std::move(argv), std::move(done));
}

void RedisConnection::send(std::vector<std::string> argv, Done done) {
  std::vector<const char*> args;
  std::vector<std::size_t> lengths;
  for (const auto& a : argv) {
    args.push_back(a.data());
    lengths.push_back(a.size());
  }
  const std::uint64_t id = next_id_++;
  if (redisAsyncCommandArgv(ac_, &RedisConnection::on_reply, id_data(id),
                            static_cast<int>(args.size()), args.data(), lengths.data()) != REDIS_OK)
    return done(std::nullopt);
  pending_.emplace(id,
                   Pending{std::move(done), std::chrono::steady_clock::now() + options_.timeout});
  if (!expiry_armed_) arm_expiry();
}

// One timer for every command: ids grow with the time they were sent, and
// all wait the same timeout, so the oldest one is the next to expire.
void RedisConnection::arm_expiry() {
  if (pending_.empty()) return;
  expiry_armed_ = true;
  expiry_.expires_at(pending_.begin()->second.deadline);
  expiry_.async_wait([this](boost::system::error_code ec) {
    if (ec == asio::error::operation_aborted) return;  // this is gone
    expiry_armed_ = false;
    const auto now = std::chrono::steady_clock::now();
    while (!pending_.empty() && pending_.begin()->second.deadline <= now)
      finish(pending_.begin()->first, std::nullopt);
    arm_expiry();
  });
}

void RedisConnection::finish(std::uint64_t id, std::optional<RedisReply> reply) {
  const auto it = pending_.find(id);
  if (it == pending_.end()) return;  // answered late, after its deadline
  auto done = std::move(it->second.done);
  pending_.erase(it);
  done(std::move(reply));
}

void RedisConnection::heartbeat() {
  ping_.expires_after(options_.ping_every);
  ping_.async_wait([this, g = generation_](boost::system::error_code ec) {
    if (ec || g != generation_ || !ac_) return;
    send({"PING"}, [this, g](std::optional<RedisReply> r) {
      if (g != generation_ || !ac_) return;
      if (r && !r->is_error()) return heartbeat();
      asio::post(io_, [this, g, t = options_.timeout.count()] {
        if (g == generation_ && ac_) drop(fmt::format("no answer to PING within {} ms", t));
      });
    });
  });
}

void RedisConnection::on_connect(const redisAsyncContext* ac, int status) {
  auto* self = self_of(ac);
  if (status == REDIS_OK || self->ac_ != ac) return;  // up once the handshake is answered
  // hiredis frees the context after this returns.
  self->lost(ac->errstr ? ac->errstr : "connect failed");
}

void RedisConnection::on_disconnect(const redisAsyncContext* ac, int status) {
  auto* self = self_of(ac);
  if (self->ac_ != ac) return;  // dropped by us: drop() has said why
  self->lost(status == REDIS_OK ? "closed" : (ac->errstr ? ac->errstr : "connection lost"));
}

void RedisConnection::on_reply(redisAsyncContext* ac, void* reply, void* privdata) {
  auto* self = self_of(ac);
  const auto id = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(privdata));
  // A master demoted under us (a Sentinel failover with the old one alive):
  // ask the sentinels again (a script's write says it inside its error).
  if (self->locate && reply && static_cast<redisReply*>(reply)->type == REDIS_REPLY_ERROR &&
      std::strstr(static_cast<redisReply*>(reply)->str, "READONLY") != nullptr)
    asio::post(self->io_, [self, g = self->generation_] {
      if (g == self->generation_ && self->ac_) self->drop("READONLY: the master became a replica");
    });
  self->finish(id, reply ? std::optional(copy(*static_cast<redisReply*>(reply))) : std::nullopt);
}

// A subscriber's replies: ["subscribe", channel, n] for each channel, then
// ["message", channel, payload].
void RedisConnection::on_message(redisAsyncContext* ac, void* reply, void*) {
  auto* self = self_of(ac);
  const auto* r = static_cast<const redisReply*>(reply);
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3) return;
  const std::string kind(r->element[0]->str ? r->element[0]->str : "", r->element[0]->len);
  const std::string channel(r->element[1]->str ? r->element[1]->str : "", r->element[1]->len);
  if (kind == "subscribe") {
    if (r->element[2]->integer == static_cast<long long>(self->channels_.size()) && !self->refused_)
      self->set_state(true, "");
    return;
  }
  if (kind == "message" && self->message_)
    self->message_(channel, std::string(r->element[2]->str, r->element[2]->len));
}

void RedisConnection::reconnect(const std::string& why) {
  if (ac_) drop(why);
}

void RedisConnection::drop(const std::string& why) {
  last_why_ = why;
  auto* ac = std::exchange(ac_, nullptr);
  lost(why);  // before the free: its callbacks see a connection already gone
  if (ac) redisAsyncFree(ac);
}

void RedisConnection::lost(const std::string& why) {
  ac_ = nullptr;
  ++generation_;
  connect_deadline_.cancel();
  ping_.cancel();
  set_state(false, last_why_.empty() ? why : last_why_);
  last_why_.clear();
  schedule_reconnect();
}

void RedisConnection::set_state(bool up, const std::string& why) {
  if (up) backoff_ = std::chrono::milliseconds(100);
  const bool changed = up != up_ || !told_;
  up_ = up;
  if (!changed || (!up && stopped_)) return;
  told_ = true;
  if (on_state) on_state(up, why);
}

void RedisConnection::schedule_reconnect() {
  if (stopped_) return;
  retry_.expires_after(backoff_);
  backoff_ = std::min(backoff_ * 2, std::chrono::milliseconds(1000));
  retry_.async_wait([this](boost::system::error_code ec) {
    if (!ec) connect();
  });
}

// hiredis's event hooks: it asks to watch reading and writing, and to stop;
// each is one async_wait on the socket at a time, run again while wanted.
void RedisConnection::attach() {
  socket_.emplace(io_, ac_->c.fd);
  reading_ = writing_ = read_armed_ = write_armed_ = false;
  ac_->ev.data = this;
  ac_->ev.addRead = [](void* p) {
    auto* self = static_cast<RedisConnection*>(p);
    self->reading_ = true;
    self->watch(false);
  };
  ac_->ev.delRead = [](void* p) { static_cast<RedisConnection*>(p)->reading_ = false; };
  ac_->ev.addWrite = [](void* p) {
    auto* self = static_cast<RedisConnection*>(p);
    self->writing_ = true;
    self->watch(true);
  };
  ac_->ev.delWrite = [](void* p) { static_cast<RedisConnection*>(p)->writing_ = false; };
  ac_->ev.cleanup = [](void* p) {
    // hiredis closes the descriptor itself: let go of it, cancelling the waits.
    auto* self = static_cast<RedisConnection*>(p);
    self->reading_ = self->writing_ = false;
    if (self->socket_) {
      (void)self->socket_->release();
      self->socket_.reset();
    }
  };
}

// One wait at a time per direction, made again while hiredis wants it.
void RedisConnection::watch(bool write) {
  bool& armed = write ? write_armed_ : read_armed_;
  if (armed || !socket_) return;
  armed = true;
  const auto what =
      write ? asio::posix::descriptor_base::wait_write : asio::posix::descriptor_base::wait_read;
  socket_->async_wait(what, [this, write, g = generation_](boost::system::error_code ec) {
    // Aborted: released by cleanup, or this is gone.
    if (ec == asio::error::operation_aborted || g != generation_) return;
    (write ? write_armed_ : read_armed_) = false;
    const bool& wanted = write ? writing_ : reading_;
    if (ec || !ac_ || !wanted) return;
    if (write)
      redisAsyncHandleWrite(ac_);
    else
      redisAsyncHandleRead(ac_);
    if (g == generation_ && wanted) watch(write);
  });
}

}  // namespace geomx::state
