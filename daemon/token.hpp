#pragma once
// The admin endpoint's bearer token (admin.token_file): read at start, or
// made when the file is missing (32 random bytes as hex, mode 0640, group
// server.group or the user's), before the privileges are dropped, so that
// a root-owned file is readable and the file can be given to the group
// whose members may run `geomx block|top|reload`.
#include <sys/types.h>

#include <string>

#include "conf/config.hpp"

namespace geomx::daemon {

struct AdminToken {
  std::string token;    // empty: none (protected paths are refused)
  std::string problem;  // what to warn about (empty: all well)
  bool created = false;
};

// The group the admin token and the admin socket are given to:
// server.group, else server.user's; (gid_t)-1 (unchanged) when neither names one.
gid_t admin_group(const conf::Process& process);

AdminToken admin_token(const std::string& path, const conf::Process& process);

// The token in a token file's text: its first line, without the spaces
// around it; empty when that is not 16 to 256 printable characters.
std::string token_of(std::string_view text);

}  // namespace geomx::daemon
