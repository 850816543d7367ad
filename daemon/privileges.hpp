#pragma once
// After the listeners are bound (port 25 needs root or CAP_NET_BIND_SERVICE):
// become server.user (and server.group, else the user's own group) and keep
// no capabilities and no way back (PR_SET_NO_NEW_PRIVS). Serving as root is
// refused unless server.allow_root says so.
#include <string>

#include "conf/config.hpp"

namespace geomx::daemon {

struct PrivilegeDrop {
  bool ok = false;       // false: do not serve
  bool warning = false;  // ok, but not what the config asked for
  std::string message;   // what happened, for the log
};

PrivilegeDrop drop_privileges(const conf::Process& process);

// server.user and server.group name a user and a group of this system
// (empty when they do: drop_privileges would find them); what is wrong
// otherwise, in drop_privileges' words.
std::string identity_problem(const conf::Process& process);

}  // namespace geomx::daemon
