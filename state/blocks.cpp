#include "state/blocks.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <unordered_map>

#include "geo/hash.hpp"

namespace geomx::state {

std::int64_t BlockList::system_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

BlockList::BlockList(std::unique_ptr<BlockStore> store, Clock clock)
    : store_(std::move(store)),
      blocks_(std::make_shared<const policy::BlockSet>()),
      clock_(std::move(clock)),
      deletions_(std::make_shared<const Deletions>()) {}

void BlockList::join_fleet(std::string node, ChangesMade on_change) {
  std::lock_guard lock(store_mutex_);
  node_ = std::move(node);
  on_change_ = std::move(on_change);
}

void BlockList::merge(std::vector<policy::BlockChange> changes, Merged done) {
  Change c{Change::Kind::merge, {}, 0, 0, {}, {}, std::move(changes), std::move(done)};
  c.now = clock_() / 1000;
  submit(c);
}

std::vector<policy::BlockChange> BlockList::changes(std::int64_t now) const {
  std::vector<policy::BlockChange> out;
  for (const auto& b : current()->all())
    if (b.active(now)) out.push_back({b.cidr, b, b.version_ms(), b.node});
  for (const auto& d : *deletions_.load()) out.push_back({d.cidr, std::nullopt, d.version, d.node});
  return out;
}

void BlockList::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (writer_.joinable()) writer_.join();
}

std::vector<std::string> BlockList::load(std::int64_t now) {
  std::lock_guard lock(store_mutex_);
  auto loaded = store_->load(now);
  if (loaded.problems.empty()) {
    blocks_.store(std::make_shared<const policy::BlockSet>(std::move(loaded.blocks)));
    deletions_.store(std::make_shared<const Deletions>(std::move(loaded.deletions)));
  }
  return loaded.problems;
}

std::optional<std::vector<std::string>> BlockList::load_if_refused(std::int64_t now) {
  {
    std::lock_guard lock(store_mutex_);
    if (store_->refusal().empty()) return std::nullopt;
  }
  return load(now);
}

void BlockList::add(policy::Block b, std::int64_t now) {
  wait({Change::Kind::add, std::move(b), now, 0, {}, {}, {}, {}});
}

bool BlockList::remove(const geo::Prefix& cidr, std::int64_t now) {
  policy::Block b;
  b.cidr = cidr;
  return wait({Change::Kind::remove, std::move(b), now, 0, {}, {}, {}, {}});
}

void BlockList::ban(policy::Block b, std::size_t max_bans, BanDone done) {
  const auto now = b.created;
  Change c{Change::Kind::ban, std::move(b), now, max_bans, {}, std::move(done), {}, {}};
  submit(c);  // stopping: dropped (the daemon is going away)
}

bool BlockList::wait(Change c) {
  c.answer = std::make_shared<std::promise<bool>>();
  auto answer = c.answer->get_future();
  if (!submit(c)) throw std::runtime_error("geomx is stopping: not kept");
  return answer.get();  // rethrows what the store threw
}

bool BlockList::submit(Change& c) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return false;
    queue_.push_back(std::move(c));
    if (!writer_.joinable()) writer_ = std::thread([this] { write_loop(); });
  }
  wake_.notify_one();
  return true;
}

void BlockList::write_loop() {
  for (;;) {
    std::vector<Change> batch;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and all kept
      batch.swap(queue_);
    }
    apply(batch);
  }
}

// What one batch changes: the draft of the blocks, the deletions a fleet
// remembers, and what each change came to.
struct BlockList::Batch {
  Batch(const policy::BlockSet& blocks, const Deletions& was, std::int64_t now)
      : draft(blocks, now) {
    for (const auto& d : was) deletions.emplace(d.cidr, d);
  }
  policy::BlockDraft draft;
  std::unordered_map<geo::Prefix, policy::Deletion, geo::AddressHash> deletions;
  std::vector<policy::BlockChange> made;  // here, for on_change
  bool changed = false;
  std::vector<bool> found;
  std::vector<BanOutcome> outcomes;
  std::vector<std::size_t> applied;  // merge: how many of its changes

