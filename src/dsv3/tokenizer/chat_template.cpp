// chat_template.cpp: the DeepSeek chat templates as code (tokenizer); see chat_template.h.
// Every branch below mirrors one branch of the Jinja source, with the template's namespace flags (is_first,
// is_tool, is_output_first, is_last_user) kept as locals of the same names, so the known defects stay faithful
// (e.g. V3 closes a tool-call turn only after its second call; is_first is never reset in V3 and R1).
#include "dsv3/tokenizer/chat_template.h"

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "dsv3/base/error.h"

namespace dsv3 {
namespace {

constexpr std::string_view kBos = "<｜begin▁of▁sentence｜>";
constexpr std::string_view kEos = "<｜end▁of▁sentence｜>";
constexpr std::string_view kUser = "<｜User｜>";
constexpr std::string_view kAssistant = "<｜Assistant｜>";
constexpr std::string_view kCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr std::string_view kCallsEnd = "<｜tool▁calls▁end｜>";
constexpr std::string_view kCallBegin = "<｜tool▁call▁begin｜>";
constexpr std::string_view kCallEnd = "<｜tool▁call▁end｜>";
constexpr std::string_view kSep = "<｜tool▁sep｜>";
constexpr std::string_view kOutputsBegin = "<｜tool▁outputs▁begin｜>";
constexpr std::string_view kOutputsEnd = "<｜tool▁outputs▁end｜>";
constexpr std::string_view kOutputBegin = "<｜tool▁output▁begin｜>";
constexpr std::string_view kOutputEnd = "<｜tool▁output▁end｜>";

std::string cat(std::initializer_list<std::string_view> parts) {
  std::string s;
  for (auto p : parts) s += p;
  return s;
}

// V3 / V3-0324 / R1 call body: {type}<sep>{name}\n```json\n{args}\n```<call end>
// A tool result: the first one opens the outputs list; later ones follow `sep` (V3 / V3.1: "\n"; R1: nothing).
void append_tool_output(std::string& out, const ChatMessage& m, bool& is_output_first, std::string_view sep) {
  if (is_output_first) {
    out += cat({kOutputsBegin, kOutputBegin, m.content, kOutputEnd});
    is_output_first = false;
  } else {
    out += cat({sep, kOutputBegin, m.content, kOutputEnd});
  }
}

std::string call_v3(const ToolCall& t) {
  return cat({t.type, kSep, t.name, "\n```json\n", t.arguments, "\n```", kCallEnd});
}

// content.split('</think>')[-1]
std::string after_last_think(const std::string& s) {
  const size_t p = s.rfind("</think>");
  return p == std::string::npos ? s : s.substr(p + 8);
}

// content.split('</think>', 1)[1]
std::string after_first_think(const std::string& s) {
  const size_t p = s.find("</think>");
  return p == std::string::npos ? s : s.substr(p + 8);
}

std::string system_prompt(const std::vector<ChatMessage>& messages) {
  std::string sp;
  bool first = true;
  for (const auto& m : messages) {
    if (m.role != "system") continue;
    if (!first) sp += "\n\n";
    sp += m.content;
    first = false;
  }
  return sp;
}

std::string render_v3(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string out = cat({kBos}) + system_prompt(messages);
  bool is_first = false, is_tool = false, is_output_first = true;
  for (const auto& m : messages) {
    if (m.role == "user") {
      is_tool = false;
      out += cat({kUser, m.content});
    }
    if (m.role == "assistant" && m.content_null) {
      is_tool = false;
      for (const auto& t : m.tool_calls) {
        if (!is_first) {
          out += cat({kAssistant, kCallsBegin, kCallBegin, call_v3(t)});
          is_first = true;
        } else {
          out += cat({"\n", kCallBegin, call_v3(t), kCallsEnd, kEos});
        }
      }
    }
    if (m.role == "assistant" && !m.content_null) {
      if (is_tool) {
        out += cat({kOutputsEnd, m.content, kEos});
        is_tool = false;
      } else {
        out += cat({kAssistant, m.content, kEos});
      }
    }
    if (m.role == "tool") {
      is_tool = true;
      append_tool_output(out, m, is_output_first, "\n");
    }
  }
  if (is_tool) out += kOutputsEnd;
  if (add_generation_prompt && !is_tool) out += kAssistant;
  return out;
}

std::string render_r1(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string out = cat({kBos}) + system_prompt(messages);
  bool is_first = false, is_tool = false, is_output_first = true;
  for (const auto& m : messages) {
    const bool has_calls = !m.tool_calls.empty();  // 'tool_calls' in message
    if (m.role == "user") {
      is_tool = false;
      out += cat({kUser, m.content});
    }
    if (m.role == "assistant" && has_calls) {
      is_tool = false;
      for (const auto& t : m.tool_calls) {
        if (!is_first) {
          if (m.content_null) {
            out += cat({kAssistant, kCallsBegin, kCallBegin, call_v3(t)});
          } else {
            out += cat({kAssistant, m.content, kCallsBegin, kCallBegin, call_v3(t)});
          }
          is_first = true;
        } else {
          out += cat({"\n", kCallBegin, call_v3(t)});
        }
      }
      out += cat({kCallsEnd, kEos});
    }
    if (m.role == "assistant" && !has_calls) {
      if (is_tool) {
        out += cat({kOutputsEnd, m.content, kEos});
        is_tool = false;
      } else {
        out += cat({kAssistant, after_last_think(m.content), kEos});
      }
    }
    if (m.role == "tool") {
      is_tool = true;
      append_tool_output(out, m, is_output_first, "");
    }
  }
  if (is_tool) out += kOutputsEnd;
  if (add_generation_prompt && !is_tool) out += cat({kAssistant, "<think>\n"});
  return out;
}

std::string render_v3_0324(const std::vector<ChatMessage>& messages, bool add_generation_prompt, bool strip_think) {
  std::string out = cat({kBos}) + system_prompt(messages);
  bool is_first = false, is_tool = false, is_output_first = true, is_last_user = false;
  for (const auto& m : messages) {
    const bool has_calls = !m.tool_calls.empty();
    const std::string content =
        strip_think && m.role == "assistant" && !m.content_null ? after_last_think(m.content) : m.content;
    if (m.role == "user") {
      is_tool = false;
      is_first = false;
      is_last_user = true;
      out += cat({kUser, m.content, kAssistant});
    }
    if (m.role == "assistant" && has_calls) {
      is_last_user = false;
      if (is_tool) out += kOutputsEnd;
      is_first = false;
      is_tool = false;
      is_output_first = true;
      for (const auto& t : m.tool_calls) {
        if (!is_first) {
          out += cat({m.content_null ? std::string_view() : std::string_view(content), kCallsBegin, kCallBegin,
                      call_v3(t)});
          is_first = true;
        } else {
          out += cat({"\n", kCallBegin, call_v3(t)});
        }
      }
      out += cat({kCallsEnd, kEos});
    }
    if (m.role == "assistant" && !has_calls) {
      is_last_user = false;
      if (is_tool) {
        out += cat({kOutputsEnd, content, kEos});
        is_tool = false;
      } else {
        out += cat({content, kEos});
      }
    }
    if (m.role == "tool") {
      is_last_user = false;
      is_tool = true;
      append_tool_output(out, m, is_output_first, "\n");
    }
  }
  if (is_tool) out += kOutputsEnd;
  if (add_generation_prompt && !is_last_user && !is_tool) out += kAssistant;
  return out;
}

std::string render_v3_1(const std::vector<ChatMessage>& messages, bool add_generation_prompt, bool thinking) {
  std::string out = cat({kBos}) + system_prompt(messages);
  bool is_first = false, is_tool = false, is_last_user = false;
  for (const auto& m : messages) {
    const bool has_calls = !m.tool_calls.empty();
    if (m.role == "user") {
      is_tool = false;
      is_first = false;
      is_last_user = true;
      out += cat({kUser, m.content});
    }
    if (m.role == "assistant" && has_calls) {
      if (is_last_user) out += cat({kAssistant, "</think>"});
      is_last_user = false;
      is_first = false;
      is_tool = false;
      for (const auto& t : m.tool_calls) {
        if (!is_first) {
          out += cat({m.content_null ? std::string_view() : std::string_view(m.content), kCallsBegin, kCallBegin,
                      t.name, kSep, t.arguments, kCallEnd});
          is_first = true;
        } else {
          out += cat({kCallBegin, t.name, kSep, t.arguments, kCallEnd});
        }
      }
      out += cat({kCallsEnd, kEos});
    }
    if (m.role == "assistant" && !has_calls) {
      if (is_last_user) out += cat({kAssistant, m.prefix && thinking ? "<think>" : "</think>"});
      is_last_user = false;
      if (is_tool) {
        out += cat({m.content, kEos});
        is_tool = false;
      } else {
        out += cat({after_first_think(m.content), kEos});
      }
    }
    if (m.role == "tool") {
      is_last_user = false;
      is_tool = true;
      out += cat({kOutputBegin, m.content, kOutputEnd});
    }
  }
  if (add_generation_prompt && is_last_user && !is_tool) out += cat({kAssistant, thinking ? "<think>" : "</think>"});
  return out;
}

std::string json_text(const nlohmann::json& v, const std::string& where) {
  if (v.is_null()) return {};
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array()) {  // OpenAI content parts: the text parts joined
    std::string s;
    for (const auto& part : v) {
      EXPECT(part.is_object() && part.value("type", std::string()) == "text" && part.contains("text"),
             "{}: only text content parts are supported", where);
      s += part["text"].get<std::string>();
    }
    return s;
  }
  FAIL("{}: expected a string", where);
}

}  // namespace

