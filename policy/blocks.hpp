#pragma once
// Dated blocks: CIDRs refused at connect, each with a comment (the seed's
// operators wrote "SPAM_09_01_2021"), when it was made, an optional expiry
// and its origin; the index the I/O threads look clients up in; and the
// rule that decides whether a [[limit]] ban becomes a block. Pure: every
// question takes the time it is asked at (unix seconds). Keeping them
// (blocks.toml, and later the fleet's store) is state/'s.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "geo/address.hpp"
#include "geo/hash.hpp"

namespace geomx::policy {

struct Block {
  geo::Prefix cidr;
  std::string comment;
  std::int64_t created = 0;             // unix seconds
  std::optional<std::int64_t> expires;  // unix seconds; none: until deleted
  std::string origin = "operator";      // or "limit:NAME"
  // A fleet ([store]): the node that made it, and when (unix ms): of two
  // versions of a CIDR's block, or of a block and its deletion, the later
  // wins on every node. 0: created * 1000.
  std::string node = {};
  std::int64_t version = 0;
  bool active(std::int64_t now) const { return !expires || *expires > now; }
  std::int64_t version_ms() const { return version ? version : created * 1000; }
};

// A block deleted, remembered by a fleet so that a node that missed the
// deletion (or a store that lost it) cannot bring the block back.
struct Deletion {
  geo::Prefix cidr;
  std::int64_t version = 0;  // unix ms
  std::string node = {};
};

// One CIDR's latest state, as nodes exchange it: its block, or its deletion.
struct BlockChange {
  geo::Prefix cidr;
  std::optional<Block> block;  // none: deleted
  std::int64_t version = 0;    // unix ms
  std::string node = {};
  // Whether this replaces what is known at `known` (0: nothing known): the
  // later version, ties broken by the node's name so every node agrees.
  bool newer_than(std::int64_t known, std::string_view known_node) const {
    return version > known || (version == known && node > known_node);
  }
};

// An immutable set of blocks with its index: the prefix lengths in use per
// family (longest first) and each CIDR's block. CIDRs are unique.
class BlockSet {
 public:
  explicit BlockSet(std::vector<Block> blocks = {});
  const std::vector<Block>& all() const { return blocks_; }
  // The blocks in force at `now`, oldest first.
  std::vector<Block> list(std::int64_t now) const;
  // The block in force that covers `a`, the most specific first, if any:
  // one hash lookup per prefix length in use.
  std::optional<Block> find(const geo::Address& a, std::int64_t now) const;
  // The block in force that covers all of `p` (its CIDR or a wider one),
  // the most specific first, if any.
  std::optional<Block> covering(const geo::Prefix& p, std::int64_t now) const;
  // How many blocks in force have an origin that starts with `prefix`.
  std::size_t count(std::string_view origin_prefix, std::int64_t now) const;
  // The blocks in force with `b` added (replacing the block of its CIDR).
  std::vector<Block> with(Block b, std::int64_t now) const;
  // The blocks in force without the block of exactly `cidr`; none if there is none.
  std::optional<std::vector<Block>> without(const geo::Prefix& cidr, std::int64_t now) const;

 private:
  std::vector<Block> blocks_;
  std::vector<unsigned> v4_lengths_, v6_lengths_;
  std::unordered_map<geo::Prefix, std::size_t, geo::AddressHash> by_cidr_;
};

// A BlockSet being changed by many adds, deletes and bans, each seen by the
// ones after it (a ban is judged against the set with every change before
// it), then made one BlockSet: a batch costs one pass, not one per change.
class BlockDraft {
 public:
  BlockDraft(const BlockSet& from, std::int64_t now);  // the blocks in force at `now`
  void add(Block b);                                   // replaces the block of its CIDR
  bool remove(const geo::Prefix& cidr);                // false: no block of exactly it
  std::optional<Block> covering(const geo::Prefix& p) const;
  const Block* find(const geo::Prefix& cidr) const;  // the block of exactly this CIDR
  std::size_t bans() const { return bans_; }         // blocks whose origin is "limit:..."
  std::vector<Block> blocks() const;                 // those left, oldest first
  std::int64_t now() const { return now_; }

 private:
  std::int64_t now_;
  std::vector<std::optional<Block>> slots_;  // removed ones are empty
  std::unordered_map<geo::Prefix, std::size_t, geo::AddressHash> by_cidr_;
  std::unordered_map<unsigned, std::size_t> v4_lengths_, v6_lengths_;  // length -> blocks
  std::size_t bans_ = 0;
};

// Whether a [[limit]] ban is added. Sessions over the limit at once all ask
// for it (each passed the block check before the first one landed): a
// block in force around all of its CIDR that is this limit's, never
// expires or lasts as long stands in for it (one that ends sooner does
// not). Each ban rewrites the state: past max_bans bans in force, none is
// added (the client still gets its 421).
enum class BanVerdict { add, covered, over_max_bans };
BanVerdict judge_ban(const BlockSet& blocks, const Block& ban, std::size_t max_bans,
                     std::int64_t now);
BanVerdict judge_ban(const BlockDraft& draft, const Block& ban, std::size_t max_bans);

}  // namespace geomx::policy
