// cuda_backend.cpp: CudaBackend — the Backend of backend.h on one GPU (backend/cuda).
// Each op validates its Params on the host (shapes, dtypes, device residency; dsv3::Error on bad input), fills the
// kernel Args of kernels.h and enqueues on the backend's own stream; nothing synchronizes except synchronize(),
// copies into pageable host memory, and moe_experts' per-expert loop (prefill-size batches: it reads the per-expert
// row counts back); its decode-size grouped path never does, so a decode step can be captured in a CUDA graph.
// Scratch memory (FP8 activations, MoE permutation buffers, decode partials) grows on demand and is then reused,
// so steady-state steps allocate nothing; the MoE weight-pointer tables are built once per expert list. Device-side input errors are collected in one flag word (kernels.h
// ErrorBit) and reported at synchronize(): bad token ids throw, broken invariants abort as CHECK does.
#include "dsv3/backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "dsv3/backend/cuda/cuda_utils.h"
#include "dsv3/backend/cuda/gemm.h"
#include "dsv3/backend/cuda/kernels.h"
#include "dsv3/backend/cuda/op_profiler.h"
#include "dsv3/base/log.h"

namespace dsv3 {

CudaBackendOptions CudaBackendOptions::from_env() {
  auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v ? v : "";
  };
  CudaBackendOptions o;
  o.sync_each_op = env("DSV3_CUDA_SYNC") == "1";
  o.force_gemm_fallback = env("DSV3_CUDA_GEMM") == "fallback";
  // cuBLASLt's block-scaled FP8 GEMM matches the CPU reference (tests/ops "linear", 2026-11-29); it rejects some
  // shapes (e.g. a single row), which then run the fallback kernel. DSV3_CUDA_FP8_GEMM=fallback forces the kernel
  // (bitwise equal to the CPU) for every row count, the decode GEMV's included.
  o.fp8_gemm_fallback = env("DSV3_CUDA_FP8_GEMM") == "fallback";
  // FP8 linears with 1..16 rows run the bandwidth-bound GEMV (gemv_fp8.cu; tests/ops "linear ... path=gemv").
  o.no_fp8_gemv = env("DSV3_CUDA_FP8_GEMV") == "0";
  const std::string gemv = env("DSV3_GEMV");
  EXPECT(gemv.empty() || gemv == "v1" || gemv == "v2", "DSV3_GEMV={}: expected v2 (the default) or v1", gemv);
  o.gemv_v2 = gemv != "v1";
  o.gemv_v2_cfg = cuda::parse_gemv_v2_config(env("DSV3_GEMV_V2_CFG"), "DSV3_GEMV_V2_CFG");
  o.gemv_v2_cfg_small = cuda::parse_gemv_v2_config(env("DSV3_GEMV_V2_CFG_SMALL"), "DSV3_GEMV_V2_CFG_SMALL");
  const std::string dec = env("DSV3_MLA_DECODE");
  EXPECT(dec.empty() || dec == "auto" || dec == "mma" || dec == "mma16" || dec == "wmma" || dec == "simple",
         "DSV3_MLA_DECODE={}: expected auto (the default), mma, mma16, wmma or simple", dec);
  o.mla_decode = dec == "simple" ? MlaDecodeImpl::kSimple
                 : dec == "wmma" ? MlaDecodeImpl::kWmma
                 : dec == "mma"  ? MlaDecodeImpl::kMma
                 : dec == "mma16" ? MlaDecodeImpl::kMma16
                                  : MlaDecodeImpl::kAuto;
  if (const std::string sk = env("DSV3_MLA_DECODE_SPLIT"); !sk.empty()) {
    o.mla_decode_split_keys = std::atoi(sk.c_str());
    EXPECT(o.mla_decode_split_keys >= 64 && o.mla_decode_split_keys % 64 == 0,
           "DSV3_MLA_DECODE_SPLIT={}: expected a multiple of 64 keys", sk);
  }
  const std::string absorb = env("DSV3_MLA_ABSORB");
  EXPECT(absorb.empty() || absorb == "auto" || absorb == "slice" || absorb == "tile",
         "DSV3_MLA_ABSORB={}: expected auto (the default), slice or tile", absorb);
  o.mla_absorb = absorb == "slice" ? MlaAbsorbImpl::kSlice : absorb == "tile" ? MlaAbsorbImpl::kTile : MlaAbsorbImpl::kAuto;
  o.profile = env("DSV3_PROFILE") == "1";
  // DSV3_MOE=loop|grouped|decode forces one moe_experts path (tests/ops "moe_experts", --perf -o moe_experts).
  const std::string moe = env("DSV3_MOE");
  EXPECT(moe.empty() || moe == "loop" || moe == "grouped" || moe == "decode",
         "DSV3_MOE must be 'loop', 'grouped' or 'decode', got '{}'", moe);
  o.moe_path = moe == "loop"      ? CudaMoePath::kLoop
               : moe == "grouped" ? CudaMoePath::kGrouped
               : moe == "decode"  ? CudaMoePath::kDecode
                                  : CudaMoePath::kAuto;
  if (const std::string s = env("DSV3_MOE_SPLIT"); !s.empty()) {
    o.moe_decode_split = std::atoi(s.c_str());
    EXPECT(s.find_first_not_of("0123456789") == std::string::npos && o.moe_decode_split >= 0 &&
               o.moe_decode_split <= 8,
           "DSV3_MOE_SPLIT must be 0..8 (0: the launcher's choice), got '{}'", s);
  }
  if (const std::string s = env("DSV3_MOE_PREFETCH"); !s.empty()) {
    o.moe_decode_prefetch = std::atoi(s.c_str());
    EXPECT(s.find_first_not_of("0123456789") == std::string::npos && o.moe_decode_prefetch >= 0 &&
               o.moe_decode_prefetch <= 8,
           "DSV3_MOE_PREFETCH must be 0..8, got '{}'", s);
  }
  if (const std::string s = env("DSV3_MOE_STREAMS"); !s.empty()) {
    o.moe_streams = std::atoi(s.c_str());
    EXPECT(o.moe_streams >= 1 && o.moe_streams <= 8, "DSV3_MOE_STREAMS must be 1..8, got '{}'", s);
  }
  const std::string rf = env("DSV3_ROUTER_FUSED");
  EXPECT(rf.empty() || rf == "0" || rf == "1", "DSV3_ROUTER_FUSED={}: expected 1 (the default) or 0", rf);
  o.router_fused = rf != "0";
  const std::string prefill = env("DSV3_MLA_PREFILL");
  EXPECT(prefill.empty() || prefill == "mma" || prefill == "mma64" || prefill == "simple",
         "DSV3_MLA_PREFILL={}: expected mma (the default), mma64 or simple", prefill);
  o.simple_mla_prefill = prefill == "simple";
  o.mla_prefill_q_rows = prefill == "mma64" ? 64 : 128;
  const std::string p_bf16 = env("DSV3_MLA_P_BF16");
  EXPECT(p_bf16.empty() || p_bf16 == "0" || p_bf16 == "1", "DSV3_MLA_P_BF16={}: expected 0 (the default) or 1",
         p_bf16);
  o.mla_p_bf16 = p_bf16 == "1";
  const std::string sample = env("DSV3_SAMPLE");
  EXPECT(sample.empty() || sample == "v1" || sample == "v2", "DSV3_SAMPLE={}: expected v1 or v2 (the default)", sample);
  o.sample_version = sample == "v1" ? 1 : 2;
  o.reference_numerics = parse_op_numerics(env("DSV3_NUMERICS"), "DSV3_NUMERICS") == OpNumerics::kReference;
  return o;
}

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

namespace cuda {
namespace {

constexpr size_t kStageChunk = 16u << 20;  // pinned staging for large pageable host->device copies
constexpr size_t kStageMin = 1u << 20;

enum ScratchSlot { kScratchCodes, kScratchScales, kScratchMoe, kScratchDecode, kScratchSample, kScratchRouter, kScratchSlots };

const bf16_t* cbf(const TensorView& t) { return static_cast<const bf16_t*>(t.data); }
bf16_t* bf(const TensorView& t) { return static_cast<bf16_t*>(t.data); }
const int32_t* ci32(const TensorView& t) { return static_cast<const int32_t*>(t.data); }

void expect_device(const TensorView& t, const char* op, const char* field) {
  EXPECT(t.data != nullptr, "{}: {} is empty", op, field);
  EXPECT(t.device == Device::kCuda, "{}: {} {} is a host tensor; the cuda backend needs it in device memory", op,
         field, t.shape.str());
}

void expect_dtype(const TensorView& t, DType dt, const char* op, const char* field) {
  EXPECT(t.dtype == dt, "{}: {} must be {}, got {}", op, field, dtype_name(dt), dtype_name(t.dtype));
}

void expect_tensor(const TensorView& t, DType dt, const char* op, const char* field) {
  expect_device(t, op, field);
  expect_dtype(t, dt, op, field);
}

int to_int(int64_t v, const char* op, const char* what) {
  EXPECT(v >= 0 && v < (int64_t{1} << 31), "{}: {} = {} is outside the supported range", op, what, v);
  return static_cast<int>(v);
}

bool aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const CudaBackendOptions& opt) : opt_(opt) {
    CUDA_CHECK(cudaGetDevice(&device_));
    CUDA_CHECK(cudaDeviceGetAttribute(&n_sms_, cudaDevAttrMultiProcessorCount, device_));
    stream_ = make_stream();
    err_ = DeviceBuffer(sizeof(uint32_t));
    err_host_ = PinnedBuffer(sizeof(uint32_t));
    CUDA_CHECK(cudaMemsetAsync(err_.data(), 0, sizeof(uint32_t), stream_.get()));
    router_done_ = DeviceBuffer(kRouterFusedMaxTokens * sizeof(int32_t));
    CUDA_CHECK(cudaMemsetAsync(router_done_.data(), 0, kRouterFusedMaxTokens * sizeof(int32_t), stream_.get()));
    CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
    if (opt_.profile) profiler_ = std::make_unique<OpProfiler>(stream_.get());
    if (opt_.gemv_v2) prepare_linear_fp8_gemv_v2();  // its one-time device queries, never inside a graph capture
    if (opt_.reference_numerics) log_info("numerics: reference (slow; every op in the CPU reference's order)");
  }
  ~CudaBackend() override {
    (void)cudaStreamSynchronize(stream_.get());
    if (profiler_) {
      profiler_->collect();
      profiler_->print();
    }
  }

  std::string name() const override { return "cuda"; }
  Allocator& allocator() override { return device_allocator(); }
  bool host_visible() const override { return false; }

