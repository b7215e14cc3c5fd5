// pre_tokenizer.cpp: Split / ByteLevel pre-tokenizers of tokenizer.json on PCRE2 (tokenizer).
// HF compiles these regexes with Oniguruma; PCRE2 (UTF + UCP) agrees on the syntax they use except for \s, which
// in Oniguruma also matches U+0085 (NEL), so \s is widened here. \h (a hex digit in Oniguruma) is rewritten too.
// Unicode tables: PCRE2 10.42 ships Unicode 14; characters assigned later may split differently from HF.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <atomic>

#include "dsv3/base/error.h"
#include "dsv3/tokenizer/tokenizer_impl.h"
#include "dsv3/tokenizer/utf8.h"

namespace dsv3::detail {
namespace {

std::atomic<uint64_t> g_regex_serial{1};

// The HF ByteLevel pre-tokenizer's own regex (GPT-2), used when use_regex is true.
const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string oniguruma_to_pcre2(const std::string& p) {
  std::string out;
  out.reserve(p.size() + 16);
  int class_depth = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[i + 1];
      ++i;
      if (e == 's') {
        out += class_depth ? "\\s\\x{85}" : "[\\s\\x{85}]";
      } else if (e == 'S' && !class_depth) {
        out += "[^\\s\\x{85}]";
      } else if (e == 'h') {
        out += class_depth ? "0-9a-fA-F" : "[0-9a-fA-F]";
      } else if (e == 'H' && !class_depth) {
        out += "[^0-9a-fA-F]";
      } else {
        out += c;
        out += e;
      }
      continue;
    }
    if (c == '[') {
      if (class_depth && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX [:alpha:] inside a class
        const size_t close = p.find(":]", i + 2);
        if (close != std::string::npos) {
          out.append(p, i, close + 2 - i);
          i = close + 1;
          continue;
        }
      }
      ++class_depth;
      out += c;
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < p.size() && p[i + 1] == '^') {
        out += '^';
        ++i;
      }
      if (i + 1 < p.size() && p[i + 1] == ']') {
        out += ']';
        ++i;
      }
      continue;
    }
    if (c == ']' && class_depth) --class_depth;
    out += c;
  }
  return out;
}

struct ThreadMatch {
  pcre2_match_data* md = nullptr;
  uint64_t serial = 0;
};

// Per-thread PCRE2 state: a JIT stack and one match-data block per regex (keyed by the regex's serial number).
struct ThreadRegexState {
  pcre2_match_context* mctx = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;
  std::vector<ThreadMatch> mds;
  ThreadRegexState() {
    mctx = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
    if (mctx && jit_stack) pcre2_jit_stack_assign(mctx, nullptr, jit_stack);
  }
  ~ThreadRegexState() {
    for (auto& m : mds) pcre2_match_data_free(m.md);
    if (jit_stack) pcre2_jit_stack_free(jit_stack);
    if (mctx) pcre2_match_context_free(mctx);
  }
  pcre2_match_data* get(uint64_t serial, const pcre2_code* code) {
    for (auto& m : mds)
      if (m.serial == serial) return m.md;
    if (mds.size() >= 64) {  // regexes of destroyed tokenizers: start over
      for (auto& m : mds) pcre2_match_data_free(m.md);
      mds.clear();
    }
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
    CHECK(md != nullptr, "pcre2_match_data_create_from_pattern failed");
    mds.push_back({md, serial});
    return md;
  }
};

ThreadRegexState& thread_regex_state() {
  thread_local ThreadRegexState state;
  return state;
}

