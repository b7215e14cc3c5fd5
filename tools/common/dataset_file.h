// dataset_file.h: rows of a local dataset file for `prepare-dataset dataset` (tools/common). The recipe's tool
// streams a Hugging Face dataset; dsv3 reads the same rows from a local file instead and downloads nothing.
// Formats, by extension: .json (a JSON array of objects, or JSON lines), .jsonl / .ndjson (one object per line),
// .csv (RFC 4180, header row; every value is a string). A data file has the single split "train", as in HF.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsv3::tools {

struct DatasetRow {
  int64_t line = 0;      // 1-based line of the file where the row starts, for error messages
  nlohmann::json value;  // a JSON object: key -> value
};

struct LocalDataset {
  std::string path;
  std::vector<DatasetRow> rows;
};

// Throws dsv3::Error for a missing or unreadable file, a bad extension, a split other than "train", malformed
// JSON/CSV (naming the line) or a row that is not an object.
LocalDataset read_local_dataset(const std::string& path, const std::string& split);

// Parses already-read text; `format` is "json", "jsonl" or "csv". `path` only labels the errors.
std::vector<DatasetRow> parse_dataset_text(const std::string& text, const std::string& format,
                                           const std::string& path);

}  // namespace dsv3::tools