  void copy(const TensorView& dst, const TensorView& src) override {
    CHECK(dst.nbytes() == src.nbytes(), "copy: {} bytes to {} bytes", src.nbytes(), dst.nbytes());
    const size_t n = src.nbytes();
    if (n == 0) return;
    if (capturing_) not_while_capturing(src.device == Device::kCpu || dst.device == Device::kCpu
                                            ? "a copy from or to host memory" : nullptr);
    if (src.device == Device::kCpu && dst.device == Device::kCuda && n >= kStageMin && !is_pinned(src.data)) {
      copy_staged(dst.data, src.data, n);
      return;
    }
    CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, n, cudaMemcpyDefault, stream_.get()));
  }

  void synchronize() override {
    CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
    check_device_errors("");
    if (profiler_) profiler_->collect();
  }

  int64_t free_device_memory() override {
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return static_cast<int64_t>(free_b);
  }
  int64_t total_device_memory() override {
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return static_cast<int64_t>(total_b);
  }
  std::unique_ptr<StagingSink> make_staging_sink(int n_slots, size_t slot_bytes) override {
    CUDA_CHECK(cudaSetDevice(device_));
    return make_pinned_staging_sink(n_slots, slot_bytes);
  }
  Allocator& pinned_host_allocator() override { return pinned_allocator(); }
  std::unique_ptr<BackendFence> make_fence() override;

  // The fence's two halves (CudaFence): a snapshot of the device error word copied into `err_snapshot` (pinned)
  // and an event after it, both on the backend's stream; then the event's wait and the snapshot's check.
  void record_fence(cudaEvent_t event, uint32_t* err_snapshot) {
    CHECK(!capturing_, "a fence recorded inside a CUDA-graph capture");
    CUDA_CHECK(cudaMemcpyAsync(err_snapshot, err_.data(), sizeof(uint32_t), cudaMemcpyDeviceToHost, stream_.get()));
    CUDA_CHECK(cudaEventRecord(event, stream_.get()));
  }
  void wait_fence(cudaEvent_t event, const uint32_t* err_snapshot) {
    CUDA_CHECK(cudaEventSynchronize(event));
    // The word was set by work before the fence: report it as synchronize() does (which waits for the stream and
    // clears the word; an error already reported leaves it clear, and this returns quietly).
    if (*err_snapshot != 0) check_device_errors("");
  }

  std::unique_ptr<BackendGraph> capture(const std::function<void()>& body) override;

  void linear(const LinearParams& p) override;
  void linear_reference(const LinearParams& p, int n, int m, int k, int64_t xs);
  void rms_norm(const RmsNormParams& p) override;
  void embedding(const EmbeddingParams& p) override;
  void rope(const RopeParams& p) override;
  void silu_mul(const SiluMulParams& p) override;
  void add(const AddParams& p) override;
  void kv_cache_store(const KvCacheStoreParams& p) override;
  void kv_cache_gather(const KvCacheGatherParams& p) override;
  void mla_prefill(const MlaPrefillParams& p) override;
  void mla_absorb_q(const MlaAbsorbQParams& p) override;
  void mla_decode(const MlaDecodeParams& p) override;
  void mla_absorb_v(const MlaAbsorbVParams& p) override;
  void router(const RouterParams& p) override;
  void moe_experts(const MoeExpertsParams& p) override;
  void sample(const SampleParams& p) override;
  void fill_token_ids(const FillTokenIdsParams& p) override;
  bool synthesize(const SynthesizeParams& p) override;

 private:
  // The stream of the current lane: lane 0 is the backend's stream; lanes 1.. are the side streams the per-expert MoE
  // loop spreads experts over (each lane with its own scratch and cuBLASLt workspace).
  cudaStream_t stream() const { return lane_ == 0 ? stream_.get() : lane_streams_[lane_].get(); }
  LtGemm& gemm() {
    if (lane_ == 0) return gemm_;
    if (!lane_gemm_[lane_]) lane_gemm_[lane_] = std::make_unique<LtGemm>();
    return *lane_gemm_[lane_];
  }
  uint32_t* err() const { return err_.as<uint32_t>(); }

  static bool is_pinned(const void* p) {
    cudaPointerAttributes attr{};
    if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return attr.type == cudaMemoryTypeHost;
  }

  // Pageable host -> device through two pinned chunks, so the DMA of one overlaps the memcpy into the other.
  void copy_staged(void* dst, const void* src, size_t n) {
    for (int i = 0; i < 2; ++i) {
      if (!staging_[i].data()) {
        staging_[i] = PinnedBuffer(kStageChunk);
        staging_done_[i] = make_event();
      }
    }
    for (size_t off = 0, i = 0; off < n; off += kStageChunk, i ^= 1) {
      const size_t len = std::min(kStageChunk, n - off);
      if (staging_used_[i]) CUDA_CHECK(cudaEventSynchronize(staging_done_[i].get()));
      std::memcpy(staging_[i].data(), static_cast<const char*>(src) + off, len);
      CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + off, staging_[i].data(), len, cudaMemcpyHostToDevice,
                                 stream()));
      CUDA_CHECK(cudaEventRecord(staging_done_[i].get(), stream()));
      staging_used_[i] = true;
    }
  }

  // After every launch: a launch error aborts naming the op; with sync_each_op the op's execution is checked too.
  void launched(const char* op) {
    if (profiler_) profiler_->label(op);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
      dsv3::detail::check_failed(__FILE__, __LINE__, op,
                                 fmt::format("kernel launch failed: {} ({})", cudaGetErrorName(e), cudaGetErrorString(e)));
    if (opt_.sync_each_op && !capturing_) {
      const cudaError_t s = cudaStreamSynchronize(stream());
      if (s != cudaSuccess)
        dsv3::detail::check_failed(__FILE__, __LINE__, op,
                                   fmt::format("kernel failed: {} ({})", cudaGetErrorName(s), cudaGetErrorString(s)));
      check_device_errors(op);
    }
  }

  // Reads and clears the device error word (synchronizes the stream).
  void check_device_errors(const char* op) {
    not_while_capturing("reading the device error word");
    CUDA_CHECK(cudaMemcpyAsync(err_host_.data(), err_.data(), sizeof(uint32_t), cudaMemcpyDeviceToHost, stream()));
    CUDA_CHECK(cudaStreamSynchronize(stream()));
    const uint32_t bits = *err_host_.as<uint32_t>();
    if (bits == 0) return;
    CUDA_CHECK(cudaMemsetAsync(err_.data(), 0, sizeof(uint32_t), stream()));
    CUDA_CHECK(cudaStreamSynchronize(stream()));
    const std::string where = *op ? fmt::format(" (detected after {})", op) : std::string();
    CHECK(!(bits & kErrKvSlot), "kv_cache_store: a slot outside the pool{}", where);
    CHECK(!(bits & kErrKvGather), "kv_cache_gather: a position beyond the block table or a bad block id{}", where);
    CHECK(!(bits & kErrDecodeLen), "mla_decode: a seq_len < 1, beyond the block table, or a bad block id{}", where);
    CHECK(!(bits & kErrExpertId), "moe_experts: an expert id outside [0, n_experts){}", where);
    CHECK(!(bits & kErrFillTokens), "fill_token_ids: a (row, index) pair outside ids / src{}", where);
    EXPECT(!(bits & kErrEmbeddingId), "embedding: a token id outside the vocabulary{}", where);
    EXPECT(!(bits & kErrPrefillLen), "mla_prefill: a sequence has more queries than keys, or cu_q / cu_kv point past "
           "q / kv{}", where);
  }

  // Scratch that grows on demand; growing waits for the stream, since queued kernels may still use the old buffer.
  // A buffer that a CUDA graph captured since it was allocated is retired, not freed: the graph replays with its
  // address (freeing it crashed a replay after a larger eager step grew the slot, seen on the H200 2026-11-30).
  void* scratch(ScratchSlot slot, size_t bytes) {
    DeviceBuffer& b = scratch_[lane_][slot];
    if (b.size() < bytes) {
      not_while_capturing("growing a scratch buffer");
      static constexpr const char* kWhat[] = {"FP8 activation codes", "FP8 activation scales",
                                              "MoE permutation buffers", "MLA decode partials", "sampling rows + partials",
                                              "router logits"};
      static_assert(std::size(kWhat) == kScratchSlots, "a name for every scratch slot");
      AllocationPurpose why(fmt::format("backend scratch ({}, {} bytes + 25% headroom)", kWhat[slot], bytes));
      CUDA_CHECK(cudaStreamSynchronize(stream()));
      uint64_t& epoch = scratch_epoch_[lane_][slot];
      if (b.size() > 0 && epoch < n_captures_) retired_scratch_.push_back(std::move(b));
      b = DeviceBuffer();
      b = DeviceBuffer(round_up(bytes + bytes / 4, 1u << 20));
      epoch = n_captures_;
    }
    return b.data();
  }

  int mla_decode_splits(int n, int head_groups, int max_len, int target, bool below, int chunk, int* split_len,
                        int* split_align) const;

  // Thrown (and caught by capture()) when an op inside a capture needs the host; what == nullptr: allowed.
  struct NotCapturable {
    const char* what;
  };
  void not_while_capturing(const char* what) const {
    if (capturing_ && what) throw NotCapturable{what};
  }
  bool capturing_ = false;

  // The device array of expert weight pointers for the grouped MoE kernels, one per expert list (p.experts): built
  // and uploaded on first use, then reused. A hit checks every pointer against the list (E x 6 compares), so a list
  // reallocated at the same address with other weights (tests) rebuilds it.
  struct MoeTable {
    std::vector<MoeExpertPtrs> host;  // [n_experts] what dev holds (bf16 experts: their data pointers, for the check)
    DeviceBuffer dev;                 // [n_experts] MoeExpertPtrs; empty unless fp8
    int64_t d = 0, f = 0;
    bool fp8 = false;  // every expert FP8 with one f: the grouped path applies
    bool vec = false;  // d, f multiples of 16 and every weight 16-byte aligned
  };
  const MoeTable& moe_table(const MoeExpertsParams& p, int d);
  void moe_experts_loop(const MoeExpertsParams& p, int n, int d, int top_k, int E);
  // Reference numerics: the device table of RefMoeExpert per expert list, built once and checked like MoeTable.
  struct RefMoeTable {
    std::vector<RefMoeExpert> host;  // [n_experts] what dev holds
    DeviceBuffer dev;                // [n_experts] RefMoeExpert
    int64_t d = 0;
    int f_max = 0;
    bool any_fp8 = false;
  };
  const RefMoeTable& ref_moe_table(const MoeExpertsParams& p, int d);
  void moe_experts_reference(const MoeExpertsParams& p, int n, int d, int top_k, int E);
  void moe_experts_grouped(const MoeExpertsParams& p, const MoeTable& t, int n, int d, int top_k, int E);
  void moe_experts_decode(const MoeExpertsParams& p, const MoeTable& t, int n, int d, int top_k, int E);

  CudaBackendOptions opt_;
  int device_ = 0;
  int n_sms_ = 132;
  Stream stream_;
  LtGemm gemm_;
  DeviceBuffer err_;
  PinnedBuffer err_host_;
  DeviceBuffer router_done_;  // [kRouterFusedMaxTokens] the fused router's per-token counters (kept zero between calls)
  PinnedBuffer staging_[2];
  Event staging_done_[2];
  bool staging_used_[2] = {false, false};
  static constexpr int kMaxLanes = 8;
  int lane_ = 0;
  bool moe_lanes_ = false;  // inside moe_experts_loop with side streams (linear() then keeps the v1 GEMV)
  Stream lane_streams_[kMaxLanes];  // [0] unused: lane 0 is stream_
  Event lane_done_[kMaxLanes], lanes_fork_;
  std::unique_ptr<LtGemm> lane_gemm_[kMaxLanes];
  DeviceBuffer scratch_[kMaxLanes][kScratchSlots];
  uint64_t scratch_epoch_[kMaxLanes][kScratchSlots] = {};  // n_captures_ when the slot's buffer was allocated
  uint64_t n_captures_ = 0;                                 // graphs captured so far (each may hold scratch addresses)
  std::vector<DeviceBuffer> retired_scratch_;               // grown-out buffers some graph may still use
  PinnedBuffer moe_host_;  // [2 * n_experts] i32: counts, then offsets
  std::unique_ptr<OpProfiler> profiler_;  // DSV3_PROFILE=1

  // Times one public op (with DSV3_PROFILE=1); nested ops (moe_experts' linears) are timed inside their parent.
  OpProfiler::Scope profile(const char* op) { return OpProfiler::Scope(profiler_.get(), op); }
  // [rows] SampleRowParams staged for the upload, two buffers used in turn: refilling one waits only for the upload
  // of the call before the previous, so the overlap scheduler's sample() never waits for the step in flight.
  PinnedBuffer sample_host_[2];
  Event sample_uploaded_[2];  // the last upload from sample_host_[i] has been read
  int sample_buf_ = 0;
  std::map<std::pair<const ExpertWeights*, int64_t>, MoeTable> moe_tables_;  // key: (p.experts, n_experts)
  std::map<std::pair<const ExpertWeights*, int64_t>, RefMoeTable> ref_moe_tables_;
};

// ----------------------------------------------------------------------------------------------- CUDA graphs

class CudaGraph final : public BackendGraph {
 public:
  CudaGraph(GraphExec exec, cudaStream_t stream) : exec_(std::move(exec)), stream_(stream) {}
  void replay() override { CUDA_CHECK(cudaGraphLaunch(exec_.get(), stream_)); }

 private:
  GraphExec exec_;
  cudaStream_t stream_;
};

