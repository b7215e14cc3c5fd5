// commands.h: the entry point of every `dsv3 <command>` (tools). Each command lives in its own cmd_<name>.cpp,
// parses its own options (CLI11, recipe spellings plus dashed forms), and returns the process exit code.
// argv[0] is "dsv3 <command>"; dsv3::Error thrown out of a command is printed by main() and exits 1.
#pragma once

namespace dsv3::tools {

int cmd_forward(int argc, char** argv);
int cmd_make_tiny_model(int argc, char** argv);
int cmd_inspect(int argc, char** argv);
int cmd_prepare_dataset(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_detokenize(int argc, char** argv);
int cmd_generate(int argc, char** argv);
int cmd_bench(int argc, char** argv);

}  // namespace dsv3::tools