  // The version of what is known of `cidr` (0: nothing), and its node.
  std::pair<std::int64_t, std::string_view> known(const geo::Prefix& cidr) const {
    if (const auto* b = draft.find(cidr)) return {b->version_ms(), b->node};
    if (const auto it = deletions.find(cidr); it != deletions.end())
      return {it->second.version, it->second.node};
    return {0, {}};
  }
  // A version for a change made here: the clock, or later than what is known.
  std::int64_t next_version(const geo::Prefix& cidr, std::int64_t clock) const {
    return std::max(clock, known(cidr).first + 1);
  }
  void add(policy::Block b) {
    deletions.erase(b.cidr);
    draft.add(std::move(b));
    changed = true;
  }
  bool remove(const geo::Prefix& cidr, std::int64_t version, const std::string& node,
              bool remember) {
    const bool had = draft.remove(cidr);
    const auto it = deletions.find(cidr);
    if (remember && (had || it == deletions.end() || it->second.version < version)) {
      deletions[cidr] = {cidr, version, node};
      changed = true;
    }
    changed |= had;
    return had;
  }
  std::vector<policy::Deletion> kept_deletions(std::int64_t now_ms) const {
    std::vector<policy::Deletion> out;
    for (const auto& [cidr, d] : deletions)
      if (d.version > now_ms - deletion_ttl_ms) out.push_back(d);
    std::sort(out.begin(), out.end(),
              [](const auto& a, const auto& b) { return a.version < b.version; });
    return out;
  }
};

// One draft for the whole batch, one write, then every answer.
void BlockList::apply(std::vector<Change>& batch) {
  std::int64_t now = 0;
  for (const auto& c : batch) now = std::max(now, c.now);
  std::string error;
  std::lock_guard lock(store_mutex_);
  const bool fleet = static_cast<bool>(on_change_);
  const std::int64_t clock = clock_();
  Batch b(*current(), *deletions_.load(), now);
  b.found.assign(batch.size(), false);
  b.outcomes.resize(batch.size());
  b.applied.assign(batch.size(), 0);
  auto made_here = [&](policy::Block block) {
    block.node = node_;
    block.version = b.next_version(block.cidr, clock);
    if (fleet) b.made.push_back({block.cidr, block, block.version, node_});
    b.add(std::move(block));
  };
  for (std::size_t i = 0; i < batch.size(); ++i) {
    auto& c = batch[i];
    switch (c.kind) {
      case Change::Kind::add:
        made_here(c.block);
        b.found[i] = true;
        break;
      case Change::Kind::remove: {
        const auto version = b.next_version(c.block.cidr, clock);
        b.found[i] = b.draft.find(c.block.cidr) != nullptr;
        if (b.found[i]) {
          b.remove(c.block.cidr, version, node_, fleet);
          if (fleet) b.made.push_back({c.block.cidr, std::nullopt, version, node_});
        }
        break;
      }
      case Change::Kind::ban:
        b.outcomes[i].verdict = policy::judge_ban(b.draft, c.block, c.max_bans);
        if (b.outcomes[i].verdict == policy::BanVerdict::add) made_here(c.block);
        break;
      case Change::Kind::merge:
        for (auto& m : c.merged) {
          const auto [version, node] = b.known(m.cidr);
          if (!m.newer_than(version, node)) continue;
          if (m.block && !m.block->active(now)) continue;  // expired on the way
          ++b.applied[i];
          if (m.block) {
            m.block->version = m.version;
            m.block->node = m.node;
            b.add(*m.block);
          } else {
            b.remove(m.cidr, m.version, m.node, true);
          }
        }
        break;
    }
  }
  if (b.changed) {
    auto next = b.draft.blocks();
    auto deletions = b.kept_deletions(clock);
    try {
      store_->save(next, deletions);  // throws: nothing changed
      blocks_.store(std::make_shared<const policy::BlockSet>(std::move(next)));
      deletions_.store(std::make_shared<const Deletions>(std::move(deletions)));
      ++writes_;
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  // The fleet hears of a change before its maker's answer: an add that has
  // been answered is on its way to the others.
  if (error.empty() && !b.made.empty()) on_change_(std::move(b.made));
  answer(batch, b, error);
}

void BlockList::answer(std::vector<Change>& batch, const Batch& b, const std::string& error) {
  for (std::size_t i = 0; i < batch.size(); ++i) {
    auto& c = batch[i];
    switch (c.kind) {
      case Change::Kind::ban: {
        auto outcome = b.outcomes[i];
        if (!error.empty() && outcome.verdict == policy::BanVerdict::add) outcome.error = error;
        if (c.done) c.done(c.block, outcome);
        break;
      }
      case Change::Kind::merge:
        if (c.merge_done) c.merge_done(error.empty() ? b.applied[i] : 0, error);
        break;
      default:
        if (!error.empty() && (c.kind == Change::Kind::add || b.found[i]))
          c.answer->set_exception(std::make_exception_ptr(std::runtime_error(error)));
        else
          c.answer->set_value(b.found[i]);
    }
  }
}

}  // namespace geomx::state
