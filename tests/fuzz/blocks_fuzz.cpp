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
  state::BlocksFile file;
  try {
    file = state::parse_blocks(text, "blocks.toml");
  } catch (const std::exception&) {
    return 0;
  }
  // What is written reads back the same.
  const auto again =
      state::parse_blocks(state::render_blocks(file.blocks, file.deletions), "rendered");
  const auto& a = again.blocks;
  const auto& b = file.blocks;
  if (a.size() != b.size() || again.deletions.size() != file.deletions.size()) std::abort();
  for (std::size_t i = 0; i < b.size(); ++i)
    if (!(a[i].cidr == b[i].cidr) || a[i].comment != b[i].comment || a[i].created != b[i].created ||
        a[i].expires != b[i].expires || a[i].origin != b[i].origin || a[i].node != b[i].node ||
        a[i].version != b[i].version)
      std::abort();
  for (std::size_t i = 0; i < file.deletions.size(); ++i) {
    const auto &x = again.deletions[i], &y = file.deletions[i];
    if (!(x.cidr == y.cidr) || x.version != y.version || x.node != y.node) std::abort();
  }
  return 0;
}
