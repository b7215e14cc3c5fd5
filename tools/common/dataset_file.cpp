// dataset_file.cpp: local JSON / JSON-lines / CSV dataset files -> rows with their line numbers (tools/common).
// A JSON array is split into its elements by a small scanner (strings and nesting only) so each row knows the
// line it starts on; each element is then parsed by nlohmann::json.
#include "common/dataset_file.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "dsv3/base/error.h"

namespace dsv3::tools {
namespace {

using nlohmann::json;

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

json parse_row(std::string_view text, const std::string& path, int64_t line) {
  json v;
  try {
    v = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    FAIL("{}:{}: invalid JSON: {}", path, line, e.what());
  }
  EXPECT(v.is_object(), "{}:{}: a row must be a JSON object, got {}", path, line, v.type_name());
  return v;
}

std::vector<DatasetRow> parse_json_array(const std::string& s, size_t pos, int64_t line, const std::string& path) {
  std::vector<DatasetRow> rows;
  ++pos;  // '['
  auto skip_ws = [&] {
    while (pos < s.size() && is_ws(s[pos])) line += s[pos++] == '\n';
  };
  skip_ws();
  if (pos < s.size() && s[pos] == ']') {
    ++pos;
  } else {
    while (true) {
      skip_ws();
      EXPECT(pos < s.size(), "{}:{}: unexpected end of file inside the JSON array", path, line);
      const size_t start = pos;
      const int64_t start_line = line;
      int depth = 0;
      bool in_string = false;
      for (; pos < s.size(); ++pos) {
        const char c = s[pos];
        if (c == '\n') ++line;
        if (in_string) {
          if (c == '\\') {
            ++pos;  // an escaped character is never structural (and is never a raw newline in valid JSON)
          } else if (c == '"') {
            in_string = false;
          }
          continue;
        }
        if (c == '"') {
          in_string = true;
        } else if (c == '[' || c == '{') {
          ++depth;
        } else if (c == ']' || c == '}') {
          if (depth == 0) break;  // the array's own ']'
          --depth;
        } else if (c == ',' && depth == 0) {
          break;
        }
      }
      EXPECT(pos < s.size(), "{}:{}: unexpected end of file inside the JSON array (row starting here)", path,
             start_line);
      rows.push_back({start_line, parse_row(std::string_view(s).substr(start, pos - start), path, start_line)});
      EXPECT(s[pos] == ',' || s[pos] == ']', "{}:{}: expected ',' or ']' after a row", path, line);
      if (s[pos++] == ']') break;
    }
  }
  skip_ws();
  EXPECT(pos == s.size(), "{}:{}: unexpected text after the JSON array", path, line);
  return rows;
}

std::vector<DatasetRow> parse_jsonl(const std::string& s, const std::string& path) {
  std::vector<DatasetRow> rows;
  int64_t line = 0;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t end = s.find('\n', pos);
    if (end == std::string::npos) end = s.size();
    ++line;
    std::string_view text = std::string_view(s).substr(pos, end - pos);
    while (!text.empty() && is_ws(text.back())) text.remove_suffix(1);
    while (!text.empty() && is_ws(text.front())) text.remove_prefix(1);
    if (!text.empty()) rows.push_back({line, parse_row(text, path, line)});
    pos = end + 1;
  }
  return rows;
}

std::vector<DatasetRow> parse_csv(const std::string& s, const std::string& path) {
  // RFC 4180 records: ',' separators, '"' quoting with "" for a quote, quoted fields may span lines.
  std::vector<std::pair<int64_t, std::vector<std::string>>> records;
  size_t pos = 0;
  int64_t line = 1;
  while (pos < s.size()) {
    const int64_t start_line = line;
    std::vector<std::string> fields(1);
    bool quoted = false, was_quoted = false, end_of_record = false;
    while (pos < s.size() && !end_of_record) {
      const char c = s[pos++];
      if (quoted) {
        if (c == '"') {
          if (pos < s.size() && s[pos] == '"') {
            fields.back() += '"';
            ++pos;
          } else {
            quoted = false;
          }
        } else {
          if (c == '\n') ++line;
          fields.back() += c;
        }
      } else if (c == '"') {
        EXPECT(fields.back().empty() && !was_quoted, "{}:{}: stray '\"' inside an unquoted CSV field", path, line);
        quoted = was_quoted = true;
      } else if (c == ',') {
        fields.emplace_back();
        was_quoted = false;
      } else if (c == '\n') {
        ++line;
        end_of_record = true;
      } else if (c == '\r') {
        // CRLF line ends
      } else {
        EXPECT(!was_quoted, "{}:{}: text after the closing quote of a CSV field", path, line);
        fields.back() += c;
      }
    }
    EXPECT(!quoted, "{}:{}: unterminated quoted CSV field", path, start_line);
    if (fields.size() == 1 && fields[0].empty() && !was_quoted) continue;  // blank line
    records.emplace_back(start_line, std::move(fields));
  }
  EXPECT(!records.empty(), "{}: empty CSV file (no header row)", path);
  const std::vector<std::string>& header = records[0].second;
  std::vector<DatasetRow> rows;
  for (size_t r = 1; r < records.size(); ++r) {
    const auto& [rec_line, fields] = records[r];
    EXPECT(fields.size() == header.size(), "{}:{}: {} CSV fields, but the header has {}", path, rec_line,
           fields.size(), header.size());
    json obj = json::object();
    for (size_t i = 0; i < fields.size(); ++i) obj[header[i]] = fields[i];
    rows.push_back({rec_line, std::move(obj)});
  }
  return rows;
}

}  // namespace

std::vector<DatasetRow> parse_dataset_text(const std::string& text, const std::string& format,
                                           const std::string& path) {
  size_t pos = 0;
  if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) pos = 3;  // UTF-8 BOM
  const std::string s = text.substr(pos);
  if (format == "csv") return parse_csv(s, path);
  CHECK(format == "json" || format == "jsonl", "format {}", format);
  size_t first = 0;
  int64_t line = 1;
  while (first < s.size() && is_ws(s[first])) line += s[first++] == '\n';
  if (format == "json" && first < s.size() && s[first] == '[') return parse_json_array(s, first, line, path);
  return parse_jsonl(s, path);
}

LocalDataset read_local_dataset(const std::string& path, const std::string& split) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    FAIL("dataset '{}' is not a local file; dsv3 downloads nothing: pass --dataset-name the path of a local "
         ".json, .jsonl or .csv file",
         path);
  }
  EXPECT(fs::is_regular_file(path, ec), "dataset '{}' is not a regular file", path);
  std::string ext = fs::path(path).extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string format;
  if (ext == ".json") {
    format = "json";
  } else if (ext == ".jsonl" || ext == ".ndjson") {
    format = "jsonl";
  } else if (ext == ".csv") {
    format = "csv";
  } else {
    FAIL("dataset '{}': unsupported file type '{}' (use .json, .jsonl, .ndjson or .csv)", path, ext);
  }
  EXPECT(split == "train",
         "dataset '{}': a local data file has the single split 'train' (as in Hugging Face datasets), got "
         "--dataset-split '{}'",
         path, split);
  std::ifstream f(path, std::ios::binary);
  EXPECT(f.good(), "cannot read dataset file {}: {}", path, std::strerror(errno));
  std::stringstream ss;
  ss << f.rdbuf();
  EXPECT(!f.bad(), "cannot read dataset file {}: {}", path, std::strerror(errno));
  return {path, parse_dataset_text(ss.str(), format, path)};
}

}  // namespace dsv3::tools
