#pragma once
// The dated blocks in force: an immutable policy::BlockSet that the I/O
// threads read, swapped whole after each change has been kept by the
// store. Loaded at start and kept across reloads.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "policy/blocks.hpp"
#include "state/store.hpp"

namespace geomx::state {

class BlockList {
 public:
  explicit BlockList(std::unique_ptr<BlockStore> store);

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
  // The set in force now (any thread): find, covering, count, list.
  std::shared_ptr<const policy::BlockSet> current() const { return blocks_.load(); }
  std::optional<policy::Block> find(const geo::Address& a, std::int64_t now) const {
    return current()->find(a, now);
  }
  const std::string& file() const { return store_->where(); }

 private:
  std::unique_ptr<BlockStore> store_;
  std::mutex write_;  // one add/remove at a time
  std::atomic<std::shared_ptr<const policy::BlockSet>> blocks_;
};

}  // namespace geomx::state
