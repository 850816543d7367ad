#pragma once
// Postfix's policy delegation protocol (SMTPD_POLICY_README), sans I/O:
// a request is "name=value" lines ended by an empty line; the reply is
// "action=..." and an empty line; a connection carries many. Bytes go in
// as they come; out come whole requests, or "malformed" (then the
// connection is closed: a guessed answer could accept what should not be).
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace geomx::policy {

struct PolicyRequest {
  std::vector<std::pair<std::string, std::string>> attributes;  // in order
  // The value of `name` (the last if it comes twice), "" if absent.
  std::string_view get(std::string_view name) const;
  bool has(std::string_view name) const;
};

class PolicyReader {
 public:
  // Postfix's longest attribute is bounded by its line limits (2048 by
  // default; ccert_subject and the like less): these leave room for a
  // raised smtpd_line_length_limit and stop a peer that sends without end.
  static constexpr std::size_t max_line = 16 * 1024;
  static constexpr std::size_t max_attributes = 128;
  static constexpr std::size_t max_request = 128 * 1024;

  enum class Status { more, request, malformed };
  // Takes bytes; call next() until it says more.
  void feed(std::string_view bytes) { buffer_.append(bytes); }
  // The next whole request (into `out`), more (wants bytes), or malformed
  // (error() says why; nothing after it is read).
  Status next(PolicyRequest& out);
  const std::string& error() const { return error_; }
  // Bytes fed and not yet part of a returned request.
  std::size_t pending() const { return buffer_.size() - at_; }

 private:
  Status fail(std::string why);
  std::string buffer_;
  std::size_t at_ = 0;    // where the request being read begins in buffer_
  std::size_t scan_ = 0;  // where the search for its next line ends goes on
  PolicyRequest current_;
  std::size_t current_bytes_ = 0;
  std::string error_;
};

// What the listener answers: "action=TEXT\n\n" (TEXT one line: CR and LF
// become spaces).
std::string policy_reply(std::string_view action);

}  // namespace geomx::policy
