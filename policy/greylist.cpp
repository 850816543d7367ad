#include "policy/greylist.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

#include <fmt/format.h>
#include <openssl/evp.h>

namespace geomx::policy {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && lower(s.substr(0, prefix.size())) == prefix;
}

// Words of digits only become "#" (VERP: bounce-123-456 -> bounce-#-#).
std::string hash_numbers(std::string_view local) {
  std::string out;
  std::size_t i = 0;
  while (i < local.size()) {
    const bool word_start = i == 0 || !std::isalnum(static_cast<unsigned char>(local[i - 1]));
    std::size_t j = i;
    while (j < local.size() && std::isdigit(static_cast<unsigned char>(local[j]))) ++j;
    const bool word_end = j == local.size() || !std::isalnum(static_cast<unsigned char>(local[j]));
    if (j > i && word_start && word_end) {
      out += '#';
      i = j;
    } else {
      out += local[i++];
    }
  }
  return out;
}

GreyKey digest(std::string_view kind, std::string_view a, std::string_view b, std::string_view c) {
  // Parts separated by a byte no address holds, so ("ab","c") != ("a","bc").
  std::string text;
  text.reserve(kind.size() + a.size() + b.size() + c.size() + 3);
  text.append(kind).append(1, '\0').append(a).append(1, '\0').append(b).append(1, '\0').append(c);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), md, &len, EVP_sha256(), nullptr);
  GreyKey k{};
  std::copy_n(md, k.size(), k.begin());
  return k;
}

}  // namespace

std::string normal_address(std::string_view address) {
  if (address == "<>") return {};
  const auto at = address.rfind('@');
  std::string local(at == std::string_view::npos ? address : address.substr(0, at));
  std::string domain = at == std::string_view::npos ? "" : lower(address.substr(at + 1));
  // BATV: prvs=TAG=user (RFC draft), also seen as btv1==TAG==user.
  if (starts_with_ci(local, "prvs=") || starts_with_ci(local, "msprvs1=")) {
    if (const auto eq = local.find('=', local.find('=') + 1); eq != std::string::npos)
      local = local.substr(eq + 1);
  } else if (starts_with_ci(local, "btv1==")) {
    if (const auto eq = local.find("==", 6); eq != std::string::npos) local = local.substr(eq + 2);
  }
  // SRS: SRS0=HASH=TT=domain=user@forwarder; SRS1=HASH=fwd==HASH=TT=domain=user@...
  if (starts_with_ci(local, "srs0=") || starts_with_ci(local, "srs1=")) {
    std::string_view rest(local);
    std::array<std::size_t, 2> last{std::string::npos, std::string::npos};
    for (std::size_t i = 0; i < rest.size(); ++i)
      if (rest[i] == '=') last = {last[1], i};
    if (last[0] != std::string::npos && last[1] > last[0] + 1 && last[1] + 1 < rest.size()) {
      domain = lower(rest.substr(last[0] + 1, last[1] - last[0] - 1));
      local = std::string(rest.substr(last[1] + 1));
    }
  }
  if (const auto plus = local.find('+'); plus != std::string::npos && plus > 0) local.resize(plus);
  local = hash_numbers(lower(local));
  return domain.empty() ? local : local + "@" + domain;
}

std::string encode(const GreyRecord& r) {
  return fmt::format("{} {} {}", r.first, r.last, r.passes);
}

std::optional<GreyRecord> decode_grey(std::string_view text) {
  GreyRecord r;
  const char* p = text.data();
  const char* end = text.data() + text.size();
  auto field = [&](auto& out) {
    const auto [q, ec] = std::from_chars(p, end, out);
    if (ec != std::errc() || q == p) return false;
    p = q;
    return true;
  };
  auto space = [&] { return p != end && *p++ == ' '; };
  if (!field(r.first) || !space() || !field(r.last) || !space() || !field(r.passes) || p != end)
    return std::nullopt;
  return r;
}

std::string to_hex(const GreyKey& k) {
  std::string out;
  out.reserve(k.size() * 2);
  for (auto b : k) out += fmt::format("{:02x}", b);
  return out;
}

