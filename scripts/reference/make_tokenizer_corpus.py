#!/usr/bin/env python3
"""make_tokenizer_corpus.py: writes the tokenizer test corpus (tests/data/tokenizer/corpus.jsonl) and the chat
conversations (tests/data/tokenizer/conversations.json) that the C++ tests, the node parity test and
tokenizer_goldens.py all read. Deterministic; rerun after editing and commit the outputs.

usage: python3 scripts/reference/make_tokenizer_corpus.py [--tokenizer models/tokenizers/deepseek-v3] [--out tests/data/tokenizer]
"""
import argparse
import json
import os

ENGLISH = [
    "Hello world",
    " hello world ",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure they'll say it's fine, but we've seen what don't-care attitudes do; isn't it?",
    "HELLO World hello WORLD HeLLo",
    "Mr. O'Neil's 3rd-floor apartment (the one with a view!) costs $1,250/month.",
    "email: someone@example.com, url: https://example.com/path?q=1&r=two#frag",
    "\"Quoted\" 'single' `backtick` «guillemets» “curly” ‘quotes’ — em-dash – en-dash … ellipsis",
]
CODE = [
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "#include <cstdio>\nint main() {\n\tstd::printf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    "{\"key\": [1, 2.5, -3e10, true, null], \"nested\": {\"a\": \"b\"}}",
    "for (int i = 0; i < n; ++i) { a[i] += b[i] * c[i]; }  // fused multiply-add",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%son' ORDER BY id DESC;",
    "x = [i**2 for i in range(10) if i % 2 == 0]  # squares\r\nprint(x)\r\n",
    "<div class=\"a\"><p>html &amp; entities &lt;tag&gt;</p></div>",
    "    indented four\n\t\ttwo tabs\n  \t mixed\n",
]
NUMBERS = [
    "1234567890",
    "3.14159265358979 2.71828 -0.5 +7 1e-9 6.022e23",
    "1,000,000 and 12,345.67 and 2024-01-31T23:59:59Z",
    "0x1F 0b1010 0o777 #FF00AA",
    "１２３４５ full-width digits, ٠١٢٣٤٥٦٧٨٩ Arabic-Indic, १२३४५ Devanagari, ๑๒๓ Thai",
    "Ⅻ roman numeral ⅻ, ½ ¾ fractions, ² ³ superscripts, ① ② circled",
    "12345678901234567890123456789",
]
CJK = [
    "你好世界",
    "Hello 你好 World 世界!",
    "深度求索（DeepSeek）是一家专注于人工智能的公司。我们今天学习了很多新知识！",
    "日本語のテキスト：ひらがな、カタカナ、漢字を混ぜた文です。ｶﾀｶﾅ（半角）もあります。",
    "ラーメンを食べたい。東京タワーは333メートルです。",
    "龥龦 edge of the CJK range, 𠀀𠀁 extension B, 〇〆々 symbols",
    "中文English混合mixed文本text",
]
OTHER_SCRIPTS = [
    "안녕하세요, 세계! 한국어 텍스트입니다. 대한민국 서울특별시",
    "Привет, мир! Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Γειά σου Κόσμε! Ελληνικά κείμενα με τόνους: άέήίόύώ",
    "مرحبا بالعالم! هذا نص عربي مع تشكيل: مُحَمَّدٌ",
    "שלום עולם! טקסט בעברית",
    "नमस्ते दुनिया! यह हिन्दी पाठ है। क्षत्रिय, द्व्यक्षर",
    "สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่างระหว่างคำ",
    "Tiếng Việt có dấu: Xin chào thế giới, người Việt Nam",
]
EMOJI = [
    "Hello 🌍 World!",
    "family 👨‍👩‍👧‍👦 couple 👩‍❤️‍👨 technologist 🧑🏽‍💻",
    "thumbs 👍 👍🏻 👍🏼 👍🏽 👍🏾 👍🏿",
    "flags 🇺🇸🇨🇳🇯🇵🇩🇪 keycap 1️⃣ #️⃣ heart ❤️ vs ❤",
    "🎉🎉🎉🔥🔥💯😀😃😄😁😆😅🤣😂",
    "rainbow flag 🏳️‍🌈 and pirate 🏴‍☠️",
]
COMBINING = [
    "e\u0301 vs \u00e9, a\u0308 vs \u00e4, n\u0303 vs \u00f1",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u0334\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O\u0342\u030c\u030c\u0358\u0328\u0335\u0339\u033b\u031d\u0333",
    "\u0301 leading combining mark, q\u0307\u0323 stacked",
    "o\u0338 a\u20dd enclosing, 각 vs \u1100\u1161\u11a8 conjoining jamo",
]
WHITESPACE = [
    "",
    " ",
    "  ",
    "    ",
    "\n",
    "\n\n\n",
    "\r\n",
    "\t",
    "a  b   c    d",
    "trailing spaces   ",
    "   leading spaces",
    "line1\nline2\n\nline4\n\n\n\nline8",
    "windows\r\nline\r\nendings\r\n",
    "mixed \t \n \r\n  \t\t\n   x",
    "no-break\u00a0space, ideographic\u3000space, em\u2003space, thin\u2009space, narrow\u202fnbsp",
    "line\u2028separator and paragraph\u2029separator",
    "zero\u200bwidth space, zero\u200cwidth non-joiner, zero\u200dwidth joiner",
    "ends with newline\n",
    "  \n  \n",
]
LONG = [
    "a" * 500,
    "supercalifragilisticexpialidocious" * 12,
    "1" * 301,
    "漢" * 300,
    " " * 1000,
    "\n" * 200,
    "ab" * 400 + " " + "xy" * 100,
    "Pneumonoultramicroscopicsilicovolcanoconiosis Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch",
    "-" * 300 + "=" * 200,
    "😀" * 100,
]
CONTROL = [
    "null\u0000byte",
    "bell\u0007 escape\u001b[31mred\u001b[0m delete\u007f",
    "private use \ue000\uf8ff and \U0010ffff max code point, noncharacter \uffff",
    "replacement char \ufffd in text",
]
LOOKALIKE = [
    "<|User|>hi<|Assistant|>",
    "<｜User>not a token<｜Assistant",
    "<｜user｜> lower case",
    "<｜begin▁of▁sentence｜ > with a space",
    "<think>reasoning</think> answer",
    "<|EOT <|EOT|> <<|EOT|>> <|EOT|><|EOT|>",
    "<｜place▁holder▁no▁800｜> does not exist, <｜place▁holder▁no▁7｜>x exists",
    "<｜tool▁call▁begin｜ <｜tool▁call｜> <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>",
    "<<｜User｜>> and <｜<｜User｜>｜>",
    "text<｜end▁of▁sentence｜>more text<｜end▁of▁sentence｜>",
    "< ｜User｜ >",
]
# Characters on which the npm package's JavaScript regexes disagree with HF's Oniguruma ones; the node test knows
# these lines (see test_tokenizer_node.cpp).
KNOWN_JS_DIFF = [
    "next \u0085 line: NEL is \\s for Oniguruma and dsv3, not for JavaScript",
    "byte  \ufeff order mark: U+FEFF is \\s for JavaScript only",
    "shaking face \U0001fae8 (Unicode 15; PCRE2 10.42 has Unicode 14)",
]


def special_lines(tokenizer_dir):
    path = os.path.join(tokenizer_dir, "tokenizer.json")
    with open(path, encoding="utf-8") as f:
        added = json.load(f)["added_tokens"]
    contents = [a["content"] for a in added]
    lines = []
    for i in range(0, len(contents), 64):  # every added token, 64 per line, in text and back to back
        chunk = contents[i:i + 64]
        lines.append(" ".join(chunk))
        lines.append("".join(chunk))
    named = [c for c in contents if "place▁holder" not in c]
    for c in named:
        lines.append(f"before{c}after")
        lines.append(f" {c} ")
    return lines


def conversations():
    tool_call = lambda name, args, cid: {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
    return [
        {"name": "single_user", "messages": [{"role": "user", "content": "Hello!"}]},
        {"name": "system_multi_turn", "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4."},
            {"role": "user", "content": "And 3+3?\nExplain."}]},
        {"name": "ends_with_assistant", "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"}]},
        {"name": "tool_call_single", "messages": [
            {"role": "system", "content": "You can call tools."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None,
             "tool_calls": [tool_call("get_weather", "{\"city\": \"Paris\"}", "call_0")]},
            {"role": "tool", "tool_call_id": "call_0", "content": "{\"temp_c\": 18}"},
            {"role": "assistant", "content": "It is 18 °C in Paris."},
            {"role": "user", "content": "Thanks"}]},
        {"name": "tool_call_multi", "messages": [
            {"role": "user", "content": "Weather in Paris and Tokyo?"},
            {"role": "assistant", "content": None, "tool_calls": [
                tool_call("get_weather", "{\"city\": \"Paris\"}", "call_0"),
                tool_call("get_weather", "{\"city\": \"Tokyo\"}", "call_1")]},
            {"role": "tool", "tool_call_id": "call_0", "content": "18"},
            {"role": "tool", "tool_call_id": "call_1", "content": "25"}]},
        {"name": "tool_call_with_content", "messages": [
            {"role": "user", "content": "Find the file."},
            {"role": "assistant", "content": "Let me search.",
             "tool_calls": [tool_call("search", "{\"q\": \"file\"}", "call_0")]},
            {"role": "tool", "tool_call_id": "call_0", "content": "found: a.txt"},
            {"role": "assistant", "content": "It is a.txt."}]},
        {"name": "think_history", "messages": [
            {"role": "user", "content": "Is 7 prime?"},
            {"role": "assistant", "content": "<think>\n7 has no divisors but 1 and 7.\n</think>\n\nYes, 7 is prime."},
            {"role": "user", "content": "Is 9?"}]},
        {"name": "think_twice", "messages": [
            {"role": "user", "content": "Q"},
            {"role": "assistant", "content": "<think>a</think>mid</think>end"},
            {"role": "user", "content": "Q2"}]},
        {"name": "assistant_prefix", "messages": [
            {"role": "user", "content": "Write a haiku."},
            {"role": "assistant", "content": "Autumn moonlight", "prefix": True}]},
        {"name": "unicode_content", "messages": [
            {"role": "system", "content": "多语言助手 🌍"},
            {"role": "user", "content": "こんにちは\n\nПривет <|EOT|> 👨‍👩‍👧"}]},
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default="models/tokenizers/deepseek-v3")
    ap.add_argument("--out", default="tests/data/tokenizer")
    args = ap.parse_args()
    lines = (ENGLISH + CODE + NUMBERS + CJK + OTHER_SCRIPTS + EMOJI + COMBINING + WHITESPACE + LONG + CONTROL +
             LOOKALIKE + special_lines(args.tokenizer) + KNOWN_JS_DIFF)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    with open(os.path.join(args.out, "conversations.json"), "w", encoding="utf-8") as f:
        json.dump(conversations(), f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(lines)} corpus lines and {len(conversations())} conversations to {args.out}")


if __name__ == "__main__":
    main()
