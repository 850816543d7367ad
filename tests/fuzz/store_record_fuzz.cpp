// libFuzzer target for the fleet's records as they come from Redis: a block
// change (a hash entry, or a message "CIDR\tRECORD") and a node's top
// talkers report (the whole input): decoded or refused, never a crash; one
// that decodes encodes back to a record that decodes the same.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "state/fleet_blocks.hpp"
#include "state/fleet_top.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace geomx;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  if (const auto top = state::FleetTop::decode(in)) {
    const auto again = state::FleetTop::decode(state::FleetTop::encode(top->report, top->written));
    if (!again || again->written != top->written ||
        again->report.rows.size() != top->report.rows.size())
      std::abort();
    for (std::size_t i = 0; i < top->report.rows.size(); ++i)
      if (again->report.rows[i].address != top->report.rows[i].address ||
          again->report.rows[i].country != top->report.rows[i].country)
        std::abort();
  }
  const auto tab = in.find('\t');
  if (tab == std::string_view::npos) return 0;
  const auto cidr = in.substr(0, tab);
  const auto c = state::decode_change(cidr, in.substr(tab + 1));
  if (!c) return 0;
  const auto again = state::decode_change(cidr, state::encode_change(*c));
  if (!again || again->version != c->version || again->node != c->node ||
      again->block.has_value() != c->block.has_value())
    std::abort();
  if (c->block &&
      (again->block->comment != c->block->comment || again->block->origin != c->block->origin ||
       again->block->created != c->block->created || again->block->expires != c->block->expires))
    std::abort();
  return 0;
}
