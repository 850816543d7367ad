#pragma once
// The admin endpoint's TLS context, apart from the server so that the
// preflight of `run` and `check` builds it without the HTTP code.
#include <memory>
#include <string>

#include <boost/asio/ssl/context.hpp>

namespace geomx::admin {

// From its PEM certificate (chain) and key; throws std::system_error naming
// the files. `run` makes it when it binds, `check` to find a missing or
// mismatched file before a restart does.
std::unique_ptr<boost::asio::ssl::context> tls_context(const std::string& cert,
                                                       const std::string& key);

}  // namespace geomx::admin
