#include "state/fleet_limits.hpp"

#include <algorithm>
#include <random>

#include <fmt/format.h>
#include <boost/asio/post.hpp>

namespace geomx::state {

namespace {

// KEYS[i]: a client's key; ARGV[2i-1]: microseconds per connection (the
// emission interval T), ARGV[2i]: the burst. GCRA: the theoretical arrival
// time moves T on per connection; a connection is allowed while it is at
// most T * burst ahead of now. For each key in order (the same key twice
// sees its first answer counted): 1 allowed (and counted), 0 over.
constexpr const char* rate_lua = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local next_tat = tat + interval
  if next_tat - now > interval * tonumber(ARGV[2 * i]) then
    out[i] = 0
  else
    redis.call('SET', key, string.format('%.0f', next_tat), 'PX', math.max(1, math.ceil((next_tat - now) / 1000)))
    out[i] = 1
  end
end
return out
)lua";

// KEYS[1]: the processes alive (field: process, value: until, unix
// seconds); KEYS[i]: a client's connections by process. ARGV[1]: this
// process, ARGV[2]: the key's TTL (s), ARGV[i+1]: the most at once. For
// each key in order: the open connections of the processes alive (a dead
// one's field is deleted); under the most: 1, and this one counted; else 0.
constexpr const char* hold_lua = R"lua(
local now = tonumber(redis.call('TIME')[1])
local me, ttl = ARGV[1], tonumber(ARGV[2])
local live = {}
local out = {}
for i = 2, #KEYS do
  local key = KEYS[i]
  local fields = redis.call('HGETALL', key)
  local total = 0
  for j = 1, #fields, 2 do
    local who = fields[j]
    local ok = live[who]
    if ok == nil then
      ok = who == me or (tonumber(redis.call('HGET', KEYS[1], who)) or 0) >= now
      live[who] = ok
    end
    if ok then total = total + tonumber(fields[j + 1]) else redis.call('HDEL', key, who) end
  end
  if total >= tonumber(ARGV[i + 1]) then
    out[i - 1] = 0
  else
    redis.call('HINCRBY', key, me, 1)
    redis.call('EXPIRE', key, ttl)
    out[i - 1] = 1
  end
end
return out
)lua";

// KEYS[i]: a client's key; ARGV[1]: this process, ARGV[i+1]: how many of
// its connections closed. A count at 0 is deleted (and the key with it).
constexpr const char* release_lua = R"lua(
for i, key in ipairs(KEYS) do
  if redis.call('HINCRBY', key, ARGV[1], -tonumber(ARGV[i + 1])) <= 0 then
    redis.call('HDEL', key, ARGV[1])
  end
end
return #KEYS
)lua";

// KEYS[1]: the processes alive; KEYS[i]: a client's key. ARGV[1]: this
// process, ARGV[2]: how long its word holds (s), ARGV[3]: the keys' TTL
// (s), ARGV[i+2]: its count of the key (0: deleted; -1: a question of it
// is out, so only the TTL is refreshed). Processes not heard of for an
// hour are forgotten.
constexpr const char* heartbeat_lua = R"lua(
local now = tonumber(redis.call('TIME')[1])
redis.call('HSET', KEYS[1], ARGV[1], now + tonumber(ARGV[2]))
local all = redis.call('HGETALL', KEYS[1])
for j = 1, #all, 2 do
  if (tonumber(all[j + 1]) or 0) < now - 3600 then redis.call('HDEL', KEYS[1], all[j]) end
end
for i = 2, #KEYS do
  local n = tonumber(ARGV[i + 2])
  if n < 0 then
    redis.call('EXPIRE', KEYS[i], tonumber(ARGV[3]))
  elseif n > 0 then
    redis.call('HSET', KEYS[i], ARGV[1], n)
    redis.call('EXPIRE', KEYS[i], tonumber(ARGV[3]))
  else
    redis.call('HDEL', KEYS[i], ARGV[1])
  end
end
return #KEYS
)lua";

// A word for this process, so that a node restarted under the same name
// does not take over the counts of the one that died.
std::string random_word() {
  std::random_device r;
  return fmt::format("{:08x}", r());
}

}  // namespace

FleetLimits::FleetLimits(RedisConnection& commands, std::string key_prefix, std::string node)
    : redis_(commands),
      prefix_(std::move(key_prefix)),
      me_(node + "/" + random_word()),
      rate_script_{rate_lua, {}},
      hold_script_{hold_lua, {}},
      release_script_{release_lua, {}},
      heartbeat_script_{heartbeat_lua, {}} {}

