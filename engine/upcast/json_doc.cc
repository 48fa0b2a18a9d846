#include "engine/upcast/json_doc.h"

#include <algorithm>

#include <cstring>

namespace varve::detail::json {

value* value::find(std::string_view key) {
  const size_t i = index_of(key);
  return i < members.size() ? &members[i].v : nullptr;
}

const value* value::find(std::string_view key) const {
  const size_t i = index_of(key);
  return i < members.size() ? &members[i].v : nullptr;
}

size_t value::index_of(std::string_view key) const {
  for (size_t i = 0; i < members.size(); ++i)
    if (members[i].key == key) return i;
  return members.size();
}

namespace {

// Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlongs, no
// surrogates, nothing past U+10FFFF), 0 if there is none.
size_t utf8_length(const unsigned char* p, size_t n) {
  const unsigned char c = p[0];
  auto cont = [&](size_t i, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
    return i < n && p[i] >= lo && p[i] <= hi;
  };
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
  if (c == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

void put_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

class parser {
 public:
  parser(std::string_view t, size_t max_depth) : t_(t), max_depth_(max_depth) {}

  result<value> run() {
    value v;
    if (!parse_value(v, 0)) return fail();
    ws();
    if (i_ != t_.size()) {
      why_ = "text after the JSON value";
      return fail();
    }
    return v;
  }

 private:
  status fail() const {
    return status(errc::invalid_argument, "offset " + std::to_string(i_) + ": " + why_);
  }
  bool error(const char* why) {
    why_ = why;
    return false;
  }
  void ws() {
    while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\t' || t_[i_] == '\n' || t_[i_] == '\r'))
      ++i_;
  }
  bool literal(std::string_view word) {
    if (t_.substr(i_, word.size()) != word) return error("invalid literal");
    i_ += word.size();
    return true;
  }

  bool parse_value(value& v, size_t depth) {
    ws();
    if (i_ == t_.size()) return error("unexpected end of input");
    const char c = t_[i_];
    switch (c) {
      case '{': return parse_object(v, depth + 1);
      case '[': return parse_array(v, depth + 1);
      case '"': v.k = value::kind::string; return parse_string(v.text);
      case 't': v.k = value::kind::boolean; v.text = "true"; return literal("true");
      case 'f': v.k = value::kind::boolean; v.text = "false"; return literal("false");
      case 'n': v.k = value::kind::null; return literal("null");
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number(v);
        return error("unexpected character");
    }
  }

  bool digits() {
    const size_t at = i_;
    while (i_ < t_.size() && t_[i_] >= '0' && t_[i_] <= '9') ++i_;
    return i_ > at;
  }

  bool parse_number(value& v) {
    const size_t at = i_;
    if (t_[i_] == '-') ++i_;
    if (i_ < t_.size() && t_[i_] == '0') {
      ++i_;
    } else if (!digits()) {
      return error("malformed number");
    }
    if (i_ < t_.size() && t_[i_] == '.') {
      ++i_;
      if (!digits()) return error("malformed number");
    }
    if (i_ < t_.size() && (t_[i_] == 'e' || t_[i_] == 'E')) {
      ++i_;
      if (i_ < t_.size() && (t_[i_] == '+' || t_[i_] == '-')) ++i_;
      if (!digits()) return error("malformed number");
    }
    v.k = value::kind::number;
    v.text.assign(t_.substr(at, i_ - at));
    return true;
  }

  bool hex4(uint32_t& cp) {
    if (t_.size() - i_ < 4) return error("truncated \\u escape");
    cp = 0;
    for (int k = 0; k < 4; ++k) {
      const char h = t_[i_++];
      cp <<= 4;
      if (h >= '0' && h <= '9') cp |= static_cast<uint32_t>(h - '0');
      else if (h >= 'a' && h <= 'f') cp |= static_cast<uint32_t>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') cp |= static_cast<uint32_t>(h - 'A' + 10);
      else return error("bad hex digit in \\u escape");
    }
    return true;
  }

  // At the opening quote; decodes into out.
  bool parse_string(std::string& out) {
    ++i_;
    out.clear();
    for (;;) {
      if (i_ >= t_.size()) return error("unterminated string");
      const unsigned char c = static_cast<unsigned char>(t_[i_]);
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c < 0x20) return error("control character in string");
      if (c == '\\') {
        if (++i_ >= t_.size()) return error("unterminated string");
        const char e = t_[i_++];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            uint32_t cp = 0;
            if (!hex4(cp)) return false;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return error("lone low surrogate in \\u escape");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              uint32_t lo = 0;
              if (t_.substr(i_, 2) != "\\u") return error("high surrogate without its low half");
              i_ += 2;
              if (!hex4(lo)) return false;
              if (lo < 0xDC00 || lo > 0xDFFF) return error("high surrogate without its low half");
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            put_utf8(cp, out);
            break;
          }
          default: return error("unknown escape in string");
        }
        continue;
      }
      const size_t n = utf8_length(reinterpret_cast<const unsigned char*>(t_.data()) + i_,
                                   t_.size() - i_);
      if (n == 0) return error("invalid UTF-8 in string");
      out.append(t_.substr(i_, n));
      i_ += n;
    }
  }

