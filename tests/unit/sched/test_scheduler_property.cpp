// test_scheduler_property.cpp: seeded randomized tests of Scheduler + KvCacheManager (sched, kv).
// Random arrivals, prompt lengths, max_tokens, shared prefixes, cancellations (also between schedule and update),
// tiny pools and token budgets, for both policies, chunked prefill on/off and block reuse on/off. check_integrity()
// runs after every schedule() and update(). A fake model keeps a fake paged KV cache: it writes each fed token into
// the slot its block table names and samples from what it reads back through the table, so a wrong table, a wrong
// prefix hit or an overwritten shared block changes the output. Every request's output must equal the unconstrained
// reference (the token function applied to the request alone): chunking, preemption and reuse never change results.
// Overlap cases drive the scheduler as the engine's overlap scheduler does: step k+1 is scheduled (and "launched":
// the fake model runs it) after advance() of step k and before update() of step k, a placeholder input taking the
// token step k sampled "on the device"; now and then a step runs synchronously (the in-flight step updated first).
#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "dsv3/base/error.h"
#include "dsv3/sched/scheduler.h"

namespace dsv3::sched {
namespace {

constexpr int kVocab = 1000;

struct Logit {
  int32_t token;
  bool stop;
};

// The fake model's "forward": a 64-bit hash of the whole sequence gives the next token and whether it stops.
Logit fake_logits(const std::vector<int32_t>& seq) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (int32_t t : seq) {
    h ^= static_cast<uint64_t>(t) + 0x9e3779b97f4a7c15ull;
    h *= 0x100000001b3ull;
    h ^= h >> 29;
  }
  return {static_cast<int32_t>(h % kVocab), (h >> 40) % 23 == 0};
}

struct Spec {
  int64_t id = 0;
  std::vector<int32_t> prompt;
  int max_tokens = 0;
  int arrival_step = 0;
  int cancel_step = -1;      // abort at this step (before schedule, or between schedule and update)
  bool cancel_mid = false;
  std::vector<int32_t> ref;  // reference output
  bool ref_stopped = false;  // the reference ended on a stop token
};

void make_reference(Spec& s) {
  std::vector<int32_t> seq = s.prompt;
  for (int i = 0; i < s.max_tokens; ++i) {
    Logit l = fake_logits(seq);
    s.ref.push_back(l.token);
    seq.push_back(l.token);
    if (l.stop) {
      s.ref_stopped = true;
      break;
    }
  }
}

struct Slot {
  int32_t token = -1;
  int32_t pos = -1;
};

// A fake paged cache, [n_blocks, tokens_per_block] slots of (token, position).
class FakeModel {
 public:
  FakeModel(int n_blocks, int tpb) : tpb_(tpb), slots_(static_cast<size_t>(n_blocks) * tpb) {}

