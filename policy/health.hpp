#pragma once
// A member's health as haproxy keeps it: UP until `fall` failures in a row,
// then DOWN until `rise` successes in a row. Pure (no I/O, no clock): the
// prober and the sessions feed it results, and it says when the state
// changed, which is the only time anything is logged.
#include <cstdint>

namespace geomx::policy {

class HealthState {
 public:
  // Members start UP: geomx serves at once, and a dead member is found
  // within fall x interval.
  bool up() const { return up_; }
  // Results in a row against the current state (failures while UP,
  // successes while DOWN).
  std::uint32_t streak() const { return streak_; }

  // Records one check result; true when the state changed.
  bool record(bool ok, std::uint32_t rise, std::uint32_t fall) {
    if (ok == up_) {  // agrees with the state: any streak against it is broken
      streak_ = 0;
      return false;
    }
    if (++streak_ < (up_ ? fall : rise)) return false;
    up_ = !up_;
    streak_ = 0;
    return true;
  }

 private:
  bool up_ = true;
  std::uint32_t streak_ = 0;
};

}  // namespace geomx::policy