  bool parse_array(value& v, size_t depth) {
    if (depth > max_depth_) return error("nested too deeply");
    v.k = value::kind::array;
    ++i_;
    ws();
    if (i_ < t_.size() && t_[i_] == ']') {
      ++i_;
      return true;
    }
    for (;;) {
      v.items.emplace_back();
      if (!parse_value(v.items.back(), depth)) return false;
      ws();
      if (i_ >= t_.size()) return error("unterminated array");
      if (t_[i_] == ',') {
        ++i_;
        continue;
      }
      if (t_[i_] == ']') {
        ++i_;
        return true;
      }
      return error("expected ',' or ']' in array");
    }
  }

  bool parse_object(value& v, size_t depth) {
    if (depth > max_depth_) return error("nested too deeply");
    v.k = value::kind::object;
    ++i_;
    ws();
    if (i_ < t_.size() && t_[i_] == '}') {
      ++i_;
      return true;
    }
    for (;;) {
      ws();
      if (i_ >= t_.size() || t_[i_] != '"') return error("expected a string key in object");
      const size_t key_at = i_;
      member m;
      if (!parse_string(m.key)) return false;
      if (v.index_of(m.key) != v.members.size()) {
        i_ = key_at;
        return error("duplicate key in object");
      }
      ws();
      if (i_ >= t_.size() || t_[i_] != ':') return error("expected ':' after key");
      ++i_;
      if (!parse_value(m.v, depth)) return false;
      v.members.push_back(std::move(m));
      ws();
      if (i_ >= t_.size()) return error("unterminated object");
      if (t_[i_] == ',') {
        ++i_;
        continue;
      }
      if (t_[i_] == '}') {
        ++i_;
        return true;
      }
      return error("expected ',' or '}' in object");
    }
  }

  std::string_view t_;
  size_t max_depth_;
  size_t i_ = 0;
  const char* why_ = "";
};

void write_string(std::string_view s, std::string& out) {
  static const char kHex[] = "0123456789abcdef";
  out += '"';
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

}  // namespace

result<value> parse(std::string_view text, size_t max_depth) { return parser(text, max_depth).run(); }

void write(const value& v, std::string& out) {
  switch (v.k) {
    case value::kind::null: out += "null"; return;
    case value::kind::boolean:
    case value::kind::number: out += v.text; return;
    case value::kind::string: write_string(v.text, out); return;
    case value::kind::array:
      out += '[';
      for (size_t i = 0; i < v.items.size(); ++i) {
        if (i) out += ',';
        write(v.items[i], out);
      }
      out += ']';
      return;
    case value::kind::object:
      out += '{';
      for (size_t i = 0; i < v.members.size(); ++i) {
        if (i) out += ',';
        write_string(v.members[i].key, out);
        out += ':';
        write(v.members[i].v, out);
      }
      out += '}';
      return;
  }
}

size_t depth(const value& v) {
  size_t d = 0;
  for (const value& i : v.items) d = std::max(d, depth(i));
  for (const member& m : v.members) d = std::max(d, depth(m.v));
  return v.k == value::kind::array || v.k == value::kind::object ? d + 1 : 0;
}

result<field_path> parse_field(std::string_view text) {
  field_path p;
  p.text.assign(text);
  if (text.empty()) return status(errc::invalid_argument, "empty field name");
  if (text[0] != '/') {
    p.tokens.emplace_back(text);
    return p;
  }
  // RFC 6901: "/a~1b/c~0d" is the tokens "a/b" and "c~d".
  size_t i = 1;
  for (;;) {
    std::string tok;
    while (i < text.size() && text[i] != '/') {
      if (text[i] == '~') {
        if (i + 1 >= text.size() || (text[i + 1] != '0' && text[i + 1] != '1'))
          return status(errc::invalid_argument, "JSON pointer '" + p.text + "': '~' must be ~0 or ~1");
        tok += text[i + 1] == '0' ? '~' : '/';
        i += 2;
      } else {
        tok += text[i++];
      }
    }
    p.tokens.push_back(std::move(tok));
    // A path is the nesting it creates (a rename or add makes its missing
    // objects): refused here, by the file, rather than by every payload.
    if (p.tokens.size() > kMaxPointerTokens)
      return status(errc::invalid_argument, "JSON pointer '" + p.text + "' is deeper than " +
                                                std::to_string(kMaxPointerTokens) + " levels");
    if (i >= text.size()) break;
    ++i;  // the '/'
  }
  return p;
}

result<value*> parent_of(value& root, const field_path& p, bool create) {
  value* at = &root;
  for (size_t i = 0; i + 1 <= p.tokens.size(); ++i) {
    if (!at->is_object())
      return status(errc::invalid_argument,
                    "field '" + p.text + "': the payload has no object at that place");
    if (i + 1 == p.tokens.size()) break;
    value* next = at->find(p.tokens[i]);
    if (!next) {
      if (!create) return static_cast<value*>(nullptr);
      at->members.push_back(member{p.tokens[i], value{}});
      next = &at->members.back().v;
      next->k = value::kind::object;
    }
    at = next;
  }
  return at;
}

}  // namespace varve::detail::json
