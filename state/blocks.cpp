#include "state/blocks.hpp"

namespace geomx::state {

BlockList::BlockList(std::unique_ptr<BlockStore> store)
    : store_(std::move(store)), blocks_(std::make_shared<const policy::BlockSet>()) {}

std::vector<std::string> BlockList::load(std::int64_t now) {
  auto loaded = store_->load(now);
  if (loaded.problems.empty())
    blocks_.store(std::make_shared<const policy::BlockSet>(std::move(loaded.blocks)));
  return loaded.problems;
}

std::optional<std::vector<std::string>> BlockList::load_if_refused(std::int64_t now) {
  std::lock_guard lock(write_);
  if (store_->refusal().empty()) return std::nullopt;
  return load(now);
}

void BlockList::add(policy::Block b, std::int64_t now) {
  std::lock_guard lock(write_);
  auto next = current()->with(std::move(b), now);
  store_->save(next);  // throws: nothing changed
  blocks_.store(std::make_shared<const policy::BlockSet>(std::move(next)));
}

bool BlockList::remove(const geo::Prefix& cidr, std::int64_t now) {
  std::lock_guard lock(write_);
  auto next = current()->without(cidr, now);
  if (!next) return false;
  store_->save(*next);
  blocks_.store(std::make_shared<const policy::BlockSet>(std::move(*next)));
  return true;
}

}  // namespace geomx::state
