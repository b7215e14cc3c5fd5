#!/usr/bin/env python3
"""jinja_reference.py: renders the DeepSeek chat templates with jinja2 configured as HF transformers configures it
(sandboxed, trim_blocks, lstrip_blocks, loop controls), as the reference of test_chat_template's JinjaReference test
(tests/unit/tokenizer). Prints a JSON list of {template, conversation, add_generation_prompt, thinking, text|error}.

usage: python3 jinja_reference.py CONVERSATIONS.json TEMPLATE_DIR
"""
import json
import os
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"


def main():
    conv_path, template_dir = sys.argv[1:3]
    with open(conv_path, encoding="utf-8") as f:
        conversations = json.load(f)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    out = []
    for name in ["v3", "v3-0324", "r1", "v3.1"]:
        with open(os.path.join(template_dir, name + ".jinja"), encoding="utf-8") as f:
            template = env.from_string(f.read())
        for conv in conversations:
            for gen in (True, False):
                for thinking in ((False, True) if name == "v3.1" else (False,)):
                    e = {"template": name, "conversation": conv["name"], "add_generation_prompt": gen,
                         "thinking": thinking}
                    try:
                        e["text"] = template.render(messages=conv["messages"], add_generation_prompt=gen,
                                                    thinking=thinking, bos_token=BOS, eos_token=EOS)
                    except Exception as ex:
                        e["error"] = f"{type(ex).__name__}: {ex}"
                    out.append(e)
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
