#pragma once
// The refusal log's sampling: lines admitted per minute up to a cap (0:
// none), and those left out, counted in their minute and due once that
// minute is over (one "suppressed K more" line instead of K lines). Pure:
// the caller passes the minute.
#include <cstdint>
#include <utility>

namespace geomx::policy {

struct Sampler {
  std::int64_t minute = -1;  // the minute `logged` counts
  std::uint32_t logged = 0;
  std::uint64_t suppressed = 0;  // in `minute`
  std::uint64_t due = 0;         // suppressed in minutes that are over, not yet said

  // Whether one more line may be written in `now_minute`.
  bool admit(std::int64_t now_minute, std::uint32_t cap) {
    if (minute != now_minute) {  // a new minute: what the last one suppressed is due
      due += std::exchange(suppressed, 0);
      minute = now_minute;
      logged = 0;
    }
    if (cap != 0 && logged >= cap) {
      ++suppressed;
      return false;
    }
    ++logged;
    return true;
  }
  // The lines suppressed in minutes before `now_minute` not yet said; then none.
  std::uint64_t take(std::int64_t now_minute) {
    if (minute < now_minute) due += std::exchange(suppressed, 0);
    return std::exchange(due, 0);
  }
};

}  // namespace geomx::policy