ChatTemplate ChatTemplate::from_name(std::string_view name) {
  if (name == "deepseek-v3" || name == "v3") return ChatTemplate(ChatTemplateKind::kV3, false);
  if (name == "v3-0324" || name == "deepseek-v3-0324") return ChatTemplate(ChatTemplateKind::kV3_0324, false);
  if (name == "r1" || name == "deepseek-r1") return ChatTemplate(ChatTemplateKind::kR1, false);
  if (name == "v3.1" || name == "deepseek-v3.1") return ChatTemplate(ChatTemplateKind::kV3_1, false);
  FAIL("unknown chat template '{}' (deepseek-v3, v3-0324, r1, v3.1)", name);
}

ChatTemplate ChatTemplate::from_jinja(std::string_view j) {
  auto has = [&](std::string_view s) { return j.find(s) != std::string_view::npos; };
  EXPECT(has("<｜User｜>") && has("<｜Assistant｜>"), "chat_template is not a DeepSeek template (no <｜User｜> / "
         "<｜Assistant｜>); choose one with --chat_template deepseek-v3|v3-0324|r1|v3.1");
  if (has("<｜Assistant｜></think>")) return ChatTemplate(ChatTemplateKind::kV3_1, false);
  // The R1 generation prompt, written in the Jinja source as '<think>\n' (backslash-n) or with a real newline.
  if (has("<｜Assistant｜><think>\\n") || has("<｜Assistant｜><think>\n")) return ChatTemplate(ChatTemplateKind::kR1, false);
  if (has("is_last_user") && has("message['content'] + '<｜Assistant｜>'"))
    return ChatTemplate(ChatTemplateKind::kV3_0324, has("split('</think>')"));
  if (has("<｜tool▁calls▁begin｜>") && !has("is_last_user") && !has("</think>"))
    return ChatTemplate(ChatTemplateKind::kV3, false);
  FAIL("unrecognized DeepSeek chat_template; choose one with --chat_template deepseek-v3|v3-0324|r1|v3.1");
}

