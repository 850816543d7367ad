#include "policy/blocks.hpp"

#include <algorithm>

namespace geomx::policy {

BlockSet::BlockSet(std::vector<Block> blocks) : blocks_(std::move(blocks)) {
  for (std::size_t i = 0; i < blocks_.size(); ++i) {
    const auto& cidr = blocks_[i].cidr;
    by_cidr_[cidr] = i;
    auto& lengths = cidr.family() == geo::Family::v4 ? v4_lengths_ : v6_lengths_;
    if (std::find(lengths.begin(), lengths.end(), cidr.length()) == lengths.end())
      lengths.push_back(cidr.length());
  }
  for (auto* l : {&v4_lengths_, &v6_lengths_}) std::sort(l->rbegin(), l->rend());
}

std::vector<Block> BlockSet::list(std::int64_t now) const {
  std::vector<Block> out;
  for (const auto& b : blocks_)
    if (b.active(now)) out.push_back(b);
  return out;
}

std::optional<Block> BlockSet::find(const geo::Address& a, std::int64_t now) const {
  return covering(geo::Prefix::containing(a, a.is_v4() ? 32 : 128), now);
}

std::optional<Block> BlockSet::covering(const geo::Prefix& p, std::int64_t now) const {
  const auto& a = p.network();
  for (const auto length : a.is_v4() ? v4_lengths_ : v6_lengths_) {
    if (length > p.length()) continue;  // inside `p`, not around it
    const auto it = by_cidr_.find(geo::Prefix::containing(a, length));
    if (it != by_cidr_.end() && blocks_[it->second].active(now)) return blocks_[it->second];
  }
  return std::nullopt;
}

std::size_t BlockSet::count(std::string_view origin_prefix, std::int64_t now) const {
  std::size_t n = 0;
  for (const auto& b : blocks_) n += b.active(now) && b.origin.starts_with(origin_prefix);
  return n;
}

std::vector<Block> BlockSet::with(Block b, std::int64_t now) const {
  auto next = list(now);
  std::erase_if(next, [&](const Block& old) { return old.cidr == b.cidr; });
  next.push_back(std::move(b));
  return next;
}

std::optional<std::vector<Block>> BlockSet::without(const geo::Prefix& cidr,
                                                    std::int64_t now) const {
  auto next = list(now);
  if (std::erase_if(next, [&](const Block& old) { return old.cidr == cidr; }) == 0)
    return std::nullopt;
  return next;
}

namespace {

BanVerdict judge(const std::optional<Block>& in_force, std::size_t bans, const Block& ban,
                 std::size_t max_bans) {
  if (in_force && (in_force->origin == ban.origin || !in_force->expires ||
                   (ban.expires && *in_force->expires >= *ban.expires)))
    return BanVerdict::covered;
  if (bans >= max_bans) return BanVerdict::over_max_bans;
  return BanVerdict::add;
}

bool is_ban(const Block& b) {
  return b.origin.starts_with("limit:");
}

}  // namespace

BanVerdict judge_ban(const BlockSet& blocks, const Block& ban, std::size_t max_bans,
                     std::int64_t now) {
  return judge(blocks.covering(ban.cidr, now), blocks.count("limit:", now), ban, max_bans);
}

BanVerdict judge_ban(const BlockDraft& draft, const Block& ban, std::size_t max_bans) {
  return judge(draft.covering(ban.cidr), draft.bans(), ban, max_bans);
}

BlockDraft::BlockDraft(const BlockSet& from, std::int64_t now) : now_(now) {
  for (const auto& b : from.all())
    if (b.active(now)) add(b);
}

void BlockDraft::add(Block b) {
  remove(b.cidr);
  auto& lengths = b.cidr.family() == geo::Family::v4 ? v4_lengths_ : v6_lengths_;
  ++lengths[b.cidr.length()];
  bans_ += is_ban(b);
  by_cidr_[b.cidr] = slots_.size();
  slots_.push_back(std::move(b));
}

bool BlockDraft::remove(const geo::Prefix& cidr) {
  const auto it = by_cidr_.find(cidr);
  if (it == by_cidr_.end()) return false;
  auto& slot = slots_[it->second];
  auto& lengths = cidr.family() == geo::Family::v4 ? v4_lengths_ : v6_lengths_;
  if (--lengths[cidr.length()] == 0) lengths.erase(cidr.length());
  bans_ -= is_ban(*slot);
  slot.reset();
  by_cidr_.erase(it);
  return true;
}

const Block* BlockDraft::find(const geo::Prefix& cidr) const {
  const auto it = by_cidr_.find(cidr);
  return it == by_cidr_.end() ? nullptr : &*slots_[it->second];
}

std::optional<Block> BlockDraft::covering(const geo::Prefix& p) const {
  // The most specific first: the longest length in use that is not longer than p.
  std::optional<Block> best;
  for (const auto& [length, n] : p.family() == geo::Family::v4 ? v4_lengths_ : v6_lengths_) {
    if (length > p.length() || (best && best->cidr.length() >= length)) continue;
    const auto it = by_cidr_.find(geo::Prefix::containing(p.network(), length));
    if (it != by_cidr_.end()) best = slots_[it->second];
  }
  return best;
}

std::vector<Block> BlockDraft::blocks() const {
  std::vector<Block> out;
  out.reserve(by_cidr_.size());
  for (const auto& s : slots_)
    if (s) out.push_back(*s);
  return out;
}

}  // namespace geomx::policy