  // Checks each entry against the scheduler's state, writes its tokens, and samples where logits are needed.
  // `device`: the tokens the step in flight sampled, by request (what a placeholder input reads on the device).
  void run(const Scheduler& s, const SchedulerOutput& out, std::vector<SampledToken>& sampled,
           const std::map<int64_t, int32_t>& device) {
    for (const ScheduledChunk& c : out.entries) {
      const Request* r = s.find(c.request_id);
      ASSERT_NE(r, nullptr);
      ASSERT_EQ(r->status, RequestStatus::kRunning);
      ASSERT_EQ(c.start, r->num_computed) << "request " << c.request_id;
      ASSERT_GE(c.n_tokens, 1);
      ASSERT_LE(c.n_context(), r->n_tokens());
      ASSERT_EQ(c.needs_logits, c.n_context() == r->n_tokens());
      ASSERT_EQ(c.token_ids, std::vector<int32_t>(r->tokens.begin() + c.start, r->tokens.begin() + c.n_context()));
      ASSERT_EQ(static_cast<int>(c.positions.size()), c.n_tokens);
      auto table = s.kv().block_table(c.request_id);
      ASSERT_EQ(static_cast<int>(c.block_table.size()), (c.n_context() + tpb_ - 1) / tpb_);
      ASSERT_TRUE(std::equal(c.block_table.begin(), c.block_table.end(), table.begin()));
      for (int k = 0; k < c.n_tokens; ++k) {
        const int pos = c.positions[k];
        ASSERT_EQ(pos, c.start + k);
        const int32_t b = c.block_table[pos / tpb_];
        ASSERT_EQ(s.kv().pool().ref_count(b), 1) << "write into shared block " << b;
        int32_t tok = c.token_ids[k];
        if (tok == kPendingToken) {  // only a decode's input, of a request whose token is in flight
          ASSERT_EQ(c.n_tokens, 1) << "request " << c.request_id;
          ASSERT_EQ(r->n_pending, 1) << "request " << c.request_id;
          ASSERT_TRUE(device.count(c.request_id)) << "placeholder of request " << c.request_id << " not in flight";
          tok = device.at(c.request_id);
        }
        ASSERT_GE(tok, 0);
        slots_[static_cast<size_t>(b) * tpb_ + pos % tpb_] = {tok, pos};
      }
      if (!c.needs_logits) continue;
      std::vector<int32_t> seq;
      for (int p = 0; p < c.n_context(); ++p) {
        const Slot& sl = slots_[static_cast<size_t>(c.block_table[p / tpb_]) * tpb_ + p % tpb_];
        ASSERT_EQ(sl.pos, p) << "request " << c.request_id << " reads position " << p << " from block "
                             << c.block_table[p / tpb_] << " holding position " << sl.pos;
        seq.push_back(sl.token);
      }
      Logit l = fake_logits(seq);
      sampled.push_back({.request_id = c.request_id, .token = l.token, .stop = l.stop});
    }
  }

