// synthetic.h: deterministic random weights for make-tiny-model and --load_format dummy (io).
// Counter-based (splitmix64 of seed, tensor-name hash and element index), so any slice of any tensor can be made
// independently and identically on the CPU or the GPU (backend synthesize(), bit-identical: the element rules are in
// base/synth_rules.h). Values keep activations O(1): linear weights uniform with std 1/sqrt(in), norms
// 1 + U(-0.1, 0.1), embeddings std 1, router bias U(0, 0.05) (non-negative, see model-spec §4.2 step 5). FP8 linears
// are quantized per 128x128 block exactly as DeepSeek's weights are (scale_inv = amax/448; partial edge blocks use
// only their real elements).
#pragma once

#include <cstdint>
#include <string>

#include "dsv3/base/synth_rules.h"
#include "dsv3/io/schema.h"

namespace dsv3 {

uint64_t hash_name(const std::string& s);

// The generator of a tensor (any role but kScaleInv, which comes with its FP8 weight).
SynthRule synth_rule(const TensorSpec& spec, uint64_t seed);

// Fills a non-FP8 tensor (embedding, norm, bf16 linear, bias) of the spec's dtype.
void synth_fill(const TensorSpec& spec, uint64_t seed, void* out);
// FP8 linear [out, in] and its scale_inv [ceil(out/128), ceil(in/128)].
void synth_fp8_linear(const TensorSpec& weight_spec, uint64_t seed, uint8_t* codes, float* scale_inv);

}  // namespace dsv3
