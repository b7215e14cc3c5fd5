// weight_source.cpp: checkpoint folders (index + shards, single file) and the dummy generator (io).
#include "dsv3/io/weight_source.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "dsv3/base/log.h"
#include "dsv3/io/synthetic.h"

namespace dsv3 {
namespace fs = std::filesystem;

LoadFormat parse_load_format(const std::string& s) {
  if (s == "auto" || s.empty()) return LoadFormat::kAuto;
  if (s == "dummy") return LoadFormat::kDummy;
  FAIL("--load_format '{}' is not supported (supported: auto, dummy)", s);
}

void WeightSource::build_schema(bool fp8) {
  schema_ = checkpoint_schema(config_, fp8, true);
  by_name_.clear();
  for (size_t i = 0; i < schema_.size(); ++i) by_name_[schema_[i].name] = i;
}

const TensorSpec& WeightSource::spec(const std::string& name) const {
  auto it = by_name_.find(name);
  CHECK(it != by_name_.end(), "tensor '{}' is not in the schema of this config", name);
  return schema_[it->second];
}

void WeightSource::validate(const TensorSpec& s, const TensorView& v, const std::string& where) const {
  EXPECT(v.shape == s.shape, "{}: tensor '{}' has shape {}, but config.json implies {}", where, s.name, v.shape.str(),
         s.shape.str());
  if (s.role == TensorRole::kLinear) {
    EXPECT(v.dtype == DType::kFP8E4M3 || v.dtype == DType::kBF16,
           "{}: tensor '{}' has dtype {}; linear weights must be F8_E4M3 or BF16", where, s.name, dtype_name(v.dtype));
  } else {
    EXPECT(v.dtype == s.dtype, "{}: tensor '{}' has dtype {}, expected {}", where, s.name, dtype_name(v.dtype),
           dtype_name(s.dtype));
  }
}

TensorView WeightSource::get(const std::string& name) {
  const TensorSpec& s = spec(name);
  TensorView v = fetch(s);
  EXPECT(v.data != nullptr, "{}: tensor '{}' is missing from the checkpoint", model_dir_, name);
  return v;
}

LinearWeight WeightSource::linear(const std::string& name) {
  LinearWeight lw;
  lw.weight = get(name + ".weight");
  if (lw.weight.dtype == DType::kFP8E4M3) {
    const std::string sname = name + ".weight_scale_inv";
    auto it = by_name_.find(sname);
    TensorSpec ss;
    if (it != by_name_.end()) {
      ss = schema_[it->second];
    } else {  // schema built for a bf16 config, but this tensor is FP8
      ss = {sname, TensorRole::kScaleInv, DType::kF32,
            {ceil_div(lw.weight.shape[0], 128), ceil_div(lw.weight.shape[1], 128)}};
    }
    lw.scale_inv = fetch(ss);
    EXPECT(lw.scale_inv.data != nullptr, "{}: tensor '{}' is F8_E4M3 but '{}' is missing", model_dir_,
           name + ".weight", sname);
  } else if (lw.weight.dtype != DType::kBF16) {
    FAIL("{}: tensor '{}.weight' has dtype {}; linear weights must be F8_E4M3 or BF16", model_dir_, name,
         dtype_name(lw.weight.dtype));
  }
  return lw;
}

namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// hf_quant_config.json (TensorRT-LLM / ModelOpt): {"quantization": {"quant_algo": "FP8_BLOCK_SCALES", ...}}
bool read_hf_quant_config(const std::string& dir) {
  const std::string path = dir + "/hf_quant_config.json";
  if (!fs::exists(path)) return false;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path));
  } catch (const std::exception& e) {
    FAIL("{}: not valid JSON: {}", path, e.what());
  }
  std::string algo;
  if (j.contains("quantization") && j["quantization"].contains("quant_algo") &&
      j["quantization"]["quant_algo"].is_string())
    algo = j["quantization"]["quant_algo"].get<std::string>();
  else if (j.contains("quant_algo") && j["quant_algo"].is_string())
    algo = j["quant_algo"].get<std::string>();
  EXPECT(algo == "FP8_BLOCK_SCALES", "{}: quant_algo '{}' is not supported (supported: FP8_BLOCK_SCALES)", path, algo);
  return true;
}

