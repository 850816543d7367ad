// A fleet's block changes as Redis keeps them: encoded and decoded back the
// same, and anything else refused (Redis is trusted, not its bytes).
#include <doctest/doctest.h>

#include "state/fleet_blocks.hpp"

namespace geomx::state {

TEST_CASE("block changes encode and decode back; garbage from Redis is refused") {
  policy::Block b{geo::parse_prefix("192.0.2.0/24"),
                  "café SPAM",
                  1700000000,
                  1700003600,
                  "limit:rate",
                  "mx1",
                  1700000000123};
  const policy::BlockChange add{b.cidr, b, b.version, "mx1"};
  const auto text = encode_change(add);
  CHECK(text == "1700000000123\tmx1\tblock\t1700000000\t1700003600\tlimit:rate\tcafé SPAM");
  const auto back = decode_change("192.0.2.0/24", text);
  REQUIRE(back);
  REQUIRE(back->block);
  CHECK(back->version == add.version);
  CHECK(back->node == "mx1");
  CHECK(back->block->comment == "café SPAM");
  CHECK(back->block->expires == 1700003600);
  CHECK(back->block->origin == "limit:rate");
  // Permanent, and a deletion.
  b.expires.reset();
  CHECK(decode_change("192.0.2.0/24", encode_change({b.cidr, b, 5, "mx2"}))->block->expires ==
        std::nullopt);
  const auto del = decode_change(
      "2001:db8::/32", encode_change({geo::parse_prefix("2001:db8::/32"), std::nullopt, 7, "mx2"}));
  REQUIRE(del);
  CHECK_FALSE(del->block);
  CHECK(del->version == 7);
  // A comment may hold tabs? No: it is one printable line; the rest of the
  // record after the sixth tab is the comment, so a tab in it is refused.
  for (const char* bad :
       {"", "x\tmx1\tdeleted", "-1\tmx1\tdeleted", "1\tmx1\tgone", "1\tmx1\tdeleted\textra",
        "1\tmx1\tblock\t1\t\toperator", "1\tmx1\tblock\tx\t\toperator\tc",
        "1\tmx1\tblock\t1\t2x\toperator\tc", "1\tmx\x01\tdeleted",
        "1\tmx1\tblock\t1\t\toperator\tline\nbreak", "1\tmx1\tblock\t1\t\toperator\ttab\there"})
    CHECK_MESSAGE(!decode_change("192.0.2.0/24", bad), bad);
  // Versions past 2^53 (where the script's doubles and C++ disagree).
  CHECK_FALSE(decode_change("192.0.2.0/24", "9007199254740993\tmx1\tdeleted"));
  CHECK(decode_change("192.0.2.0/24", "9007199254740992\tmx1\tdeleted"));
  // The CIDR in its one spelling only.
  CHECK_FALSE(decode_change("192.0.2.1/24", "1\tmx1\tdeleted"));
  CHECK_FALSE(decode_change("not a cidr", "1\tmx1\tdeleted"));
  CHECK(decode_change("192.0.2.0/24", "1\tmx1\tdeleted"));
}

}  // namespace geomx::state
