// libFuzzer target for the policy delegation reader (policy/policy_request.hpp):
// each input is fed in chunks whose sizes come from its first byte and must
// give the same requests (and the same malformed verdict) as fed whole;
// every request returned holds the protocol's limits, and the greylist
// triplet of each one is formed as the listener forms it.
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "geo/address.hpp"
#include "policy/greylist.hpp"
#include "policy/policy_request.hpp"

using namespace geomx::policy;

namespace {

struct Outcome {
  std::vector<PolicyRequest> requests;
  bool malformed = false;
};

Outcome read_all(std::string_view input, std::size_t step) {
  Outcome o;
  PolicyReader r;
  for (std::size_t at = 0; at < input.size() && !o.malformed; at += step) {
    r.feed(input.substr(at, step));
    PolicyRequest req;
    for (;;) {
      const auto s = r.next(req);
      if (s == PolicyReader::Status::more) break;
      if (s == PolicyReader::Status::malformed) {
        o.malformed = true;
        break;
      }
      o.requests.push_back(std::move(req));
    }
  }
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t step = 1 + data[0] % 61;
  const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  const auto whole = read_all(input, input.size() + 1);
  const auto parts = read_all(input, step);
  if (whole.malformed != parts.malformed || whole.requests.size() != parts.requests.size())
    std::abort();
  geomx::conf::Greylist g;
  for (std::size_t i = 0; i < whole.requests.size(); ++i) {
    const auto& a = whole.requests[i];
    if (a.attributes != parts.requests[i].attributes) std::abort();
    if (a.attributes.empty() || a.attributes.size() > PolicyReader::max_attributes) std::abort();
    if (a.get("request") != "smtpd_access_policy") std::abort();
    for (const auto& [name, value] : a.attributes)
      if (name.empty() || name.find('=') != std::string::npos ||
          name.size() + value.size() > PolicyReader::max_line)
        std::abort();
    const auto client = geomx::geo::try_parse_address(a.get("client_address"));
    const auto t = make_triplet(g, client.value_or(geomx::geo::Address::v4(0)), a.get("sender"),
                                a.get("recipient"));
    (void)t.key();
    if (policy_reply(a.get("sender")).find("\n\n") + 2 != policy_reply(a.get("sender")).size())
      std::abort();
  }
  return 0;
}
