#include "proxy/session_record.hpp"

namespace geomx::proxy {

std::string_view to_string(EndReason r) {
  switch (r) {
    case EndReason::client_closed:
      return "client_closed";
    case EndReason::server_closed:
      return "server_closed";
    case EndReason::idle_timeout:
      return "idle_timeout";
    case EndReason::pregreet:
      return "pregreet";
    case EndReason::rejected:
      return "rejected";
    case EndReason::dropped:
      return "dropped";
    case EndReason::tarpitted:
      return "tarpitted";
    case EndReason::proxy_header_error:
      return "proxy_header_error";
    case EndReason::untrusted_proxy:
      return "untrusted_proxy";
    case EndReason::connect_failed:
      return "connect_failed";
    case EndReason::no_member:
      return "no_member";
    case EndReason::member_full:
      return "member_full";
    case EndReason::too_busy:
      return "too_busy";
    case EndReason::too_many_from_ip:
      return "too_many_from_ip";
    case EndReason::blocked:
      return "blocked";
    case EndReason::limited:
      return "limited";
    case EndReason::not_redirected:
      return "not_redirected";
    case EndReason::screened:
      return "screened";
    case EndReason::shutdown:
      return "shutdown";
    case EndReason::error:
      return "error";
  }
  return "error";
}

bool refused(EndReason e) {
  switch (e) {
    case EndReason::pregreet:
    case EndReason::rejected:
    case EndReason::dropped:
    case EndReason::tarpitted:
    case EndReason::proxy_header_error:
    case EndReason::untrusted_proxy:
    case EndReason::too_busy:
    case EndReason::too_many_from_ip:
    case EndReason::blocked:
    case EndReason::limited:
    case EndReason::not_redirected:
    case EndReason::screened:
      return true;
    default:
      return false;
  }
}

}  // namespace geomx::proxy
