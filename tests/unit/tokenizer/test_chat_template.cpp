// test_chat_template.cpp: DeepSeek chat templates (tests/unit/tokenizer). Expected prompts are worked out by hand
// from the Jinja sources in tests/data/tokenizer/templates (and model-spec.md §7.3); jinja2 (configured as HF
// transformers configures it) renders every template x conversation in JinjaReference; node renders V3/V3-0324 in
// test_tokenizer_node and HF transformers renders all four in the goldens.
#include <cstdio>

#include "dsv3/base/error.h"
#include "dsv3/tokenizer/chat_template.h"
#include "tokenizer_test_util.h"

namespace dsv3 {
namespace {

const std::string B = "<｜begin▁of▁sentence｜>", E = "<｜end▁of▁sentence｜>", U = "<｜User｜>", A = "<｜Assistant｜>";
const std::string CSB = "<｜tool▁calls▁begin｜>", CSE = "<｜tool▁calls▁end｜>", CB = "<｜tool▁call▁begin｜>",
                  CE = "<｜tool▁call▁end｜>", SEP = "<｜tool▁sep｜>", OSB = "<｜tool▁outputs▁begin｜>",
                  OSE = "<｜tool▁outputs▁end｜>", OB = "<｜tool▁output▁begin｜>", OE = "<｜tool▁output▁end｜>";

std::vector<ChatMessage> conversation(const std::string& name) {
  for (const auto& c : test::read_conversations())
    if (c["name"] == name) return parse_chat_messages(c["messages"].dump());
  ADD_FAILURE() << "no conversation " << name;
  return {};
}

std::string render(const char* tmpl, const std::string& conv, bool gen, bool thinking = false) {
  return ChatTemplate::from_name(tmpl).render(conversation(conv), gen, thinking);
}

TEST(ChatTemplate, V3PlainChat) {
  EXPECT_EQ(render("deepseek-v3", "system_multi_turn", true),
            B + "You are a helpful assistant.\n\nAnswer briefly." + U + "What is 2+2?" + A + "4." + E + U +
                "And 3+3?\nExplain." + A);
  EXPECT_EQ(render("deepseek-v3", "system_multi_turn", false),
            B + "You are a helpful assistant.\n\nAnswer briefly." + U + "What is 2+2?" + A + "4." + E + U +
                "And 3+3?\nExplain.");
  EXPECT_EQ(render("deepseek-v3", "ends_with_assistant", false), B + U + "Hi" + A + "Hello! How can I help?" + E);
}

TEST(ChatTemplate, V3ToolCallsKeepTheTemplateDefect) {
  // A single call is never closed (model-spec §7.3 "known defect"); a second call closes the turn.
  const std::string call = "function" + SEP + "get_weather\n```json\n{\"city\": \"Paris\"}\n```" + CE;
  EXPECT_EQ(render("deepseek-v3", "tool_call_single", true),
            B + "You can call tools." + U + "Weather in Paris?" + A + CSB + CB + call + OSB + OB + "{\"temp_c\": 18}" +
                OE + OSE + "It is 18 °C in Paris." + E + U + "Thanks" + A);
  const std::string tokyo = "function" + SEP + "get_weather\n```json\n{\"city\": \"Tokyo\"}\n```" + CE;
  EXPECT_EQ(render("deepseek-v3", "tool_call_multi", true),
            B + U + "Weather in Paris and Tokyo?" + A + CSB + CB + call + "\n" + CB + tokyo + CSE + E + OSB + OB +
                "18" + OE + "\n" + OB + "25" + OE + OSE);  // ends in tool outputs: no generation prompt
}

TEST(ChatTemplate, V3_0324) {
  // The assistant tag follows every user turn; the generation prompt only when the last turn was not the user's.
  EXPECT_EQ(render("v3-0324", "system_multi_turn", true), render("v3-0324", "system_multi_turn", false));
  EXPECT_EQ(render("v3-0324", "system_multi_turn", true), render("deepseek-v3", "system_multi_turn", true));
  const std::string call = "function" + SEP + "get_weather\n```json\n{\"city\": \"Paris\"}\n```" + CE;
  EXPECT_EQ(render("v3-0324", "tool_call_single", true),
            B + "You can call tools." + U + "Weather in Paris?" + A + CSB + CB + call + CSE + E + OSB + OB +
                "{\"temp_c\": 18}" + OE + OSE + "It is 18 °C in Paris." + E + U + "Thanks" + A);
  EXPECT_EQ(render("v3-0324", "tool_call_with_content", true),
            B + U + "Find the file." + A + "Let me search." + CSB + CB + "function" + SEP +
                "search\n```json\n{\"q\": \"file\"}\n```" + CE + CSE + E + OSB + OB + "found: a.txt" + OE + OSE +
                "It is a.txt." + E + A);
}

TEST(ChatTemplate, R1StripsPastReasoning) {
  EXPECT_EQ(render("r1", "think_history", true),
            B + U + "Is 7 prime?" + A + "\n\nYes, 7 is prime." + E + U + "Is 9?" + A + "<think>\n");
  EXPECT_EQ(render("r1", "think_twice", false), B + U + "Q" + A + "end" + E + U + "Q2");  // after the LAST </think>
  // Later tool outputs are not separated by "\n" in this revision of the R1 template.
  const std::string call = [](const char* city) {
    return std::string("function") + "<｜tool▁sep｜>" + "get_weather\n```json\n{\"city\": \"" + city + "\"}\n```" +
           "<｜tool▁call▁end｜>";
  }("Paris");
  EXPECT_EQ(render("r1", "tool_call_multi", true),
            B + U + "Weather in Paris and Tokyo?" + A + CSB + CB + call + "\n" + CB + "function" + SEP +
                "get_weather\n```json\n{\"city\": \"Tokyo\"}\n```" + CE + CSE + E + OSB + OB + "18" + OE + OB + "25" +
                OE + OSE);
}

TEST(ChatTemplate, V3_1ThinkingOnAndOff) {
  EXPECT_EQ(render("v3.1", "think_history", true, false),
            B + U + "Is 7 prime?" + A + "</think>" + "\n\nYes, 7 is prime." + E + U + "Is 9?" + A + "</think>");
  EXPECT_EQ(render("v3.1", "think_history", true, true),
            B + U + "Is 7 prime?" + A + "</think>" + "\n\nYes, 7 is prime." + E + U + "Is 9?" + A + "<think>");
  EXPECT_EQ(render("v3.1", "think_twice", false), B + U + "Q" + A + "</think>mid</think>end" + E + U + "Q2");
  EXPECT_EQ(render("v3.1", "assistant_prefix", false, true), B + U + "Write a haiku." + A + "<think>Autumn moonlight" + E);
  EXPECT_EQ(render("v3.1", "assistant_prefix", false, false), B + U + "Write a haiku." + A + "</think>Autumn moonlight" + E);
  EXPECT_EQ(render("v3.1", "tool_call_single", true),
            B + "You can call tools." + U + "Weather in Paris?" + A + "</think>" + CSB + CB + "get_weather" + SEP +
                "{\"city\": \"Paris\"}" + CE + CSE + E + OB + "{\"temp_c\": 18}" + OE + "It is 18 °C in Paris." + E +
                U + "Thanks" + A + "</think>");
  // After tool outputs there is no generation prompt in V3.1.
  EXPECT_EQ(render("v3.1", "tool_call_multi", true),
            B + U + "Weather in Paris and Tokyo?" + A + "</think>" + CSB + CB + "get_weather" + SEP +
                "{\"city\": \"Paris\"}" + CE + CB + "get_weather" + SEP + "{\"city\": \"Tokyo\"}" + CE + CSE + E + OB +
                "18" + OE + OB + "25" + OE);
}

TEST(ChatTemplate, RecognizedFromJinja) {
  const std::string dir = test::tokenizer_data_dir() + "/templates/";
  EXPECT_EQ(ChatTemplate::from_jinja(test::read_file(dir + "v3.jinja")).kind(), ChatTemplateKind::kV3);
  EXPECT_EQ(ChatTemplate::from_jinja(test::read_file(dir + "v3-0324.jinja")).kind(), ChatTemplateKind::kV3_0324);
  EXPECT_EQ(ChatTemplate::from_jinja(test::read_file(dir + "r1.jinja")).kind(), ChatTemplateKind::kR1);
  EXPECT_EQ(ChatTemplate::from_jinja(test::read_file(dir + "v3.1.jinja")).kind(), ChatTemplateKind::kV3_1);
  EXPECT_THROW(ChatTemplate::from_jinja("{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}"), Error);
  EXPECT_THROW(ChatTemplate::from_name("chatml"), Error);
  EXPECT_EQ(ChatTemplate::from_name("deepseek-r1").name(), "r1");
}

TEST(ChatTemplate, FromTheRealTokenizerConfig) {
  DSV3_REQUIRE_DEEPSEEK_TOKENIZER(tok);
  const ChatTemplate t = ChatTemplate::from_tokenizer_dir(test::deepseek_tokenizer_dir());
  EXPECT_EQ(t.kind(), ChatTemplateKind::kV3);
  // Encoded without adding special tokens, the prompt has exactly one BOS, and the markers are single tokens.
  const auto ids = tok->encode(t.render(conversation("system_multi_turn"), true), false);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), 0);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 0), 1);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 128803), 2);  // <｜User｜>
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 128804), 2);  // <｜Assistant｜>
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 1), 1);       // <｜end▁of▁sentence｜> after "4."
  EXPECT_EQ(ids.back(), 128804);
}