 private:
  int tpb_;
  std::vector<Slot> slots_;
};

struct Coverage {
  int64_t preemptions = 0, prefix_hit_tokens = 0, cancelled = 0, rejected = 0, split_chunks = 0, steps = 0;
  int64_t finished = 0, mid_cancels = 0;
  int64_t placeholder_inputs = 0, advanced_steps = 0, finished_in_flight = 0, preempted_pending = 0;
};

struct Case {
  CapacityPolicy policy;
  bool chunked;
  bool reuse;
  bool overlap = false;
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return std::string(info.param.policy == CapacityPolicy::kGuaranteedNoEvict ? "NoEvict" : "MaxUtil") +
         (info.param.chunked ? "_Chunked" : "_Whole") + (info.param.reuse ? "_Reuse" : "_NoReuse") +
         (info.param.overlap ? "_Overlap" : "");
}

class SchedulerProperty : public ::testing::TestWithParam<Case> {
 protected:
  void run_seed(uint64_t seed, Coverage& cov);
};

void SchedulerProperty::run_seed(uint64_t seed, Coverage& cov) {
  const Case cs = GetParam();
  std::mt19937_64 rng(seed * 7919 + static_cast<uint64_t>(cs.policy) * 31 + cs.chunked * 3 + cs.reuse +
                      cs.overlap * 101);
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const int tpb_choices[] = {2, 4, 16, 64};
  const int tpb = tpb_choices[seed % 4];
  const int scale = tpb == 64 ? 1 : 2;  // keep 64-token blocks from making sequences too long

  // Shared prefix families and the requests.
  std::vector<std::vector<int32_t>> families(3);
  for (auto& f : families) {
    f.resize(uni(0, 4 * tpb));
    for (auto& t : f) t = uni(0, kVocab - 1);
  }
  std::vector<Spec> specs(uni(20, 40));
  int max_len = 1;
  for (size_t i = 0; i < specs.size(); ++i) {
    Spec& s = specs[i];
    s.id = static_cast<int64_t>(1000 + i * 3);
    const int kind = uni(0, 9);
    if (kind < 6) {
      s.prompt = families[uni(0, 2)];
      const int n_suffix = uni(s.prompt.empty() ? 1 : 0, 2 * tpb * scale);
      for (int k = 0; k < n_suffix; ++k) s.prompt.push_back(uni(0, kVocab - 1));
    } else if (kind < 7 && i > 0) {
      s.prompt = specs[uni(0, static_cast<int>(i) - 1)].prompt;  // an exact repeat
    } else if (kind < 8) {
      // Low entropy: equal blocks recur at different positions and after different prefixes.
      s.prompt.resize(uni(1, 4 * tpb * scale));
      for (auto& t : s.prompt) t = uni(0, 1);
    } else {
      s.prompt.resize(uni(1, 4 * tpb * scale));
      for (auto& t : s.prompt) t = uni(0, kVocab - 1);
    }
    s.max_tokens = uni(1, 3 * tpb * scale / 2 + 2);
    s.arrival_step = uni(0, 50);
    if (uni(0, 9) == 0) {
      s.cancel_step = s.arrival_step + uni(0, 30);
      s.cancel_mid = uni(0, 1) == 1;
    }
    max_len = std::max(max_len, static_cast<int>(s.prompt.size()) + s.max_tokens);
    make_reference(s);
  }
  const int max_blocks_needed = (max_len - 1 + tpb - 1) / tpb;
  SchedulerConfig cfg{
      .max_batch_size = uni(1, 8),
      .max_num_tokens = cs.chunked ? uni(1, 3 * tpb) : uni(2 * tpb * scale, 9 * tpb * scale),
      .max_seq_len = max_len,
      .enable_chunked_prefill = cs.chunked,
      .policy = cs.policy,
      .tokens_per_block = tpb,
      // Tiny pools (the largest request plus 0..3 blocks) most of the time, a roomy one sometimes.
      .n_blocks = max_blocks_needed + (uni(0, 4) == 0 ? uni(4, 40) : uni(0, 3)),
      .enable_block_reuse = cs.reuse,
  };
  // A few impossible requests: longer than max_seq_len or than the pool.
  for (int k = 0; k < 2; ++k) {
    Spec s;
    s.id = 1 + k;
    s.prompt.assign(uni(1, 3), 5);
    s.max_tokens = k == 0 ? cfg.max_seq_len : cfg.n_blocks * tpb + 1;
    s.arrival_step = uni(0, 50);
    specs.push_back(s);
  }
  auto impossible = [&](const Spec& s) {
    const int n = static_cast<int>(s.prompt.size());
    return n + s.max_tokens > cfg.max_seq_len || (n + s.max_tokens - 1 + tpb - 1) / tpb > cfg.n_blocks ||
           (!cfg.enable_chunked_prefill && n > cfg.max_num_tokens);
  };
  SCOPED_TRACE(::testing::Message() << "seed " << seed << " tpb " << tpb << " max_batch " << cfg.max_batch_size
                                    << " max_num_tokens " << cfg.max_num_tokens << " n_blocks " << cfg.n_blocks);

  Scheduler s(cfg);
  FakeModel model(cfg.n_blocks, tpb);
  std::map<int64_t, const Spec*> by_id;
  for (const Spec& sp : specs) by_id[sp.id] = &sp;
  std::map<int64_t, Request> done;
  std::set<int64_t> rejected;
  const int last_arrival = std::max_element(specs.begin(), specs.end(), [](const Spec& a, const Spec& b) {
                             return a.arrival_step < b.arrival_step;
                           })->arrival_step;
  auto record = [&](Request r) {
    ASSERT_TRUE(done.emplace(r.id, std::move(r)).second) << "request finished twice";
  };

  // The step in flight (overlap): advanced, its sampled tokens held back until its update().
  struct InFlight {
    SchedulerOutput out;
    std::vector<SampledToken> sampled;
    std::map<int64_t, int32_t> device;
  };
  std::optional<InFlight> inflight;
  // `next`: the step launched after the one in flight, if any.
  auto update_inflight = [&](const SchedulerOutput* next) {
    std::vector<Request> fin = s.update(inflight->out, inflight->sampled);
    s.check_integrity();
    for (Request& r : fin) {
      // Finished while its next step was already scheduled: that step's token is dropped.
      if (next && std::any_of(next->entries.begin(), next->entries.end(),
                              [&](const ScheduledChunk& c) { return c.request_id == r.id; }))
        ++cov.finished_in_flight;
      record(std::move(r));
    }
    inflight.reset();
  };
  for (int step = 0; step <= last_arrival || s.has_unfinished() || inflight; ++step) {
    ASSERT_LT(step, 20000) << "no progress";
    for (const Spec& sp : specs) {
      if (sp.arrival_step != step) continue;
      try {
        s.add(sp.id, sp.prompt, sp.max_tokens);
        ASSERT_FALSE(impossible(sp)) << "request " << sp.id << " should have been rejected";
      } catch (const Error& e) {
        ASSERT_TRUE(impossible(sp)) << "request " << sp.id << " wrongly rejected: " << e.what();
        ASSERT_NE(std::string(e.what()).find("request " + std::to_string(sp.id) + " rejected: "), std::string::npos);
        rejected.insert(sp.id);
      }
    }
    for (const Spec& sp : specs) {
      if (sp.cancel_step == step && !sp.cancel_mid && s.find(sp.id)) {
        auto r = s.abort(sp.id);
        ASSERT_TRUE(r.has_value());
        record(std::move(*r));
        ++cov.cancelled;
      }
    }
    s.check_integrity();
    if (!s.has_unfinished()) {
      if (inflight) update_inflight(nullptr);
      continue;
    }

    // The state before the step, to check what schedule() did with it.
    struct Before {
      RequestStatus status;
      int num_computed, n_tokens;
      uint64_t arrival;
    };
    std::map<int64_t, Before> before;
    for (const Spec& sp : specs) {
      if (const Request* r = s.find(sp.id)) before[sp.id] = {r->status, r->num_computed, r->n_tokens(), r->arrival};
    }

    SchedulerOutput out = s.schedule();
    s.check_integrity();
    ++cov.steps;
    if (out.entries.empty() && inflight) {  // e.g. only requests whose last output is in flight: wait for it
      update_inflight(nullptr);
      continue;
    }
    ASSERT_FALSE(out.entries.empty()) << "a step with live requests scheduled nothing";
    ASSERT_LE(static_cast<int>(out.entries.size()), cfg.max_batch_size);
    ASSERT_LE(out.n_tokens, cfg.max_num_tokens);
    int sum = 0, hit_tokens = 0;
    std::set<int64_t> ids;
    std::vector<uint64_t> admitted_new;  // arrivals of never-admitted requests admitted now
    for (size_t i = 0; i < out.entries.size(); ++i) {
      const ScheduledChunk& c = out.entries[i];
      sum += c.n_tokens;
      ASSERT_TRUE(ids.insert(c.request_id).second) << "request scheduled twice in one step";
      const Before& b = before.at(c.request_id);
      if (static_cast<int>(i) < out.n_decode) {
        ASSERT_EQ(c.n_tokens, 1);
        ASSERT_EQ(b.status, RequestStatus::kRunning);
        ASSERT_EQ(b.num_computed, b.n_tokens - 1);
      }
      if (b.status != RequestStatus::kRunning) {  // admitted in this step
        hit_tokens += c.start;
        if (!cfg.enable_block_reuse) {
          ASSERT_EQ(c.start, 0);
        }
        if (b.status == RequestStatus::kWaiting) admitted_new.push_back(b.arrival);
      }
      if (!c.needs_logits) ++cov.split_chunks;
      const Request* r = s.find(c.request_id);
      if (!cfg.enable_chunked_prefill && r->n_preemptions == 0) {
        ASSERT_TRUE(c.needs_logits) << "prompt split with chunked prefill off";
      }
    }
    ASSERT_EQ(sum, out.n_tokens);
    ASSERT_EQ(out.stats.batch_size, static_cast<int>(out.entries.size()));
    ASSERT_EQ(out.stats.n_decode_tokens + out.stats.n_prefill_tokens, out.n_tokens);
    ASSERT_EQ(out.stats.n_decode_tokens, out.n_decode);
    ASSERT_EQ(out.stats.n_blocks_used + out.stats.n_blocks_free, cfg.n_blocks);
    ASSERT_EQ(out.stats.n_prefix_hit_tokens, hit_tokens);
    ASSERT_EQ(out.stats.n_preempted, static_cast<int>(out.preempted.size()));
    if (cfg.policy == CapacityPolicy::kGuaranteedNoEvict) {
      ASSERT_TRUE(out.preempted.empty());
    }
    for (int64_t id : out.preempted) {
      if (s.find(id)->n_pending > 0) ++cov.preempted_pending;
      ASSERT_EQ(before.at(id).status, RequestStatus::kRunning);
      ASSERT_EQ(s.find(id)->status, RequestStatus::kPreempted);
      ASSERT_FALSE(ids.count(id));
    }
    if (!out.preempted.empty()) {
      ASSERT_TRUE(admitted_new.empty()) << "admission in a step that preempted";
    }
    // FCFS: new admissions are the oldest never-admitted requests, and none while a preempted one still waits.
    std::vector<uint64_t> still_waiting;
    bool preempted_waits = false;
    for (const auto& [id, b] : before) {
      if (ids.count(id)) continue;
      if (b.status == RequestStatus::kWaiting) still_waiting.push_back(b.arrival);
      if (b.status == RequestStatus::kPreempted) preempted_waits = true;
    }
    if (!admitted_new.empty()) {
      ASSERT_FALSE(preempted_waits) << "a new request overtook a preempted one";
      ASSERT_TRUE(std::is_sorted(admitted_new.begin(), admitted_new.end()));
      for (uint64_t a : still_waiting) ASSERT_GT(a, admitted_new.back()) << "FCFS violated";
    }

    for (const ScheduledChunk& c : out.entries)
      for (int32_t t : c.token_ids) cov.placeholder_inputs += t == kPendingToken;
    std::vector<SampledToken> sampled;
    model.run(s, out, sampled, inflight ? inflight->device : std::map<int64_t, int32_t>{});
    if (::testing::Test::HasFatalFailure()) return;
    const bool advance = cs.overlap && uni(0, 5) != 0;  // else a synchronous step (the engine's host-sampled rows)
    if (advance) {
      s.advance(out);
      s.check_integrity();
      ++cov.advanced_steps;
    }
    for (const Spec& sp : specs) {
      if (sp.cancel_step == step && sp.cancel_mid && s.find(sp.id)) {
        auto r = s.abort(sp.id);
        ASSERT_TRUE(r.has_value());
        for (int32_t t : r->tokens) ASSERT_GE(t, 0) << "a placeholder in an aborted request";
        record(std::move(*r));
        ++cov.cancelled;
        ++cov.mid_cancels;
      }
    }
    // The step before this one: its tokens come after this step was launched.
    if (inflight) update_inflight(&out);
    if (advance) {
      InFlight f{std::move(out), std::move(sampled), {}};
      for (const SampledToken& t : f.sampled) f.device[t.request_id] = t.token;
      inflight = std::move(f);
    } else {
      std::vector<Request> fin = s.update(out, sampled);
      s.check_integrity();
      for (Request& r : fin) record(std::move(r));
    }
  }

  // Every request ended exactly once, with the unconstrained result (cancelled ones with a prefix of it).
  for (const Spec& sp : specs) {
    if (rejected.count(sp.id)) continue;
    auto it = done.find(sp.id);
    ASSERT_NE(it, done.end()) << "request " << sp.id << " never finished";
    const Request& r = it->second;
    const std::vector<int32_t> out(r.output().begin(), r.output().end());
    ASSERT_EQ(std::vector<int32_t>(r.prompt().begin(), r.prompt().end()), sp.prompt);
    if (r.finish_reason == FinishReason::kCancelled) {
      ASSERT_LE(out.size(), sp.ref.size());
      ASSERT_TRUE(std::equal(out.begin(), out.end(), sp.ref.begin())) << "request " << sp.id;
    } else {
      ++cov.finished;
      ASSERT_EQ(out, sp.ref) << "request " << sp.id << " (preempted " << r.n_preemptions << "x)";
      ASSERT_EQ(r.finish_reason, sp.ref_stopped ? FinishReason::kStop : FinishReason::kLength);
    }
  }
  ASSERT_EQ(static_cast<int64_t>(rejected.size()), s.totals().n_rejected);
  ASSERT_GE(rejected.size(), 2u);
  ASSERT_EQ(s.kv().n_used_blocks(), 0);
  ASSERT_EQ(s.kv().n_free_blocks(), cfg.n_blocks);
  ASSERT_EQ(s.kv().n_tables(), 0);
  cov.preemptions += s.totals().n_preemptions;
  cov.prefix_hit_tokens += s.totals().n_prefix_hit_tokens;
  cov.rejected += static_cast<int64_t>(rejected.size());
}

TEST_P(SchedulerProperty, OutputsMatchTheUnconstrainedRun) {
  Coverage cov;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    run_seed(seed, cov);
    if (HasFatalFailure()) return;
  }
  // The seeds must reach the paths under test, or the properties above prove little.
  const Case cs = GetParam();
  EXPECT_GT(cov.finished, 200);
  EXPECT_GT(cov.cancelled, 5);
  EXPECT_GT(cov.mid_cancels, 0);
  if (cs.policy == CapacityPolicy::kMaxUtilization) {
    EXPECT_GT(cov.preemptions, 10);
  }
  if (cs.reuse) {
    EXPECT_GT(cov.prefix_hit_tokens, 100);
  }
  if (cs.chunked) {
    EXPECT_GT(cov.split_chunks, 50);
  }
  if (cs.overlap) {
    EXPECT_GT(cov.advanced_steps, cov.steps / 2);
    EXPECT_GT(cov.placeholder_inputs, 200);
    EXPECT_GT(cov.finished_in_flight, 20);
    if (cs.policy == CapacityPolicy::kMaxUtilization) {
      EXPECT_GT(cov.preempted_pending, 0);
    }
  } else {
    EXPECT_EQ(cov.placeholder_inputs, 0);
  }
  std::printf("coverage: %lld steps, %lld finished, %lld cancelled (%lld mid-step), %lld rejected, %lld preemptions, "
              "%lld prefix-hit tokens, %lld split chunks; overlap: %lld advanced steps, %lld placeholder inputs, "
              "%lld finished with a step in flight, %lld preempted with a placeholder\n",
              static_cast<long long>(cov.steps), static_cast<long long>(cov.finished),
              static_cast<long long>(cov.cancelled), static_cast<long long>(cov.mid_cancels),
              static_cast<long long>(cov.rejected), static_cast<long long>(cov.preemptions),
              static_cast<long long>(cov.prefix_hit_tokens), static_cast<long long>(cov.split_chunks),
              static_cast<long long>(cov.advanced_steps), static_cast<long long>(cov.placeholder_inputs),
              static_cast<long long>(cov.finished_in_flight), static_cast<long long>(cov.preempted_pending));
}

INSTANTIATE_TEST_SUITE_P(AllPolicies, SchedulerProperty,
                         ::testing::Values(Case{CapacityPolicy::kGuaranteedNoEvict, false, false},
                                           Case{CapacityPolicy::kGuaranteedNoEvict, false, true},
                                           Case{CapacityPolicy::kGuaranteedNoEvict, true, false},
                                           Case{CapacityPolicy::kGuaranteedNoEvict, true, true},
                                           Case{CapacityPolicy::kMaxUtilization, false, false},
                                           Case{CapacityPolicy::kMaxUtilization, false, true},
                                           Case{CapacityPolicy::kMaxUtilization, true, false},
                                           Case{CapacityPolicy::kMaxUtilization, true, true},
                                           Case{CapacityPolicy::kGuaranteedNoEvict, false, true, true},
                                           Case{CapacityPolicy::kGuaranteedNoEvict, true, true, true},
                                           Case{CapacityPolicy::kMaxUtilization, false, false, true},
                                           Case{CapacityPolicy::kMaxUtilization, true, true, true}),
                         case_name);

}  // namespace
}  // namespace dsv3::sched
