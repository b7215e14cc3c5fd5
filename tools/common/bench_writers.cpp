// bench_writers.cpp: --output_json, --request_json and --iteration_log writers (tools/common); see bench_writers.h.
#include "common/bench_writers.h"

#include <algorithm>
#include <map>

#include "dsv3/base/error.h"

namespace dsv3 {
namespace {

using ojson = nlohmann::ordered_json;

std::vector<const RequestRecord*> timed_by_id(const std::vector<RequestRecord>& records) {
  std::vector<const RequestRecord*> v;
  for (const auto& r : records)
    if (!r.warmup) v.push_back(&r);
  std::stable_sort(v.begin(), v.end(), [](auto* a, auto* b) { return a->id < b->id; });
  return v;
}

}  // namespace

ojson output_json(const std::vector<RequestRecord>& records, const Detokenize& detokenize) {
  ojson j = ojson::object();
  for (const RequestRecord* r : timed_by_id(records)) j[std::to_string(r->id)] = detokenize(r->tokens);
  return j;
}

ojson request_json(const std::vector<RequestRecord>& records, const Detokenize& detokenize) {
  ojson list = ojson::array();
  for (const RequestRecord* r : timed_by_id(records)) {
    const RequestMetrics m = request_metrics(*r);
    ojson e;
    e["id"] = r->id;
    e["num_input_tokens"] = r->num_input_tokens;
    e["error_tokens"] = r->error_tokens;
    e["start_timestamp"] = r->start_ns;
    e["first_token_timestamp"] = r->first_token_ns;
    e["end_timestamp"] = r->end_ns;
    e["decode_iteration"] = r->decode_iteration;
    e["num_total_output_tokens"] = r->num_output_tokens;
    e["num_generated_tokens"] = r->num_output_tokens - 1;
    e["generation_time"] = m.generation_ns;
    e["time_to_first_token"] = m.ttft_ns;
    e["intertoken_latency"] = m.tpot_ns;
    e["end_to_end_latency"] = m.e2e_ns;
    e["output_token_throughput"] = m.output_tps_per_ns;
    e["generation_token_throughput"] = m.gen_tps_per_ns;
    e["output"] = detokenize ? detokenize(r->tokens) : std::string();
    e["output_tokens"] = r->num_output_tokens;
    list.push_back(std::move(e));
  }
  return list;
}

ojson iteration_stats_json(const IterationStats& s) {
  ojson j;
  j["timestamp"] = s.timestamp;
  j["iter"] = s.iter;
  j["iterLatencyMS"] = s.iter_latency_ms;
  j["newActiveRequestsQueueLatencyMS"] = s.new_active_requests_queue_latency_ms;
  j["numNewActiveRequests"] = s.num_new_active_requests;
  j["numActiveRequests"] = s.num_active_requests;
  j["numQueuedRequests"] = s.num_queued_requests;
  j["numCompletedRequests"] = s.num_completed_requests;
  j["maxNumActiveRequests"] = s.max_num_active_requests;
  j["gpuMemUsage"] = s.gpu_mem_usage;
  j["cpuMemUsage"] = s.cpu_mem_usage;
  j["pinnedMemUsage"] = s.pinned_mem_usage;
  const auto& kv = s.kv_cache_stats;
  j["kvCacheStats"] = {{"maxNumBlocks", kv.max_num_blocks},        {"freeNumBlocks", kv.free_num_blocks},
                       {"usedNumBlocks", kv.used_num_blocks},      {"tokensPerBlock", kv.tokens_per_block},
                       {"allocTotalBlocks", kv.alloc_total_blocks}, {"allocNewBlocks", kv.alloc_new_blocks},
                       {"reusedBlocks", kv.reused_blocks},          {"missedBlocks", kv.missed_blocks},
                       {"cacheHitRate", kv.cache_hit_rate}};
  const auto& ib = s.inflight_batching_stats;
  j["inflightBatchingStats"] = {{"numScheduledRequests", ib.num_scheduled_requests},
                                {"numContextRequests", ib.num_context_requests},
                                {"numGenRequests", ib.num_gen_requests},
                                {"numPausedRequests", ib.num_paused_requests},
                                {"numCtxTokens", ib.num_ctx_tokens},
                                {"microBatchId", ib.micro_batch_id},
                                {"avgNumDecodedTokensPerIter", ib.avg_num_decoded_tokens_per_iter}};
  if (s.spec_decoding_stats) {
    const auto& sd = *s.spec_decoding_stats;
    j["specDecodingStats"] = {{"numDraftTokens", sd.num_draft_tokens},
                              {"numAcceptedTokens", sd.num_accepted_tokens},
                              {"numRequestsWithDraftTokens", sd.num_requests_with_draft_tokens},
                              {"acceptanceLength", sd.acceptance_length},
                              {"iterLatencyMS", sd.iter_latency_ms},
                              {"draftOverhead", sd.draft_overhead}};
  }
  return j;
}

IterationLogWriter::IterationLogWriter(const std::string& path)
    : path_(path), out_(path, std::ios::binary | std::ios::trunc) {
  EXPECT(out_, "cannot write the iteration log '{}'", path);
}

void IterationLogWriter::write(const IterationStats& s) {
  out_ << iteration_stats_json(s).dump(-1, ' ', true, ojson::error_handler_t::replace) << '\n';
  out_.flush();
  EXPECT(out_.good(), "error while writing the iteration log '{}'", path_);
}

}  // namespace dsv3
