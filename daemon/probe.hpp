#pragma once
// One SMTP (or TCP) probe of a member, bounded by health.timeout: connect;
// a PROXY v2 LOCAL header when the pool sends PROXY (Postfix then logs no
// warning); the whole banner, 2xx; EHLO, 250; with starttls: STARTTLS, 220,
// the TLS handshake and the certificate's subject and days to expiry; QUIT,
// 221. The result is typed (policy::ProbeStatus) with the detail in words.
#include <boost/asio/awaitable.hpp>

#include "conf/config.hpp"
#include "policy/health_board.hpp"

namespace geomx::daemon {

boost::asio::awaitable<policy::ProbeResult> probe_member(const conf::Pool& pool,
                                                         const conf::Member& member);

}  // namespace geomx::daemon