GreyKey Triplet::key() const {
  return digest("triplet", network, sender, recipient);
}
GreyKey Triplet::network_key() const {
  return digest("network", network, {}, {});
}

Triplet make_triplet(const conf::Greylist& g, const geo::Address& client, std::string_view sender,
                     std::string_view recipient) {
  const auto net = geo::Prefix::containing(client, client.is_v4() ? g.network_v4 : g.network_v6);
  // The recipient lower-cased only, as postgrey does: user+a and user+b are
  // mailboxes of their own.
  return {net.to_string(), normal_address(sender), lower(recipient)};
}

std::string_view to_string(GreyVerdict v) {
  switch (v) {
    case GreyVerdict::new_triplet:
      return "new";
    case GreyVerdict::early:
      return "early";
    case GreyVerdict::passed:
      return "passed";
    case GreyVerdict::auto_allowed:
      return "auto_allowed";
  }
  return "?";
}

GreyStep greylist_step(const conf::Greylist& g, std::int64_t now,
                       const std::optional<GreyRecord>& triplet,
                       const std::optional<GreyRecord>& network) {
  using std::chrono::duration_cast;
  using std::chrono::seconds;
  const auto delay = duration_cast<seconds>(g.delay).count();
  const auto window = duration_cast<seconds>(g.retry_window).count();
  const auto max_age = duration_cast<seconds>(g.max_age).count();
  GreyStep step;
  if (g.auto_allow > 0 && network && network->passes >= g.auto_allow &&
      now - network->last <= max_age) {
    step.verdict = GreyVerdict::auto_allowed;
    // Kept alive while the network sends, written at most once a minute.
    if (now - network->last >= 60) step.network = GreyRecord{network->first, now, network->passes};
    return step;
  }
  const bool known = triplet && now - triplet->last <= max_age &&
                     (triplet->passes > 0 || now - triplet->first <= window);
  if (!known) {
    step.verdict = GreyVerdict::new_triplet;
    step.triplet = GreyRecord{now, now, 0};
    step.remaining = seconds(delay);
    return step;
  }
  if (triplet->passes == 0 && now - triplet->first < delay) {
    step.verdict = GreyVerdict::early;
    step.triplet = GreyRecord{triplet->first, now, 0};
    step.remaining = seconds(delay - (now - triplet->first));
    return step;
  }
  step.verdict = GreyVerdict::passed;
  step.triplet = GreyRecord{triplet->first, now, triplet->passes + 1};
  if (triplet->passes == 0) {  // a real retry: counts towards the network's auto_allow
    GreyRecord n = network && now - network->last <= max_age ? *network : GreyRecord{now, now, 0};
    n.last = now;
    ++n.passes;
    step.network = n;
  }
  return step;
}

std::string verdict_header(const Snapshot& snap, const Decision& d,
                           std::optional<int> dnsbl_score) {
  const conf::Config& c = snap.config;
  std::string lists;
  for (std::size_t i = 0; i < c.lists.size(); ++i)
    if (d.lists & (std::uint64_t{1} << i)) lists += (lists.empty() ? "" : ",") + c.lists[i].name;
  std::string out =
      fmt::format("{}: country={} list={} rule={}", c.policy.header, d.country.code(),
                  lists.empty() ? "-" : lists, d.waits ? std::string("-") : c.rules[d.rule].name);
  if (!c.dnsbl_sites.empty())
    out += dnsbl_score ? fmt::format(" dnsbl={}", *dnsbl_score) : std::string(" dnsbl=-");
  out += " node=" + (c.store.node.empty() ? c.server.hostname : c.store.node);
  return out;
}

std::string remaining_text(std::chrono::seconds s) {
  const auto n = s.count();
  if (n < 60) return fmt::format("{} second{}", n, n == 1 ? "" : "s");
  const auto m = (n + 59) / 60;
  return fmt::format("{} minute{}", m, m == 1 ? "" : "s");
}

std::string grey_reply(const conf::Greylist& g, std::chrono::seconds remaining) {
  std::string out = g.reply;
  constexpr std::string_view slot = "{remaining}";
  if (const auto at = out.find(slot); at != std::string::npos)
    out.replace(at, slot.size(), remaining_text(remaining));
  return out;
}

}  // namespace geomx::policy
