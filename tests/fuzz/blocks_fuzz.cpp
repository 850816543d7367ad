// libFuzzer target for blocks.toml: any bytes parse to blocks or throw; what
// parses renders back to a file that parses to the same blocks.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <toml++/toml.h>

#include "state/local_store.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace geomx;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<policy::Block> blocks;
  try {
    blocks = state::parse_blocks(text, "blocks.toml");
  } catch (const std::exception&) {
    return 0;
  }
  const auto again = state::parse_blocks(state::render_blocks(blocks), "rendered");
  if (again.size() != blocks.size()) std::abort();
  for (std::size_t i = 0; i < blocks.size(); ++i)
    if (!(again[i].cidr == blocks[i].cidr) || again[i].comment != blocks[i].comment ||
        again[i].created != blocks[i].created || again[i].expires != blocks[i].expires ||
        again[i].origin != blocks[i].origin)
      std::abort();
  return 0;
}
