#pragma once
// Reading TOML tables with diagnostics: every wrong type, bad value and
// unknown key becomes a Diagnostic at its file:line:column, and reading goes
// on so that one run reports them all. Private to conf/ (loader.cpp).
#include <algorithm>
#include <cctype>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "conf/loader.hpp"

namespace geomx::conf::detail {

inline std::string_view type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    default:
      return "a date or time";
  }
}

inline bool valid_name(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
}

inline bool printable(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

// One SMTP reply line without its CRLF (at most 510 characters): a code
// from `low` to 5xx, then ' ' (a final line) or '-' (a continuation).
inline bool valid_reply(std::string_view s, char low, char separator) {
  return s.size() >= 4 && s.size() <= 510 && s[0] >= low && s[0] <= '5' &&
         std::isdigit(static_cast<unsigned char>(s[1])) &&
         std::isdigit(static_cast<unsigned char>(s[2])) && s[3] == separator && printable(s);
}

// A host name for replies and EHLO: printable, no spaces.
inline bool valid_host_name(std::string_view s) {
  return !s.empty() && s.size() <= 253 && printable(s) && s.find(' ') == std::string_view::npos;
}

// Collects diagnostics for one file.
class Reader {
 public:
  Reader(std::string file, std::vector<Diagnostic>& out) : file_(std::move(file)), out_(out) {}
  Position position(const toml::source_region& r) const {
    return {file_, static_cast<std::uint32_t>(r.begin.line),
            static_cast<std::uint32_t>(r.begin.column)};
  }
  void error(const toml::source_region& where, std::string path, std::string message) {
    out_.push_back({position(where), std::move(path), std::move(message)});
  }

 private:
  std::string file_;
  std::vector<Diagnostic>& out_;
};

// One TOML table being read: hands out values by key, reports wrong types
// and bad values, and when done every key that no one asked for.
class TableReader {
 public:
  TableReader(Reader& r, const toml::table& t, std::string path)
      : r_(r), t_(t), path_(std::move(path)) {}
  ~TableReader() {
    for (auto&& [key, value] : t_)
      if (!used_.contains(std::string(key.str())))
        r_.error(key.source(), sub(key.str()), "unknown key");
  }
  TableReader(const TableReader&) = delete;
  TableReader& operator=(const TableReader&) = delete;

  Reader& reader() { return r_; }
  const std::string& path() const { return path_; }
  std::string sub(std::string_view key) const {
    return path_.empty() ? std::string(key) : fmt::format("{}.{}", path_, key);
  }
  const toml::node* node(std::string_view key) {
    used_.emplace(key);
    return t_.get(key);
  }
  // An error at the key's value, or at the table when the key is missing.
  void error(std::string_view key, std::string message) {
    const toml::node* n = t_.get(key);
    r_.error(n ? n->source() : t_.source(), sub(key), std::move(message));
  }
  void error_at(const toml::node& n, std::string path, std::string message) {
    r_.error(n.source(), std::move(path), std::move(message));
  }
  bool required(std::string_view key) {
    if (node(key)) return true;
    error(key, "missing (required)");
    return false;
  }

  template <class T>
  auto typed(std::string_view key, std::string_view want)
      -> decltype(std::declval<const toml::node&>().as<T>()) {
    const toml::node* n = node(key);
    if (!n) return nullptr;
    if (auto* v = n->as<T>()) return v;
    error(key, fmt::format("expected {}, found {}", want, type_name(n->type())));
    return nullptr;
  }

  bool string(std::string_view key, std::string& out) {
    auto* v = typed<std::string>(key, "a string");
    if (v) out = v->get();
    return v != nullptr;
  }
  bool boolean(std::string_view key, bool& out) {
    auto* v = typed<bool>(key, "true or false");
    if (v) out = v->get();
    return v != nullptr;
  }
  template <class Int>
  bool integer(std::string_view key, Int& out, std::int64_t min, std::int64_t max) {
    auto* v = typed<std::int64_t>(key, "an integer");
    if (!v) return false;
    if (v->get() < min || v->get() > max) {
      error(key, fmt::format("{} is out of range ({} to {})", v->get(), min, max));
      return false;
    }
    out = static_cast<Int>(v->get());
    return true;
  }
  bool duration(std::string_view key, Duration& out, Duration min, Duration max) {
    auto* v = typed<std::string>(key, "a duration string such as \"20s\"");
    if (!v) return false;
    try {
      const Duration d = parse_duration(v->get());
      if (d < min || d > max) {
        error(key, fmt::format("{} is out of range ({} to {})", v->get(), format_duration(min),
                               format_duration(max)));
        return false;
      }
      out = d;
      return true;
    } catch (const std::invalid_argument& e) {
      error(key, e.what());
      return false;
    }
  }
  template <class E>
  bool choice(std::string_view key, E& out, std::initializer_list<E> options) {
    auto* v = typed<std::string>(key, "a string");
    if (!v) return false;
    std::string names;
    for (E o : options) {
      if (to_string(o) == v->get()) {
        out = o;
        return true;
      }
      names += fmt::format("{}\"{}\"", names.empty() ? "" : ", ", to_string(o));
    }
    error(key, fmt::format("\"{}\" is not one of {}", v->get(), names));
    return false;
  }
  // A string or an array of strings: fn(text, node, path) for each.
  template <class Fn>
  void each_string(std::string_view key, Fn fn) {
    const toml::node* n = node(key);
    if (!n) return;
    if (auto* s = n->as_string()) return fn(s->get(), *n, sub(key));
    auto* a = n->as_array();
    if (!a)
      return error(key, fmt::format("expected a string or an array of strings, found {}",
                                    type_name(n->type())));
    if (a->empty()) return error(key, "empty; leave the key out instead");
    for (std::size_t i = 0; i < a->size(); ++i) {
      const auto path = fmt::format("{}[{}]", sub(key), i);
      if (auto* s = (*a)[i].as_string())
        fn(s->get(), (*a)[i], path);
      else
        error_at((*a)[i], path,
                 fmt::format("expected a string, found {}", type_name((*a)[i].type())));
    }
  }
  // A table of tables ([pool.NAME]): fn(name, TableReader&) for each, in
  // file order.
  template <class Fn>
  void each_table(std::string_view key, Fn fn) {
    auto* t = typed<toml::table>(key, "a table");
    if (!t) return;
    std::vector<std::pair<const toml::key*, const toml::node*>> entries;
    for (auto&& [name, value] : *t) entries.emplace_back(&name, &value);
    std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
      const auto &x = a.second->source().begin, &y = b.second->source().begin;
      return std::tie(x.line, x.column) < std::tie(y.line, y.column);
    });
    for (const auto& [name, value] : entries) {
      const auto path = fmt::format("{}.{}", sub(key), name->str());
      if (auto* inner = value->as_table()) {
        TableReader tr(r_, *inner, path);
        if (!valid_name(name->str()))
          r_.error(name->source(), path, "names are 1-64 letters, digits, '_', '-' or '.'");
        fn(std::string(name->str()), tr);
      } else {
        error_at(*value, path, fmt::format("expected a table, found {}", type_name(value->type())));
      }
    }
  }
  // An array of tables ([[rule]]): fn(index, TableReader&) for each.
  template <class Fn>
  void each_array_table(std::string_view key, Fn fn) {
    const toml::node* n = node(key);
    if (!n) return;
    auto* a = n->as_array();
    if (!a || !a->is_array_of_tables())
      return error(key, fmt::format("expected an array of tables ([[{}]])", key));
    for (std::size_t i = 0; i < a->size(); ++i) {
      TableReader tr(r_, *(*a)[i].as_table(), fmt::format("{}[{}]", sub(key), i));
      fn(i, tr);
    }
  }

 private:
  Reader& r_;
  const toml::table& t_;
  std::string path_;
  std::set<std::string, std::less<>> used_;
};

}  // namespace geomx::conf::detail
