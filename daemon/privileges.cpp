#include "daemon/privileges.hpp"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace geomx::daemon {
namespace {

// Empties the effective, permitted, inheritable and ambient sets (a
// CAP_NET_BIND_SERVICE that systemd gave is not needed once bound).
bool clear_capabilities() {
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  return syscall(SYS_capset, &header, data) == 0;
}

std::string failure(std::string_view what) {
  return fmt::format("{}: {}", what, std::strerror(errno));
}

}  // namespace

std::string identity_problem(const conf::Process& s) {
  if (!s.user.empty() && !getpwnam(s.user.c_str()))
    return fmt::format("server.user \"{}\": no such user", s.user);
  if (!s.group.empty() && !getgrnam(s.group.c_str()))
    return fmt::format("server.group \"{}\": no such group", s.group);
  return {};
}

PrivilegeDrop drop_privileges(const conf::Process& s) {
  const bool root = geteuid() == 0;
  if (s.user.empty()) {
    if (root && !s.allow_root)
      return {false, false,
              "refusing to serve as root: set server.user (e.g. \"geomx\"), or "
              "server.allow_root = true"};
    if (root) return {true, true, "serving as root (server.allow_root = true)"};
    clear_capabilities();
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    return {true, false, fmt::format("serving as uid {}", getuid())};
  }
  if (auto problem = identity_problem(s); !problem.empty()) return {false, false, problem};
  const passwd* pw = getpwnam(s.user.c_str());
  const uid_t uid = pw->pw_uid;
  gid_t gid = pw->pw_gid;
  if (!s.group.empty()) gid = getgrnam(s.group.c_str())->gr_gid;
  if (!root) {  // started as some user already (systemd User=, or by hand)
    clear_capabilities();
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (getuid() == uid) return {true, false, fmt::format("serving as {} (uid {})", s.user, uid)};
    return {true, true,
            fmt::format("not root: cannot switch to {}, serving as uid {}", s.user, getuid())};
  }
  if (setgroups(1, &gid) != 0) return {false, false, failure("setgroups")};
  if (setgid(gid) != 0) return {false, false, failure("setgid")};
  if (setuid(uid) != 0) return {false, false, failure("setuid")};
  if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0))
    return {false, false, "could become root again after setuid: refusing to serve"};
  if (!clear_capabilities()) return {false, false, failure("capset")};
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  return {true, false, fmt::format("now {} (uid {}, gid {}), no capabilities", s.user, uid, gid)};
}

}  // namespace geomx::daemon
