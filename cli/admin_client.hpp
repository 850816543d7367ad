#pragma once
// The client side of the admin endpoint, for the commands that talk to the
// running daemon (reload, top, block): the endpoint the config file names
// ([admin] socket when it is set, else listen), or --admin ADDR:PORT or
// unix:PATH; HTTPS with the endpoint's own certificate.
#include <chrono>
#include <optional>
#include <string>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>

#include "conf/config.hpp"

namespace geomx::cli {

namespace http = boost::beast::http;

struct AdminClient {
  std::string config_path, admin_override;

  // Reads the file; prints its errors and returns false if it has any.
  bool read(conf::Config& config) const;
  // The answer, all of it within `limit`, or nullopt after saying why there
  // was none (exit 2).
  std::optional<http::response<http::string_body>> call(const conf::Config& config, http::verb verb,
                                                        const std::string& target,
                                                        std::chrono::seconds limit) const;
};

}  // namespace geomx::cli