std::unique_ptr<BackendGraph> CudaBackend::capture(const std::function<void()>& body) {
  CHECK(!capturing_, "capture: already capturing");
  if (profiler_) {  // the profiler's events would become graph nodes; profile the eager steps instead
    log_info("CUDA graphs are off while DSV3_PROFILE=1");
    return nullptr;
  }
  // Thread-local mode: only this thread's unsafe calls (a cudaMalloc, a synchronization) break the capture.
  CUDA_CHECK(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeThreadLocal));
  capturing_ = true;
  const char* refused = nullptr;
  try {
    body();
  } catch (const NotCapturable& e) {
    refused = e.what;
  } catch (...) {
    capturing_ = false;
    cudaGraph_t g = nullptr;
    (void)cudaStreamEndCapture(stream(), &g);
    if (g) (void)cudaGraphDestroy(g);
    (void)cudaGetLastError();
    throw;
  }
  capturing_ = false;
  cudaGraph_t raw = nullptr;
  const cudaError_t end = cudaStreamEndCapture(stream(), &raw);
  Graph graph(raw);
  if (refused || end != cudaSuccess) {
    (void)cudaGetLastError();
    log_info("CUDA graph not captured: {}", refused ? refused : cudaGetErrorString(end));
    return nullptr;
  }
  cudaGraphExec_t exec = nullptr;
  CUDA_CHECK(cudaGraphInstantiate(&exec, graph.get(), 0));
  ++n_captures_;
  return std::make_unique<CudaGraph>(GraphExec(exec), stream());
}

// ---------------------------------------------------------------------------------------------------- linear

// Reference numerics: x quantized per row (scales [n, kb], the CPU's layout), then one thread per output.
void CudaBackend::linear_reference(const LinearParams& p, int n, int m, int k, int64_t xs) {
  const bool out_f32 = p.out.dtype == DType::kF32;
  if (p.w.fp8()) {
    const int kb = (k + 127) / 128;
    auto* codes = static_cast<uint8_t*>(scratch(kScratchCodes, static_cast<size_t>(n) * k));
    auto* scales = static_cast<float*>(scratch(kScratchScales, static_cast<size_t>(kb) * n * sizeof(float)));
    launch_ref_quantize_fp8({cbf(p.x), codes, scales, xs, n, k, p.ue8m0}, stream());
    launched("linear (reference fp8 quantization)");
    launch_ref_linear({codes, scales, p.w.weight.data, p.w.scale_inv.as<const float>(), p.out.data, k, n, m, k, true,
                       out_f32},
                      stream());
  } else {
    launch_ref_linear({p.x.data, nullptr, p.w.weight.data, nullptr, p.out.data, xs, n, m, k, false, out_f32}, stream());
  }
  launched("linear (reference)");
}

void CudaBackend::linear(const LinearParams& p) {
  auto prof = profile("linear");
  validate(p);
  const char* op = "linear";
  expect_device(p.x, op, "x");
  expect_device(p.w.weight, op, "weight");
  expect_device(p.out, op, "out");
  if (p.out2) expect_device(p.out2, op, "out2");
  const int n = to_int(p.x.dim(0), op, "rows"), k = to_int(p.x.dim(1), op, "k");
  const int m = to_int(p.w.weight.dim(0), op, "m");
  const int64_t xs = p.x_stride ? p.x_stride : k;
  if (n == 0 || m == 0) return;
  const bool out_f32 = p.out.dtype == DType::kF32;
  if (p.w.fp8()) expect_tensor(p.w.scale_inv, DType::kF32, op, "scale_inv");
  const bool gemv_ok = !opt_.no_fp8_gemv && !opt_.force_gemm_fallback && !opt_.fp8_gemm_fallback;
  // gemv v2 (the default; DSV3_GEMV=v1 turns it off): 1..8 rows in one launch that quantizes x itself
  // (gemv_fp8_v2.cu), a stacked weight's two outputs included; a shape it does not take (k % 16 != 0, unaligned
  // operands) runs the quantize kernel + GEMV below. Not inside the MoE loop's side streams: v2's grid holds every SM
  // (one CTA each, all the shared memory), while the loop runs several experts' linears side by side, which the v1
  // kernels' small blocks share SMs for.
  if (!opt_.reference_numerics && p.w.fp8() && opt_.gemv_v2 && gemv_ok && !moe_lanes_ && n <= kGemvV2MaxTokens &&
      launch_linear_fp8_gemv_v2({.x = cbf(p.x), .w = p.w.weight.as<const uint8_t>(),
                                 .sw = p.w.scale_inv.as<const float>(), .out = p.out.data, .x_stride = xs, .n = n,
                                 .m = m, .k = k, .ue8m0 = p.ue8m0, .out_f32 = out_f32,
                                 .cfg = opt_.gemv_v2_cfg_small.tile_rows &&
                                                static_cast<long long>(m) * k < cuda::kGemvV2SmallWeightBytes
                                            ? opt_.gemv_v2_cfg_small
                                            : opt_.gemv_v2_cfg,
                                 .out2 = p.out2 ? p.out2.data : nullptr,
                                 .m1 = p.out2 ? static_cast<int>(p.out.dim(1)) : m},
                                stream())) {
    launched(p.out2 ? "linear (fp8 gemv v2, fused quantization, stacked)" : "linear (fp8 gemv v2, fused quantization)");
    return;
  }
  if (p.out2) {  // every other path: the two halves one after the other
    const auto [a, b] = split_stacked_linear(p);
    linear(a);
    linear(b);
    return;
  }
  if (opt_.reference_numerics) {
    linear_reference(p, n, m, k, xs);
    return;
  }
  if (p.w.fp8()) {
    const int kb = (k + 127) / 128;
    auto* codes = static_cast<uint8_t*>(scratch(kScratchCodes, static_cast<size_t>(n) * k));
    auto* scales = static_cast<float*>(scratch(kScratchScales, static_cast<size_t>(kb) * n * sizeof(float)));
    const uint8_t* w = p.w.weight.as<const uint8_t>();
    const float* sw = p.w.scale_inv.as<const float>();
    // Rows [r0, r0 + rows) quantized with their own [kb, rows] scale block (the layout each GEMM below reads).
    auto quantize = [&](int r0, int rows) {
      launch_quantize_fp8({cbf(p.x) + r0 * xs, codes + static_cast<size_t>(r0) * k, scales + static_cast<size_t>(kb) * r0,
                           xs, rows, k, p.ue8m0},
                          stream());
      launched("linear (fp8 activation quantization)");
    };
    auto gemv = [&](int r0, int rows) {
      launch_linear_fp8_gemv({codes + static_cast<size_t>(r0) * k, scales + static_cast<size_t>(kb) * r0, w, sw,
                              static_cast<char*>(p.out.data) + static_cast<size_t>(r0) * m * dtype_size(p.out.dtype),
                              rows, m, k, out_f32},
                             stream());
      launched("linear (fp8 gemv)");
    };
    // Decode sizes: weight-read bound, and cuBLASLt refuses a single row. The forced-fallback options keep their
    // bitwise-exact kernel.
    if (n <= kGemvMaxTokens && gemv_ok) {
      quantize(0, n);
      gemv(0, n);
      return;
    }
    // cuBLASLt block scaling: whole 128-blocks along K; the weight scales' rows padded to 16 bytes (k/128 % 4 == 0,
    // true for every DeepSeek-V3 projection); 16-byte aligned operands and output rows.
    const bool lt = !opt_.force_gemm_fallback && !opt_.fp8_gemm_fallback && !out_f32 && k % 128 == 0 && kb % 4 == 0 &&
                    m % 16 == 0 && aligned(w, 16) && aligned(p.out.data, 16) && aligned(sw, 16);
    // cuBLASLt 13.1 answers "not supported" (15) for token counts such as 86 or 90 (seen on the H200, MoE experts of
    // the v3-slice benchmark), which then ran the CUDA-core fallback at < 1% of the tensor cores. So the rows past
    // the last multiple of 16 (at most 15) take the decode GEMV, each part with its own scale block.
    const int n_main = lt && gemv_ok ? n / 16 * 16 : n, n_rem = n - n_main;
    quantize(0, n_main);
    if (n_rem) quantize(n_main, n_rem);
    bool done = false;
    if (lt) {
      GemmProblem g;
      g.ab_type = CUDA_R_8F_E4M3;
      g.d_type = CUDA_R_16BF;
      g.trans_a = true;
      g.m = m, g.n = n_main, g.k = k, g.lda = k, g.ldb = k, g.ldd = m;
      g.block_scaled = true;
      done = gemm().run(g, w, codes, p.out.data, sw, scales, stream());
      if (done) launched("linear (cuBLASLt fp8 block-scaled)");
    }
    if (!done) {
      launch_gemm_fallback({codes, scales, w, sw, p.out.data, k, n_main, m, k, true, out_f32}, stream());
      launched("linear (fp8 fallback kernel)");
    }
    if (n_rem) gemv(n_main, n_rem);
    return;
  }
  if (!opt_.force_gemm_fallback) {
    GemmProblem g;
    g.ab_type = CUDA_R_16BF;
    g.d_type = out_f32 ? CUDA_R_32F : CUDA_R_16BF;
    g.trans_a = true;
    g.m = m, g.n = n, g.k = k, g.lda = k, g.ldb = xs, g.ldd = m;
    if (gemm().run(g, p.w.weight.data, p.x.data, p.out.data, nullptr, nullptr, stream())) {
      launched("linear (cuBLASLt bf16)");
      return;
    }
  }
  launch_gemm_fallback({p.x.data, nullptr, p.w.weight.data, nullptr, p.out.data, xs, n, m, k, false, out_f32},
                       stream());
  launched("linear (bf16 fallback kernel)");
}

// ---------------------------------------------------------------------------------------------- elementwise

void CudaBackend::rms_norm(const RmsNormParams& p) {
  auto prof = profile("rms_norm");
  validate(p);
  const char* op = "rms_norm";
  expect_tensor(p.x, DType::kBF16, op, "x");
  expect_tensor(p.weight, DType::kBF16, op, "weight");
  expect_tensor(p.out, DType::kBF16, op, "out");
  if (p.residual) expect_tensor(p.residual, DType::kBF16, op, "residual");
  const int dim = to_int(p.weight.dim(0), op, "dim");
  const int64_t xs = p.x_stride ? p.x_stride : dim, os = p.out_stride ? p.out_stride : dim;
  const int n = to_int(p.x.numel() / xs, op, "rows");
  if (n == 0) return;
  EXPECT((n - 1) * os + dim <= p.out.numel(), "rms_norm: out {} too small for {} rows of stride {}",
         p.out.shape.str(), n, os);
  const RmsNormArgs args{cbf(p.x), p.residual ? bf(p.residual) : nullptr, cbf(p.weight), bf(p.out), xs, os, n, dim,
                        p.eps};
  if (opt_.reference_numerics) {
    launch_ref_rms_norm(args, stream());
    launched("rms_norm (reference)");
    return;
  }
  EXPECT(static_cast<size_t>(dim) * 4 <= 200 * 1024, "rms_norm: dim {} too large", dim);
  launch_rms_norm(args, stream());
  launched(op);
}

void CudaBackend::embedding(const EmbeddingParams& p) {
  auto prof = profile("embedding");
  const char* op = "embedding";
  expect_tensor(p.ids, DType::kI32, op, "ids");
  expect_tensor(p.table, DType::kBF16, op, "table");
  expect_tensor(p.out, DType::kBF16, op, "out");
  const int n = to_int(p.ids.numel(), op, "tokens"), d = to_int(p.table.dim(1), op, "d");
  EXPECT(p.out.numel() == static_cast<int64_t>(n) * d, "embedding: out {} for {} ids of width {}", p.out.shape.str(),
         n, d);
  launch_embedding({ci32(p.ids), cbf(p.table), bf(p.out), n, d, to_int(p.table.dim(0), op, "vocab"), err()}, stream());
  launched(op);
}