ChatTemplate ChatTemplate::from_tokenizer_dir(const std::string& dir) {
  const auto path = std::filesystem::path(dir) / "tokenizer_config.json";
  std::ifstream f(path, std::ios::binary);
  EXPECT(f.good(), "cannot open {} (needed for its chat_template; or pass --chat_template NAME)", path.string());
  nlohmann::json cfg;
  try {
    cfg = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    FAIL("{}: invalid JSON: {}", path.string(), e.what());
  }
  EXPECT(cfg.contains("chat_template"), "{}: no chat_template (pass --chat_template NAME)", path.string());
  const auto& t = cfg["chat_template"];
  if (t.is_string()) return from_jinja(t.get<std::string>());
  // A list of named templates: use "default".
  EXPECT(t.is_array(), "{}: chat_template is neither a string nor a list", path.string());
  for (const auto& e : t)
    if (e.value("name", std::string()) == "default") return from_jinja(e.at("template").get<std::string>());
  FAIL("{}: chat_template has no 'default' entry", path.string());
}

std::string_view ChatTemplate::name() const {
  switch (kind_) {
    case ChatTemplateKind::kV3: return "deepseek-v3";
    case ChatTemplateKind::kV3_0324: return "v3-0324";
    case ChatTemplateKind::kR1: return "r1";
    case ChatTemplateKind::kV3_1: return "v3.1";
  }
  return "?";
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                 bool thinking) const {
  switch (kind_) {
    case ChatTemplateKind::kV3: return render_v3(messages, add_generation_prompt);
    case ChatTemplateKind::kV3_0324: return render_v3_0324(messages, add_generation_prompt, strip_think_);
    case ChatTemplateKind::kR1: return render_r1(messages, add_generation_prompt);
    case ChatTemplateKind::kV3_1: return render_v3_1(messages, add_generation_prompt, thinking);
  }
  return {};
}

