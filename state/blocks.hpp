#pragma once
// The dated blocks in force: an immutable policy::BlockSet that the I/O
// threads read, swapped whole after each change has been kept by the
// store. Loaded at start and kept across reloads.
//
// Changes are kept by a writer thread of its own, never by the caller's:
// whatever is queued while one write runs goes into the next, so a flood
// of bans costs one write per batch, not one per ban, and the thread that
// serves the admin endpoint and the probes never writes. An operator's add
// or delete waits for the write that keeps it; a ban does not wait.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "policy/blocks.hpp"
#include "state/store.hpp"

namespace geomx::state {

class BlockList {
 public:
  using Clock = std::function<std::int64_t()>;  // unix ms: versions a change
  static std::int64_t system_ms();
  explicit BlockList(std::unique_ptr<BlockStore> store, Clock clock = system_ms);
  ~BlockList() { stop(); }
  // Keeps what is queued, then stops the writer; later changes are refused
  // (add and remove throw, a ban is dropped).
  void stop();

  // Reads what the store keeps; returns what to log (empty: all well).
  std::vector<std::string> load(std::int64_t now);
  // A store that refuses writes (it could not read what it keeps) is read
  // again: an operator fixed it, then reloaded. nullopt when it writes.
  std::optional<std::vector<std::string>> load_if_refused(std::int64_t now);
  // Adds (or replaces the block of the same CIDR) and has the store keep it
  // before it returns; throws std::runtime_error, changing nothing, when the
  // store cannot.
  void add(policy::Block b, std::int64_t now);
  // Deletes the block of exactly this CIDR; false if there is none.
  bool remove(const geo::Prefix& cidr, std::int64_t now);

  // A [[limit]] ban: queued, and judged on the writer thread against the
  // set with every change queued before it (policy::judge_ban: sessions
  // over a limit at once all ask for the same ban, and one is added), then
  // kept with the rest of its batch. `done` is told the outcome on that
  // thread (error: why the store could not keep it). Returns at once.
  struct BanOutcome {
    policy::BanVerdict verdict = policy::BanVerdict::add;
    std::string error;  // not empty: the ban was to be added and is not kept
  };
  using BanDone = std::function<void(const policy::Block&, const BanOutcome&)>;
  void ban(policy::Block b, std::size_t max_bans, BanDone done);

  // A fleet ([store]): changes made here carry this node's name and a
  // version, deletions are remembered (for deletion_ttl_ms), and `on_change`
  // hears each change made here once it is kept (on the writer thread), to
  // send it to the others. Before the first change.
  using ChangesMade = std::function<void(std::vector<policy::BlockChange>)>;
  void join_fleet(std::string node, ChangesMade on_change);
  static constexpr std::int64_t deletion_ttl_ms = 7LL * 24 * 3600 * 1000;
  // Changes from the fleet, queued: each applied where it is newer than what
  // is known here (policy::BlockChange::newer_than), the batch kept in one
  // write. `done` (on the writer thread) is told how many were applied, or
  // why they could not be kept. Not passed to on_change.
  using Merged = std::function<void(std::size_t applied, const std::string& error)>;
  void merge(std::vector<policy::BlockChange> changes, Merged done = {});
  // Everything known here as changes (blocks in force and remembered
  // deletions): what a node gives a store that lost them (any thread).
  std::vector<policy::BlockChange> changes(std::int64_t now) const;

  // The set in force now (any thread): find, covering, count, list.
  std::shared_ptr<const policy::BlockSet> current() const { return blocks_.load(); }
  std::optional<policy::Block> find(const geo::Address& a, std::int64_t now) const {
    return current()->find(a, now);
  }
  const std::string& file() const { return store_->where(); }
  // Writes so far (one per batch that changed something), for tests and metrics.
  std::uint64_t writes() const { return writes_.load(); }

 private:
  struct Change {
    enum class Kind { add, remove, ban, merge } kind;
    policy::Block block;  // remove: its cidr
    std::int64_t now = 0;
    std::size_t max_bans = 0;
    std::shared_ptr<std::promise<bool>> answer;  // add, remove: kept (remove: found)
    BanDone done;                                // ban
    std::vector<policy::BlockChange> merged;     // merge
    Merged merge_done;
  };
  struct Batch;  // blocks.cpp: one batch's draft, deletions and outcomes
  // Queues `c`, starting the writer the first time (after the privileges
  // are dropped: every change comes from a running daemon); false once
  // stopped.
  bool submit(Change& c);
  bool wait(Change c);  // submit, then the answer (rethrows the store's error)
  void write_loop();
  void apply(std::vector<Change>& batch);
  void answer(std::vector<Change>& batch, const Batch& b, const std::string& error);

  std::unique_ptr<BlockStore> store_;
  std::atomic<std::shared_ptr<const policy::BlockSet>> blocks_;
  std::mutex mutex_;  // the queue, and the writer's start and stop
  std::condition_variable wake_;
  std::vector<Change> queue_;
  bool stopping_ = false;
  std::thread writer_;
  std::mutex store_mutex_;  // load and the writer's batch: one at a time
  std::atomic<std::uint64_t> writes_{0};
  Clock clock_;
  std::string node_;  // a fleet's: this node
  ChangesMade on_change_;
  // A fleet's remembered deletions, by CIDR; changed on the writer thread.
  using Deletions = std::vector<policy::Deletion>;
  std::atomic<std::shared_ptr<const Deletions>> deletions_;
};

}  // namespace geomx::state
