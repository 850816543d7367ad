#pragma once
// How a connect to a member (or to the address a transparent client
// dialled) failed, as Envoy's UpstreamFailureReason: one word each, and
// whether it says something about the peer (it counts toward a member's
// `fall`) rather than about this host (out of descriptors or ports).
#include <string>
#include <string_view>

namespace geomx::proxy {

enum class DialFailure {
  none,
  timed_out,    // no answer within connect_timeout
  peer_error,   // refused, reset, unreachable: the peer's fault
  local_error,  // this host: out of descriptors, ports, memory
};
std::string_view to_string(DialFailure);

struct DialResult {
  DialFailure failure = DialFailure::none;
  std::string detail;  // "connect timed out", "connect: Connection refused"
  bool ok() const { return failure == DialFailure::none; }
  bool peer_fault() const {
    return failure == DialFailure::timed_out || failure == DialFailure::peer_error;
  }
};

}  // namespace geomx::proxy