TEST(ChatTemplate, JinjaReference) {
  const std::string cmd = std::string("/usr/bin/python3 '") + DSV3_SOURCE_DIR + "/tests/unit/tokenizer/jinja_reference.py' '" +
                          test::tokenizer_data_dir() + "/conversations.json' '" + test::tokenizer_data_dir() +
                          "/templates' 2>&1";
  std::string out;
  int rc = -1;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[65536];
    for (size_t n; (n = fread(buf, 1, sizeof(buf), p)) > 0;) out.append(buf, n);
    rc = pclose(p);
  }
  if (rc != 0 && out.find("No module named 'jinja2'") != std::string::npos)
    GTEST_SKIP() << "python3-jinja2 is not installed (bash scripts/setup.sh installs it)";
  ASSERT_EQ(rc, 0) << out;
  const auto ref = nlohmann::json::parse(out);
  std::map<std::string, std::vector<ChatMessage>> conversations;
  for (const auto& c : test::read_conversations()) conversations[c["name"]] = parse_chat_messages(c["messages"].dump());
  ASSERT_EQ(ref.size(), 100u);  // 10 conversations x (3 templates x 2 + V3.1 x 2 x 2)
  for (const auto& e : ref) {
    const std::string what = e["template"].get<std::string>() + " / " + e["conversation"].get<std::string>() +
                             (e["add_generation_prompt"].get<bool>() ? " +gen" : "") +
                             (e["thinking"].get<bool>() ? " +thinking" : "");
    ASSERT_TRUE(e.contains("text")) << what << ": " << e["error"];
    const ChatTemplate t = ChatTemplate::from_jinja(
        test::read_file(test::tokenizer_data_dir() + "/templates/" + e["template"].get<std::string>() + ".jinja"));
    EXPECT_EQ(t.render(conversations.at(e["conversation"]), e["add_generation_prompt"], e["thinking"]),
              e["text"].get<std::string>())
        << what;
  }
}

