// Dated blocks: the most specific block in force answers, an expired one
// does not hide a wider one, and the index keeps up with adds and deletes.
#include <doctest/doctest.h>

#include <chrono>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "state/blocks.hpp"
#include "state/local_store.hpp"
#include "support/temp_dir.hpp"

namespace geomx::state {
namespace {

using policy::Block;

BlockList in_memory() {
  return BlockList(std::make_unique<LocalBlockStore>(""));
}

geo::Prefix cidr(const char* text) {
  return geo::parse_prefix(text);
}

TEST_CASE("find: the most specific block in force, per family") {
  BlockList blocks = in_memory();
  const std::int64_t now = 1'800'000'000;
  blocks.add({cidr("10.1.0.0/16"), "wide", now, std::nullopt, "operator"}, now);
  blocks.add({cidr("10.1.2.0/24"), "narrow", now, now + 60, "limit:rate"}, now);
  blocks.add({cidr("10.1.2.3/32"), "expired", now - 120, now - 60, "limit:rate"}, now);
  blocks.add({cidr("2001:db8::/32"), "six", now, std::nullopt, "operator"}, now);

  auto at = [&](const char* a, std::int64_t t) {
    const auto b = blocks.find(geo::parse_address(a), t);
    return b ? b->comment : std::string("-");
  };
  CHECK(at("10.1.2.4", now) == "narrow");
  CHECK(at("10.1.2.3", now) == "narrow");  // its own /32 expired: the /24 still holds
  CHECK(at("10.1.9.9", now) == "wide");
  CHECK(at("10.2.0.1", now) == "-");
  CHECK(at("10.1.2.4", now + 61) == "wide");  // the /24 expired too
  CHECK(at("2001:db8:1::1", now) == "six");
  CHECK(at("2001:db9::1", now) == "-");
  CHECK(at("::ffff:10.1.2.4", now) == "narrow");  // mapped addresses are IPv4

  CHECK(blocks.current()->count("limit:", now) == 1);  // the /24 (the /32 has expired)
  CHECK(blocks.current()->count("operator", now) == 2);
  CHECK(blocks.remove(cidr("10.1.0.0/16"), now));
  CHECK(at("10.1.9.9", now) == "-");
  CHECK(at("10.1.2.4", now) == "narrow");
  blocks.add({cidr("10.1.2.0/24"), "replaced", now, std::nullopt, "operator"}, now);
  CHECK(at("10.1.2.4", now + 3600) == "replaced");
  CHECK(blocks.current()->list(now).size() == 2);
}

TEST_CASE("covering: a block around all of a prefix, not one inside it") {
  BlockList blocks = in_memory();
  const std::int64_t now = 1'800'000'000;
  blocks.add({cidr("192.0.2.0/24"), "net", now, std::nullopt, "operator"}, now);
  blocks.add({cidr("192.0.2.7/32"), "host", now, now + 60, "operator"}, now);
  auto around = [&](const char* p) {
    const auto b = blocks.current()->covering(cidr(p), now);
    return b ? b->comment : std::string("-");
  };
  CHECK(around("192.0.2.0/24") == "net");  // the /32 inside does not hide it
  CHECK(around("192.0.2.7/32") == "host");
  CHECK(around("192.0.2.0/25") == "net");
  CHECK(around("192.0.0.0/16") == "-");  // wider than any block
  CHECK(around("2001:db8::/48") == "-");
}

TEST_CASE("find with thousands of blocks answers as a scan would") {
  BlockList blocks = in_memory();
  const std::int64_t now = 1'800'000'000;
  for (std::uint32_t i = 0; i < 3'000; ++i) {
    const unsigned length = 16 + i % 17;  // /16 to /32
    Block b{geo::Prefix::containing(geo::Address::v4(0x0A000000u + i * 7919u * 251u), length),
            std::to_string(i), now, std::nullopt, "operator"};
    blocks.add(b, now);
  }
  const auto listed = blocks.current()->list(now);
  int hits = 0;
  for (std::uint32_t i = 0; i < 5'000; ++i) {
    const auto a = geo::Address::v4(0x0A000000u + i * 104729u);
    const auto found = blocks.find(a, now);
    // The scan's answer: the longest CIDR that covers it (add() replaced duplicates).
    std::optional<geo::Prefix> best;
    for (const auto& b : listed)
      if (b.cidr.contains(a) && (!best || b.cidr.length() > best->length())) best = b.cidr;
    REQUIRE(found.has_value() == best.has_value());
    if (found) {
      CHECK(found->cidr == *best);
      ++hits;
    }
  }
  CHECK(hits > 0);
}

TEST_CASE("blocks.toml: kept before add returns, read back, and a corrupt file set aside") {
  test::TempDir dir;
  const std::int64_t now = 1'800'000'000;
  {
    BlockList blocks(std::make_unique<LocalBlockStore>(dir.root().string()));
    CHECK(blocks.load(now).empty());  // no file yet: no problem
    blocks.add({cidr("192.0.2.0/24"), "SPAM_09_01_2021", now, now + 3600, "operator"}, now);
    blocks.add({cidr("2001:db8::/48"), "", now, std::nullopt, "limit:rate"}, now);
    CHECK(blocks.remove(cidr("2001:db8::/48"), now));
    CHECK_FALSE(blocks.remove(cidr("2001:db8::/48"), now));
  }
  BlockList again(std::make_unique<LocalBlockStore>(dir.root().string()));
  CHECK(again.load(now).empty());
  const auto listed = again.current()->list(now);
  REQUIRE(listed.size() == 1);
  CHECK(listed[0].cidr == cidr("192.0.2.0/24"));
  CHECK(listed[0].comment == "SPAM_09_01_2021");
  CHECK(listed[0].expires == now + 3600);
  CHECK(again.file() == (dir.root() / "blocks.toml").string());

  dir.write("blocks.toml", "[[block]]\ncidr = \"not a cidr\"\ncreated = 1\n");
  BlockList corrupt(std::make_unique<LocalBlockStore>(dir.root().string()));
  const auto problems = corrupt.load(now);
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].find("does not parse") != std::string::npos);
  CHECK(problems[0].find("blocks.toml.corrupt-1800000000") != std::string::npos);
  CHECK(std::filesystem::exists(dir.root() / "blocks.toml.corrupt-1800000000"));
  CHECK(corrupt.current()->list(now).empty());
}

