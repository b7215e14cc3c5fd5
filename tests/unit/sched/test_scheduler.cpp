// test_scheduler.cpp: hand-worked scenarios for the Scheduler: rejection messages, decode-first order, chunking,
// batch/token limits, both capacity policies, preemption by recompute, prefix reuse, abort and update (sched).
#include <numeric>
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

}  // namespace
}  // namespace dsv3::sched
