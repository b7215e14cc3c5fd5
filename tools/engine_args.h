// engine_args.h: LlmArgs (command line + --extra_llm_api_options YAML) -> EngineConfig (tools).
#pragma once

#include "common/llm_args.h"
#include "dsv3/engine/engine_config.h"

namespace dsv3::tools {

// Maps the settings dsv3's engine knows; everything else LlmArgs holds was either validated by
// reject_unsupported() or has no effect on this backend (logged once by the caller).
EngineConfig engine_config_from_llm_args(const LlmArgs& a, const std::string& model_dir);

}  // namespace dsv3::tools
