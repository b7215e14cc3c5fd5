// rope.h: RoPE inverse frequencies with YaRN, exactly as model-spec.md §3.6 (model).
#pragma once

#include <vector>

#include "dsv3/io/config.h"

namespace dsv3 {

// f_i for i = 0 .. qk_rope_head_dim/2 - 1, fp32, in the V3 reference's operation order.
std::vector<float> rope_inv_freq(const ModelConfig& c);

}  // namespace dsv3