void CudaBackend::rope(const RopeParams& p) {
  auto prof = profile("rope");
  const char* op = "rope";
  expect_tensor(p.x, DType::kBF16, op, "x");
  expect_tensor(p.positions, DType::kI32, op, "positions");
  expect_tensor(p.inv_freq, DType::kF32, op, "inv_freq");
  EXPECT(p.x.shape.ndim == 3, "rope: x must be [n, heads, head_stride], got {}", p.x.shape.str());
  const int n = to_int(p.x.dim(0), op, "n"), heads = to_int(p.x.dim(1), op, "heads");
  const int stride = to_int(p.x.dim(2), op, "head_stride"), half = to_int(p.inv_freq.numel(), op, "half");
  EXPECT(p.offset + 2 * half <= stride, "rope: dims [{}, {}) outside head width {}", p.offset, p.offset + 2 * half,
         stride);
  EXPECT(p.positions.numel() >= n, "rope: {} positions for {} rows", p.positions.numel(), n);
  const RopeArgs args{bf(p.x), ci32(p.positions), p.inv_freq.as<const float>(), n, heads, stride, half,
                     static_cast<int>(p.offset)};
  if (opt_.reference_numerics) launch_ref_rope(args, stream());
  else launch_rope(args, stream());
  launched(opt_.reference_numerics ? "rope (reference)" : op);
}

void CudaBackend::silu_mul(const SiluMulParams& p) {
  auto prof = profile("silu_mul");
  const char* op = "silu_mul";
  expect_tensor(p.gate, DType::kBF16, op, "gate");
  expect_tensor(p.up, DType::kBF16, op, "up");
  expect_tensor(p.out, DType::kBF16, op, "out");
  EXPECT(p.up.numel() == p.gate.numel() && p.out.numel() == p.gate.numel(), "silu_mul: gate {} up {} out {}",
         p.gate.shape.str(), p.up.shape.str(), p.out.shape.str());
  const SiluMulArgs args{cbf(p.gate), cbf(p.up), bf(p.out), p.gate.numel()};
  if (opt_.reference_numerics) launch_ref_silu_mul(args, stream());
  else launch_silu_mul(args, stream());
  launched(opt_.reference_numerics ? "silu_mul (reference)" : op);
}

void CudaBackend::add(const AddParams& p) {
  auto prof = profile("add");
  const char* op = "add";
  expect_tensor(p.a, DType::kBF16, op, "a");
  expect_tensor(p.b, DType::kBF16, op, "b");
  expect_tensor(p.out, DType::kBF16, op, "out");
  EXPECT(p.b.numel() == p.a.numel() && p.out.numel() == p.a.numel(), "add: a {} b {} out {}", p.a.shape.str(),
         p.b.shape.str(), p.out.shape.str());
  const AddArgs args{cbf(p.a), cbf(p.b), bf(p.out), p.a.numel()};
  if (opt_.reference_numerics) launch_ref_add(args, stream());
  else launch_add(args, stream());
  launched(opt_.reference_numerics ? "add (reference)" : op);
}

// ------------------------------------------------------------------------------------------------- KV cache

void CudaBackend::kv_cache_store(const KvCacheStoreParams& p) {
  auto prof = profile("kv_cache_store");
  const char* op = "kv_cache_store";
  expect_tensor(p.kv_new, DType::kBF16, op, "kv_new");
  expect_tensor(p.cache, DType::kBF16, op, "cache");
  expect_tensor(p.slots, DType::kI32, op, "slots");
  EXPECT(p.cache.shape.ndim == 3 && p.kv_new.shape.ndim == 2, "kv_cache_store: kv_new {} cache {}",
         p.kv_new.shape.str(), p.cache.shape.str());
  const int n = to_int(p.kv_new.dim(0), op, "n"), entry = to_int(p.kv_new.dim(1), op, "entry");
  EXPECT(p.cache.dim(2) == entry, "kv_cache_store: entry {} vs cache {}", entry, p.cache.shape.str());
  EXPECT(p.slots.numel() >= n, "kv_cache_store: {} slots for {} rows", p.slots.numel(), n);
  launch_kv_cache_store({cbf(p.kv_new), bf(p.cache), ci32(p.slots), n, entry, p.cache.dim(0) * p.cache.dim(1), err()},
                        stream());
  launched(op);
}

void CudaBackend::kv_cache_gather(const KvCacheGatherParams& p) {
  auto prof = profile("kv_cache_gather");
  const char* op = "kv_cache_gather";
  expect_tensor(p.cache, DType::kBF16, op, "cache");
  expect_tensor(p.block_table, DType::kI32, op, "block_table");
  expect_tensor(p.cu_kv, DType::kI32, op, "cu_kv");
  expect_tensor(p.latent_out, DType::kBF16, op, "latent_out");
  expect_tensor(p.pe_out, DType::kBF16, op, "pe_out");
  EXPECT(p.cache.shape.ndim == 3 && p.block_table.shape.ndim == 2, "kv_cache_gather: cache {} block_table {}",
         p.cache.shape.str(), p.block_table.shape.str());
  const int rank = to_int(p.latent_out.dim(1), op, "rank"), rope = to_int(p.pe_out.dim(1), op, "rope");
  EXPECT(rank + rope == p.cache.dim(2), "kv_cache_gather: {} + {} != cache entry {}", rank, rope, p.cache.dim(2));
  EXPECT(p.pe_out.dim(0) == p.latent_out.dim(0), "kv_cache_gather: latent_out {} pe_out {}",
         p.latent_out.shape.str(), p.pe_out.shape.str());
  const int n_seqs = to_int(p.cu_kv.numel() - 1, op, "n_seqs");
  EXPECT(p.block_table.dim(0) >= n_seqs, "kv_cache_gather: block_table {} for {} sequences",
         p.block_table.shape.str(), n_seqs);
  launch_kv_cache_gather({cbf(p.cache), ci32(p.block_table), ci32(p.cu_kv), bf(p.latent_out), bf(p.pe_out), n_seqs,
                          to_int(p.latent_out.dim(0), op, "n_kv"), to_int(p.block_table.dim(1), op, "max_blocks"),
                          to_int(p.cache.dim(1), op, "block_size"), rank, rope, p.cache.dim(0), err()},
                         stream());
  launched(op);
}

// ------------------------------------------------------------------------------------------------------ MLA

void CudaBackend::mla_prefill(const MlaPrefillParams& p) {
  auto prof = profile("mla_prefill");
  validate(p);
  const char* op = "mla_prefill";
  expect_tensor(p.q, DType::kBF16, op, "q");
  expect_tensor(p.kv, DType::kBF16, op, "kv");
  expect_tensor(p.k_pe, DType::kBF16, op, "k_pe");
  expect_tensor(p.cu_q, DType::kI32, op, "cu_q");
  expect_tensor(p.cu_kv, DType::kI32, op, "cu_kv");
  expect_tensor(p.out, DType::kBF16, op, "out");
  const int nope = to_int(p.qk_nope_head_dim, op, "nope"), v = to_int(p.v_head_dim, op, "v");
  const int rope = to_int(p.q.dim(2) - nope, op, "rope"), heads = to_int(p.q.dim(1), op, "heads");
  EXPECT(heads <= 65535, "mla_prefill: {} heads exceed the grid's y limit of 65535", heads);
  const MlaPrefillArgs a{cbf(p.q), cbf(p.kv), cbf(p.k_pe), ci32(p.cu_q), ci32(p.cu_kv), bf(p.out),
                         to_int(p.cu_q.numel() - 1, op, "n_seqs"), to_int(p.q.dim(0), op, "n_q"),
                         to_int(p.kv.dim(0), op, "n_kv"), heads, nope, rope, v, p.softmax_scale, err()};
  if (opt_.reference_numerics) {
    EXPECT(v <= kRefAttnMaxCols, "mla_prefill: v_head_dim {} > {} (reference numerics)", v, kRefAttnMaxCols);
    launch_ref_mla_prefill(a, stream());
    launched("mla_prefill (reference)");
    return;
  }
  // The tensor-core kernel: DeepSeek-V3 dims, 16-byte rows for cp.async, bf16x2 output stores, and a positive scale
  // (its running max is taken on the raw scores). Anything else runs the CUDA-core kernel.
  const bool mma = !opt_.simple_mla_prefill && mla_prefill_mma_supported(nope, rope, v) && aligned(p.q.data, 16) &&
                   aligned(p.kv.data, 16) && aligned(p.k_pe.data, 16) && aligned(p.out.data, 4) &&
                   p.softmax_scale > 0.f;
  if (mma) {
    launch_mla_prefill_mma(a, opt_.mla_prefill_q_rows, opt_.mla_p_bf16, stream());
    launched(opt_.mla_prefill_q_rows == 64 ? "mla_prefill (mma, 64 rows)" : "mla_prefill (mma)");
    return;
  }
  EXPECT(v <= 128, "mla_prefill: v_head_dim {} > 128 is not supported by the CUDA kernel", v);
  const size_t smem = mla_prefill_smem_bytes(nope, rope, v);
  EXPECT(smem <= 227 * 1024, "mla_prefill: head dims {} + {} / {} need {} bytes of shared memory", nope, rope, v,
         smem);
  launch_mla_prefill(a, stream());
  launched("mla_prefill (simple)");
}

void CudaBackend::mla_absorb_q(const MlaAbsorbQParams& p) {
  auto prof = profile("mla_absorb_q");
  const char* op = "mla_absorb_q";
  expect_tensor(p.q, DType::kBF16, op, "q");
  expect_tensor(p.kv_b, DType::kBF16, op, "kv_b");
  expect_tensor(p.q_abs, DType::kBF16, op, "q_abs");
  EXPECT(p.q.shape.ndim == 3 && p.q_abs.shape.ndim == 3, "mla_absorb_q: q {} q_abs {}", p.q.shape.str(),
         p.q_abs.shape.str());
  const int n = to_int(p.q.dim(0), op, "n"), H = to_int(p.q.dim(1), op, "heads"), qd = to_int(p.q.dim(2), op, "qd");
  const int nope = to_int(p.qk_nope_head_dim, op, "nope"), rank = to_int(p.kv_b.dim(1), op, "rank");
  const int rope = qd - nope, per_head = nope + to_int(p.v_head_dim, op, "v");
  EXPECT(p.kv_b.dim(0) == static_cast<int64_t>(H) * per_head && p.q_abs.dim(2) == rank + rope &&
             p.q_abs.dim(0) == n && p.q_abs.dim(1) == H,
         "mla_absorb_q: kv_b {} q_abs {}", p.kv_b.shape.str(), p.q_abs.shape.str());
  if (n == 0) return;
  if (opt_.reference_numerics) {
    launch_ref_absorb_q({cbf(p.q), cbf(p.kv_b), bf(p.q_abs), n, H, nope, rope, rank, per_head}, stream());
    launched("mla_absorb_q (reference)");
    return;
  }
  // The own kernel (mla_absorb.cu): bitwise equal to the reference, and at decode sizes 50x faster than the
  // strided-batched cuBLASLt GEMM (which remains for DSV3_CUDA_GEMM=fallback's comparison path below).
  // Up to kAbsorbSliceMaxTokens tokens the slice kernel (512 CTAs at DeepSeek-V3 dims, the weight in flight at once);
  // beyond, the token-tile kernel (one CTA per head and 8 tokens), which reads the weight once per 8 tokens.
  const bool slice_ok = absorb_q_slice_supported(rank, nope, rope) && aligned(p.kv_b.data, 16) &&
                        aligned(p.q_abs.data, 4);
  if (!opt_.force_gemm_fallback && slice_ok && opt_.mla_absorb != MlaAbsorbImpl::kTile &&
      (n <= kAbsorbSliceMaxTokens || opt_.mla_absorb == MlaAbsorbImpl::kSlice)) {
    launch_absorb_q_slice({cbf(p.q), cbf(p.kv_b), bf(p.q_abs), n, H, nope, rope, rank, per_head}, stream());
    launched("mla_absorb_q (slice kernel)");
    return;
  }
  if (!opt_.force_gemm_fallback && absorb_q_kernel_supported(rank, nope, rope) && aligned(p.kv_b.data, 8) &&
      aligned(p.q_abs.data, 8) && (rank + rope) % 4 == 0) {
    launch_absorb_q({cbf(p.q), cbf(p.kv_b), bf(p.q_abs), n, H, nope, rope, rank, per_head}, stream());
    launched("mla_absorb_q (kernel)");
    return;
  }
  bool done = false;
  if (!opt_.force_gemm_fallback) {
    GemmProblem g;  // per head h: q_abs[:, h, :rank]ᵀ (rank x n) = W_UK^h (rank x nope) · q_nope[:, h]ᵀ (nope x n)
    g.m = rank, g.n = n, g.k = nope;
    g.lda = rank, g.ldb = static_cast<int64_t>(H) * qd, g.ldd = static_cast<int64_t>(H) * (rank + rope);
    g.batch = H, g.stride_a = static_cast<int64_t>(per_head) * rank, g.stride_b = qd, g.stride_d = rank + rope;
    done = gemm().run(g, p.kv_b.data, p.q.data, p.q_abs.data, nullptr, nullptr, stream());
  }
  if (!done) {
    launch_batched_gemm_fallback({cbf(p.q), cbf(p.kv_b), bf(p.q_abs), qd, static_cast<int64_t>(H) * qd, 1,
                                  static_cast<int64_t>(per_head) * rank, rank, 1, rank + rope,
                                  static_cast<int64_t>(H) * (rank + rope), H, n, rank, nope},
                                 stream());
  }
  launched(done ? "mla_absorb_q (cuBLASLt)" : "mla_absorb_q (fallback kernel)");
  launch_copy_rows({cbf(p.q) + nope, bf(p.q_abs) + rank, qd, rank + rope, n * H, rope}, stream());
  launched("mla_absorb_q (q_pe copy)");
}