void FleetLimits::connected() {
  for (Script* s : {&rate_script_, &hold_script_, &release_script_, &heartbeat_script_})
    redis_.command({"SCRIPT", "LOAD", s->text}, [s](std::optional<RedisReply> r) {
      if (r && r->type == RedisReply::Type::string) s->sha = r->str;
    });
  heartbeat();
}

void FleetLimits::call(Script& script, std::vector<std::string> keys, std::vector<std::string> args,
                       RedisConnection::Done done) {
  std::vector<std::string> argv;
  argv.reserve(3 + keys.size() + args.size());
  argv.push_back(script.sha.empty() ? "EVAL" : "EVALSHA");
  argv.push_back(script.sha.empty() ? std::string(script.text) : script.sha);
  argv.push_back(std::to_string(keys.size()));
  std::move(keys.begin(), keys.end(), std::back_inserter(argv));
  std::move(args.begin(), args.end(), std::back_inserter(argv));
  ++counts_.calls;
  redis_.command(
      std::move(argv), [this, &script, done = std::move(done)](std::optional<RedisReply> r) {
        // NOSCRIPT (an operator flushed the scripts): EVAL until the next load.
        if (r && r->is_error() && r->str.starts_with("NOSCRIPT")) {
          script.sha.clear();
          redis_.command({"SCRIPT", "LOAD", script.text}, [&script](std::optional<RedisReply> l) {
            if (l && l->type == RedisReply::Type::string) script.sha = l->str;
          });
        }
        done(std::move(r));
      });
}

void FleetLimits::ask(std::vector<Question>& queue, Question q) {
  queue.push_back(std::move(q));
  if (queue.size() == 1) {  // the first of this turn: the ones after it join it
    const bool holds = &queue == &holds_;
    asio::post(redis_.io(), [this, holds, alive = std::weak_ptr<int>(alive_)] {
      if (!alive.lock()) return;
      flush(holds ? holds_ : rates_, holds);
    });
  }
}

void FleetLimits::rate(const std::string& limit, const std::string& client, std::uint32_t rate,
                       std::uint64_t per_us, std::uint32_t burst,
                       std::function<void(std::optional<bool>)> done) {
  ++counts_.asked;
  const auto interval = std::max<std::uint64_t>(1, per_us / std::max<std::uint32_t>(1, rate));
  ask(rates_, {prefix_ + "rate:" + limit + ":" + client, interval,
               std::max<std::uint32_t>(1, burst), std::move(done), nullptr});
}

std::shared_ptr<FleetLimits::Ticket> FleetLimits::ticket(const std::string& limit,
                                                         const std::string& client) const {
  auto t = std::make_shared<Ticket>();
  t->key = prefix_ + "conc:" + limit + ":" + client;
  return t;
}

void FleetLimits::hold(std::shared_ptr<Ticket> ticket, std::uint32_t max,
                       std::function<void(std::optional<bool>)> done) {
  if (ticket->released) return done(std::nullopt);  // its session is gone already
  ++counts_.held_asked;
  ++held_[ticket->key].pending;
  auto key = ticket->key;
  ask(holds_, {std::move(key), max, 0, std::move(done), std::move(ticket)});
}

void FleetLimits::flush(std::vector<Question>& queue, bool holds) {
  auto questions = std::exchange(queue, {});
  for (std::size_t first = 0; first < questions.size(); first += max_batch) {
    const auto n = std::min(max_batch, questions.size() - first);
    // A hold's script also reads the processes alive, and is told who asks.
    std::vector<std::string> keys, args;
    if (holds) {
      keys = {prefix_ + "conc:alive"};
      args = {me_, std::to_string(key_ttl.count())};
    }
    for (std::size_t i = first; i < first + n; ++i) {
      keys.push_back(questions[i].key);
      args.push_back(std::to_string(questions[i].a));
      if (!holds) args.push_back(std::to_string(questions[i].b));
    }
    auto batch = std::make_shared<std::vector<Question>>(
        std::make_move_iterator(questions.begin() + first),
        std::make_move_iterator(questions.begin() + first + n));
    call(holds ? hold_script_ : rate_script_, std::move(keys), std::move(args),
         [this, batch, holds](std::optional<RedisReply> r) { answered(*batch, r, holds); });
  }
}

