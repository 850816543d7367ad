#include "policy/policy_request.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace geomx::policy {

std::string_view PolicyRequest::get(std::string_view name) const {
  for (auto it = attributes.rbegin(); it != attributes.rend(); ++it)
    if (it->first == name) return it->second;
  return {};
}

bool PolicyRequest::has(std::string_view name) const {
  return std::any_of(attributes.begin(), attributes.end(),
                     [&](const auto& a) { return a.first == name; });
}

PolicyReader::Status PolicyReader::fail(std::string why) {
  error_ = std::move(why);
  buffer_.clear();
  at_ = scan_ = 0;
  return Status::malformed;
}

PolicyReader::Status PolicyReader::next(PolicyRequest& out) {
  if (!error_.empty()) return Status::malformed;
  for (;;) {
    const auto nl = buffer_.find('\n', scan_);
    if (buffer_.find('\0', scan_) < nl) return fail("a NUL byte");
    if (nl == std::string::npos) {
      if (buffer_.size() - scan_ > max_line)
        return fail(fmt::format("a line longer than {} bytes", max_line));
      // Keep what is unread only: a connection of many requests does not grow.
      if (at_ > 0) {
        buffer_.erase(0, at_);
        scan_ -= at_;
        at_ = 0;
      }
      return Status::more;
    }
    std::string_view line(buffer_.data() + scan_, nl - scan_);
    if (line.size() > max_line) return fail(fmt::format("a line longer than {} bytes", max_line));
    current_bytes_ += line.size() + 1;
    scan_ = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) {
      at_ = scan_;
      current_bytes_ = 0;
      if (current_.attributes.empty()) return fail("an empty request");
      if (current_.get("request") != "smtpd_access_policy")
        return fail(current_.has("request") ? fmt::format("request={} is not smtpd_access_policy",
                                                          current_.get("request").substr(0, 64))
                                            : std::string("no request=smtpd_access_policy"));
      out = std::move(current_);
      current_ = {};
      if (at_ == buffer_.size()) {
        buffer_.clear();
        at_ = scan_ = 0;
      }
      return Status::request;
    }
    const auto eq = line.find('=');
    if (eq == std::string_view::npos || eq == 0) return fail("a line that is not name=value");
    if (current_.attributes.size() == max_attributes)
      return fail(fmt::format("more than {} attributes", max_attributes));
    if (current_bytes_ > max_request)
      return fail(fmt::format("a request longer than {} bytes", max_request));
    current_.attributes.emplace_back(std::string(line.substr(0, eq)),
                                     std::string(line.substr(eq + 1)));
  }
}

std::string policy_reply(std::string_view action) {
  std::string out = "action=";
  out.reserve(action.size() + 10);
  for (char c : action) out += c == '\r' || c == '\n' ? ' ' : c;
  out += "\n\n";
  return out;
}

}  // namespace geomx::policy
