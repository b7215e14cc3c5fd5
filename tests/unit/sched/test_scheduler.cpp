// test_scheduler.cpp: hand-worked scenarios for the Scheduler: rejection messages, decode-first order, chunking,
// batch/token limits, both capacity policies, preemption by recompute, prefix reuse, abort and update (sched).
#include <map>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "dsv3/base/error.h"
#include "dsv3/sched/scheduler.h"

namespace dsv3::sched {
namespace {

using ::testing::HasSubstr;

std::vector<int32_t> iota_tokens(int n, int32_t first) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

// Deterministic stand-in for the model: the next token depends on every previous token of the request.
int32_t next_token(const std::vector<int32_t>& seq) {
  uint32_t h = 17;
  for (int32_t t : seq) h = h * 31 + static_cast<uint32_t>(t);
  return static_cast<int32_t>(h % 1000);
}

std::vector<int32_t> reference_output(std::vector<int32_t> seq, int max_tokens) {
  std::vector<int32_t> out;
  for (int i = 0; i < max_tokens; ++i) {
    out.push_back(next_token(seq));
    seq.push_back(out.back());
  }
  return out;
}

// Samples next_token() for every entry that needs logits, from the scheduler's view of the request's tokens.
std::vector<SampledToken> sample(const Scheduler& s, const SchedulerOutput& out) {
  std::vector<SampledToken> sampled;
  for (const ScheduledChunk& c : out.entries) {
    if (!c.needs_logits) continue;
    sampled.push_back({.request_id = c.request_id, .token = next_token(s.find(c.request_id)->tokens)});
  }
  return sampled;
}

struct Step {
  SchedulerOutput out;
  std::vector<Request> finished;
};

Step run_step(Scheduler& s) {
  Step st;
  st.out = s.schedule();
  s.check_integrity();
  st.finished = s.update(st.out, sample(s, st.out));
  s.check_integrity();
  return st;
}

std::string add_error(Scheduler& s, int64_t id, std::vector<int32_t> prompt, int max_tokens) {
  try {
    s.add(id, std::move(prompt), max_tokens);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Scheduler, RejectsImpossibleRequestsWithClearMessages) {
  Scheduler s({.max_batch_size = 4, .max_num_tokens = 16, .max_seq_len = 100, .enable_chunked_prefill = false,
               .policy = CapacityPolicy::kGuaranteedNoEvict, .tokens_per_block = 4, .n_blocks = 10});
  EXPECT_EQ(add_error(s, 1, {}, 5), "request 1 rejected: empty prompt");
  EXPECT_EQ(add_error(s, 2, {1, 2}, 0), "request 2 rejected: max_tokens must be >= 1, got 0");
  EXPECT_THAT(add_error(s, 3, iota_tokens(90, 1), 11),
              HasSubstr("prompt (90 tokens) + max_tokens (11) = 101 exceeds max_seq_len 100"));
  // 10 + 32 - 1 = 41 KV tokens = 11 blocks of 4 > 10.
  EXPECT_THAT(add_error(s, 4, iota_tokens(10, 1), 32),
              HasSubstr("needs 11 KV blocks of 4 tokens, the pool has only 10"));
  EXPECT_THAT(add_error(s, 5, iota_tokens(17, 1), 1),
              HasSubstr("prompt of 17 tokens exceeds max_num_tokens 16 with chunked prefill off"));
  EXPECT_EQ(add_error(s, 6, iota_tokens(16, 1), 25), "");  // 40 KV tokens: exactly the pool, and a 16-token prompt
  EXPECT_THAT(add_error(s, 6, {1}, 1), HasSubstr("request 6 rejected: a request with this id is already queued"));
  EXPECT_EQ(add_error(s, 7, {5}, 1), "");
  EXPECT_EQ(s.totals().n_rejected, 6);
  EXPECT_EQ(s.n_waiting(), 2);
  s.check_integrity();
  // The accepted requests run to completion.
  std::vector<Request> done;
  for (int i = 0; i < 100 && s.has_unfinished(); ++i) {
    Step st = run_step(s);
    done.insert(done.end(), st.finished.begin(), st.finished.end());
  }
  ASSERT_EQ(done.size(), 2u);
  for (const Request& r : done) {
    EXPECT_EQ(r.finish_reason, FinishReason::kLength);
    EXPECT_EQ(std::vector<int32_t>(r.output().begin(), r.output().end()),
              reference_output(std::vector<int32_t>(r.prompt().begin(), r.prompt().end()), r.max_tokens));
  }
}

TEST(Scheduler, RejectsBadConfig) {
  EXPECT_THROW(Scheduler({.max_batch_size = 0, .n_blocks = 4}), Error);
  EXPECT_THROW(Scheduler({.max_num_tokens = 0, .n_blocks = 4}), Error);
  EXPECT_THROW(Scheduler({.n_blocks = 0}), Error);
}

TEST(Scheduler, ChunkedPrefillSplitsAPrompt) {
  Scheduler s({.max_batch_size = 4, .max_num_tokens = 32, .max_seq_len = 200, .enable_chunked_prefill = true,
               .policy = CapacityPolicy::kMaxUtilization, .tokens_per_block = 8, .n_blocks = 64});
  std::vector<int32_t> prompt = iota_tokens(100, 1);
  s.add(1, prompt, 3);
  const int starts[] = {0, 32, 64, 96};
  const int sizes[] = {32, 32, 32, 4};
  for (int k = 0; k < 4; ++k) {
    Step st = run_step(s);
    ASSERT_EQ(st.out.entries.size(), 1u);
    const ScheduledChunk& c = st.out.entries[0];
    EXPECT_EQ(st.out.n_decode, 0);
    EXPECT_EQ(c.start, starts[k]);
    EXPECT_EQ(c.n_tokens, sizes[k]);
    EXPECT_EQ(c.token_ids, std::vector<int32_t>(prompt.begin() + starts[k], prompt.begin() + starts[k] + sizes[k]));
    EXPECT_EQ(c.positions.front(), starts[k]);
    EXPECT_EQ(c.positions.back(), starts[k] + sizes[k] - 1);
    EXPECT_EQ(c.block_table.size(), static_cast<size_t>((starts[k] + sizes[k] + 7) / 8));
    EXPECT_EQ(c.needs_logits, k == 3);
    EXPECT_EQ(st.out.stats.n_prefill_tokens, sizes[k]);
    EXPECT_EQ(s.find(1)->n_output(), k == 3 ? 1 : 0);
  }
  Step d1 = run_step(s);  // decode of the first output token, at position 100
  ASSERT_EQ(d1.out.entries.size(), 1u);
  EXPECT_EQ(d1.out.n_decode, 1);
  EXPECT_EQ(d1.out.entries[0].start, 100);
  EXPECT_EQ(d1.out.entries[0].positions, std::vector<int32_t>{100});
  EXPECT_EQ(d1.out.entries[0].block_table.size(), 13u);  // 101 tokens / 8 per block
  EXPECT_TRUE(d1.out.entries[0].needs_logits);
  EXPECT_EQ(d1.out.stats.n_decode_tokens, 1);
  EXPECT_TRUE(d1.finished.empty());
  Step d2 = run_step(s);
  ASSERT_EQ(d2.finished.size(), 1u);
  EXPECT_EQ(d2.finished[0].finish_reason, FinishReason::kLength);
  EXPECT_EQ(d2.finished[0].status, RequestStatus::kFinished);
  EXPECT_EQ(std::vector<int32_t>(d2.finished[0].output().begin(), d2.finished[0].output().end()),
            reference_output(prompt, 3));
  EXPECT_FALSE(s.has_unfinished());
  EXPECT_EQ(s.kv().n_used_blocks(), 0);
}

TEST(Scheduler, DecodesFirstThenPrefillWithinBatchAndTokenBudgets) {
  Scheduler s({.max_batch_size = 3, .max_num_tokens = 10, .max_seq_len = 100, .enable_chunked_prefill = true,
               .policy = CapacityPolicy::kGuaranteedNoEvict, .tokens_per_block = 4, .n_blocks = 100});
  for (int64_t id = 1; id <= 4; ++id) s.add(id, iota_tokens(6, static_cast<int32_t>(id * 100)), 5);
  auto ids = [](const SchedulerOutput& o) {
    std::vector<int64_t> v;
    for (const auto& c : o.entries) v.push_back(c.request_id);
    return v;
  };
  Step s1 = run_step(s);  // A whole (6), B chunk (4): budget 10 spent
  EXPECT_EQ(ids(s1.out), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(s1.out.entries[1].n_tokens, 4);
  EXPECT_FALSE(s1.out.entries[1].needs_logits);
  EXPECT_EQ(s1.out.n_tokens, 10);
  Step s2 = run_step(s);  // A decode, B's last 2 prompt tokens, C whole (6): 9 tokens, 3 requests
  EXPECT_EQ(ids(s2.out), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(s2.out.n_decode, 1);
  EXPECT_EQ(s2.out.entries[1].start, 4);
  EXPECT_EQ(s2.out.entries[1].n_tokens, 2);
  EXPECT_EQ(s2.out.entries[2].n_tokens, 6);
  EXPECT_EQ(s2.out.stats.n_decode_tokens, 1);
  EXPECT_EQ(s2.out.stats.n_prefill_tokens, 8);
  Step s3 = run_step(s);  // three decodes fill the batch; D waits
  EXPECT_EQ(ids(s3.out), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(s3.out.n_decode, 3);
  EXPECT_EQ(s.find(4)->status, RequestStatus::kWaiting);
  run_step(s);
  Step s5 = run_step(s);  // A's fifth token: finished
  ASSERT_EQ(s5.finished.size(), 1u);
  EXPECT_EQ(s5.finished[0].id, 1);
  Step s6 = run_step(s);  // decodes of B and C first, then D's prompt
  EXPECT_EQ(ids(s6.out), (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(s6.out.n_decode, 2);
  EXPECT_EQ(s6.out.entries[2].n_tokens, 6);
}

TEST(Scheduler, WholePromptsStayFcfsWithoutChunking) {
  Scheduler s({.max_batch_size = 8, .max_num_tokens = 10, .max_seq_len = 100, .enable_chunked_prefill = false,
               .policy = CapacityPolicy::kGuaranteedNoEvict, .tokens_per_block = 4, .n_blocks = 100});
  s.add(1, iota_tokens(6, 1), 4);
  s.add(2, iota_tokens(6, 50), 4);
  s.add(3, iota_tokens(2, 90), 4);
  Step s1 = run_step(s);  // B does not fit the 4 tokens left, and C may not overtake it
  ASSERT_EQ(s1.out.entries.size(), 1u);
  EXPECT_EQ(s1.out.entries[0].request_id, 1);
  Step s2 = run_step(s);
  ASSERT_EQ(s2.out.entries.size(), 3u);
  EXPECT_EQ(s2.out.entries[1].request_id, 2);
  EXPECT_EQ(s2.out.entries[1].n_tokens, 6);
  EXPECT_EQ(s2.out.entries[2].request_id, 3);
  EXPECT_EQ(s2.out.n_tokens, 9);
}

TEST(Scheduler, GuaranteedNoEvictReservesTheWholeMaxLength) {
  Scheduler s({.max_batch_size = 8, .max_num_tokens = 64, .max_seq_len = 100, .enable_chunked_prefill = false,
               .policy = CapacityPolicy::kGuaranteedNoEvict, .tokens_per_block = 4, .n_blocks = 6});
  s.add(1, iota_tokens(8, 1), 9);   // 16 KV tokens: 4 blocks
  s.add(2, iota_tokens(4, 50), 8);  // 11 KV tokens: 3 blocks, only 2 left while A runs
  Step s1 = run_step(s);
  ASSERT_EQ(s1.out.entries.size(), 1u);
  EXPECT_EQ(s1.out.entries[0].block_table.size(), 2u);  // covers the 8 positions computed now
  EXPECT_EQ(s.kv().block_table(1).size(), 4u);          // but all 4 are reserved
  EXPECT_EQ(s1.out.stats.n_blocks_used, 4);
  EXPECT_EQ(s1.out.stats.n_blocks_free, 2);
  int steps = 1;
  bool a_done = false;
  while (!a_done) {
    Step st = run_step(s);
    ++steps;
    EXPECT_TRUE(st.out.preempted.empty());
    for (const auto& c : st.out.entries) EXPECT_EQ(c.request_id, 1) << "B admitted while A holds its reservation";
    a_done = !st.finished.empty();
  }
  EXPECT_EQ(steps, 9);  // one prefill step and 8 decode steps for 9 output tokens
  Step next = run_step(s);
  ASSERT_EQ(next.out.entries.size(), 1u);
  EXPECT_EQ(next.out.entries[0].request_id, 2);
  EXPECT_EQ(s.kv().block_table(2).size(), 3u);
}

TEST(Scheduler, MaxUtilizationPreemptsTheMostRecentRequestAndRecomputesIt) {
  Scheduler s({.max_batch_size = 4, .max_num_tokens = 64, .max_seq_len = 100, .enable_chunked_prefill = false,
               .policy = CapacityPolicy::kMaxUtilization, .tokens_per_block = 4, .n_blocks = 4});
  std::vector<int32_t> pa = iota_tokens(4, 1), pb = iota_tokens(4, 200);
  s.add(1, pa, 12);  // 15 KV tokens: the whole pool at the end
  s.add(2, pb, 12);
  std::vector<Request> done;
  int preempt_step = -1, n_b_out_at_preempt = -1;
  bool saw_recompute = false;
  for (int step = 0; step < 200 && s.has_unfinished(); ++step) {
    SchedulerOutput out = s.schedule();
    s.check_integrity();
    if (!out.preempted.empty()) {
      EXPECT_EQ(preempt_step, -1) << "one preemption expected";
      preempt_step = step;
      EXPECT_EQ(out.preempted, std::vector<int64_t>{2});  // the most recently admitted
      const Request* b = s.find(2);
      EXPECT_EQ(b->status, RequestStatus::kPreempted);
      EXPECT_EQ(b->num_computed, 0);
      EXPECT_EQ(b->n_preemptions, 1);
      n_b_out_at_preempt = b->n_output();
      ASSERT_EQ(out.entries.size(), 1u);  // no admission in a step that preempted
      EXPECT_EQ(out.entries[0].request_id, 1);
    }
    for (const auto& c : out.entries) {
      if (c.request_id == 2 && preempt_step >= 0 && c.start == 0) {
        saw_recompute = true;  // prompt + already generated tokens, in one chunk, sampling the next token
        EXPECT_EQ(c.n_tokens, 4 + n_b_out_at_preempt);
        EXPECT_TRUE(c.needs_logits);
        EXPECT_EQ(s.find(1), nullptr) << "B came back only after A finished and freed the pool";
      }
    }
    std::vector<Request> f = s.update(out, sample(s, out));
    s.check_integrity();
    done.insert(done.end(), f.begin(), f.end());
  }
  // Step 0 computes positions 0..3 (1 block each), steps 1..4 positions 4..7 (2 blocks each: the pool is full);
  // at step 5 A's position 8 needs a third block, so B, admitted after A, is preempted.
  EXPECT_EQ(preempt_step, 5);
  EXPECT_TRUE(saw_recompute);
  ASSERT_EQ(done.size(), 2u);
  for (const Request& r : done) {
    EXPECT_EQ(std::vector<int32_t>(r.output().begin(), r.output().end()),
              reference_output(r.id == 1 ? pa : pb, 12)) << "request " << r.id;
  }
  EXPECT_EQ(s.totals().n_preemptions, 1);
}

TEST(Scheduler, PrefixReuseReportsReusedTokens) {
  Scheduler s({.max_batch_size = 8, .max_num_tokens = 64, .max_seq_len = 100, .enable_chunked_prefill = false,
               .policy = CapacityPolicy::kGuaranteedNoEvict, .tokens_per_block = 4, .n_blocks = 32,
               .enable_block_reuse = true});
  std::vector<int32_t> pa = iota_tokens(10, 1);
  s.add(1, pa, 20);
  Step s1 = run_step(s);
  EXPECT_EQ(s1.out.stats.n_prefix_hit_tokens, 0);
  EXPECT_EQ(s.find(1)->n_cached_tokens, 0);
  const std::vector<int32_t> a_table = s1.out.entries[0].block_table;
  // B shares A's first 9 tokens: blocks [1..4] and [5..8] were cached when A's prefill completed.
  std::vector<int32_t> pb(pa.begin(), pa.begin() + 9);
  pb.push_back(77);
  pb.push_back(78);
  s.add(2, pb, 3);
  s.add(3, iota_tokens(11, 500), 3);  // shares nothing
  Step s2 = run_step(s);
  ASSERT_EQ(s2.out.entries.size(), 3u);
  const ScheduledChunk& b = s2.out.entries[1];
  EXPECT_EQ(b.request_id, 2);
  EXPECT_EQ(b.start, 8);
  EXPECT_EQ(b.n_tokens, 3);
  EXPECT_EQ(b.token_ids, (std::vector<int32_t>{9, 77, 78}));
  EXPECT_EQ(b.block_table[0], a_table[0]);
  EXPECT_EQ(b.block_table[1], a_table[1]);
  EXPECT_NE(b.block_table[2], a_table[2]);
  EXPECT_EQ(s.kv().pool().ref_count(a_table[0]), 2);
  EXPECT_EQ(s2.out.entries[2].start, 0);
  EXPECT_EQ(s2.out.stats.n_prefix_hit_tokens, 8);
  EXPECT_EQ(s.find(2)->n_cached_tokens, 8);
  EXPECT_EQ(s.find(3)->n_cached_tokens, 0);
  std::vector<Request> done;
  while (s.has_unfinished()) {
    Step st = run_step(s);
    done.insert(done.end(), st.finished.begin(), st.finished.end());
  }
  for (const Request& r : done) {
    if (r.id != 2) continue;
    EXPECT_EQ(r.n_cached_tokens, 8);
    EXPECT_EQ(std::vector<int32_t>(r.output().begin(), r.output().end()), reference_output(pb, 3));
  }
  EXPECT_EQ(s.totals().n_prefix_hit_tokens, 8);
  // A's finished blocks stay cached: a repeat of B's prompt now hits too.
  s.add(4, pb, 1);
  Step s4 = run_step(s);
  EXPECT_EQ(s4.out.entries[0].start, 8);
}

struct PoolSnapshot {
  int n_free, n_used, n_free_uncached, n_cached_free;
  bool operator==(const PoolSnapshot&) const = default;
};
PoolSnapshot snapshot(const Scheduler& s) {
  const kv::BlockPool& p = s.kv().pool();
  return {p.n_free(), p.n_used(), p.n_free_uncached(), p.n_cached_free()};
}

TEST(Scheduler, AbortLeavesThePoolAsBefore) {
  Scheduler s({.max_batch_size = 8, .max_num_tokens = 64, .max_seq_len = 100, .enable_chunked_prefill = false,
               .policy = CapacityPolicy::kMaxUtilization, .tokens_per_block = 4, .n_blocks = 32});
  s.add(1, iota_tokens(5, 1), 30);
  run_step(s);
  const PoolSnapshot before = snapshot(s);
  s.add(2, iota_tokens(13, 100), 30);
  run_step(s);
  run_step(s);
  EXPECT_NE(snapshot(s), before);
  std::optional<Request> r = s.abort(2);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(r->n_output(), 2);
  EXPECT_EQ(snapshot(s), before);
  s.check_integrity();
  // Waiting requests hold nothing; unknown ids are reported, not fatal.
  s.add(3, iota_tokens(5, 1), 3);
  EXPECT_TRUE(s.abort(3).has_value());
  EXPECT_FALSE(s.abort(3).has_value());
  EXPECT_FALSE(s.abort(99).has_value());
  EXPECT_EQ(snapshot(s), before);
  s.check_integrity();
}

TEST(Scheduler, AbortWithReuseKeepsFreeCountAndCachesFullBlocks) {
  Scheduler s({.max_batch_size = 8, .max_num_tokens = 64, .max_seq_len = 100, .enable_chunked_prefill = false,
               .policy = CapacityPolicy::kGuaranteedNoEvict, .tokens_per_block = 4, .n_blocks = 32,
               .enable_block_reuse = true});
  const PoolSnapshot before = snapshot(s);
  s.add(1, iota_tokens(13, 1), 10);  // 22 KV tokens: 6 blocks reserved
  run_step(s);                       // 13 computed: 3 full blocks cached
  EXPECT_EQ(s.kv().n_used_blocks(), 6);
  s.abort(1);
  EXPECT_EQ(s.kv().pool().n_free(), before.n_free);
  EXPECT_EQ(s.kv().pool().n_used(), 0);
  EXPECT_EQ(s.kv().pool().n_cached_free(), 3);
  s.check_integrity();
}

TEST(Scheduler, AbortBetweenScheduleAndUpdateDropsTheStep) {
  Scheduler s({.max_batch_size = 8, .max_num_tokens = 64, .max_seq_len = 100, .enable_chunked_prefill = false,
               .policy = CapacityPolicy::kGuaranteedNoEvict, .tokens_per_block = 4, .n_blocks = 32});
  s.add(1, iota_tokens(5, 1), 3);
  s.add(2, iota_tokens(5, 10), 3);
  SchedulerOutput out = s.schedule();
  std::vector<SampledToken> sampled = sample(s, out);
  s.abort(1);
  std::vector<Request> f = s.update(out, sampled);
  EXPECT_TRUE(f.empty());
  EXPECT_EQ(s.find(2)->n_output(), 1);
  EXPECT_EQ(s.find(2)->num_computed, 5);
  s.check_integrity();
}

TEST(Scheduler, StopFinishesAndFreesBlocks) {
  Scheduler s({.max_batch_size = 8, .max_num_tokens = 64, .max_seq_len = 100, .enable_chunked_prefill = false,
               .policy = CapacityPolicy::kGuaranteedNoEvict, .tokens_per_block = 4, .n_blocks = 32});
  s.add(1, iota_tokens(5, 1), 10);
  SchedulerOutput out = s.schedule();
  std::vector<Request> f = s.update(out, std::vector<SampledToken>{{.request_id = 1, .token = 2, .stop = true}});
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].finish_reason, FinishReason::kStop);
  EXPECT_EQ(f[0].output().back(), 2);
  EXPECT_EQ(s.kv().n_used_blocks(), 0);
  EXPECT_FALSE(s.has_unfinished());
}

TEST(SchedulerDeathTest, MissingSampledTokenAborts) {
  Scheduler s({.max_batch_size = 8, .max_num_tokens = 64, .max_seq_len = 100, .enable_chunked_prefill = false,
               .policy = CapacityPolicy::kGuaranteedNoEvict, .tokens_per_block = 4, .n_blocks = 32});
  s.add(1, iota_tokens(5, 1), 10);
  SchedulerOutput out = s.schedule();
  EXPECT_DEATH(s.update(out, {}), "request 1: no sampled token for a chunk that needs logits");
}

// ------------------------------------------------------------------ overlap scheduling: placeholders (advance())

std::vector<int32_t> output_of(const Request& r) { return {r.output().begin(), r.output().end()}; }

// The placeholder tests' scheduler: 4 requests of up to 64 tokens per step, 4-token blocks, no chunked prefill.
SchedulerConfig pending_config(CapacityPolicy policy, int n_blocks) {
  return {.max_batch_size = 4, .max_num_tokens = 64, .max_seq_len = 100, .enable_chunked_prefill = false,
          .policy = policy, .tokens_per_block = 4, .n_blocks = n_blocks};
}

// The engine's overlap loop by hand: step k+1 is scheduled after advance(k), before update(k).
TEST(SchedulerPending, DecodeIsScheduledOnAPlaceholderAndUpdateFillsIt) {
  SchedulerConfig config = pending_config(CapacityPolicy::kGuaranteedNoEvict, 32);
  config.enable_block_reuse = true;
  Scheduler s(config);
  const std::vector<int32_t> prompt = iota_tokens(7, 10);
  s.add(1, prompt, 3);
  const std::vector<int32_t> ref = reference_output(prompt, 3);

  SchedulerOutput p = s.schedule();  // the prompt
  ASSERT_EQ(p.entries.size(), 1u);
  s.advance(p);
  s.check_integrity();
  const Request* r = s.find(1);
  EXPECT_TRUE(p.advanced);
  EXPECT_EQ(r->num_computed, 7);
  EXPECT_EQ(r->n_pending, 1);
  EXPECT_EQ(r->tokens.back(), kPendingToken);
  EXPECT_EQ(r->n_output(), 1);
  EXPECT_EQ(r->n_known_output(), 0);
  // Nothing cached yet: the prompt's full blocks enter the prefix cache at update(), with their step done.
  EXPECT_EQ(s.kv().find_cached_prefix(prompt).n_tokens, 0);

  SchedulerOutput d1 = s.schedule();  // the decode of the token in flight
  ASSERT_EQ(d1.entries.size(), 1u);
  EXPECT_EQ(d1.n_decode, 1);
  EXPECT_EQ(d1.entries[0].start, 7);
  EXPECT_EQ(d1.entries[0].token_ids, std::vector<int32_t>{kPendingToken});
  EXPECT_TRUE(d1.entries[0].needs_logits);
  s.advance(d1);  // two placeholders now: step p's and step d1's
  s.check_integrity();
  EXPECT_EQ(s.find(1)->n_pending, 2);
  EXPECT_EQ(s.find(1)->num_computed, 8);

  // update(p): the first placeholder is filled; the second stays.
  EXPECT_TRUE(s.update(p, std::vector<SampledToken>{{.request_id = 1, .token = ref[0]}}).empty());
  s.check_integrity();
  r = s.find(1);
  EXPECT_EQ(r->n_pending, 1);
  EXPECT_EQ(r->tokens[7], ref[0]);
  EXPECT_EQ(r->tokens[8], kPendingToken);
  EXPECT_EQ(s.kv().find_cached_prefix(iota_tokens(9, 10)).n_tokens, 4);  // the prompt's one full block

  // Third output: the last one. Its decode is scheduled on the second placeholder; after advance() the request's
  // outputs reach max_tokens with one pending, so the step after schedules nothing for it.
  SchedulerOutput d2 = s.schedule();
  ASSERT_EQ(d2.entries.size(), 1u);
  EXPECT_EQ(d2.entries[0].token_ids, std::vector<int32_t>{kPendingToken});
  s.advance(d2);
  EXPECT_TRUE(s.update(d1, std::vector<SampledToken>{{.request_id = 1, .token = ref[1]}}).empty());
  s.check_integrity();
  EXPECT_EQ(s.find(1)->n_output(), 3);
  EXPECT_EQ(s.find(1)->n_known_output(), 2);
  SchedulerOutput none = s.schedule();
  EXPECT_TRUE(none.empty()) << "a request whose last output is in flight was scheduled again";
  s.check_integrity();
  std::vector<Request> f = s.update(d2, std::vector<SampledToken>{{.request_id = 1, .token = ref[2]}});
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].finish_reason, FinishReason::kLength);
  EXPECT_EQ(output_of(f[0]), ref);
  EXPECT_EQ(f[0].n_pending, 0);
  EXPECT_EQ(s.kv().n_used_blocks(), 0);
}

// A request that stops at step k was already scheduled (and advanced) into step k+1: update(k) finishes it with its
// step-k token only and frees its blocks; update(k+1) drops its token; another request's blocks are untouched.
TEST(SchedulerPending, StopWithTheNextStepInFlightDropsThatStepsToken) {
  Scheduler s(pending_config(CapacityPolicy::kMaxUtilization, 32));
  s.add(1, iota_tokens(5, 1), 10);
  s.add(2, iota_tokens(6, 50), 10);
  SchedulerOutput a = s.schedule();
  ASSERT_EQ(a.entries.size(), 2u);
  s.advance(a);
  SchedulerOutput b = s.schedule();
  ASSERT_EQ(b.entries.size(), 2u);
  s.advance(b);
  s.check_integrity();
  std::vector<Request> f = s.update(a, std::vector<SampledToken>{{.request_id = 1, .token = 7, .stop = true},
                                                                 {.request_id = 2, .token = 8}});
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].id, 1);
  EXPECT_EQ(f[0].finish_reason, FinishReason::kStop);
  EXPECT_EQ(output_of(f[0]), std::vector<int32_t>{7}) << "the token of the step in flight leaked into the output";
  EXPECT_FALSE(s.kv().has_table(1));
  s.check_integrity();
  // Request 1's token of step b is passed (the engine drops it before; either way it is ignored).
  f = s.update(b, std::vector<SampledToken>{{.request_id = 1, .token = 99}, {.request_id = 2, .token = 9}});
  EXPECT_TRUE(f.empty());
  s.check_integrity();
  EXPECT_EQ(output_of(*s.find(2)), (std::vector<int32_t>{8, 9}));
  EXPECT_EQ(s.find(2)->num_computed, 7);
}

// Under max_utilization a decode that finds no block preempts the most recent request, which may hold a placeholder:
// it waits (with the placeholder) and is not re-admitted before update() fills it; its output is unchanged.
TEST(SchedulerPending, PreemptedWithAPlaceholderWaitsForItsToken) {
  Scheduler s(pending_config(CapacityPolicy::kMaxUtilization, 4));
  const std::vector<int32_t> pa = iota_tokens(8, 1), pb = iota_tokens(7, 30);
  s.add(1, pa, 4);
  s.add(2, pb, 4);
  SchedulerOutput a = s.schedule();  // both prompts: 2 + 2 blocks, the pool is full
  ASSERT_EQ(a.entries.size(), 2u);
  s.advance(a);
  SchedulerOutput b = s.schedule();  // 1's decode at position 8 needs a third block: 2 (with its placeholder) goes
  ASSERT_EQ(b.preempted, std::vector<int64_t>{2});
  ASSERT_EQ(b.entries.size(), 1u);
  EXPECT_EQ(s.find(2)->status, RequestStatus::kPreempted);
  EXPECT_EQ(s.find(2)->n_pending, 1);
  s.advance(b);
  s.check_integrity();
  const std::vector<int32_t> ref_a = reference_output(pa, 4), ref_b = reference_output(pb, 4);
  EXPECT_TRUE(s.update(a, std::vector<SampledToken>{{.request_id = 1, .token = ref_a[0]},
                                                    {.request_id = 2, .token = ref_b[0]}})
                  .empty());
  s.check_integrity();
  EXPECT_EQ(s.find(2)->n_pending, 0);
  EXPECT_EQ(output_of(*s.find(2)), std::vector<int32_t>{ref_b[0]});
  // From here on: plain synchronous steps; 2 recomputes prompt + its first token once 1 is done.
  EXPECT_TRUE(s.update(b, std::vector<SampledToken>{{.request_id = 1, .token = ref_a[1]}}).empty());
  std::map<int64_t, Request> done;
  for (int i = 0; i < 20 && s.has_unfinished(); ++i)
    for (Request& r : run_step(s).finished) done.emplace(r.id, std::move(r));
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(output_of(done.at(1)), ref_a);
  EXPECT_EQ(output_of(done.at(2)), ref_b);
  EXPECT_EQ(done.at(2).n_preemptions, 1);
}

TEST(SchedulerPending, AbortDropsPlaceholders) {
  Scheduler s(pending_config(CapacityPolicy::kGuaranteedNoEvict, 32));
  s.add(1, iota_tokens(5, 1), 10);
  SchedulerOutput a = s.schedule();
  s.advance(a);
  SchedulerOutput b = s.schedule();
  s.advance(b);
  std::optional<Request> r = s.abort(1);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->tokens, iota_tokens(5, 1));
  EXPECT_EQ(r->n_pending, 0);
  EXPECT_EQ(s.kv().n_used_blocks(), 0);
  // Both steps' results arrive after the abort and are dropped.
  EXPECT_TRUE(s.update(a, std::vector<SampledToken>{{.request_id = 1, .token = 3}}).empty());
  EXPECT_TRUE(s.update(b, {}).empty());
  s.check_integrity();
  EXPECT_FALSE(s.has_unfinished());
}

TEST(SchedulerPendingDeathTest, StepsUpdatedOutOfOrderAbort) {
  Scheduler s(pending_config(CapacityPolicy::kGuaranteedNoEvict, 32));
  s.add(1, iota_tokens(5, 1), 10);
  SchedulerOutput a = s.schedule();
  s.advance(a);
  SchedulerOutput b = s.schedule();
  s.advance(b);
  EXPECT_DEATH(s.update(b, std::vector<SampledToken>{{.request_id = 1, .token = 3}}),
               "request 1: no placeholder at 6 for an advanced step");
  EXPECT_DEATH(s.update(a, std::vector<SampledToken>{{.request_id = 1, .token = kPendingToken}}),
               "sampled token -1 is not a vocabulary id");
}

TEST(SchedulerPendingDeathTest, IntegrityCatchesAPlaceholderInThePrompt) {
  Scheduler s(pending_config(CapacityPolicy::kGuaranteedNoEvict, 32));
  s.add(1, {4, kPendingToken, 5}, 10);  // the engine validates ids; the scheduler's checker still notices
  EXPECT_DEATH(s.check_integrity(), "request 1: token -1 at 1");
}

}  // namespace
}  // namespace dsv3::sched