TEST_CASE("a store that cannot keep a block changes nothing") {
  const std::int64_t now = 1'800'000'000;
  BlockList blocks(std::make_unique<LocalBlockStore>("/nonexistent-geomx-state"));
  CHECK(blocks.load(now).size() == 1);  // the state_dir is missing: said once, at start
  CHECK_THROWS_AS(blocks.add({cidr("192.0.2.1/32"), "", now, std::nullopt, "operator"}, now),
                  std::runtime_error);
  CHECK(blocks.current()->list(now).empty());
}

// Each field's type is checked: a string where a time should be would make a
// dated block permanent.
TEST_CASE("blocks.toml: every field type-checked, unknown keys refused") {
  test::TempDir dir;
  const auto problem = [&](const std::string& text) -> std::string {
    const auto path = dir.write("blocks.toml", text);
    try {
      parse_blocks_file(path);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  };
  const std::string head = "[[block]]\ncidr = \"192.0.2.0/24\"\n";
  CHECK(problem(head + "created = 1\nexpires = \"2020-01-01\"\n") ==
        "block[0].expires: must be an integer (unix time)");
  CHECK(problem(head + "created = \"1\"\n") == "block[0].created: must be an integer (unix time)");
  CHECK(problem(head + "created = 1\ncomment = 7\n") == "block[0].comment: must be a string");
  CHECK(problem(head + "created = 1\norigin = true\n") == "block[0].origin: must be a string");
  CHECK(problem(head + "created = 1\nexpire = 5\n") == "block[0].expire: unknown key");
  CHECK(problem("[[block]]\ncidr = 1\ncreated = 1\n").find("block[0].cidr: must be a string") == 0);
  CHECK(problem("block = 5\n") == "block: must be an array of tables ([[block]])");
  CHECK(problem("block = [5]\n") == "block[0]: must be a table");
  CHECK(problem("blocks = []\n") == "blocks: unknown key");
  CHECK(problem(head + "created = 1\nexpires = 2\ncomment = \"caf\u00e9\"\n").empty());
}

// Not readable is not corrupt: the file stays as it is, and no write
// replaces it (its blocks would be lost) until a load reads it.
TEST_CASE("a blocks.toml that cannot be read is never overwritten") {
  test::TempDir dir;
  const std::int64_t now = 1'800'000'000;
  std::filesystem::create_directory(dir.root() / "blocks.toml");
  BlockList blocks(std::make_unique<LocalBlockStore>(dir.root().string()));
  const auto problems = blocks.load(now);
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].find("blocks.toml is not a regular file; serving without its blocks, and "
                         "refusing to write it") != std::string::npos);
  CHECK_FALSE(blocks.load_if_refused(now)->empty());  // still a directory
  try {
    blocks.add({cidr("192.0.2.1/32"), "", now, std::nullopt, "operator"}, now);
    FAIL("add wrote over a file it could not read");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find("is not a regular file; it is not overwritten") !=
          std::string::npos);
  }
  CHECK(std::filesystem::is_directory(dir.root() / "blocks.toml"));
  // The operator puts the file back; a reload reads it, and writes resume.
  std::filesystem::remove(dir.root() / "blocks.toml");
  dir.write("blocks.toml", "[[block]]\ncidr = \"198.51.100.0/24\"\ncreated = 1\n");
  const auto again = blocks.load_if_refused(now);
  REQUIRE(again);
  CHECK(again->empty());
  CHECK(blocks.current()->list(now).size() == 1);
  blocks.add({cidr("192.0.2.1/32"), "", now, std::nullopt, "operator"}, now);
  CHECK(parse_blocks_file(blocks.file()).blocks.size() == 2);
  CHECK_FALSE(blocks.load_if_refused(now));  // it writes: nothing to read again
}

