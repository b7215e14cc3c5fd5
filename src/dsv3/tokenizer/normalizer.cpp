// normalizer.cpp: the tokenizer.json normalizers dsv3 supports (tokenizer): none, Sequence, and the Unicode
// normal forms NFC/NFD/NFKC/NFKD (Qwen2 uses NFC) through ICU when the build found it.
#include "dsv3/base/error.h"
#include "dsv3/tokenizer/tokenizer_impl.h"

#ifdef DSV3_HAVE_ICU
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>
#endif

namespace dsv3::detail {
namespace {

void add_steps(const nlohmann::json& j, Normalizer& n, const std::string& where) {
  if (j.is_null()) return;
  EXPECT(j.is_object() && j.contains("type"), "tokenizer.json: {} has no type", where);
  const std::string type = j["type"];
  if (type == "Sequence") {
    EXPECT(j.contains("normalizers") && j["normalizers"].is_array(), "tokenizer.json: {}.normalizers missing", where);
    for (size_t i = 0; i < j["normalizers"].size(); ++i)
      add_steps(j["normalizers"][i], n, fmt::format("{}.normalizers[{}]", where, i));
    return;
  }
  NormalizerKind kind;
  if (type == "NFC") {
    kind = NormalizerKind::kNFC;
  } else if (type == "NFD") {
    kind = NormalizerKind::kNFD;
  } else if (type == "NFKC") {
    kind = NormalizerKind::kNFKC;
  } else if (type == "NFKD") {
    kind = NormalizerKind::kNFKD;
  } else {
    FAIL("tokenizer.json: {} type '{}' is not supported (Sequence, NFC, NFD, NFKC, NFKD are)", where, type);
  }
#ifndef DSV3_HAVE_ICU
  FAIL("tokenizer.json: {} type '{}' needs ICU, and this build has none (install libicu-dev and reconfigure)",
       where, type);
#endif
  n.steps.push_back(kind);
}

}  // namespace

Normalizer Normalizer::from_json(const nlohmann::json& j) {
  Normalizer n;
  add_steps(j, n, "normalizer");
  return n;
}

std::string Normalizer::apply(std::string_view text) const {
  std::string s(text);
#ifdef DSV3_HAVE_ICU
  for (NormalizerKind k : steps) {
    UErrorCode err = U_ZERO_ERROR;
    const icu::Normalizer2* norm = nullptr;
    switch (k) {
      case NormalizerKind::kNFC: norm = icu::Normalizer2::getNFCInstance(err); break;
      case NormalizerKind::kNFD: norm = icu::Normalizer2::getNFDInstance(err); break;
      case NormalizerKind::kNFKC: norm = icu::Normalizer2::getNFKCInstance(err); break;
      case NormalizerKind::kNFKD: norm = icu::Normalizer2::getNFKDInstance(err); break;
    }
    CHECK(U_SUCCESS(err) && norm != nullptr, "ICU normalizer unavailable: {}", u_errorName(err));
    const icu::UnicodeString in = icu::UnicodeString::fromUTF8(icu::StringPiece(s.data(), int32_t(s.size())));
    if (norm->isNormalized(in, err) && U_SUCCESS(err)) continue;
    err = U_ZERO_ERROR;
    const icu::UnicodeString out = norm->normalize(in, err);
    CHECK(U_SUCCESS(err), "ICU normalize failed: {}", u_errorName(err));
    s.clear();
    out.toUTF8String(s);
  }
#endif
  return s;
}

}  // namespace dsv3::detail