void CudaBackend::mla_absorb_v(const MlaAbsorbVParams& p) {
  auto prof = profile("mla_absorb_v");
  const char* op = "mla_absorb_v";
  expect_tensor(p.o_latent, DType::kBF16, op, "o_latent");
  expect_tensor(p.kv_b, DType::kBF16, op, "kv_b");
  expect_tensor(p.out, DType::kBF16, op, "out");
  EXPECT(p.o_latent.shape.ndim == 3 && p.out.shape.ndim == 3, "mla_absorb_v: o_latent {} out {}",
         p.o_latent.shape.str(), p.out.shape.str());
  const int n = to_int(p.o_latent.dim(0), op, "n"), H = to_int(p.o_latent.dim(1), op, "heads");
  const int rank = to_int(p.o_latent.dim(2), op, "rank"), nope = to_int(p.qk_nope_head_dim, op, "nope");
  const int vd = to_int(p.v_head_dim, op, "v"), per_head = nope + vd;
  EXPECT(p.kv_b.dim(0) == static_cast<int64_t>(H) * per_head && p.kv_b.dim(1) == rank, "mla_absorb_v: kv_b {}",
         p.kv_b.shape.str());
  EXPECT(p.out.dim(0) == n && p.out.dim(1) == H && p.out.dim(2) == vd, "mla_absorb_v: out {}", p.out.shape.str());
  if (n == 0) return;
  if (opt_.reference_numerics) {
    launch_ref_absorb_v({cbf(p.o_latent), cbf(p.kv_b), bf(p.out), n, H, nope, vd, rank, per_head}, stream());
    launched("mla_absorb_v (reference)");
    return;
  }
  // The own kernel (mla_absorb.cu): bitwise equal to the reference; the cuBLASLt path stays for
  // DSV3_CUDA_GEMM=fallback's comparison path and for shapes the kernel does not take.
  if (!opt_.force_gemm_fallback && absorb_v_slice_supported(rank, vd) && aligned(p.kv_b.data, 16) &&
      opt_.mla_absorb != MlaAbsorbImpl::kTile && (n <= kAbsorbSliceMaxTokens || opt_.mla_absorb == MlaAbsorbImpl::kSlice)) {
    launch_absorb_v_slice({cbf(p.o_latent), cbf(p.kv_b), bf(p.out), n, H, nope, vd, rank, per_head}, stream());
    launched("mla_absorb_v (slice kernel)");
    return;
  }
  if (!opt_.force_gemm_fallback && absorb_v_kernel_supported(rank, vd) && aligned(p.kv_b.data, 16) &&
      absorb_v_smem_bytes(rank, vd) <= 200 * 1024) {
    launch_absorb_v({cbf(p.o_latent), cbf(p.kv_b), bf(p.out), n, H, nope, vd, rank, per_head}, stream());
    launched("mla_absorb_v (kernel)");
    return;
  }
  const bf16_t* w_uv = cbf(p.kv_b) + static_cast<int64_t>(nope) * rank;
  bool done = false;
  if (!opt_.force_gemm_fallback) {
    GemmProblem g;  // per head h: out[:, h]ᵀ (v x n) = W_UV^h (v x rank) · o[:, h]ᵀ (rank x n)
    g.trans_a = true;
    g.m = vd, g.n = n, g.k = rank;
    g.lda = rank, g.ldb = static_cast<int64_t>(H) * rank, g.ldd = static_cast<int64_t>(H) * vd;
    g.batch = H, g.stride_a = static_cast<int64_t>(per_head) * rank, g.stride_b = rank, g.stride_d = vd;
    done = gemm().run(g, w_uv, p.o_latent.data, p.out.data, nullptr, nullptr, stream());
  }
  if (!done) {
    launch_batched_gemm_fallback({cbf(p.o_latent), w_uv, bf(p.out), rank, static_cast<int64_t>(H) * rank, 1,
                                  static_cast<int64_t>(per_head) * rank, 1, rank, vd, static_cast<int64_t>(H) * vd, H,
                                  n, vd, rank},
                                 stream());
  }
  launched(done ? "mla_absorb_v (cuBLASLt)" : "mla_absorb_v (fallback kernel)");
}

// Splits along the sequence so that rows x head groups x splits comes close to `target` CTAs, from below (`below`:
// the kernels whose CTAs all fit at once) or from above (the others), each split a whole number of `chunk` keys; at
// most 64 splits (the combine's limit). Depends only on host-known sizes (max_len: the block table's width), so a
// decode step stays capturable in a CUDA graph; each row then cuts its own length into the n_splits pieces
// (mla_decode_common.cuh decode_row). DSV3_MLA_DECODE_SPLIT forces pieces of that many keys.
int CudaBackend::mla_decode_splits(int n, int head_groups, int max_len, int target, bool below, int chunk,
                                   int* split_len, int* split_align) const {
  constexpr int kMaxSplits = kMlaDecodeMaxSplits;
  if (opt_.mla_decode_split_keys > 0) chunk = opt_.mla_decode_split_keys;
  const int chunks = std::max(1, (max_len + chunk - 1) / chunk);
  const int per_split_unit = std::max(1, n * head_groups);
  const int want = opt_.mla_decode_split_keys > 0 ? chunks
                   : below                        ? target / per_split_unit
                                                  : (target + per_split_unit - 1) / per_split_unit;
  const int splits = std::clamp(want, 1, std::min(chunks, kMaxSplits));
  const int chunks_per_split = (chunks + splits - 1) / splits;
  *split_len = chunks_per_split * chunk;
  *split_align = chunk;
  const int n_splits = (chunks + chunks_per_split - 1) / chunks_per_split;
  CHECK(n_splits >= 1 && n_splits <= kMaxSplits, "mla_decode: {} splits", n_splits);
  return n_splits;
}

void CudaBackend::mla_decode(const MlaDecodeParams& p) {
  auto prof = profile("mla_decode");
  validate(p);
  const char* op = "mla_decode";
  expect_tensor(p.q_abs, DType::kBF16, op, "q_abs");
  expect_tensor(p.cache, DType::kBF16, op, "cache");
  expect_tensor(p.block_table, DType::kI32, op, "block_table");
  expect_tensor(p.seq_lens, DType::kI32, op, "seq_lens");
  expect_tensor(p.out, DType::kBF16, op, "out");
  const int n = to_int(p.q_abs.dim(0), op, "n"), H = to_int(p.q_abs.dim(1), op, "heads");
  const int entry = to_int(p.q_abs.dim(2), op, "entry"), rank = to_int(p.kv_lora_rank, op, "kv_lora_rank");
  EXPECT(p.out.dim(0) == n && p.out.dim(1) == H, "mla_decode: out {} for q_abs {}", p.out.shape.str(),
         p.q_abs.shape.str());
  if (opt_.reference_numerics) {
    EXPECT(rank <= kRefAttnMaxCols, "mla_decode: kv_lora_rank {} > {} (reference numerics)", rank, kRefAttnMaxCols);
    if (n == 0) return;
    launch_ref_mla_decode({cbf(p.q_abs), cbf(p.cache), ci32(p.block_table), ci32(p.seq_lens), bf(p.out), nullptr,
                           nullptr, n, H, entry, rank, to_int(p.cache.dim(1), op, "block_size"),
                           to_int(p.block_table.dim(1), op, "max_blocks"), 1, 0, 0, p.cache.dim(0),
                           p.softmax_scale, err()},
                          stream());
    launched("mla_decode (reference)");
    return;
  }
  EXPECT(entry % 2 == 0 && rank <= 512, "mla_decode: entry {} must be even and kv_lora_rank {} <= 512", entry, rank);
  EXPECT(entry <= 2048, "mla_decode: entry {} too large", entry);
  if (n == 0) return;
  const int bs = to_int(p.cache.dim(1), op, "block_size"), max_blocks = to_int(p.block_table.dim(1), op, "max_blocks");
  // The tensor-core kernels copy 16-byte pieces of q and the cache; mma and mma16 also store bf16 pairs of out.
  const bool tc_aligned = aligned(p.q_abs.data, 16) && aligned(p.cache.data, 16);
  const bool mma_ok = tc_aligned && aligned(p.out.data, 4);
  const MlaDecodeImpl impl = opt_.mla_decode;
  // kAuto: 16 heads per CTA while rows x heads <= kMma16MaxRowHeads (2 rows at H = 128: the 64-head kernel would
  // run 2 head groups per row on a few SMs); beyond, 64 heads per CTA read each KV tile from L2 4x less often.
  // Measured (test_ops --perf -o mla_decode_small, docs/benchmarks.md): mma16 wins at 1 row (12.6 vs 20.8 µs at 1K
  // keys), splits 2 rows (16.3 vs 21.4 at 1K, 31.7 vs 27.2 at 4K) and loses from 4 rows (51.9 vs 38.5 at 4K).
  constexpr int64_t kMma16MaxRowHeads = 256;
  MlaDecodeKernel kernel = MlaDecodeKernel::kSimple;
  if (mma_ok && mla_decode_mma16_supported(entry, rank, H) &&
      (impl == MlaDecodeImpl::kMma16 ||
       (impl == MlaDecodeImpl::kAuto && static_cast<int64_t>(n) * H <= kMma16MaxRowHeads))) {
    kernel = MlaDecodeKernel::kMma16;
  } else if ((impl == MlaDecodeImpl::kAuto || impl == MlaDecodeImpl::kMma || impl == MlaDecodeImpl::kMma16) &&
             mma_ok && mla_decode_mma_supported(entry, rank, H)) {
    kernel = MlaDecodeKernel::kMma;
  } else if (impl != MlaDecodeImpl::kSimple && tc_aligned && mla_decode_wmma_supported(entry, rank)) {
    kernel = MlaDecodeKernel::kWmma;
  }
  const int head_group = mla_decode_head_group(kernel);
  int split_len = 0, split_align = 0;
  const int max_len = to_int(static_cast<int64_t>(bs) * max_blocks, op, "max context");
  const int head_groups = (H + head_group - 1) / head_group;
  // mma: one 230 KB CTA per SM (target: the SM count, from below); mma16: two 94 KB CTAs per SM, whole 64-key tiles;
  // the others: about two waves.
  const int splits = kernel == MlaDecodeKernel::kMma
                         ? mla_decode_splits(n, head_groups, max_len, n_sms_, true, 128, &split_len, &split_align)
                     : kernel == MlaDecodeKernel::kMma16
                         ? mla_decode_splits(n, head_groups, max_len, 2 * n_sms_, true, 64, &split_len, &split_align)
                         : mla_decode_splits(n, head_groups, max_len, 2 * n_sms_, false, 128, &split_len, &split_align);
  MlaDecodeArgs a{cbf(p.q_abs), cbf(p.cache), ci32(p.block_table), ci32(p.seq_lens), bf(p.out), nullptr, nullptr,
                  n, H, entry, rank, bs, max_blocks, splits, split_len, split_align, p.cache.dim(0), p.softmax_scale,
                  err()};
  if (splits > 1) {
    const size_t o_bytes = round_up(mla_decode_part_o_floats(n, H, rank, splits) * sizeof(float), 256);
    const size_t ml_bytes = mla_decode_part_ml_floats(n, H, splits) * sizeof(float);
    char* base = static_cast<char*>(scratch(kScratchDecode, o_bytes + ml_bytes));
    a.part_o = reinterpret_cast<float*>(base);
    a.part_ml = reinterpret_cast<float*>(base + o_bytes);
  }
  launch_mla_decode(a, kernel, opt_.mla_p_bf16, stream());
  launched(kernel == MlaDecodeKernel::kMma     ? "mla_decode (mma)"
           : kernel == MlaDecodeKernel::kMma16 ? "mla_decode (mma16)"
           : kernel == MlaDecodeKernel::kWmma  ? "mla_decode (wmma)"
                                               : "mla_decode (simple)");
}