// A store that takes its time, so that changes queue behind a write.
class SlowStore final : public BlockStore {
 public:
  Loaded load(std::int64_t) override { return {}; }
  void save(const std::vector<Block>& blocks, const std::vector<policy::Deletion>&) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    saved.push_back(blocks.size());
  }
  const std::string& where() const override { return name; }
  std::vector<std::size_t> saved;  // the size of each write, in order
  std::string name = "slow";
};

TEST_CASE("bans queued while a write runs are judged in order and kept by one more write") {
  const std::int64_t now = 1'800'000'000;
  auto owned = std::make_unique<SlowStore>();
  auto* store = owned.get();
  BlockList blocks(std::move(owned));
  std::mutex m;
  std::map<std::string, int> verdicts;
  const auto done = [&](const Block&, const BlockList::BanOutcome& o) {
    std::lock_guard lock(m);
    verdicts[o.verdict == policy::BanVerdict::add       ? "add"
             : o.verdict == policy::BanVerdict::covered ? "covered"
                                                        : "over"]++;
  };
  blocks.add({cidr("192.0.2.0/24"), "", now, std::nullopt, "operator"}, now);  // one write
  // 300 sessions over a limit ask for 100 bans, three times each, and 50
  // more offenders come past max_bans = 100.
  for (int round = 0; round < 3; ++round)
    for (int i = 0; i < 100; ++i)
      blocks.ban({cidr(fmt::format("10.{}.0.0/16", i).c_str()), "limit l: over", now, now + 3600,
                  "limit:l"},
                 100, done);
  for (int i = 0; i < 50; ++i)
    blocks.ban({cidr(fmt::format("10.200.{}.0/24", i).c_str()), "", now, now + 3600, "limit:l"},
               100, done);
  // An operator's delete waits for its write: everything queued before it
  // has been judged and kept by then.
  CHECK(blocks.remove(cidr("192.0.2.0/24"), now));
  CHECK(verdicts["add"] == 100);
  CHECK(verdicts["covered"] == 200);
  CHECK(verdicts["over"] == 50);
  CHECK(blocks.current()->count("limit:", now) == 100);
  CHECK_FALSE(blocks.find(geo::parse_address("192.0.2.1"), now));
  CHECK(blocks.writes() == store->saved.size());
  CHECK(store->saved.size() <= 4);  // the add, the queued bans (a batch or two), the delete
  CHECK(store->saved.back() == 100);
}

