// synthetic.cu: --load_format dummy weights made directly in device memory (backend/cuda).
// Parallelisation: FP8 linears one 256-thread block per 128x128 weight block (a warp per row, 4 columns per lane,
// 16 rows per warp held in registers between the amax and the encode pass); bf16/f32 tensors grid-stride over
// elements. Precision: the element rules of base/synth_rules.h with explicit _rn arithmetic, bf16 by
// __float2bfloat16_rn (RNE, as f32_to_bf16), e4m3 by the integer encoder synth_e4m3_from_bits.
// Reference: io/synthetic.cpp (synth_fill, synth_fp8_linear); checked byte for byte by tests/ops case "synthesize".
#include "dsv3/backend/cuda/common.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kFp8Threads = 256;
constexpr int kRowsPerWarp = static_cast<int>(kSynthFp8Block) / (kFp8Threads / 32);  // 16
constexpr int kColsPerLane = static_cast<int>(kSynthFp8Block) / 32;                   // 4

__global__ void __launch_bounds__(kFp8Threads) synth_fp8_kernel(const SynthArgs a) {
  __shared__ float warp_amax[kFp8Threads / 32];
  const int64_t bc = (a.cols + kSynthFp8Block - 1) / kSynthFp8Block;
  const int64_t blk = blockIdx.x;
  const int64_t r0 = (blk / bc) * kSynthFp8Block, c0 = (blk % bc) * kSynthFp8Block;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t c = c0 + lane * kColsPerLane;
  const float amp = synth_block_amp(a.rule.key, static_cast<uint64_t>(blk));
  float v[kRowsPerWarp][kColsPerLane];
  float amax = 0.f;
#pragma unroll
  for (int k = 0; k < kRowsPerWarp; ++k) {
    const int64_t r = r0 + warp + k * (kFp8Threads / 32);
#pragma unroll
    for (int j = 0; j < kColsPerLane; ++j) {
      v[k][j] = 0.f;
      if (r < a.rows && c + j < a.cols) {
        v[k][j] = synth_fp8_prequant(a.rule, amp, static_cast<uint64_t>(r * a.cols + c + j));
        amax = fmaxf(amax, fabsf(v[k][j]));
      }
    }
  }
  amax = warp_max(amax);
  if (lane == 0) warp_amax[warp] = amax;
  __syncthreads();
  amax = 0.f;
#pragma unroll
  for (int w = 0; w < kFp8Threads / 32; ++w) amax = fmaxf(amax, warp_amax[w]);
  const float s = synth_fp8_scale(amax);
  if (threadIdx.x == 0) a.scale_inv[blk] = s;
  uint8_t* codes = static_cast<uint8_t*>(a.out);
  // Four codes in one 32-bit store when the row of 4 is whole and aligned (cols % 4 == 0; cudaMalloc'd base).
  const bool packed = (a.cols % kColsPerLane) == 0 && (reinterpret_cast<uintptr_t>(codes) % 4) == 0;
#pragma unroll
  for (int k = 0; k < kRowsPerWarp; ++k) {
    const int64_t r = r0 + warp + k * (kFp8Threads / 32);
    if (r >= a.rows || c >= a.cols) continue;
    uint8_t q[kColsPerLane];
#pragma unroll
    for (int j = 0; j < kColsPerLane; ++j) q[j] = synth_e4m3_from_bits(__float_as_uint(synth_div(v[k][j], s)));
    uint8_t* dst = codes + r * a.cols + c;
    if (packed) {
      *reinterpret_cast<uint32_t*>(dst) = static_cast<uint32_t>(q[0]) | (static_cast<uint32_t>(q[1]) << 8) |
                                          (static_cast<uint32_t>(q[2]) << 16) | (static_cast<uint32_t>(q[3]) << 24);
    } else {
#pragma unroll
      for (int j = 0; j < kColsPerLane; ++j)
        if (c + j < a.cols) dst[j] = q[j];
    }
  }
}

__global__ void synth_fill_kernel(const SynthArgs a) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < a.count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float v = synth_value(a.rule, static_cast<uint64_t>(i));
    if (a.out_kind == kSynthOutBf16) static_cast<bf16_t*>(a.out)[i] = to_bf16(v);
    else static_cast<float*>(a.out)[i] = v;
  }
}

}  // namespace

void launch_synthesize(const SynthArgs& a, cudaStream_t s) {
  if (a.out_kind == kSynthOutFp8) {
    const int64_t blocks = ((a.rows + kSynthFp8Block - 1) / kSynthFp8Block) *
                           ((a.cols + kSynthFp8Block - 1) / kSynthFp8Block);
    if (blocks > 0) synth_fp8_kernel<<<static_cast<unsigned>(blocks), kFp8Threads, 0, s>>>(a);
    return;
  }
  if (a.count > 0) synth_fill_kernel<<<grid_for(a.count, 256), 256, 0, s>>>(a);
}

}  // namespace dsv3::cuda
