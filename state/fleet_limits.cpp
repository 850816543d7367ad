#include "state/fleet_limits.hpp"

#include <algorithm>

namespace geomx::state {

namespace {

// KEYS[1]: the client's key. ARGV[1]: microseconds per connection (the
// emission interval T), ARGV[2]: the burst. GCRA: the theoretical arrival
// time moves T on per connection; a connection is allowed while it is at
// most T * burst ahead of now. 1: allowed (and counted), 0: over.
constexpr const char* rate_script = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next_tat = tat + interval
if next_tat - now > interval * tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.max(1, math.ceil((next_tat - now) / 1000)))
return 1
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
  std::vector<std::string> argv;
  if (sha_.empty())
    argv = {"EVAL", rate_script};
  else
    argv = {"EVALSHA", sha_};
  argv.insert(argv.end(), {"1", prefix_ + "rate:" + limit + ":" + client, std::to_string(interval),
                           std::to_string(std::max<std::uint32_t>(1, burst))});
  redis_.command(std::move(argv), [this, done = std::move(done)](std::optional<RedisReply> r) {
    if (!r || r->type != RedisReply::Type::integer) {
      // NOSCRIPT (an operator flushed the scripts): EVAL until the next load.
      if (r && r->is_error() && r->str.starts_with("NOSCRIPT")) {
        sha_.clear();
        connected();
      }
      return done(std::nullopt);
    }
    ++counts_.answered;
    counts_.refused += r->integer == 0;
    done(r->integer == 1);
  });
}

}  // namespace geomx::state
