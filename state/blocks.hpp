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
  explicit BlockList(std::unique_ptr<BlockStore> store);
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
    enum class Kind { add, remove, ban } kind;
    policy::Block block;  // remove: its cidr
    std::int64_t now = 0;
    std::size_t max_bans = 0;
    std::shared_ptr<std::promise<bool>> answer;  // add, remove: kept (remove: found)
    BanDone done;                                // ban
  };
  // Queues `c`, starting the writer the first time (after the privileges
  // are dropped: every change comes from a running daemon); false once
  // stopped.
  bool submit(Change& c);
  bool wait(Change c);  // submit, then the answer (rethrows the store's error)
  void write_loop();
  void apply(std::vector<Change>& batch);

  std::unique_ptr<BlockStore> store_;
  std::atomic<std::shared_ptr<const policy::BlockSet>> blocks_;
  std::mutex mutex_;  // the queue, and the writer's start and stop
  std::condition_variable wake_;
  std::vector<Change> queue_;
  bool stopping_ = false;
  std::thread writer_;
  std::mutex store_mutex_;  // load and the writer's batch: one at a time
  std::atomic<std::uint64_t> writes_{0};
};

}  // namespace geomx::state
