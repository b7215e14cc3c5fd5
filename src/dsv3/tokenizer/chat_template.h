// chat_template.h: DeepSeek chat templates rendered in C++, without a Jinja engine (tokenizer).
// Each template is a transcription of the official Jinja text (model-spec.md §7.3), quirks included: V3 (hub),
// V3-0324, R1 (hub) and V3.1 (thinking on/off). The template is recognized from tokenizer_config.json's
// chat_template by distinctive substrings, or chosen by name.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dsv3 {

struct ToolCall {
  std::string id;
  std::string type = "function";
  std::string name;
  std::string arguments;  // JSON text, as OpenAI sends it (an object in the input is serialized compactly)
};

struct ChatMessage {
  std::string role;  // system | user | assistant | tool
  std::string content;
  std::string reasoning_content;  // parsed and kept for callers; the DeepSeek templates do not render it
  std::vector<ToolCall> tool_calls;
  bool content_null = false;  // "content": null or absent (an assistant turn that only calls tools)
  bool prefix = false;        // V3.1: an assistant prefix to continue (renders <think> in thinking mode)
  std::string tool_call_id;   // role "tool"
  std::string name;
};

enum class ChatTemplateKind { kV3, kV3_0324, kR1, kV3_1 };

class ChatTemplate {
 public:
  // "deepseek-v3" (or "v3"), "v3-0324", "r1" (or "deepseek-r1"), "v3.1" (or "deepseek-v3.1").
  static ChatTemplate from_name(std::string_view name);
  // Recognizes a Jinja chat template; dsv3::Error if it is none of the known ones.
  static ChatTemplate from_jinja(std::string_view jinja);
  // tokenizer_config.json's chat_template in dir; dsv3::Error if absent or unrecognized.
  static ChatTemplate from_tokenizer_dir(const std::string& dir);

  // The prompt text; encode it with add_special_tokens=false (it already holds BOS), as apply_chat_template does.
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                     bool thinking = false) const;

  ChatTemplateKind kind() const { return kind_; }
  std::string_view name() const;

 private:
  explicit ChatTemplate(ChatTemplateKind kind, bool strip_think) : kind_(kind), strip_think_(strip_think) {}
  ChatTemplateKind kind_;
  bool strip_think_;  // V3-0324 variant (R1-0528 style) that drops past reasoning up to the last </think>
};

// An OpenAI-style messages list: a JSON array, or an object with "messages". dsv3::Error names the bad field.
std::vector<ChatMessage> parse_chat_messages(std::string_view json_text);

}  // namespace dsv3