std::vector<ChatMessage> parse_chat_messages(std::string_view json_text_in) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text_in);
  } catch (const nlohmann::json::exception& e) {
    FAIL("messages: invalid JSON: {}", e.what());
  }
  if (j.is_object() && j.contains("messages")) j = j["messages"];
  EXPECT(j.is_array(), "messages: expected a JSON list of messages (or an object with \"messages\")");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const auto& m = j[i];
    const std::string where = fmt::format("messages[{}]", i);
    EXPECT(m.is_object(), "{}: expected an object", where);
    EXPECT(m.contains("role") && m["role"].is_string(), "{}.role: missing or not a string", where);
    ChatMessage msg;
    msg.role = m["role"];
    EXPECT(msg.role == "system" || msg.role == "user" || msg.role == "assistant" || msg.role == "tool",
           "{}.role: '{}' is not system, user, assistant or tool", where, msg.role);
    msg.content_null = !m.contains("content") || m["content"].is_null();
    if (!msg.content_null) msg.content = json_text(m["content"], where + ".content");
    if (m.contains("reasoning_content")) msg.reasoning_content = json_text(m["reasoning_content"], where + ".reasoning_content");
    if (m.contains("prefix")) msg.prefix = m["prefix"].is_boolean() && m["prefix"].get<bool>();
    if (m.contains("tool_call_id") && m["tool_call_id"].is_string()) msg.tool_call_id = m["tool_call_id"];
    if (m.contains("name") && m["name"].is_string()) msg.name = m["name"];
    if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
      EXPECT(m["tool_calls"].is_array(), "{}.tool_calls: expected a list", where);
      for (size_t k = 0; k < m["tool_calls"].size(); ++k) {
        const auto& c = m["tool_calls"][k];
        const std::string cw = fmt::format("{}.tool_calls[{}]", where, k);
        EXPECT(c.is_object() && c.contains("function") && c["function"].is_object(), "{}.function: missing", cw);
        const auto& fn = c["function"];
        ToolCall call;
        if (c.contains("id") && c["id"].is_string()) call.id = c["id"];
        if (c.contains("type") && c["type"].is_string()) call.type = c["type"];
        EXPECT(fn.contains("name") && fn["name"].is_string(), "{}.function.name: missing or not a string", cw);
        call.name = fn["name"];
        if (fn.contains("arguments")) {
          call.arguments = fn["arguments"].is_string() ? fn["arguments"].get<std::string>() : fn["arguments"].dump();
        }
        msg.tool_calls.push_back(std::move(call));
      }
    }
    out.push_back(std::move(msg));
  }
  return out;
}

}  // namespace dsv3
