// main.cpp: `dsv3 <command> [options]` — dispatches to one file per command (tools).
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "commands.h"
#include "dsv3/base/error.h"

namespace {

struct Command {
  const char* name;
  int (*fn)(int, char**);
  const char* help;
};

const Command kCommands[] = {
    {"generate", dsv3::tools::cmd_generate, "prompts in, generated text out (the recipe's quickstart)"},
    {"bench", dsv3::tools::cmd_bench, "throughput | latency benchmark over a dataset, as trtllm-bench"},
    {"forward", dsv3::tools::cmd_forward, "token ids in, float32 logits of every position out (.npy)"},
    {"make-tiny-model", dsv3::tools::cmd_make_tiny_model, "write a deterministic random checkpoint (HF layout)"},
    {"inspect", dsv3::tools::cmd_inspect, "config summary, parameter counts, bytes by dtype, GPU memory plan"},
    {"prepare-dataset", dsv3::tools::cmd_prepare_dataset, "benchmark dataset, as TensorRT-LLM's prepare_dataset.py"},
    {"tokenize", dsv3::tools::cmd_tokenize, "text (JSON lines) -> token ids; --chat, --bench"},
    {"detokenize", dsv3::tools::cmd_detokenize, "token ids (JSON lines) -> text"},
};

void usage(std::FILE* f) {
  std::fprintf(f, "usage: dsv3 <command> [options]   (dsv3 <command> --help for its options)\n\ncommands:\n");
  for (const auto& c : kCommands) std::fprintf(f, "  %-18s %s\n", c.name, c.help);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  for (const auto& c : kCommands) {
    if (std::strcmp(argv[1], c.name) != 0) continue;
    std::string name = std::string("dsv3 ") + c.name;
    std::vector<char*> args;
    args.push_back(name.data());
    for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
    try {
      return c.fn(static_cast<int>(args.size()), args.data());
    } catch (const dsv3::Error& e) {
      std::fprintf(stderr, "dsv3 %s: error: %s\n", c.name, e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "dsv3: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}
