#!/usr/bin/env python3
"""test_bench.py: `dsv3 bench throughput|latency` end to end on a CPU micro model, checked against the report's own
definitions (interfaces.md §2.4/§2.5) recomputed here from the per-request records (tests/e2e).

Usage: test_bench.py DSV3_BIN WORK_DIR. Prints 'N passed, M failed' last; exits non-zero on a failure."""
import json
import os
import random
import subprocess
import sys

DSV3, WORK = sys.argv[1], sys.argv[2]
os.makedirs(WORK, exist_ok=True)
MODEL = os.path.join(WORK, "micro")
passed, failed = 0, 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)


def run(*args, ok=True):
    p = subprocess.run([DSV3, *args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        print(p.stdout, p.stderr)
        raise SystemExit(f"dsv3 {' '.join(args)} failed")
    return p


def write_dataset(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(r if isinstance(r, str) else json.dumps(r, separators=(",", ":")))
            f.write("\n")


def nearest_rank(values, q):
    s = sorted(values)
    return s[int(len(s) * q)]


run("make-tiny-model", "--preset", "micro", "--out", MODEL)
rng = random.Random(7)
rows = [{"task_id": i, "input_ids": [rng.randrange(2, 1024) for _ in range(rng.randrange(4, 40))],
         "output_tokens": rng.randrange(1, 12)} for i in range(10)]
ds = os.path.join(WORK, "ds.jsonl")
write_dataset(ds, rows)

for streaming in (False, True):
    rep, req = os.path.join(WORK, f"rep{streaming}.json"), os.path.join(WORK, f"req{streaming}.json")
    args = ["bench", "--model", MODEL, "throughput", "--dataset", ds, "--backend", "cpu", "--warmup", "2",
            "--report_json", rep, "--request_json", req, "--concurrency", "3"]
    if streaming:
        args.append("--streaming")
    p = run(*args)
    # trtllm-bench's injected defaults turn the overlap scheduler on; the CPU backend runs synchronously and says why.
    check("overlap scheduler: off (a host backend)" in p.stderr, "overlap scheduler state logged")
    r = json.load(open(rep))
    recs = json.load(open(req))
    for obj, keys in {"engine": ["model", "model_path", "engine_dir", "version", "backend", "dtype", "kv_cache_dtype",
                                 "quantization"],
                      "world_info": ["tp_size", "pp_size", "ep_size", "world_size", "max_batch_size",
                                     "max_num_tokens", "scheduling_policy", "kv_cache_percentage", "issue_rate"],
                      "request_info": ["num_requests", "avg_num_concurrent_requests", "avg_input_length",
                                       "avg_output_length"],
                      "performance": ["total_latency_ms", "avg_request_latency_ms", "request_throughput_req_s",
                                      "system_output_throughput_tok_s", "system_total_throughput_tok_s",
                                      "output_throughput_per_user_tok_s", "output_throughput_per_gpu_tok_s",
                                      "request_latency_percentiles_ms"],
                      "dataset": ["isl_stats", "osl_stats", "seq_len_stats", "num_requests", "dataset_path",
                                  "max_isl", "max_osl", "max_sequence_length", "avg_isl", "avg_osl",
                                  "avg_sequence_length"]}.items():
        for k in keys:
            check(k in r.get(obj, {}), f"report_json {obj}.{k} present (streaming={streaming})")
    check(("streaming_metrics" in r) == streaming, f"streaming_metrics present iff --streaming ({streaming})")
    n = len(rows)
    check(r["request_info"]["num_requests"] == n and len(recs) == n, "request count equals the dataset")
    check(r["dataset"]["num_requests"] == n, "dataset block counts the dataset")
    out_tokens = [x["num_total_output_tokens"] for x in recs]
    check(sum(out_tokens) == sum(row["output_tokens"] for row in rows), "total output tokens = sum of output_tokens")
    check(sorted(out_tokens) == sorted(row["output_tokens"] for row in rows), "each request made exactly its tokens")
    starts = [x["start_timestamp"] for x in recs]
    ends = [x["end_timestamp"] for x in recs]
    total_s = (max(ends) - min(starts)) / 1e9
    perf = r["performance"]
    check(abs(perf["total_latency_ms"] - total_s * 1e3) < 1e-6 * total_s * 1e3 + 1e-6, "total latency = last end - first start")
    check(abs(perf["system_output_throughput_tok_s"] - sum(out_tokens) / total_s) < 1e-6 * perf["system_output_throughput_tok_s"],
          "output throughput = output tokens / total latency")
    tot = sum(out_tokens) + sum(len(row["input_ids"]) for row in rows)
    check(abs(perf["system_total_throughput_tok_s"] - tot / total_s) < 1e-6 * perf["system_total_throughput_tok_s"],
          "total token throughput = (input + output) / total latency")
    check(abs(perf["request_throughput_req_s"] - n / total_s) < 1e-6 * perf["request_throughput_req_s"],
          "request throughput = N / total latency")
    lat_ms = [(e - s) / 1e6 for s, e in zip(starts, ends)]
    pct = perf["request_latency_percentiles_ms"]
    for q, key in ((0.5, "p50"), (0.9, "p90"), (0.95, "p95"), (0.99, "p99")):
        check(abs(pct[key] - nearest_rank(lat_ms, q)) < 1e-3, f"latency {key} by the nearest-rank rule")
    check(abs(pct["minimum"] - min(lat_ms)) < 1e-3 and abs(pct["maximum"] - max(lat_ms)) < 1e-3, "latency min/max")
    check(abs(perf["avg_request_latency_ms"] - sum(lat_ms) / n) < 1e-3, "average request latency")
    if streaming:
        ttft = [(x["first_token_timestamp"] - x["start_timestamp"]) / 1e6 for x in recs]
        sm = r["streaming_metrics"]
        check(abs(sm["avg_ttft_ms"] - sum(ttft) / n) < 1e-3, "average TTFT")
        check(abs(sm["ttft_percentiles"]["p50"] - nearest_rank(ttft, 0.5)) < 1e-3, "TTFT p50 by the nearest rank")
        check(all(0 < t <= l for t, l in zip(ttft, lat_ms)), "0 < TTFT <= latency")
    text = p.stdout
    for label in ("Request Throughput (req/sec):", "Total Output Throughput (tokens/sec):",
                  "-- Request Latency Breakdown (ms)", "= DATASET DETAILS", "= REQUEST DETAILS",
                  "= WORLD + RUNTIME INFORMATION", "= PERFORMANCE OVERVIEW"):
        check(label in text, f"console report has '{label}'")
    check(("[TTFT] P50" in text) == streaming, "TTFT breakdown printed iff --streaming")

# bench latency: concurrency 1, streaming
rep = os.path.join(WORK, "lat.json")
run("bench", "--model", MODEL, "latency", "--dataset", ds, "--backend", "cpu", "--report_json", rep, "--warmup", "0")
check("streaming_metrics" in json.load(open(rep)), "latency mode streams")
check(json.load(open(rep))["request_info"]["avg_num_concurrent_requests"] <= 1.0 + 1e-6, "latency: one request at a time")


def expect_error(rows_or_text, extra, needles, what):
    bad = os.path.join(WORK, "bad.jsonl")
    if isinstance(rows_or_text, list):
        write_dataset(bad, rows_or_text)
    p = run("bench", "--model", MODEL, "throughput", "--dataset", bad, "--backend", "cpu", *extra, ok=False)
    msg = p.stderr + p.stdout
    check(p.returncode != 0 and all(s in msg for s in needles), f"{what}: {msg.strip()[-300:]}")


expect_error([rows[0], {"task_id": 1, "input_ids": [5, 6]}], [], ["bad.jsonl:2", "output_tokens"],
             "missing key names line and key")
expect_error([rows[0], rows[1], '{"task_id": 2, "input_ids": [1,'], [], ["bad.jsonl:3"], "bad JSON names the line")
yml = os.path.join(WORK, "x.yml")
with open(yml, "w") as f:
    f.write("kv_cache_config:\n  free_gpu_memory_fraction: 0.5\n  bogus_key: 1\n")
expect_error(rows[:2], ["--extra_llm_api_options", yml], ["bogus_key"], "unknown YAML key named")
with open(yml, "w") as f:
    f.write("disable_overlap_scheduler: true\n")
p = run("bench", "--model", MODEL, "throughput", "--dataset", ds, "--backend", "cpu", "--extra_llm_api_options", yml)
check("overlap scheduler: off (disable_overlap_scheduler)" in p.stderr, "YAML disable_overlap_scheduler reaches the engine")
expect_error([{"task_id": 0, "input_ids": list(range(2, 60)), "output_tokens": 50}], ["--max_seq_len", "64"],
             ["bad.jsonl:1"], "request longer than max_seq_len names the line")
expect_error(rows[:2], ["--tp", "2"], ["--tp"], "tensor parallelism refused clearly until it runs")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