TEST_CASE("BlockDraft: covering and counting as the set it becomes would") {
  const std::int64_t now = 1'800'000'000;
  policy::BlockSet set({{cidr("10.0.0.0/8"), "", now - 10, now - 1, "operator"},  // expired
                        {cidr("192.0.2.0/24"), "", now, std::nullopt, "limit:a"}});
  policy::BlockDraft d(set, now);
  CHECK(d.bans() == 1);
  CHECK_FALSE(d.covering(cidr("10.1.0.0/16")));
  d.add({cidr("10.0.0.0/8"), "", now, std::nullopt, "operator"});
  d.add({cidr("10.1.0.0/16"), "", now, now + 5, "limit:b"});
  CHECK(d.covering(cidr("10.1.2.0/24"))->cidr == cidr("10.1.0.0/16"));  // the most specific
  CHECK(d.covering(cidr("10.2.0.0/16"))->cidr == cidr("10.0.0.0/8"));
  CHECK(d.bans() == 2);
  CHECK(d.remove(cidr("10.1.0.0/16")));
  CHECK_FALSE(d.remove(cidr("10.1.0.0/16")));
  CHECK(d.covering(cidr("10.1.2.0/24"))->cidr == cidr("10.0.0.0/8"));
  CHECK(d.bans() == 1);
  const auto out = d.blocks();
  REQUIRE(out.size() == 2);
  CHECK(out[0].cidr == cidr("192.0.2.0/24"));
  CHECK(out[1].cidr == cidr("10.0.0.0/8"));
  CHECK(policy::BlockSet(out).count("limit:", now) == 1);
}

// Two nodes of a fleet, each with its block list, exchanging what on_change
// hears as the store would; the clock is each node's, moved by hand.
struct FleetNode {
  explicit FleetNode(std::string name, std::string dir = "")
      : blocks(std::make_unique<LocalBlockStore>(std::move(dir)), [this] { return ms; }) {
    blocks.join_fleet(std::move(name), [this](std::vector<policy::BlockChange> c) {
      std::lock_guard lock(mutex);
      for (auto& x : c) sent.push_back(std::move(x));
    });
  }
  std::vector<policy::BlockChange> take() {
    std::lock_guard lock(mutex);
    return std::exchange(sent, {});
  }
  std::size_t merge(std::vector<policy::BlockChange> changes) {
    std::promise<std::size_t> applied;
    blocks.merge(std::move(changes),
                 [&](std::size_t n, const std::string&) { applied.set_value(n); });
    return applied.get_future().get();
  }
  std::int64_t ms = 1'700'000'000'000;
  std::mutex mutex;
  std::vector<policy::BlockChange> sent;
  BlockList blocks;
};