void FleetLimits::answered(const std::vector<Question>& asked, const std::optional<RedisReply>& r,
                           bool hold) {
  const bool whole = r && r->type == RedisReply::Type::array && r->elements.size() == asked.size();
  for (std::size_t i = 0; i < asked.size(); ++i) {
    const auto& q = asked[i];
    std::optional<bool> answer;
    if (whole && r->elements[i].type == RedisReply::Type::integer)
      answer = r->elements[i].integer == 1;
    if (!hold) {
      if (answer) {
        ++counts_.answered;
        counts_.refused += !*answer;
      }
      q.done(answer);
      continue;
    }
    auto& h = held_[q.key];
    --h.pending;
    if (!answer) {
      h.doubt = true;  // it may have been counted: the next heartbeat says what is so
    } else {
      ++counts_.held_answered;
      counts_.held_refused += !*answer;
      if (*answer) {
        ++h.granted;
        q.ticket->granted = true;
      }
    }
    forget_if_idle(q.key);
    q.done(answer);
    if (q.ticket->granted && q.ticket->released) {  // its session ended meanwhile
      q.ticket->released = false;
      release(*q.ticket);
    }
  }
}

void FleetLimits::release(Ticket& ticket) {
  if (std::exchange(ticket.released, true) || !ticket.granted) return;
  ticket.granted = false;
  auto& h = held_[ticket.key];
  if (h.granted > 0) --h.granted;
  ++h.releasing;  // kept until the release is answered: a failure must find it
  if (releasing_[ticket.key]++ == 0 && releasing_.size() == 1)
    asio::post(redis_.io(), [this, alive = std::weak_ptr<int>(alive_)] {
      if (alive.lock()) flush_releases();
    });
}

void FleetLimits::flush_releases() {
  std::vector<std::string> keys, args{me_};
  std::vector<std::pair<std::string, std::uint32_t>> batch;
  auto send = [&] {
    call(release_script_, std::exchange(keys, {}), std::exchange(args, {me_}),
         [this, batch = std::exchange(batch, {})](std::optional<RedisReply> r) {
           settled(batch, r);
         });
  };
  for (auto& [key, n] : std::exchange(releasing_, {})) {
    keys.push_back(key);
    args.push_back(std::to_string(n));
    batch.emplace_back(key, n);
    if (keys.size() == max_batch) send();
  }
  if (!keys.empty()) send();
}

void FleetLimits::settled(const std::vector<std::pair<std::string, std::uint32_t>>& released,
                          const std::optional<RedisReply>& r) {
  const bool ok = r && r->type == RedisReply::Type::integer;
  for (const auto& [key, n] : released) {
    const auto it = held_.find(key);
    if (it == held_.end()) continue;  // not erased while a release is out (forget_if_idle)
    auto& h = it->second;
    h.releasing -= std::min(h.releasing, n);
    if (!ok) h.doubt = true;  // the next heartbeat writes what is so
    forget_if_idle(key);
  }
}

void FleetLimits::forget_if_idle(const std::string& key) {
  const auto it = held_.find(key);
  if (it == held_.end()) return;
  const auto& h = it->second;
  if (h.granted == 0 && h.pending == 0 && h.releasing == 0 && !h.doubt) held_.erase(it);
}

void FleetLimits::heartbeat() {
  // The releases first: what is written below already counts them.
  flush_releases();
  std::vector<std::string> keys, args;
  auto start = [&] {
    keys = {prefix_ + "conc:alive"};
    args = {me_, std::to_string(alive_for.count()), std::to_string(key_ttl.count())};
  };
  // Keys written (true) or only refreshed (false: a question of it is out).
  std::vector<std::pair<std::string, bool>> batch;
  bool sent = false;
  auto send = [&] {
    call(heartbeat_script_, std::move(keys), std::move(args),
         [this, batch = std::exchange(batch, {})](std::optional<RedisReply> r) {
           if (!r || r->type != RedisReply::Type::integer) return;
           for (const auto& [key, written] : batch) {
             const auto it = held_.find(key);
             if (it == held_.end() || !written) continue;
             // Written as this process has it: what was in doubt before is so
             // no more (commands are answered in order).
             it->second.doubt = false;
             forget_if_idle(key);
           }
         });
    sent = true;
    start();
  };
  start();
  for (auto& [key, h] : held_) {
    // A key with a question out: its answer says what is so; refreshed only.
    keys.push_back(key);
    args.push_back(h.pending != 0 ? "-1" : std::to_string(h.granted));
    batch.emplace_back(key, h.pending == 0);
    if (keys.size() == max_batch + 1) send();
  }
  // Always once: the word that this process is alive.
  if (keys.size() > 1 || !sent) send();
}

}  // namespace geomx::state
