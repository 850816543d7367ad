#include "state/fleet_limits.hpp"

#include <algorithm>
#include <random>

#include <fmt/format.h>
#include <boost/asio/post.hpp>

namespace geomx::state {

namespace {

// One call for all the questions of a turn of the loop. KEYS[1]: the
// processes alive (field: process, value: until, unix seconds); then the
// keys given back, the rate keys and the hold keys. ARGV[1]: this process,
// ARGV[2]: the hold keys' TTL (s), ARGV[3], [4], [5]: how many keys of each
// kind; then per key given back: how many of its connections closed (a
// count at 0 is deleted, and the key with it); per rate key: microseconds
// per connection (the emission interval T) and the burst; per hold key: the
// most at once, and the rate it goes with (its place among this call's
// rates, from 1; 0: none). Rates are GCRA: the theoretical arrival time
// moves T on per connection, which is allowed while it is at most
// T * burst ahead of now. A hold counts the open connections of the
// processes alive (a dead one's field is deleted); under the most, this
// one is counted. Returns, for each rate key and then each hold key in
// order (the same key twice sees its first answer counted): 1 allowed (and
// counted), 0 over; 2 for a hold whose rate is over (not counted: the
// connection is refused anyway).
constexpr const char* limits_lua = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1])
local now_us = now * 1000000 + tonumber(t[2])
local me, ttl = ARGV[1], tonumber(ARGV[2])
local k, a, out = 2, 6, {}
for _ = 1, tonumber(ARGV[3]) do
  if redis.call('HINCRBY', KEYS[k], me, -tonumber(ARGV[a])) <= 0 then
    redis.call('HDEL', KEYS[k], me)
  end
  k, a = k + 1, a + 1
