#include "state/fleet_blocks.hpp"

#include <charconv>
#include <map>
#include <memory>

#include <fmt/format.h>
#include <boost/asio/post.hpp>

#include "conf/text.hpp"

namespace geomx::state {

namespace {

// KEYS[1]: the hash, KEYS[2]: the channel; ARGV[1]: the CIDR, ARGV[2]: the
// record. Keeps the later version (ties: the greater node name, compared
// byte by byte as C++ does: Lua's own < follows the server's locale), as
// policy::BlockChange::newer_than does; 1 if written (and published).
constexpr const char* write_script = R"lua(
local function bytes_before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local ov = tonumber(string.match(old, '^(%d+)\t')) or 0
  local nv = tonumber(string.match(ARGV[2], '^(%d+)\t')) or 0
  if ov > nv then return 0 end
  if ov == nv then
    local on = string.match(old, '^%d+\t([^\t]*)') or ''
    local nn = string.match(ARGV[2], '^%d+\t([^\t]*)') or ''
    if not bytes_before(on, nn) then return 0 end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[1] .. '\t' .. ARGV[2])
return 1
)lua";

// Deletes field ARGV[1] if it still holds ARGV[2] (nobody changed it since).
constexpr const char* purge_script = R"lua(
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
)lua";

std::vector<std::string_view> split_tabs(std::string_view s, std::size_t max_fields) {
  std::vector<std::string_view> out;
  while (out.size() + 1 < max_fields) {
    const auto tab = s.find('\t');
    if (tab == std::string_view::npos) break;
    out.push_back(s.substr(0, tab));
    s.remove_prefix(tab + 1);
  }
  out.push_back(s);  // the last field (a comment) is the rest
  return out;
}

std::optional<std::int64_t> number(std::string_view s) {
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

}  // namespace

std::string encode_change(const policy::BlockChange& c) {
  if (!c.block) return fmt::format("{}\t{}\tdeleted", c.version, c.node);
  const auto& b = *c.block;
  return fmt::format("{}\t{}\tblock\t{}\t{}\t{}\t{}", c.version, c.node, b.created,
                     b.expires ? std::to_string(*b.expires) : "", b.origin, b.comment);
}

std::optional<policy::BlockChange> decode_change(std::string_view cidr, std::string_view record) {
  policy::BlockChange c;
  try {
    c.cidr = geo::parse_prefix(cidr);
  } catch (const geo::ParseError&) {
    return std::nullopt;
  }
  if (c.cidr.to_string() != cidr) return std::nullopt;  // one spelling per CIDR
  const auto f = split_tabs(record, 7);
  if (f.size() < 3) return std::nullopt;
  const auto version = number(f[0]);
  // Versions are unix ms: beyond 2^53 the script's numbers (doubles) and
  // C++'s would order them differently.
  if (!version || *version <= 0 || *version > (std::int64_t{1} << 53) ||
      !conf::printable_line(f[1]))
    return std::nullopt;
  c.version = *version;
  c.node = std::string(f[1]);
  if (f[2] == "deleted" && f.size() == 3) return c;
  if (f[2] != "block" || f.size() != 7) return std::nullopt;
  policy::Block b;
  b.cidr = c.cidr;
  const auto created = number(f[3]);
  if (!created) return std::nullopt;
  b.created = *created;
  if (!f[4].empty()) {
    b.expires = number(f[4]);
    if (!b.expires) return std::nullopt;
  }
  if (!conf::printable_line(f[5]) || !conf::printable_line(f[6])) return std::nullopt;
  b.origin = std::string(f[5]);
  b.comment = std::string(f[6]);
  b.node = c.node;
  b.version = c.version;
  c.block = std::move(b);
  return c;
}

FleetBlocks::FleetBlocks(RedisConnection& commands, BlockList& blocks, std::string key_prefix,
                         std::string node, Say say)
    : redis_(commands),
      blocks_(blocks),
      key_(key_prefix + "blocks"),
      node_(std::move(node)),
      say_(std::move(say)) {
  // Changes made here come from the block list's writer thread.
  blocks_.join_fleet(node_, [this, &io = redis_.io()](std::vector<policy::BlockChange> changes) {
    asio::post(io, [this, changes = std::move(changes)]() mutable { made(std::move(changes)); });
  });
}

FleetBlocks::~FleetBlocks() {
  blocks_.join_fleet(node_, {});  // its writer must not call what is gone
}

