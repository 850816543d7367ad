#pragma once
// Where the state that judges clients is kept. One interface, so that the
// local files (the embedded default) and a shared store for a fleet of
// front ends are interchangeable behind it.
#include <cstdint>
#include <string>
#include <vector>

#include "policy/blocks.hpp"

namespace geomx::state {

class BlockStore {
 public:
  virtual ~BlockStore() = default;
  struct Loaded {
    std::vector<policy::Block> blocks;
    std::vector<policy::Deletion> deletions;  // a fleet's (see policy::Deletion)
    std::vector<std::string> problems;        // what to log (empty: all well)
  };
  // The blocks kept; `now` dates anything set aside.
  virtual Loaded load(std::int64_t now) = 0;
  // Keeps exactly these blocks before it returns; throws std::runtime_error
  // when it cannot (what was kept before stays).
  virtual void save(const std::vector<policy::Block>& blocks,
                    const std::vector<policy::Deletion>& deletions) = 0;
  // Why save() refuses to write (load could not read what is kept, and a
  // write would replace it); empty when it writes.
  virtual std::string refusal() const { return {}; }
  // Where they are kept, for the log ("" when nowhere: memory only).
  virtual const std::string& where() const = 0;
};

}  // namespace geomx::state
