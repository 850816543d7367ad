#include "state/blocks.hpp"

#include <stdexcept>

namespace geomx::state {

BlockList::BlockList(std::unique_ptr<BlockStore> store)
    : store_(std::move(store)), blocks_(std::make_shared<const policy::BlockSet>()) {}

void BlockList::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (writer_.joinable()) writer_.join();
}

std::vector<std::string> BlockList::load(std::int64_t now) {
  std::lock_guard lock(store_mutex_);
  auto loaded = store_->load(now);
  if (loaded.problems.empty())
    blocks_.store(std::make_shared<const policy::BlockSet>(std::move(loaded.blocks)));
  return loaded.problems;
}

std::optional<std::vector<std::string>> BlockList::load_if_refused(std::int64_t now) {
  {
    std::lock_guard lock(store_mutex_);
    if (store_->refusal().empty()) return std::nullopt;
  }
  return load(now);
}

void BlockList::add(policy::Block b, std::int64_t now) {
  wait({Change::Kind::add, std::move(b), now, 0, {}, {}});
}

bool BlockList::remove(const geo::Prefix& cidr, std::int64_t now) {
  policy::Block b;
  b.cidr = cidr;
  return wait({Change::Kind::remove, std::move(b), now, 0, {}, {}});
}

void BlockList::ban(policy::Block b, std::size_t max_bans, BanDone done) {
  const auto now = b.created;
  Change c{Change::Kind::ban, std::move(b), now, max_bans, {}, std::move(done)};
  submit(c);  // stopping: dropped (the daemon is going away)
}

bool BlockList::wait(Change c) {
  c.answer = std::make_shared<std::promise<bool>>();
  auto answer = c.answer->get_future();
  if (!submit(c)) throw std::runtime_error("geomx is stopping: not kept");
  return answer.get();  // rethrows what the store threw
}

bool BlockList::submit(Change& c) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return false;
    queue_.push_back(std::move(c));
    if (!writer_.joinable()) writer_ = std::thread([this] { write_loop(); });
  }
  wake_.notify_one();
  return true;
}

void BlockList::write_loop() {
  for (;;) {
    std::vector<Change> batch;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and all kept
      batch.swap(queue_);
    }
    apply(batch);
  }
}

// One draft for the whole batch, one write, then every answer.
void BlockList::apply(std::vector<Change>& batch) {
  std::int64_t now = 0;
  for (const auto& c : batch) now = std::max(now, c.now);
  std::vector<bool> found(batch.size(), false);
  std::vector<BanOutcome> outcomes(batch.size());
  std::exception_ptr failed;
  {
    std::lock_guard lock(store_mutex_);
    policy::BlockDraft draft(*current(), now);
    bool changed = false;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      auto& c = batch[i];
      switch (c.kind) {
        case Change::Kind::add:
          draft.add(c.block);
          changed = found[i] = true;
          break;
        case Change::Kind::remove:
          changed |= found[i] = draft.remove(c.block.cidr);
          break;
        case Change::Kind::ban:
          outcomes[i].verdict = policy::judge_ban(draft, c.block, c.max_bans);
          if (outcomes[i].verdict == policy::BanVerdict::add) {
            draft.add(c.block);
            changed = true;
          }
          break;
      }
    }
    if (changed) {
      auto next = draft.blocks();
      try {
        store_->save(next);  // throws: nothing changed
        blocks_.store(std::make_shared<const policy::BlockSet>(std::move(next)));
        ++writes_;
      } catch (...) {
        failed = std::current_exception();
      }
    }
  }
  std::string error;
  if (failed) {
    try {
      std::rethrow_exception(failed);
    } catch (const std::exception& e) {
      error = e.what();
    } catch (...) {
      error = "unknown error";
    }
  }
  for (std::size_t i = 0; i < batch.size(); ++i) {
    auto& c = batch[i];
    if (c.kind == Change::Kind::ban) {
      if (failed && outcomes[i].verdict == policy::BanVerdict::add) outcomes[i].error = error;
      if (c.done) c.done(c.block, outcomes[i]);
    } else if (failed && (c.kind == Change::Kind::add || found[i])) {
      c.answer->set_exception(std::make_exception_ptr(std::runtime_error(error)));
    } else {
      c.answer->set_value(found[i]);
    }
  }
}

}  // namespace geomx::state