// ------------------------------------------------------------------------------------------------------ MoE

void CudaBackend::router(const RouterParams& p) {
  auto prof = profile("router");
  validate(p);
  const char* op = "router";
  expect_tensor(p.x, DType::kBF16, op, "x");
  expect_tensor(p.gate, DType::kBF16, op, "gate");
  expect_tensor(p.topk_ids, DType::kI32, op, "topk_ids");
  expect_tensor(p.topk_weights, DType::kF32, op, "topk_weights");
  if (p.bias) expect_tensor(p.bias, DType::kF32, op, "bias");
  const int n = to_int(p.x.dim(0), op, "n"), d = to_int(p.x.dim(1), op, "d"), E = to_int(p.gate.dim(0), op, "E");
  EXPECT(p.topk_weights.numel() == p.topk_ids.numel(), "router: topk_weights {} vs topk_ids {}",
         p.topk_weights.shape.str(), p.topk_ids.shape.str());
  if (p.bias) EXPECT(p.bias.numel() == E, "router: bias {} for {} experts", p.bias.shape.str(), E);
  const int method = p.method == RouterTopk::kNoauxTc ? 0 : p.method == RouterTopk::kGreedy ? 1 : 2;
  if (n == 0) return;
  EXPECT(p.n_group >= 1 && E % p.n_group == 0 && p.top_k >= 1 && p.top_k <= E,
         "router: {} experts in {} groups, top_k {}", E, p.n_group, p.top_k);
  if (opt_.reference_numerics) {
    const size_t smem = ref_router_smem_bytes(E, static_cast<int>(p.n_group));
    EXPECT(smem <= 200 * 1024, "router: {} experts need {} bytes of shared memory (reference numerics)", E, smem);
    launch_ref_router({cbf(p.x), cbf(p.gate), p.bias ? p.bias.as<const float>() : nullptr, p.topk_ids.as<int32_t>(),
                       p.topk_weights.as<float>(), nullptr, n, d, E, static_cast<int>(p.n_group),
                       static_cast<int>(p.topk_group), static_cast<int>(p.top_k),
                       p.scoring == RouterScoring::kSigmoid ? 0 : 1, method, p.norm_topk_prob,
                       p.routed_scaling_factor},
                      stream());
    launched("router (reference)");
    return;
  }
  const size_t smem = router_smem_bytes(d, E, static_cast<int>(p.n_group));
  EXPECT(smem <= 200 * 1024, "router: d {} with {} experts needs {} bytes of shared memory", d, E, smem);
  auto* logits = static_cast<float*>(scratch(kScratchRouter, static_cast<size_t>(n) * E * sizeof(float)));
  launch_router({cbf(p.x), cbf(p.gate), p.bias ? p.bias.as<const float>() : nullptr, p.topk_ids.as<int32_t>(),
                 p.topk_weights.as<float>(), logits, n, d, E, static_cast<int>(p.n_group), static_cast<int>(p.topk_group),
                 static_cast<int>(p.top_k), p.scoring == RouterScoring::kSigmoid ? 0 : 1, method, p.norm_topk_prob,
                 p.routed_scaling_factor, opt_.router_fused ? router_done_.as<int32_t>() : nullptr},
                stream());
  launched(op);
}

// Decode-size batches run the grouped path when the grouped kernels read little more weight than the loop does.
// The grouped kernels read an active expert's weights once per chunk of 16 of its rows (ceil(c_e / 16) passes; the
// weights are far larger than L2), the loop once per expert, but the loop pays a host sync plus ~4 launches and a
// GEMM call per active expert, each a few µs to tens of µs however few its rows (85 ms per v3-slice step at batch
// 128, against an ~8 ms weight-read floor). With n·top_k <= 16·E entries an expert gets at most 16 rows on average:
// one pass for most experts, so the grouped path runs near the weight-read floor where the loop is launch-bound.
// Beyond that (prefill) most experts would need 2+ passes while cuBLASLt reads the weights once at tensor-core
// rates, and one sync per layer costs nothing next to a multi-ms step.
constexpr int kMoeGroupedMaxRowsPerExpert = 16;
// The decode kernels (moe_decode.cu: prep + one persistent kernel) were written for the smallest batches, where the
// grouped path's gate/up launch has about one block per SM. Measured on the v3-slice at batch 1 they lose (1.775 vs
// 1.700 ms per step with the grouped kernels, docs/benchmarks.md 02:43): auto does not pick them; DSV3_MOE=decode
// does (n·top_k <= kMoeDecodeMaxEntries).
constexpr int kMoeDecodeAutoEntries = 0;

const CudaBackend::MoeTable& CudaBackend::moe_table(const MoeExpertsParams& p, int d) {
  const int64_t E = p.n_experts;
  auto ptrs = [](const ExpertWeights& ew) {
    return MoeExpertPtrs{ew.gate.weight.as<const uint8_t>(), ew.gate.scale_inv.as<const float>(),
                         ew.up.weight.as<const uint8_t>(),   ew.up.scale_inv.as<const float>(),
                         ew.down.weight.as<const uint8_t>(), ew.down.scale_inv.as<const float>()};
  };
  auto same = [](const MoeExpertPtrs& a, const MoeExpertPtrs& b) {
    return a.gate == b.gate && a.gate_sc == b.gate_sc && a.up == b.up && a.up_sc == b.up_sc && a.down == b.down &&
           a.down_sc == b.down_sc;
  };
  MoeTable& slot = moe_tables_[{p.experts, E}];
  bool hit = slot.d == d && static_cast<int64_t>(slot.host.size()) == E && slot.f == p.experts[0].gate.weight.dim(0);
  for (int64_t e = 0; hit && e < E; ++e) hit = same(slot.host[e], ptrs(p.experts[e]));
  if (hit) return slot;

  // Built aside and stored only when complete, so that bad input (EXPECT below) leaves no half-built table.
  const char* op = "moe_experts";
  MoeTable t;
  t.d = d;
  t.f = p.experts[0].gate.weight.dim(0);
  t.fp8 = true;
  t.vec = d % 16 == 0 && t.f % 16 == 0;
  for (int64_t e = 0; e < E; ++e) {
    const ExpertWeights& ew = p.experts[e];
    t.host.push_back(ptrs(ew));
    t.fp8 = t.fp8 && ew.gate.fp8() && ew.up.fp8() && ew.down.fp8();
  }
  if (!t.fp8) {  // bf16 checkpoints: the loop (its linear() calls check each active expert)
    if (slot.dev.data()) CUDA_CHECK(cudaStreamSynchronize(stream()));  // queued kernels may still read the old table
    slot = std::move(t);
    return slot;
  }
  const int64_t f = t.f, fb = (f + 127) / 128, db = (d + 127) / 128;
  for (int64_t e = 0; e < E; ++e) {
    const ExpertWeights& ew = p.experts[e];
    const LinearWeight* lw[3] = {&ew.gate, &ew.up, &ew.down};
    const Shape want[3] = {Shape{f, d}, Shape{f, d}, Shape{d, f}};
    const Shape want_sc[3] = {Shape{fb, db}, Shape{fb, db}, Shape{db, fb}};
    const char* names[3] = {"gate", "up", "down"};
    for (int i = 0; i < 3; ++i) {
      EXPECT(lw[i]->weight.shape == want[i], "moe_experts: expert {} {} is {}, expected {} (all experts must share "
             "one moe_intermediate_size)", e, names[i], lw[i]->weight.shape.str(), want[i].str());
      expect_device(lw[i]->weight, op, names[i]);
      expect_tensor(lw[i]->scale_inv, DType::kF32, op, "scale_inv");
      EXPECT(lw[i]->scale_inv.shape == want_sc[i], "moe_experts: expert {} {} scale_inv is {}, expected {}", e,
             names[i], lw[i]->scale_inv.shape.str(), want_sc[i].str());
      t.vec = t.vec && aligned(lw[i]->weight.data, 16);
    }
  }
  const size_t bytes = t.host.size() * sizeof(MoeExpertPtrs);
  t.dev = DeviceBuffer(bytes);
  CUDA_CHECK(cudaMemcpyAsync(t.dev.data(), t.host.data(), bytes, cudaMemcpyHostToDevice, stream()));
  // Once per expert list: the upload has finished before the host array can change, and queued kernels are done
  // with the table this one replaces.
  CUDA_CHECK(cudaStreamSynchronize(stream()));
  slot = std::move(t);
  return slot;
}

// The smallest batches run the decode kernels (moe_decode.cu; kMoeDecodeAutoEntries), other decode sizes the grouped
// kernels (moe_grouped.cu), prefill sizes the per-expert loop; see kMoeGroupedMaxRowsPerExpert. bf16 experts always
// loop.
void CudaBackend::moe_experts(const MoeExpertsParams& p) {
  auto prof = profile("moe_experts");
  validate(p);
  const char* op = "moe_experts";
  expect_tensor(p.x, DType::kBF16, op, "x");
  expect_tensor(p.topk_ids, DType::kI32, op, "topk_ids");
  expect_tensor(p.topk_weights, DType::kF32, op, "topk_weights");
  expect_tensor(p.out, DType::kBF16, op, "out");
  const int n = to_int(p.x.dim(0), op, "n"), d = to_int(p.x.dim(1), op, "d");
  const int top_k = to_int(p.topk_ids.dim(1), op, "top_k"), E = to_int(p.n_experts, op, "n_experts");
  EXPECT(top_k <= 32, "moe_experts: top_k {} > 32", top_k);
  EXPECT(p.topk_weights.numel() == p.topk_ids.numel(), "moe_experts: topk_weights {} vs topk_ids {}",
         p.topk_weights.shape.str(), p.topk_ids.shape.str());
  if (n == 0) return;
  const int entries = to_int(static_cast<int64_t>(n) * top_k, op, "n * top_k");
  if (opt_.reference_numerics) {
    moe_experts_reference(p, n, d, top_k, E);
    return;
  }
  const MoeTable& t = moe_table(p, d);
  // The forced GEMM options keep their kernels (bitwise equal to the CPU) unless DSV3_MOE=grouped asks otherwise.
  const bool gemm_forced = opt_.force_gemm_fallback || opt_.fp8_gemm_fallback || opt_.no_fp8_gemv;
  const bool auto_small = opt_.moe_path == CudaMoePath::kAuto && !gemm_forced;
  const bool decode = t.fp8 && entries >= 1 &&
                      ((opt_.moe_path == CudaMoePath::kDecode && entries <= kMoeDecodeMaxEntries) ||
                       (auto_small && entries <= kMoeDecodeAutoEntries));
  const bool grouped =
      t.fp8 && E <= kMoeRouteMaxExperts &&
      (opt_.moe_path == CudaMoePath::kGrouped ||
       ((auto_small || opt_.moe_path == CudaMoePath::kDecode) &&
        static_cast<int64_t>(entries) <= static_cast<int64_t>(kMoeGroupedMaxRowsPerExpert) * E));
  if (decode) moe_experts_decode(p, t, n, d, top_k, E);
  else if (grouped) moe_experts_grouped(p, t, n, d, top_k, E);
  else moe_experts_loop(p, n, d, top_k, E);
}