SplitBehavior parse_behavior(const std::string& s) {
  if (s == "Isolated") return SplitBehavior::kIsolated;
  if (s == "Removed") return SplitBehavior::kRemoved;
  if (s == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (s == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (s == "Contiguous") return SplitBehavior::kContiguous;
  FAIL("tokenizer.json: pre_tokenizer Split behavior '{}' is not supported", s);
}

void add_steps(const nlohmann::json& j, PreTokenizer& pt, const std::string& where) {
  EXPECT(j.is_object() && j.contains("type"), "tokenizer.json: {} has no type", where);
  const std::string type = j["type"];
  EXPECT(!pt.byte_level, "tokenizer.json: {} ({}) after the ByteLevel pre-tokenizer is not supported", where, type);
  if (type == "Sequence") {
    EXPECT(j.contains("pretokenizers") && j["pretokenizers"].is_array(), "tokenizer.json: {}.pretokenizers missing",
           where);
    for (size_t i = 0; i < j["pretokenizers"].size(); ++i)
      add_steps(j["pretokenizers"][i], pt, fmt::format("{}.pretokenizers[{}]", where, i));
  } else if (type == "Split") {
    EXPECT(j.contains("pattern") && j["pattern"].is_object(), "tokenizer.json: {}.pattern missing", where);
    const auto& pat = j["pattern"];
    SplitStep step;
    if (pat.contains("Regex")) {
      step.regex = std::make_unique<Regex>(pat["Regex"].get<std::string>(), false);
    } else if (pat.contains("String")) {
      step.regex = std::make_unique<Regex>(pat["String"].get<std::string>(), true);
    } else {
      FAIL("tokenizer.json: {}.pattern is neither Regex nor String", where);
    }
    step.behavior = parse_behavior(j.value("behavior", std::string("Isolated")));
    step.invert = j.value("invert", false);
    pt.steps.push_back(std::move(step));
  } else if (type == "ByteLevel") {
    EXPECT(!j.value("add_prefix_space", false), "tokenizer.json: {}.add_prefix_space=true is not supported", where);
    if (j.value("use_regex", true)) {
      SplitStep step;
      step.regex = std::make_unique<Regex>(kGpt2Pattern, false);
      pt.steps.push_back(std::move(step));
    }
    pt.byte_level = true;
  } else {
    FAIL("tokenizer.json: {} type '{}' is not supported (Sequence, Split, ByteLevel are)", where, type);
  }
}

}  // namespace

Regex::Regex(const std::string& pattern, bool literal) : pattern_(pattern), serial_(g_regex_serial++) {
  const std::string translated = literal ? pattern : oniguruma_to_pcre2(pattern);
  int err = 0;
  PCRE2_SIZE err_off = 0;
  // PCRE2_LITERAL allows PCRE2_UTF but not PCRE2_UCP (which a literal does not need).
  const uint32_t opts = literal ? (PCRE2_UTF | PCRE2_LITERAL) : (PCRE2_UTF | PCRE2_UCP);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(), opts, &err,
                                   &err_off, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    FAIL("tokenizer.json: cannot compile regex '{}' at offset {}: {}", pattern, err_off,
         reinterpret_cast<const char*>(msg));
  }
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  code_ = code;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

bool Regex::find(std::string_view subject, size_t start, size_t* match_begin, size_t* match_end) const {
  auto* code = static_cast<pcre2_code*>(code_);
  ThreadRegexState& ts = thread_regex_state();
  pcre2_match_data* md = ts.get(serial_, code);
  const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
  const int rc = jit_ ? pcre2_jit_match(code, s, subject.size(), start, 0, md, ts.mctx)
                      : pcre2_match(code, s, subject.size(), start, PCRE2_NO_UTF_CHECK, md, ts.mctx);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof(msg));
    FAIL("tokenizer: regex '{}' failed on a {}-byte piece: {}", pattern_, subject.size(),
         reinterpret_cast<const char*>(msg));
  }
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
  *match_begin = ov[0];
  *match_end = ov[1];
  return true;
}

PreTokenizer PreTokenizer::from_json(const nlohmann::json& j) {
  PreTokenizer pt;
  if (j.is_null()) return pt;
  add_steps(j, pt, "pre_tokenizer");
  return pt;
}

void PreTokenizer::split(std::string_view text, std::vector<Span>& out, std::vector<Span>& scratch) const {
  out.clear();
  if (text.empty()) return;
  out.push_back({0, static_cast<uint32_t>(text.size())});
  struct Part {
    Span span;
    bool is_match;
  };
  std::vector<Part> parts;
  for (const SplitStep& step : steps) {
    scratch.swap(out);
    out.clear();
    for (const Span piece : scratch) {
      const std::string_view sub = text.substr(piece.begin, piece.end - piece.begin);
      // (span, is_match) covering the piece, as HF's Pattern::find_matches.
      parts.clear();
      size_t prev = 0, pos = 0;
      while (pos <= sub.size()) {
        size_t b, e;
        if (!step.regex->find(sub, pos, &b, &e)) break;
        if (b != prev) parts.push_back({{uint32_t(prev), uint32_t(b)}, false});
        parts.push_back({{uint32_t(b), uint32_t(e)}, true});
        prev = e;
        if (e == b) {  // empty match: step over one character
          if (e >= sub.size()) break;
          uint32_t cp;
          pos = e + utf8_next(sub, e, &cp);
        } else {
          pos = e;
        }
      }
      if (prev != sub.size()) parts.push_back({{uint32_t(prev), uint32_t(sub.size())}, false});
      if (step.invert)
        for (Part& p : parts) p.is_match = !p.is_match;

      const size_t first = out.size();
      bool previous_match = false;
      switch (step.behavior) {
        case SplitBehavior::kIsolated:
          for (const Part& p : parts) out.push_back(p.span);
          break;
        case SplitBehavior::kRemoved:
          for (const Part& p : parts)
            if (!p.is_match) out.push_back(p.span);
          break;
        case SplitBehavior::kMergedWithPrevious:
          for (const Part& p : parts) {
            if (p.is_match && !previous_match && out.size() > first) {
              out.back().end = p.span.end;
            } else {
              out.push_back(p.span);
            }
            previous_match = p.is_match;
          }
          break;
        case SplitBehavior::kMergedWithNext:
          for (size_t k = parts.size(); k-- > 0;) {
            const Part& p = parts[k];
            if (p.is_match && !previous_match && out.size() > first) {
              out.back().begin = p.span.begin;
            } else {
              out.push_back(p.span);
            }
            previous_match = p.is_match;
          }
          std::reverse(out.begin() + static_cast<std::ptrdiff_t>(first), out.end());
          break;
        case SplitBehavior::kContiguous:
          for (const Part& p : parts) {
            if (p.is_match == previous_match && out.size() > first) {
              out.back().end = p.span.end;
            } else {
              out.push_back(p.span);
            }
            previous_match = p.is_match;
          }
          break;
      }
      // Back to offsets in text; drop empty pieces (HF filters them).
      size_t w = first;
      for (size_t k = first; k < out.size(); ++k) {
        if (out[k].begin == out[k].end) continue;
        out[w++] = {out[k].begin + piece.begin, out[k].end + piece.begin};
      }
      out.resize(w);
    }
  }
}

}  // namespace dsv3::detail
