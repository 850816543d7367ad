#include "cli/geo_tools.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ostream.h>

#include "geo/export.hpp"
#include "geo/ptr_zone.hpp"
#include "geo/range.hpp"
#include "geo/sources.hpp"

namespace geomx::cli {
namespace {

struct LookupOptions {
  std::vector<std::string> databases;
  std::vector<std::string> asn_databases;
  bool json = false;
  std::vector<std::string> addresses;
};

std::vector<std::string> or_default(const std::vector<std::string>& databases) {
  return databases.empty() ? geo::default_databases() : databases;
}

int run_lookup(const LookupOptions& o) {
  const geo::GeoTable table = geo::build_table(or_default(o.databases), o.asn_databases);
  int errors = 0;
  auto answer = [&](std::string_view text) {
    geo::Address a;
    try {
      a = geo::parse_address(text);
    } catch (const geo::ParseError& e) {
      std::cout.flush();
      fmt::print(stderr, "geomx: lookup: {}\n", e.what());
      ++errors;
      return;
    }
    const geo::GeoValue& v = table.lookup(a);
    const auto country = v.country.code();
    const auto network = table.network(a).to_string();
    const auto org = table.organisation(v.asn);
    if (o.json && table.has_asn_data())
      fmt::print(
          std::cout,
          "{{\"ip\":{:?},\"country\":\"{}\",\"prefix\":\"{}\",\"asn\":{},\"as_org\":{:?}}}\n", text,
          country, network, v.asn, org);
    else if (o.json)
      fmt::print(std::cout, "{{\"ip\":{:?},\"country\":\"{}\",\"prefix\":\"{}\"}}\n", text, country,
                 network);
    else if (table.has_asn_data())  // AS0: no ASN database knows the address
      fmt::print(std::cout, "{} {} {} AS{}{}{}\n", text, country, network, v.asn,
                 org.empty() ? "" : " ", org);
    else
      fmt::print(std::cout, "{} {} {}\n", text, country, network);
  };
  if (o.addresses.size() == 1 && o.addresses.front() == "-") {
    // Streaming: answer each line as it comes, flushing before we block.
    for (std::string line; std::getline(std::cin, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) answer(line);
      if (std::cin.rdbuf()->in_avail() <= 0) std::cout.flush();
    }
  } else {
    for (const auto& text : o.addresses) answer(text);
  }
  return errors == 0 ? 0 : 1;
}

int run_aggregate(const std::vector<std::string>& files) {
  geo::RangeSet all;
  auto add = [&](geo::RangeSet set) {
    all.v4.insert(all.v4.end(), set.v4.begin(), set.v4.end());
    all.v6.insert(all.v6.end(), set.v6.begin(), set.v6.end());
  };
  if (files.empty() || (files.size() == 1 && files.front() == "-")) {
    const std::string text(std::istreambuf_iterator<char>(std::cin), {});
    add(geo::parse_cidr_list(text, "<stdin>"));
  } else {
    for (const auto& f : files) add(geo::load_cidr_file(f));
  }
  std::string out;
  for (const auto& p : geo::aggregate(all)) out += p.to_string() + '\n';
  std::cout << out;
  return 0;
}

struct ExportOptions {
  std::vector<std::string> databases;
  std::vector<std::string> countries;
  bool invert = false;
  geo::ExportFormat format = geo::ExportFormat::cidr;
  std::string name = "geomx";
};

int run_export(const ExportOptions& o) {
  std::vector<geo::Country> wanted;
  for (const auto& text : o.countries) {
    auto c = geo::Country::parse(text);
    if (!c) throw std::invalid_argument(fmt::format("export: '{}' is not a country code", text));
    wanted.push_back(*c);
  }
  const geo::GeoTable table = geo::build_table(or_default(o.databases));
  auto set = table.select([&](const geo::GeoValue& v) {
    return (std::find(wanted.begin(), wanted.end(), v.country) != wanted.end()) != o.invert;
  });
  std::ostringstream out;
  geo::write_address_list(out, o.format, o.name, geo::aggregate(set));
  std::cout << out.view();
  return 0;
}

struct PtrZoneCli {
  std::vector<std::string> networks;
  geo::PtrZoneOptions zone;
  std::string out = ".";
};

// Each zone to OUT/ORIGIN.zone, written whole (a temporary file renamed).
int run_ptr_zone(PtrZoneCli o) {
  std::vector<geo::Prefix> networks;
  try {
    for (const auto& n : o.networks) networks.push_back(geo::parse_prefix(n));
    if (o.zone.serial == 0) o.zone.serial = geo::dated_serial(std::time(nullptr));
    for (const auto& z : geo::ptr_zones(networks, o.zone)) {
      const std::string path = o.out + "/" + z.origin + ".zone";
      const std::string tmp = path + ".tmp";
      {
        std::ofstream f(tmp, std::ios::trunc);
        f << z.text;
        f.close();
        if (!f) throw std::runtime_error(fmt::format("{}: {}", tmp, std::strerror(errno)));
      }
      if (std::rename(tmp.c_str(), path.c_str()) != 0)
        throw std::runtime_error(fmt::format("{}: {}", path, std::strerror(errno)));
      fmt::print(std::cout, "{} {} {} records\n", path, z.origin, z.records);
    }
  } catch (const std::exception& e) {
    std::cout.flush();
    fmt::print(stderr, "geomx: ptr-zone: {}\n", e.what());
    return 1;
  }
  return 0;
}

}  // namespace

void add_geo_tools(CLI::App& app, Command& command) {
  auto lookup_opts = std::make_shared<LookupOptions>();
  auto* lookup = app.add_subcommand("lookup", "Print the country and matched network of addresses");
  lookup
      ->add_option("--db", lookup_opts->databases,
                   "Database (.mmdb or range file), repeatable, first match wins "
                   "[default: the MaxMind country DB if installed, else tor-geoipdb]")
      ->allow_extra_args(false);
  lookup
      ->add_option("--asn-db", lookup_opts->asn_databases,
                   "ASN database (GeoLite2-ASN .mmdb), repeatable: also print the AS number "
                   "and organisation")
      ->allow_extra_args(false);
  lookup->add_flag("--json", lookup_opts->json, "One JSON object per line");
  lookup->add_option("address", lookup_opts->addresses, "Addresses, or - to read them from stdin")
      ->required();
  lookup->callback(
      [&command, lookup_opts] { command = [lookup_opts] { return run_lookup(*lookup_opts); }; });

  auto files = std::make_shared<std::vector<std::string>>();
  auto* cidr = app.add_subcommand("cidr", "CIDR list tools");
  cidr->require_subcommand(1);
  auto* aggregate =
      cidr->add_subcommand("aggregate", "Print the fewest prefixes covering exactly the input");
  aggregate->add_option("file", *files, "CIDR list files (default: stdin)");
  aggregate->callback([&command, files] { command = [files] { return run_aggregate(*files); }; });

  auto export_opts = std::make_shared<ExportOptions>();
  auto* exp = app.add_subcommand("export", "Print the address list of some countries for a router");
  exp->add_option("--db", export_opts->databases, "Database, repeatable (as for lookup)")
      ->allow_extra_args(false);
  exp->add_option("--countries", export_opts->countries, "Country codes, comma-separated")
      ->required()
      ->delimiter(',');
  exp->add_flag("--invert", export_opts->invert, "Every address NOT in those countries");
  exp->add_option("--format", export_opts->format, "cidr, mikrotik, nft or ipset")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, geo::ExportFormat>{{"cidr", geo::ExportFormat::cidr},
                                                   {"mikrotik", geo::ExportFormat::mikrotik},
                                                   {"nft", geo::ExportFormat::nft},
                                                   {"ipset", geo::ExportFormat::ipset}}))
      ->option_text("FORMAT");  // not CLI11's "ENUM:value in {cidr->0,...}"
  exp->add_option("--name", export_opts->name, "Address list / set name [default: geomx]");
  exp->callback(
      [&command, export_opts] { command = [export_opts] { return run_export(*export_opts); }; });

  auto ptr = std::make_shared<PtrZoneCli>();
  auto* pz = app.add_subcommand(
      "ptr-zone", "Write reverse DNS zones (and with --forward the A/AAAA zone) for a NAT pool");
  pz->add_option("network", ptr->networks, "Networks of the pool (CIDR)")->required();
  pz->add_option("--name", ptr->zone.name_template,
                 "Host name of each address: {a} {b} {c} {d} are IPv4 octets, {ip} the address "
                 "with '-' between its parts, IPv6 as 8 groups (e.g. "
                 "'nat-{a}-{b}-{c}-{d}.example.net')")
      ->required();
  pz->add_option("--ns", ptr->zone.name_servers, "Name server of the zones, repeatable")
      ->required()
      ->allow_extra_args(false);
  pz->add_flag("--forward", ptr->zone.forward, "Also write the A/AAAA zone of the names");
  pz->add_option("--out", ptr->out, "Folder for the ORIGIN.zone files [default: .]");
  pz->add_option("--serial", ptr->zone.serial, "SOA serial [default: YYYYMMDD01, today UTC]");
  pz->add_option("--ttl", ptr->zone.ttl, "TTL of the records in seconds [default: 3600]")
      ->check(CLI::Range(1u, 2147483647u));
  pz->add_option("--hostmaster", ptr->zone.hostmaster,
                 "SOA mailbox as a name [default: hostmaster.ZONE]");
  pz->callback([&command, ptr] { command = [ptr] { return run_ptr_zone(*ptr); }; });
}

}  // namespace geomx::cli
