#pragma once
// The embedded default: the dated blocks in STATE_DIR/blocks.toml, written
// atomically (temp file, fsync, rename, fsync of the directory) before an
// add or delete is acknowledged, so that a kill -9 right after loses
// nothing. A file that does not parse is renamed aside
// (blocks.toml.corrupt-UNIXTIME) and reported, not silently dropped; one
// that cannot be read (permissions, a directory, an I/O error) is left as it
// is, and no write replaces it until a load reads it.
#include <string>
#include <string_view>
#include <vector>

#include "state/store.hpp"

namespace geomx::state {

// The blocks (and a fleet's deletions) as blocks.toml holds them, and back;
// parse throws std::runtime_error (or toml::parse_error) naming what is wrong.
struct BlocksFile {
  std::vector<policy::Block> blocks;
  std::vector<policy::Deletion> deletions;
};
std::string render_blocks(const std::vector<policy::Block>& blocks,
                          const std::vector<policy::Deletion>& deletions = {});
BlocksFile parse_blocks_file(const std::string& path);
BlocksFile parse_blocks(std::string_view text, const std::string& name);

class LocalBlockStore final : public BlockStore {
 public:
  // `state_dir` empty: kept in memory only.
  explicit LocalBlockStore(std::string state_dir);
  Loaded load(std::int64_t now) override;
  void save(const std::vector<policy::Block>& blocks,
            const std::vector<policy::Deletion>& deletions) override;
  std::string refusal() const override { return refused_; }
  const std::string& where() const override { return file_; }

 private:
  std::string dir_, file_;
  std::string refused_;  // why save() refuses to write (empty: it writes)
};

}  // namespace geomx::state