class CheckpointSource final : public WeightSource {
 public:
  explicit CheckpointSource(const std::string& dir) {
    model_dir_ = dir;
    EXPECT(fs::is_directory(dir), "--model_dir {}: no such directory", dir);
    config_ = load_model_config(dir);
    if (read_hf_quant_config(dir)) config_.quant.fp8 = true;
    const std::string index_path = dir + "/model.safetensors.index.json";
    std::map<std::string, std::string> weight_map;
    if (fs::exists(index_path)) {
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(read_file(index_path));
      } catch (const std::exception& e) {
        FAIL("{}: not valid JSON: {}", index_path, e.what());
      }
      EXPECT(j.contains("weight_map") && j["weight_map"].is_object(), "{}: no 'weight_map' object", index_path);
      for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
        EXPECT(it.value().is_string(), "{}: weight_map['{}'] must be a file name", index_path, it.key());
        weight_map[it.key()] = it.value().get<std::string>();
      }
      for (const auto& [name, file] : weight_map) {
        if (files_.count(file)) continue;
        const std::string path = dir + "/" + file;
        EXPECT(fs::exists(path), "{}: shard '{}' (holding tensor '{}') does not exist", index_path, file, name);
        files_[file] = std::make_unique<SafetensorsFile>(path);
      }
      for (const auto& [name, file] : weight_map) {
        EXPECT(files_[file]->contains(name), "{}: index maps tensor '{}' to this shard, but the shard lacks it",
               dir + "/" + file, name);
        where_[name] = files_[file].get();
      }
    } else {
      const std::string single = dir + "/model.safetensors";
      EXPECT(fs::exists(single), "{}: neither model.safetensors.index.json nor model.safetensors exists", dir);
      files_["model.safetensors"] = std::make_unique<SafetensorsFile>(single);
      for (const auto& [name, e] : files_["model.safetensors"]->entries()) where_[name] = files_["model.safetensors"].get();
    }
    // A checkpoint is FP8 when its linear weights are; a bf16 conversion may keep quantization_config.
    build_schema(config_.quant.fp8);
    validate_all();
  }

 protected:
  TensorView fetch(const TensorSpec& s) override {
    auto it = where_.find(s.name);
    if (it == where_.end()) return {};
    TensorView v = it->second->view(s.name);
    validate(s, v, it->second->path());
    return v;
  }

 private:
  void validate_all() {
    int mtp_present = 0, mtp_needed = 0;
    std::string first_missing_mtp;
    for (const auto& s : schema_) {
      if (s.role == TensorRole::kScaleInv) continue;  // checked with its weight
      const bool present = where_.count(s.name) != 0;
      if (s.mtp) {
        if (s.mtp_copy) continue;
        ++mtp_needed;
        if (present) ++mtp_present;
        else if (first_missing_mtp.empty()) first_missing_mtp = s.name;
        if (!present) continue;
      }
      EXPECT(present, "{}: tensor '{}' is missing from the checkpoint", model_dir_, s.name);
      if (s.role == TensorRole::kLinear) linear(s.name.substr(0, s.name.size() - 7));
      else fetch(s);
    }
    EXPECT(mtp_present == 0 || mtp_present == mtp_needed,
           "{}: the MTP layer is incomplete ({} of {} tensors; first missing: '{}')", model_dir_, mtp_present,
           mtp_needed, first_missing_mtp);
    has_mtp_ = mtp_needed > 0 && mtp_present == mtp_needed;
  }

  std::map<std::string, std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, SafetensorsFile*> where_;
};

class DummySource final : public WeightSource {
 public:
  DummySource(const ModelConfig& c, const std::string& dir, uint64_t seed) {
    seed_ = seed;
    config_ = c;
    model_dir_ = dir;
    dummy_ = true;
    build_schema(config_.quant.fp8);
    has_mtp_ = config_.num_nextn_predict_layers > 0;
  }

 protected:
  TensorView fetch(const TensorSpec& s) override {
    auto it = made_.find(s.name);
    if (it != made_.end()) return it->second.view();
    if (s.role == TensorRole::kScaleInv) {
      const std::string wname = s.name.substr(0, s.name.size() - 10);  // strip "_scale_inv"
      fetch(spec(wname));
      return made_.at(s.name).view();
    }
    Tensor t(s.dtype, s.shape);
    if (s.role == TensorRole::kLinear && s.dtype == DType::kFP8E4M3) {
      const std::string sname = s.name + "_scale_inv";
      Tensor sc(DType::kF32, spec(sname).shape);
      synth_fp8_linear(s, seed_, t.as<uint8_t>(), sc.as<float>());
      made_.emplace(sname, std::move(sc));
    } else {
      synth_fill(s, seed_, t.view().data);
    }
    return made_.emplace(s.name, std::move(t)).first->second.view();
  }

 private:
  std::map<std::string, Tensor> made_;
};

}  // namespace

std::unique_ptr<WeightSource> WeightSource::open(const std::string& dir, LoadFormat format, uint64_t seed) {
  if (format == LoadFormat::kDummy) {
    ModelConfig c = load_model_config(dir);
    if (read_hf_quant_config(dir)) c.quant.fp8 = true;
    return std::make_unique<DummySource>(c, dir, seed);
  }
  return std::make_unique<CheckpointSource>(dir);
}

std::unique_ptr<WeightSource> WeightSource::dummy(const ModelConfig& config, uint64_t seed) {
  return std::make_unique<DummySource>(config, "<dummy>", seed);
}

}  // namespace dsv3