end
for _ = 1, tonumber(ARGV[4]) do
  local key, interval = KEYS[k], tonumber(ARGV[a])
  local tat = tonumber(redis.call('GET', key)) or now_us
  if tat < now_us then tat = now_us end
  local next_tat = tat + interval
  if next_tat - now_us > interval * tonumber(ARGV[a + 1]) then
    out[#out + 1] = 0
  else
    redis.call('SET', key, string.format('%.0f', next_tat), 'PX', math.max(1, math.ceil((next_tat - now_us) / 1000)))
    out[#out + 1] = 1
  end
  k, a = k + 1, a + 2
end
local live = {}
for _ = 1, tonumber(ARGV[5]) do
  local key, pair = KEYS[k], tonumber(ARGV[a + 1])
  if pair > 0 and out[pair] == 0 then
    out[#out + 1] = 2
  else
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
    if total >= tonumber(ARGV[a]) then
      out[#out + 1] = 0
    else
      redis.call('HINCRBY', key, me, 1)
      redis.call('EXPIRE', key, ttl)
      out[#out + 1] = 1
    end
  end
  k, a = k + 1, a + 2
end
return out
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
      limits_script_{limits_lua, {}},
      heartbeat_script_{heartbeat_lua, {}} {}

void FleetLimits::connected() {
  for (Script* s : {&limits_script_, &heartbeat_script_})
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

void FleetLimits::soon() {
  if (std::exchange(flush_posted_, true)) return;  // the ones after the first join it
  asio::post(redis_.io(), [this, alive = std::weak_ptr<int>(alive_)] {
    if (alive.lock()) flush();
  });
}

void FleetLimits::rate(const std::string& limit, const std::string& client, std::uint32_t rate,
                       std::uint64_t per_us, std::uint32_t burst,
                       std::function<void(std::optional<bool>)> done) {
  ++counts_.asked;
  const auto interval = std::max<std::uint64_t>(1, per_us / std::max<std::uint32_t>(1, rate));
  rates_.push_back({prefix_ + "rate:" + limit + ":" + client, interval,
                    std::max<std::uint32_t>(1, burst), std::move(done), nullptr});
  soon();
}

std::shared_ptr<FleetLimits::Ticket> FleetLimits::ticket(const std::string& limit,
                                                         const std::string& client) const {
  auto t = std::make_shared<Ticket>();
  t->key = prefix_ + "conc:" + limit + ":" + client;
  return t;
}

void FleetLimits::hold(std::shared_ptr<Ticket> ticket, std::uint32_t max,
                       std::function<void(std::optional<bool>)> done, bool after_rate) {
  if (ticket->released) return done(std::nullopt);  // its session is gone already
  ++counts_.held_asked;
  ++held_[ticket->key].pending;
  auto key = ticket->key;
  const std::uint64_t pair = after_rate ? rates_.size() : 0;
  holds_.push_back({std::move(key), max, pair, std::move(done), std::move(ticket)});
  soon();
}

void FleetLimits::flush() {
  flush_posted_ = false;
  auto releases = std::exchange(releasing_, {});
  auto rates = std::exchange(rates_, {});
  auto holds = std::exchange(holds_, {});
  auto release = releases.begin();
  std::size_t rate = 0, hold = 0;
  // Up to max_batch keys a call, releases first (a place given back in this
  // turn is free for one asked in it).
  while (release != releases.end() || rate < rates.size() || hold < holds.size()) {
    Turn turn;
    std::vector<std::string> keys{prefix_ + "conc:alive"};
    // The process, the TTL, then how many of each kind (set below).
    std::vector<std::string> args{me_, std::to_string(key_ttl.count()), "", "", ""};
    for (; release != releases.end() && keys.size() <= max_batch; ++release) {
      keys.push_back(release->first);
      args.push_back(std::to_string(release->second));
      turn.released.emplace_back(release->first, release->second);
    }
    const std::size_t rates_from = rate;  // this call's first
    for (; rate < rates.size() && keys.size() <= max_batch; ++rate) {
      keys.push_back(rates[rate].key);
      args.push_back(std::to_string(rates[rate].a));
      args.push_back(std::to_string(rates[rate].b));
      turn.rates.push_back(std::move(rates[rate]));
    }
    for (; hold < holds.size() && keys.size() <= max_batch; ++hold) {
      keys.push_back(holds[hold].key);
      args.push_back(std::to_string(holds[hold].a));
      // Its rate's place in this call (0: none, or in another call).
      const auto pair = holds[hold].b;
      args.push_back(pair > rates_from && pair <= rate ? std::to_string(pair - rates_from) : "0");
      turn.holds.push_back(std::move(holds[hold]));
    }
    args[2] = std::to_string(turn.released.size());
    args[3] = std::to_string(turn.rates.size());
    args[4] = std::to_string(turn.holds.size());
    call(limits_script_, std::move(keys), std::move(args),
         [this, turn = std::make_shared<Turn>(std::move(turn))](std::optional<RedisReply> r) {
           answered(*turn, r);
         });
  }
}

void FleetLimits::answered(const Turn& turn, const std::optional<RedisReply>& r) {
  const bool whole = r && r->type == RedisReply::Type::array &&
                     r->elements.size() == turn.rates.size() + turn.holds.size();
  const auto answer = [&](std::size_t i) -> std::optional<long long> {
    if (whole && r->elements[i].type == RedisReply::Type::integer) return r->elements[i].integer;
    return std::nullopt;
  };
  for (const auto& [key, n] : turn.released) {
    const auto it = held_.find(key);
    if (it == held_.end()) continue;  // not erased while a release is out (forget_if_idle)
    auto& h = it->second;
    h.releasing -= std::min(h.releasing, n);
    if (!whole) h.doubt = true;  // the next heartbeat writes what is so
    forget_if_idle(key);
  }
  for (std::size_t i = 0; i < turn.rates.size(); ++i) {
    const auto n = answer(i);
    const auto allowed = n ? std::optional<bool>(*n == 1) : std::nullopt;
    if (allowed) {
      ++counts_.answered;
      counts_.refused += !*allowed;
    }
    turn.rates[i].done(allowed);
  }
  for (std::size_t i = 0; i < turn.holds.size(); ++i) {
    const auto& q = turn.holds[i];
    const auto n = answer(turn.rates.size() + i);
    const auto allowed = n ? std::optional<bool>(*n == 1) : std::nullopt;
    auto& h = held_[q.key];
    --h.pending;
    if (!allowed) {
      h.doubt = true;  // it may have been counted: the next heartbeat says what is so
    } else if (*n == 2) {
      // Its rate is over: not counted, and not a refusal of connections at once.
    } else {
      ++counts_.held_answered;
      counts_.held_refused += !*allowed;
      if (*allowed) {
        ++h.granted;
        q.ticket->granted = true;
      }
    }
    forget_if_idle(q.key);
    q.done(allowed);
    if (q.ticket->granted && q.ticket->released) {  // its session ended meanwhile
      q.ticket->released = false;
      release(*q.ticket);
      soon();
    }
  }
}

void FleetLimits::release(Ticket& ticket) {
  if (std::exchange(ticket.released, true) || !ticket.granted) return;
  ticket.granted = false;
  auto& h = held_[ticket.key];
  if (h.granted > 0) --h.granted;
  ++h.releasing;             // kept until the release is answered: a failure must find it
  ++releasing_[ticket.key];  // sent with the next call (soon(), or a question's)
}

void FleetLimits::forget_if_idle(const std::string& key) {
  const auto it = held_.find(key);
  if (it == held_.end()) return;
  const auto& h = it->second;
  if (h.granted == 0 && h.pending == 0 && h.releasing == 0 && !h.doubt) held_.erase(it);
}

void FleetLimits::heartbeat() {
  // The questions and releases first: what is written below counts them.
  flush();
  std::vector<std::string> keys, args;
  auto start = [&] {
    keys = {prefix_ + "conc:alive"};
    args = {me_, std::to_string(alive_for.count()), std::to_string(key_ttl.count())};
  };
  // Keys written (true) or only refreshed (false: a question of it is out).
  std::vector<std::pair<std::string, bool>> batch;
  bool sent = false;
  auto send = [&] {
    ++counts_.heartbeats;
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