// Decode: two launches (moe_decode.cu) — prep (routing, x quantization, counters), then a persistent kernel of
// gate/up and down work items with the combine in the last item of each output tile. Nothing is read back, nothing
// allocated once the scratch has grown; a bad expert id sets kErrExpertId (reported at synchronize()).
void CudaBackend::moe_experts_decode(const MoeExpertsParams& p, const MoeTable& t, int n, int d, int top_k, int E) {
  const int f = to_int(t.f, "moe_experts", "moe_intermediate_size");
  const int split = opt_.moe_decode_split > 0 ? opt_.moe_decode_split : moe_decode_split(n, top_k, E, d, f, n_sms_);
  void* work = scratch(kScratchMoe, moe_decode_work_bytes(n, top_k, E, d, f, split));
  launch_moe_decode({.experts = t.dev.as<const MoeExpertPtrs>(), .ids = ci32(p.topk_ids),
                     .weights = p.topk_weights.as<const float>(), .x = cbf(p.x), .out = bf(p.out), .work = work,
                     .n = n, .top_k = top_k, .n_experts = E, .d = d, .f = f, .split = split,
                     .prefetch = opt_.moe_decode_prefetch, .vec = t.vec, .ue8m0 = p.ue8m0, .err = err()},
                    n_sms_, stream());
  launched("moe_experts (decode: prep + persistent gate/up, down, combine)");
}

// Grouped: route on the device (counts, offsets, active experts, permutation), x quantized once per token, gate/up
// with SwiGLU and h's quantization in one launch, down in one launch, the weighted combine. No host read-back, no
// synchronization, no allocation once the scratch has grown; a bad expert id sets kErrExpertId (reported at
// synchronize()) and takes no row.
void CudaBackend::moe_experts_grouped(const MoeExpertsParams& p, const MoeTable& t, int n, int d, int top_k, int E) {
  const int entries = n * top_k, f = to_int(t.f, "moe_experts", "moe_intermediate_size");
  const size_t kbd = (static_cast<size_t>(d) + 127) / 128, kbf = (static_cast<size_t>(f) + 127) / 128;
  const size_t ne = static_cast<size_t>(entries), nt = static_cast<size_t>(n);
  // Scratch: counts, offsets, active [E] | n_active [1] | row_of, tok_of [entries] | x codes [n, d] |
  // x scales [kbd, n] | h codes [entries, f] | h scales [kbf, entries] | y [entries, d] bf16.
  const size_t ints = round_up((3 * static_cast<size_t>(E) + 1 + 2 * ne) * 4, 256);
  const size_t xc = round_up(nt * d, 256), xs = round_up(kbd * nt * 4, 256);
  const size_t hc = round_up(ne * f, 256), hs = round_up(kbf * ne * 4, 256), yb = round_up(ne * d * 2, 256);
  char* base = static_cast<char*>(scratch(kScratchMoe, ints + xc + xs + hc + hs + yb));
  auto* counts = reinterpret_cast<int32_t*>(base);
  int32_t* offsets = counts + E;
  int32_t* active = offsets + E;
  int32_t* n_active = active + E;
  int32_t* row_of = n_active + 1;
  int32_t* tok_of = row_of + entries;
  auto* x_codes = reinterpret_cast<uint8_t*>(base + ints);
  auto* x_scales = reinterpret_cast<float*>(base + ints + xc);
  auto* h_codes = reinterpret_cast<uint8_t*>(base + ints + xc + xs);
  auto* h_scales = reinterpret_cast<float*>(base + ints + xc + xs + hc);
  auto* y = reinterpret_cast<bf16_t*>(base + ints + xc + xs + hc + hs);

  launch_moe_route({ci32(p.topk_ids), counts, offsets, active, n_active, row_of, tok_of, entries, top_k, E, err()},
                   stream());
  launched("moe_experts (route)");
  launch_quantize_fp8({cbf(p.x), x_codes, x_scales, d, n, d, p.ue8m0}, stream());
  launched("moe_experts (x quantization)");
  const MoeGroupedArgs g{t.dev.as<const MoeExpertPtrs>(), counts, offsets, active, n_active, tok_of, x_codes,
                         x_scales, h_codes, h_scales, y, n, d, f, entries, std::min(E, entries), t.vec, p.ue8m0};
  launch_moe_gate_up_fp8(g, stream());
  launched("moe_experts (grouped gate/up)");
  launch_moe_down_fp8(g, stream());
  launched("moe_experts (grouped down)");
  launch_moe_combine({ci32(p.topk_ids), p.topk_weights.as<const float>(), row_of, y, bf(p.out), n, top_k, d, E},
                     stream());
  launched("moe_experts (combine)");
}

// Loop: tokens are grouped by expert on the device (count, then permute); the per-expert row counts come back to
// the host, which runs gate/up/SwiGLU/down through linear() for each active expert, then one kernel combines in fp32.
void CudaBackend::moe_experts_loop(const MoeExpertsParams& p, int n, int d, int top_k, int E) {
  const char* op = "moe_experts";
  const int entries = n * top_k;
  int64_t f_max = 0;
  for (int e = 0; e < E; ++e) f_max = std::max(f_max, p.experts[e].gate.weight.dim(0));
  // Scratch layout: counts, offsets, cursor [E] | row_of [entries] | x_perm, y_perm [entries, d] | g, u [entries, f].
  const size_t ints = round_up((3 * static_cast<size_t>(E) + entries) * 4, 256);
  const size_t rows_d = round_up(static_cast<size_t>(entries) * d * 2, 256);
  const size_t rows_f = round_up(static_cast<size_t>(entries) * f_max * 2, 256);
  char* base = static_cast<char*>(scratch(kScratchMoe, ints + 2 * rows_d + 2 * rows_f));
  auto* counts = reinterpret_cast<int32_t*>(base);
  int32_t* offsets = counts + E;
  int32_t* cursor = offsets + E;
  int32_t* row_of = cursor + E;
  auto* x_perm = reinterpret_cast<bf16_t*>(base + ints);
  auto* y_perm = reinterpret_cast<bf16_t*>(base + ints + rows_d);
  auto* g_buf = reinterpret_cast<bf16_t*>(base + ints + 2 * rows_d);
  auto* u_buf = reinterpret_cast<bf16_t*>(base + ints + 2 * rows_d + rows_f);

  launch_moe_count({ci32(p.topk_ids), counts, entries, E, err()}, stream());
  launched("moe_experts (count)");
  if (moe_host_.size() < 2 * static_cast<size_t>(E) * 4) moe_host_ = PinnedBuffer(2 * static_cast<size_t>(E) * 4);
  int32_t* h_counts = moe_host_.as<int32_t>();
  int32_t* h_offsets = h_counts + E;
  CUDA_CHECK(cudaMemcpyAsync(h_counts, counts, static_cast<size_t>(E) * 4, cudaMemcpyDeviceToHost, stream()));
  check_device_errors(op);  // synchronizes: the counts are on the host now; aborts on a bad expert id
  int32_t acc = 0;
  for (int e = 0; e < E; ++e) {
    h_offsets[e] = acc;
    acc += h_counts[e];
  }
  CUDA_CHECK(cudaMemcpyAsync(offsets, h_offsets, static_cast<size_t>(E) * 4, cudaMemcpyHostToDevice, stream()));
  launch_moe_permute({ci32(p.topk_ids), offsets, cursor, row_of, cbf(p.x), x_perm, n, top_k, d, E}, stream());
  launched("moe_experts (permute)");
  // Experts round-robin over `lanes` streams (each expert's GEMMs alone leave most SMs idle); every lane starts after
  // the permutation and the combine waits for all of them. Each expert writes only its own rows of g, u and y.
  int active = 0;
  for (int e = 0; e < E; ++e) active += h_counts[e] > 0;
  const int lanes = std::clamp(std::min(opt_.moe_streams, active), 1, kMaxLanes);
  if (lanes > 1) {
    if (!lanes_fork_) lanes_fork_ = make_event();
    CUDA_CHECK(cudaEventRecord(lanes_fork_.get(), stream_.get()));
    for (int l = 1; l < lanes; ++l) {
      if (!lane_streams_[l]) {
        lane_streams_[l] = make_stream();
        lane_done_[l] = make_event();
      }
      CUDA_CHECK(cudaStreamWaitEvent(lane_streams_[l].get(), lanes_fork_.get(), 0));
    }
  }
  struct LaneReset {  // back to lane 0 however the loop ends
    int& lane;
    bool& lanes_on;
    ~LaneReset() {
      lane = 0;
      lanes_on = false;
    }
  } lane_reset{lane_, moe_lanes_};
  moe_lanes_ = lanes > 1;
  int next_lane = 0;
  for (int e = 0; e < E; ++e) {
    const int64_t cnt = h_counts[e];
    if (cnt == 0) continue;
    lane_ = next_lane++ % lanes;
    const ExpertWeights& ew = p.experts[e];
    const int64_t f = ew.gate.weight.dim(0);
    EXPECT(ew.up.weight.dim(0) == f && ew.down.weight.dim(1) == f && ew.down.weight.dim(0) == d,
           "moe_experts: expert {} has gate {} up {} down {}", e, ew.gate.weight.shape.str(), ew.up.weight.shape.str(),
           ew.down.weight.shape.str());
    auto view = [](bf16_t* ptr, int64_t rows, int64_t cols) {
      return TensorView{ptr, DType::kBF16, Shape{rows, cols}, Device::kCuda};
    };
    const TensorView xe = view(x_perm + static_cast<int64_t>(h_offsets[e]) * d, cnt, d);
    const int64_t frow = static_cast<int64_t>(h_offsets[e]) * f_max;
    const TensorView g = view(g_buf + frow, cnt, f), u = view(u_buf + frow, cnt, f);
    const TensorView y = view(y_perm + static_cast<int64_t>(h_offsets[e]) * d, cnt, d);
    linear({.x = xe, .w = ew.gate, .out = g, .ue8m0 = p.ue8m0});
    linear({.x = xe, .w = ew.up, .out = u, .ue8m0 = p.ue8m0});
    silu_mul({.gate = g, .up = u, .out = g});
    linear({.x = g, .w = ew.down, .out = y, .ue8m0 = p.ue8m0});
  }
  lane_ = 0;
  for (int l = 1; l < lanes; ++l) {
    CUDA_CHECK(cudaEventRecord(lane_done_[l].get(), lane_streams_[l].get()));
    CUDA_CHECK(cudaStreamWaitEvent(stream_.get(), lane_done_[l].get(), 0));
  }
  launch_moe_combine({ci32(p.topk_ids), p.topk_weights.as<const float>(), row_of, y_perm, bf(p.out), n, top_k, d, E},
                     stream());
  launched("moe_experts (combine)");
}