TEST(ChatTemplate, ParseMessages) {
  const auto msgs = parse_chat_messages(R"({"messages": [
      {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
      {"role": "assistant", "content": null, "reasoning_content": "hmm",
       "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "ok"}]})");
  ASSERT_EQ(msgs.size(), 3u);
  EXPECT_EQ(msgs[0].content, "ab");
  EXPECT_TRUE(msgs[1].content_null);
  EXPECT_EQ(msgs[1].reasoning_content, "hmm");
  ASSERT_EQ(msgs[1].tool_calls.size(), 1u);
  EXPECT_EQ(msgs[1].tool_calls[0].name, "f");
  EXPECT_EQ(msgs[1].tool_calls[0].arguments, "{\"x\":1}");
  EXPECT_EQ(msgs[2].tool_call_id, "c1");
  auto error_of = [](const char* text) -> std::string {
    try {
      parse_chat_messages(text);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(error_of(R"([{"role": "user", "content": "x"}, {"role": "robot", "content": "y"}])").find("messages[1].role"),
            std::string::npos);
  EXPECT_NE(error_of(R"([{"content": "x"}])").find("messages[0].role"), std::string::npos);
  EXPECT_NE(error_of(R"([{"role": "user", "content": 5}])").find("messages[0].content"), std::string::npos);
  EXPECT_NE(error_of("{not json").find("invalid JSON"), std::string::npos);
}

}  // namespace
}  // namespace dsv3
