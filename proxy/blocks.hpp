#pragma once
// Dated blocks: CIDRs refused at connect, each with a comment (the seed's
// operators wrote "SPAM_09_01_2021"), when it was made, an optional expiry
// and its origin. Kept in STATE_DIR/blocks.toml, written atomically (temp
// file, fsync, rename, fsync of the directory) before an add or delete is
// acknowledged, so a kill -9 right after loses nothing; read at start and
// kept across reloads. I/O threads read an immutable list swapped whole.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "geo/address.hpp"
#include "proxy/hash.hpp"

namespace geomx::proxy {

struct Block {
  geo::Prefix cidr;
  std::string comment;
  std::int64_t created = 0;             // unix seconds
  std::optional<std::int64_t> expires;  // unix seconds; none: until deleted
  std::string origin = "operator";      // or "limit:NAME"
  bool active(std::int64_t now) const { return !expires || *expires > now; }
};

std::int64_t unix_now();

class BlockList {
 public:
  // `state_dir` empty: kept in memory only.
  explicit BlockList(std::string state_dir);

  // Reads the state file. One that does not parse is renamed aside
  // (blocks.toml.corrupt-UNIXTIME) and reported, not silently dropped; the
  // list then starts empty. Returns what to log (empty: all well).
  std::vector<std::string> load();
  // Adds (or replaces the block of the same CIDR) and writes the state file
  // before it returns; throws std::runtime_error, changing nothing, when the
  // file cannot be written.
  void add(Block b);
  // Deletes the block of exactly this CIDR; false if there is none.
  bool remove(const geo::Prefix& cidr);
  // The blocks in force now, oldest first.
  std::vector<Block> list(std::int64_t now) const;
  // The block in force that covers `a`, the most specific first, if any
  // (any thread): one hash lookup per prefix length in use.
  std::optional<Block> find(const geo::Address& a, std::int64_t now) const;
  // The block in force that covers all of `p` (its CIDR or a wider one),
  // the most specific first, if any.
  std::optional<Block> covering(const geo::Prefix& p, std::int64_t now) const;
  // How many blocks in force have an origin that starts with `prefix`.
  std::size_t count(std::string_view origin_prefix, std::int64_t now) const;
  const std::string& file() const { return file_; }

 private:
  // The blocks, and an index: the prefix lengths in use per family (longest
  // first) and each CIDR's block.
  struct Set {
    std::vector<Block> blocks;
    std::vector<unsigned> v4_lengths, v6_lengths;
    std::unordered_map<geo::Prefix, std::size_t, AddressHash> by_cidr;
  };
  static std::shared_ptr<const Set> make_set(std::vector<Block> blocks);
  void save(const std::vector<Block>& blocks) const;
  std::string dir_, file_;
  std::mutex write_;  // one add/remove at a time
  std::atomic<std::shared_ptr<const Set>> blocks_;
};

}  // namespace geomx::proxy