// Reference numerics: every (token, k) entry through its expert on the device (reference_moe.cu); no read-back.
const CudaBackend::RefMoeTable& CudaBackend::ref_moe_table(const MoeExpertsParams& p, int d) {
  const int64_t E = p.n_experts;
  auto row = [](const ExpertWeights& ew) {
    auto sc = [](const LinearWeight& w) { return w.fp8() ? w.scale_inv.as<const float>() : nullptr; };
    return RefMoeExpert{ew.gate.weight.data, sc(ew.gate), ew.up.weight.data, sc(ew.up), ew.down.weight.data,
                        sc(ew.down), static_cast<int>(ew.gate.weight.dim(0))};
  };
  auto same = [](const RefMoeExpert& a, const RefMoeExpert& b) {
    return a.gate == b.gate && a.gate_sc == b.gate_sc && a.up == b.up && a.up_sc == b.up_sc && a.down == b.down &&
           a.down_sc == b.down_sc && a.f == b.f;
  };
  RefMoeTable& slot = ref_moe_tables_[{p.experts, E}];
  bool hit = slot.d == d && static_cast<int64_t>(slot.host.size()) == E;
  for (int64_t e = 0; hit && e < E; ++e) hit = same(slot.host[e], row(p.experts[e]));
  if (hit) return slot;

  const char* op = "moe_experts";
  RefMoeTable t;  // built aside: bad input (EXPECT) leaves no half-built table
  t.d = d;
  for (int64_t e = 0; e < E; ++e) {
    const ExpertWeights& ew = p.experts[e];
    const int64_t f = ew.gate.weight.dim(0);
    EXPECT(f >= 1 && f < (int64_t{1} << 24), "moe_experts: expert {} gate {}", e, ew.gate.weight.shape.str());
    const LinearWeight* lw[3] = {&ew.gate, &ew.up, &ew.down};
    const Shape want[3] = {Shape{f, d}, Shape{f, d}, Shape{d, f}};
    const char* names[3] = {"gate", "up", "down"};
    for (int i = 0; i < 3; ++i) {
      EXPECT(lw[i]->weight.shape == want[i], "moe_experts: expert {} {} is {}, expected {}", e, names[i],
             lw[i]->weight.shape.str(), want[i].str());
      expect_device(lw[i]->weight, op, names[i]);
      EXPECT(lw[i]->fp8() || lw[i]->weight.dtype == DType::kBF16, "moe_experts: expert {} {} weight dtype {}", e,
             names[i], dtype_name(lw[i]->weight.dtype));
      if (!lw[i]->fp8()) continue;
      expect_tensor(lw[i]->scale_inv, DType::kF32, op, "scale_inv");
      const Shape sc{(want[i][0] + 127) / 128, (want[i][1] + 127) / 128};
      EXPECT(lw[i]->scale_inv.shape == sc, "moe_experts: expert {} {} scale_inv is {}, expected {}", e, names[i],
             lw[i]->scale_inv.shape.str(), sc.str());
      t.any_fp8 = true;
    }
    t.host.push_back(row(ew));
    t.f_max = std::max(t.f_max, static_cast<int>(f));
  }
  not_while_capturing("building the reference MoE expert table");
  const size_t bytes = t.host.size() * sizeof(RefMoeExpert);
  t.dev = DeviceBuffer(bytes);
  CUDA_CHECK(cudaMemcpyAsync(t.dev.data(), t.host.data(), bytes, cudaMemcpyHostToDevice, stream()));
  // Once per expert list: the upload has finished before t.host moves, and queued kernels are done with the table
  // this one replaces.
  CUDA_CHECK(cudaStreamSynchronize(stream()));
  slot = std::move(t);
  return slot;
}

void CudaBackend::moe_experts_reference(const MoeExpertsParams& p, int n, int d, int top_k, int E) {
  const RefMoeTable& t = ref_moe_table(p, d);
  const size_t entries = static_cast<size_t>(n) * top_k, fm = static_cast<size_t>(t.f_max), nt = n;
  const size_t kbd = (static_cast<size_t>(d) + 127) / 128, kbf = (fm + 127) / 128;
  // Scratch: x codes [n, d] | x scales [n, kbd] | h [entries, f_max] bf16 | h codes [entries, f_max] |
  // h scales [entries, kbf] | y [entries, d] bf16 (the FP8 parts empty without FP8 experts).
  const size_t xc = t.any_fp8 ? round_up(nt * d, 256) : 0, xs = t.any_fp8 ? round_up(nt * kbd * 4, 256) : 0;
  const size_t hb = round_up(entries * fm * 2, 256), hc = t.any_fp8 ? round_up(entries * fm, 256) : 0;
  const size_t hs = t.any_fp8 ? round_up(entries * kbf * 4, 256) : 0, yb = round_up(entries * d * 2, 256);
  char* base = static_cast<char*>(scratch(kScratchMoe, xc + xs + hb + hc + hs + yb));
  const RefMoeArgs a{t.dev.as<const RefMoeExpert>(), ci32(p.topk_ids), p.topk_weights.as<const float>(), cbf(p.x),
                     reinterpret_cast<uint8_t*>(base), reinterpret_cast<float*>(base + xc),
                     reinterpret_cast<bf16_t*>(base + xc + xs), reinterpret_cast<uint8_t*>(base + xc + xs + hb),
                     reinterpret_cast<float*>(base + xc + xs + hb + hc),
                     reinterpret_cast<bf16_t*>(base + xc + xs + hb + hc + hs), bf(p.out), n, d, top_k, E, t.f_max,
                     p.ue8m0, t.any_fp8, err()};
  launch_ref_moe(a, stream());
  launched("moe_experts (reference)");
}

// ---------------------------------------------------------------------------------------------------- sample

// The row parameters go through a pinned buffer (an async upload, ordered with the kernel); the host waits only if
// the previous call's upload has not run yet when the buffer is refilled.
void CudaBackend::sample(const SampleParams& p) {
  validate(p);
  const char* op = "sample";
  expect_tensor(p.logits, DType::kF32, op, "logits");
  expect_tensor(p.tokens, DType::kI32, op, "tokens");
  if (p.logprobs) expect_tensor(p.logprobs, DType::kF32, op, "logprobs");
  const int rows = to_int(p.logits.dim(0), op, "rows"), vocab = to_int(p.logits.dim(1), op, "vocab");
  if (rows == 0) return;
  const size_t bytes = static_cast<size_t>(rows) * sizeof(SampleRowParams);
  const int b = sample_buf_;
  sample_buf_ ^= 1;
  PinnedBuffer& host = sample_host_[b];
  Event& uploaded = sample_uploaded_[b];
  if (!uploaded) uploaded = make_event();
  else CUDA_CHECK(cudaEventSynchronize(uploaded.get()));
  if (host.size() < bytes) host = PinnedBuffer(round_up(bytes, 4096));
  std::memcpy(host.data(), p.rows, bytes);
  // v2 (sample.cu) routes on the row parameters here, on the host: which of its kernels a batch needs.
  const bool v2 = opt_.sample_version == 2;
  bool any_top_k = false, any_top_p = false, any_draw = static_cast<bool>(p.logprobs);
  for (int i = 0; i < rows; ++i) {
    const SampleRowParams& r = p.rows[i];
    if (sampling_greedy(r.temperature)) continue;
    if (r.top_k > 0) {
      any_top_k = true;
    } else {
      any_draw = true;
      any_top_p |= r.top_p < 1.0f;
    }
  }
  const int chunks = v2 ? sample_chunks(rows, vocab, n_sms_) : 1;
  const size_t rows_bytes = round_up(bytes, 256);
  // NOTE: one device buffer for the rows and v2's partials: the upload is ordered after the previous call's kernels
  // on the stream.
  char* base = static_cast<char*>(scratch(kScratchSample, rows_bytes + (v2 ? sample_work_bytes(rows, chunks) : 0)));
  auto* d_rows = reinterpret_cast<SampleRowParams*>(base);
  CUDA_CHECK(cudaMemcpyAsync(d_rows, host.data(), bytes, cudaMemcpyHostToDevice, stream()));
  CUDA_CHECK(cudaEventRecord(uploaded.get(), stream()));
  int bits = 1;
  while ((int64_t{1} << bits) <= vocab) ++bits;  // vocab < 2^bits, so the masses sum below 2^62
  launch_sample({.logits = p.logits.as<const float>(),
                 .params = d_rows,
                 .tokens = p.tokens.as<int32_t>(),
                 .logprobs = p.logprobs ? p.logprobs.as<float>() : nullptr,
                 .stride = p.logits_stride ? p.logits_stride : vocab,
                 .rows = rows,
                 .vocab = vocab,
                 .mass_shift = 62 - bits,
                 .version = v2 ? 2 : 1,
                 .any_top_k = any_top_k,
                 .any_top_p = any_top_p,
                 .any_draw = any_draw,
                 .chunks = chunks,
                 .work = v2 ? base + rows_bytes : nullptr},
                stream());
  launched(op);
}

// ---------------------------------------------------------------------------------------------- fill_token_ids

void CudaBackend::fill_token_ids(const FillTokenIdsParams& p) {
  validate(p);
  const char* op = "fill_token_ids";
  const int m = to_int(p.map.dim(0), op, "pairs");
  if (m == 0) return;
  expect_tensor(p.ids, DType::kI32, op, "ids");
  expect_tensor(p.map, DType::kI32, op, "map");
  expect_tensor(p.src, DType::kI32, op, "src");
  launch_fill_token_ids({p.ids.as<int32_t>(), ci32(p.map), ci32(p.src), to_int(p.ids.dim(0), op, "n"), m,
                         to_int(p.src.dim(0), op, "k"), err()},
                        stream());
  launched(op);
}

// ---------------------------------------------------------------------------------------------------- fences

// A CUDA event after a snapshot of the device error word; see CudaBackend::record_fence.
class CudaFence final : public BackendFence {
 public:
  explicit CudaFence(CudaBackend& b) : backend_(b), err_(sizeof(uint32_t)) {
    cudaEvent_t e = nullptr;
    CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    event_ = Event(e);
    *err_.as<uint32_t>() = 0;
  }
  ~CudaFence() override {
    if (recorded_) (void)cudaEventSynchronize(event_.get());  // the snapshot copy still writes into err_
  }
  void record() override {
    backend_.record_fence(event_.get(), err_.as<uint32_t>());
    recorded_ = true;
  }
  void wait() override {
    if (recorded_) backend_.wait_fence(event_.get(), err_.as<const uint32_t>());
  }

 private:
  CudaBackend& backend_;
  Event event_;
  PinnedBuffer err_;  // [1] u32: the error word as of the record
  bool recorded_ = false;
};

std::unique_ptr<BackendFence> CudaBackend::make_fence() { return std::make_unique<CudaFence>(*this); }

// ------------------------------------------------------------------------------------------------- synthesize

bool CudaBackend::synthesize(const SynthesizeParams& p) {
  auto prof = profile("synthesize");
  const char* op = "synthesize";
  expect_device(p.out, op, "out");
  SynthArgs a{};
  a.rule = p.rule;
  a.out = p.out.data;
  if (p.out.dtype == DType::kFP8E4M3) {
    EXPECT(p.out.shape.ndim == 2, "synthesize: an FP8 out must be [rows, cols], got {}", p.out.shape.str());
    EXPECT(p.rule.kind == SynthKind::kUniform, "synthesize: FP8 weights are made by the uniform rule only");
    expect_tensor(p.scale_inv, DType::kF32, op, "scale_inv");
    const int64_t rows = p.out.dim(0), cols = p.out.dim(1);
    const Shape want{(rows + kSynthFp8Block - 1) / kSynthFp8Block, (cols + kSynthFp8Block - 1) / kSynthFp8Block};
    EXPECT(p.scale_inv.shape == want, "synthesize: scale_inv {} for an FP8 out {} (expected {})",
           p.scale_inv.shape.str(), p.out.shape.str(), want.str());
    to_int(want[0] * want[1], op, "128x128 blocks");
    a.scale_inv = p.scale_inv.as<float>();
    a.rows = rows;
    a.cols = cols;
    a.out_kind = kSynthOutFp8;
  } else {
    EXPECT(p.out.dtype == DType::kBF16 || p.out.dtype == DType::kF32, "synthesize: out must be F8_E4M3, BF16 or F32, "
           "got {}", dtype_name(p.out.dtype));
    EXPECT(!p.scale_inv, "synthesize: scale_inv is only for an FP8 out");
    a.count = p.out.numel();
    a.out_kind = p.out.dtype == DType::kBF16 ? kSynthOutBf16 : kSynthOutF32;
  }
  launch_synthesize(a, stream());
  launched(op);
  return true;
}

}  // namespace
}  // namespace cuda

std::unique_ptr<Backend> make_cuda_backend(const CudaBackendOptions& options) {
  return std::make_unique<cuda::CudaBackend>(options);
}

std::unique_ptr<Backend> make_cuda_backend() { return make_cuda_backend(CudaBackendOptions::from_env()); }

}  // namespace dsv3