// What Redis has, read a page at a time (HSCAN: a hash of a million
// blocks is neither one reply nor one long command), then merged.
struct FleetBlocks::Reading {
  std::int64_t now = 0;
  std::map<std::string, policy::BlockChange> remote;  // by CIDR (HSCAN may repeat a field)
  std::size_t bad = 0;
};

void FleetBlocks::connected(std::int64_t now) {
  auto reading = std::make_shared<Reading>();
  reading->now = now;
  read_page(std::move(reading), "0");
}

void FleetBlocks::read_page(std::shared_ptr<Reading> reading, const std::string& cursor) {
  redis_.command({"HSCAN", key_, cursor, "COUNT", std::to_string(page)},
                 [this, reading](std::optional<RedisReply> r) {
                   // Down again: the next connect reads it all again.
                   if (!r || r->type != RedisReply::Type::array || r->elements.size() != 2 ||
                       r->elements[1].type != RedisReply::Type::array)
                     return;
                   const auto& entries = r->elements[1].elements;
                   for (std::size_t i = 0; i + 1 < entries.size(); i += 2)
                     take(*reading, entries[i].str, entries[i + 1].str);
                   const auto& next = r->elements[0].str;
                   if (next != "0") return read_page(reading, next);
                   merge_read(*reading);
                 });
}

void FleetBlocks::take(Reading& reading, const std::string& field, const std::string& record) {
  auto c = decode_change(field, record);
  if (!c) {
    ++reading.bad;
    return;
  }
  // Deletions past their time, and blocks expired, leave the store.
  const bool stale = c->block ? !c->block->active(reading.now)
                              : c->version < reading.now * 1000 - BlockList::deletion_ttl_ms;
  if (stale) return purge(field, record);
  reading.remote.insert_or_assign(field, std::move(*c));
}

void FleetBlocks::merge_read(const Reading& reading) {
  if (reading.bad)
    say_(fmt::format("store: {} entries of {} do not decode; skipped", reading.bad, key_));
  auto remote = std::make_shared<std::map<std::string, policy::BlockChange>>(reading.remote);
  std::vector<policy::BlockChange> incoming;
  incoming.reserve(remote->size());
  for (const auto& [field, c] : *remote) incoming.push_back(c);
  auto& io = redis_.io();
  const auto now = reading.now;
  blocks_.merge(std::move(incoming),
                [this, &io, remote, now](std::size_t applied, const std::string& error) {
                  asio::post(io, [this, remote, now, applied, error] {
                    counts_.merged += applied;
                    if (!error.empty())
                      say_(fmt::format("store: blocks from the fleet not kept: {}", error));
                    for (const auto& c : blocks_.changes(now)) {
                      const auto it = remote->find(c.cidr.to_string());
                      if (it == remote->end() || c.newer_than(it->second.version, it->second.node))
                        write(c, true);
                    }
                  });
                });
}

void FleetBlocks::message(std::string_view payload) {
  ++counts_.heard;
  const auto tab = payload.find('\t');
  auto c = tab == std::string_view::npos
               ? std::nullopt
               : decode_change(payload.substr(0, tab), payload.substr(tab + 1));
  if (!c) return say_(fmt::format("store: a message on {} does not decode; skipped", key_));
  blocks_.merge({std::move(*c)},
                [this, &io = redis_.io()](std::size_t applied, const std::string&) {
                  asio::post(io, [this, applied] { counts_.merged += applied; });
                });
}

void FleetBlocks::made(std::vector<policy::BlockChange> changes) {
  // Down: kept here, and written when the store is back (connected()).
  for (const auto& c : changes) write(c, false);
}

void FleetBlocks::write(const policy::BlockChange& c, bool refill) {
  redis_.command({"EVAL", write_script, "2", key_, key_, c.cidr.to_string(), encode_change(c)},
                 [this, refill, cidr = c.cidr.to_string()](std::optional<RedisReply> r) {
                   // An error (READONLY, OOM): said; the change is kept here and
                   // written again at the next connect.
                   if (r && r->is_error())
                     say_(fmt::format("store: block change of {} not written: {}", cidr, r->str));
                   if (!r || r->type != RedisReply::Type::integer || r->integer != 1) return;
                   ++counts_.written;
                   counts_.refills += refill;
                 });
}

void FleetBlocks::purge(const std::string& cidr, const std::string& record) {
  redis_.command({"EVAL", purge_script, "1", key_, cidr, record}, [](std::optional<RedisReply>) {});
}

}  // namespace geomx::state
