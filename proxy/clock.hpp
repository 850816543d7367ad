#pragma once
// The wall clock, read where state is judged (sessions, the admin
// endpoint, the control thread) and passed down: policy/ and state/ never
// read it themselves.
#include <chrono>
#include <cstdint>

namespace geomx::proxy {

inline std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace geomx::proxy