TEST_CASE("a fleet: changes carry node and version, the later one wins, deletions are remembered") {
  const std::int64_t now = 1'700'000'000;
  FleetNode a("mx1"), b("mx2");
  a.blocks.add({cidr("192.0.2.0/24"), "spam", now, std::nullopt, "operator"}, now);
  auto added = a.take();
  REQUIRE(added.size() == 1);
  CHECK(added[0].node == "mx1");
  CHECK(added[0].version == a.ms);
  REQUIRE(added[0].block);
  CHECK(added[0].block->node == "mx1");
  CHECK(b.merge(added) == 1);
  REQUIRE(b.blocks.find(geo::parse_address("192.0.2.9"), now));
  CHECK(b.blocks.find(geo::parse_address("192.0.2.9"), now)->node == "mx1");
  CHECK(b.take().empty());     // a merge is not sent on
  CHECK(b.merge(added) == 0);  // the same change again: nothing

  // mx2 deletes it later; mx1 hears it and frees the address.
  b.ms += 10;
  CHECK(b.blocks.remove(cidr("192.0.2.0/24"), now));
  auto deleted = b.take();
  REQUIRE(deleted.size() == 1);
  CHECK_FALSE(deleted[0].block);
  CHECK(deleted[0].version == a.ms + 10);
  CHECK(a.merge(deleted) == 1);
  CHECK_FALSE(a.blocks.find(geo::parse_address("192.0.2.9"), now));
  // The old add, heard again (a store that kept it, a node that missed the
  // deletion), does not bring it back: the deletion is newer.
  CHECK(a.merge(added) == 0);
  CHECK_FALSE(a.blocks.find(geo::parse_address("192.0.2.9"), now));
  const auto known = a.blocks.changes(now);
  REQUIRE(known.size() == 1);
  CHECK_FALSE(known[0].block);
  CHECK(known[0].node == "mx2");

  // A change made on a node whose clock is behind still wins over what it
  // knows: its version is later than the one it replaces.
  a.ms -= 5000;
  a.blocks.add({cidr("192.0.2.0/24"), "again", now, std::nullopt, "operator"}, now);
  const auto again = a.take();
  REQUIRE(again.size() == 1);
  CHECK(again[0].version == deleted[0].version + 1);
  CHECK(b.merge(again) == 1);
  CHECK(b.blocks.find(geo::parse_address("192.0.2.9"), now)->comment == "again");
  // A later deletion replaces a remembered one, so a block between the two
  // (a stale copy from a store refilled out of order) cannot come back.
  const auto c3 = cidr("203.0.113.0/24");
  CHECK(a.merge({{c3, std::nullopt, a.ms + 100, "mx2"}}) == 1);
  CHECK(a.merge({{c3, std::nullopt, a.ms + 200, "mx2"}}) == 1);
  CHECK(a.merge({{c3, Block{c3, "stale", now, std::nullopt, "operator"}, a.ms + 150, "mx1"}}) == 0);
  CHECK_FALSE(a.blocks.find(geo::parse_address("203.0.113.1"), now));
  // Equal versions: the node name decides, the same way on every node.
  policy::BlockChange tie{cidr("198.51.100.0/24"), std::nullopt, 5, "mx1"};
  policy::BlockChange tie2 = tie;
  tie2.node = "mx2";
  CHECK(tie2.newer_than(tie.version, tie.node));
  CHECK_FALSE(tie.newer_than(tie2.version, tie2.node));
  CHECK_FALSE(tie.newer_than(tie.version, tie.node));
}

TEST_CASE("a fleet's deletions and versions survive a restart (blocks.toml)") {
  test::TempDir dir;
  const std::int64_t now = 1'700'000'000;
  {
    FleetNode a("mx1", dir.root().string());
    a.blocks.add({cidr("192.0.2.0/24"), "x", now, std::nullopt, "operator"}, now);
    a.blocks.add({cidr("198.51.100.0/24"), "y", now, now + 3600, "operator"}, now);
    a.ms += 1;
    CHECK(a.blocks.remove(cidr("192.0.2.0/24"), now));
  }
  FleetNode again("mx1", dir.root().string());
  CHECK(again.blocks.load(now).empty());
  const auto known = again.blocks.changes(now);
  REQUIRE(known.size() == 2);
  CHECK(known[0].block);
  CHECK(known[0].version == again.ms);
  CHECK(known[0].node == "mx1");
  CHECK_FALSE(known[1].block);
  CHECK(known[1].version == again.ms + 1);
  // A deletion is forgotten after deletion_ttl_ms.
  again.ms += BlockList::deletion_ttl_ms + 2;
  again.blocks.add({cidr("203.0.113.0/24"), "z", now, std::nullopt, "operator"}, now);
  CHECK(again.blocks.changes(now).size() == 2);  // 198.51.100.0/24 and 203.0.113.0/24
}
}  // namespace
}  // namespace geomx::state
