#include "state/fleet_limits.hpp"

#include <algorithm>

#include <boost/asio/post.hpp>

namespace geomx::state {

namespace {

// KEYS[i]: a client's key; ARGV[2i-1]: microseconds per connection (the
// emission interval T), ARGV[2i]: the burst. GCRA: the theoretical arrival
// time moves T on per connection; a connection is allowed while it is at
// most T * burst ahead of now. For each key in order (the same key twice
// sees its first answer counted): 1 allowed (and counted), 0 over.
constexpr const char* rate_script = R"lua(
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

}  // namespace

FleetLimits::FleetLimits(RedisConnection& commands, std::string key_prefix)
    : redis_(commands), prefix_(std::move(key_prefix)) {}

void FleetLimits::connected() {
  redis_.command({"SCRIPT", "LOAD", rate_script}, [this](std::optional<RedisReply> r) {
    if (r && r->type == RedisReply::Type::string) sha_ = r->str;
  });
}

void FleetLimits::rate(const std::string& limit, const std::string& client, std::uint32_t rate,
                       std::uint64_t per_us, std::uint32_t burst,
                       std::function<void(std::optional<bool>)> done) {
  ++counts_.asked;
  const auto interval = std::max<std::uint64_t>(1, per_us / std::max<std::uint32_t>(1, rate));
  waiting_.push_back({prefix_ + "rate:" + limit + ":" + client, interval,
                      std::max<std::uint32_t>(1, burst), std::move(done)});
  if (waiting_.size() == 1)  // the first of this turn: the ones after it join it
    asio::post(redis_.io(), [this, alive = std::weak_ptr<int>(alive_)] {
      if (alive.lock()) flush();
    });
}

void FleetLimits::flush() {
  auto questions = std::move(waiting_);
  waiting_.clear();
  for (std::size_t first = 0; first < questions.size(); first += max_batch) {
    const auto n = std::min(max_batch, questions.size() - first);
    std::vector<std::string> argv;
    argv.reserve(3 + 3 * n);
    if (sha_.empty())
      argv = {"EVAL", rate_script};
    else
      argv = {"EVALSHA", sha_};
    argv.push_back(std::to_string(n));
    for (std::size_t i = first; i < first + n; ++i) argv.push_back(questions[i].key);
    for (std::size_t i = first; i < first + n; ++i) {
      argv.push_back(std::to_string(questions[i].interval));
      argv.push_back(std::to_string(questions[i].burst));
    }
    std::vector<std::function<void(std::optional<bool>)>> done;
    done.reserve(n);
    for (std::size_t i = first; i < first + n; ++i) done.push_back(std::move(questions[i].done));
    ++counts_.calls;
    redis_.command(std::move(argv), [this, done = std::move(done)](std::optional<RedisReply> r) {
      if (!r || r->type != RedisReply::Type::array || r->elements.size() != done.size()) {
        // NOSCRIPT (an operator flushed the scripts): EVAL until the next load.
        if (r && r->is_error() && r->str.starts_with("NOSCRIPT")) {
          sha_.clear();
          connected();
        }
        for (const auto& d : done) d(std::nullopt);
        return;
      }
      for (std::size_t i = 0; i < done.size(); ++i) {
        const auto& e = r->elements[i];
        if (e.type != RedisReply::Type::integer) {
          done[i](std::nullopt);
          continue;
        }
        ++counts_.answered;
        counts_.refused += e.integer == 0;
        done[i](e.integer == 1);
      }
    });
  }
}

}  // namespace geomx::state
