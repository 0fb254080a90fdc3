// Records how real chat templates render fixed conversations, with an independent Jinja
// implementation (npm's @huggingface/jinja), into tests/tok/expected_chat/*.txt, which
// test_chat.c compares sov's renderer with byte for byte. Not run in CI. To re-record:
//   cd /tmp/ref && npm install --ignore-scripts @huggingface/jinja
//   node <sov>/tests/tok/record_chat.mjs <sov>/../shared/models/vocab <llama.cpp>/models/templates <sov>/tests/tok/expected_chat
// Templates come from the vocabulary files in ../shared (read here) and from llama.cpp's
// collection of real templates (read at recording time only; not copied into sov). The
// leading BOS a template writes is dropped: sov adds BOS at tokenization.
import fs from "node:fs";
import {createRequire} from "node:module";

const require = createRequire(process.cwd() + "/");
const {Template} = require("@huggingface/jinja");
const [vocabDir, tmplDir, outDir] = process.argv.slice(2);

// the chat template of a GGUF file (a minimal reader: keys until tokenizer.chat_template)
function ggufTemplate(path) {
    const b = fs.readFileSync(path);
    const key = Buffer.from("tokenizer.chat_template");
    const at = b.indexOf(key);
    if (at < 0) throw new Error("no template in " + path);
    const len = Number(b.readBigUInt64LE(at + key.length + 4));
    return b.subarray(at + key.length + 12, at + key.length + 12 + len).toString("utf8");
}

const conv = {
    user: [{role: "user", content: "Hello! 안녕하세요?"}],
    full: [{role: "system", content: "You are terse.\n"}, {role: "user", content: "What is 2+2?"},
           {role: "assistant", content: " 4. "}, {role: "user", content: "And 3+3?"}],
    nosys: [{role: "user", content: "Name a color."}, {role: "assistant", content: "Blue."},
            {role: "user", content: "Another?"}],
};

const cases = [
    {name: "qwen2-user", family: "chatml", vocab: "qwen2", conv: "user"},
    {name: "qwen2-full", family: "chatml", vocab: "qwen2", conv: "full"},
    {name: "qwen2-nogen", family: "chatml", vocab: "qwen2", conv: "nosys", gen: false},
    {name: "phi3-user", family: "phi3", vocab: "phi-3", conv: "user"},
    {name: "phi3-nosys", family: "phi3", vocab: "phi-3", conv: "nosys"},
    {name: "qwen2.5-full", family: "chatml", file: "Qwen-Qwen2.5-7B-Instruct.jinja", conv: "full"},
    {name: "qwen2.5-user", family: "chatml", file: "Qwen-Qwen2.5-7B-Instruct.jinja", conv: "user"},
    {name: "phi3.5-full", family: "phi3", file: "microsoft-Phi-3.5-mini-instruct.jinja", conv: "full"},
    {name: "llama3.1-full", family: "llama3", file: "meta-llama-Llama-3.1-8B-Instruct.jinja", conv: "full"},
    {name: "llama3.1-user", family: "llama3", file: "meta-llama-Llama-3.1-8B-Instruct.jinja", conv: "user"},
    {name: "llama3.2-nosys", family: "llama3", file: "meta-llama-Llama-3.2-3B-Instruct.jinja", conv: "nosys"},
    {name: "gemma2-nosys", family: "gemma", file: "google-gemma-2-2b-it.jinja", conv: "nosys"},
];

const bosOf = {qwen2: "<|endoftext|>", "phi-3": "<s>"};
for (const c of cases) {
    const src = c.vocab ? ggufTemplate(`${vocabDir}/ggml-vocab-${c.vocab}.gguf`) : fs.readFileSync(`${tmplDir}/${c.file}`, "utf8");
    const bos = c.vocab ? bosOf[c.vocab] : (c.family === "gemma" ? "<bos>" : c.family === "llama3" ? "<|begin_of_text|>" : "<s>");
    const eos = c.family === "llama3" ? "<|eot_id|>" : c.family === "gemma" ? "<eos>" : c.vocab === "qwen2" ? "<|endoftext|>" : "</s>";
    const gen = c.gen !== false;
    let out = new Template(src).render({messages: conv[c.conv], bos_token: bos, eos_token: eos,
                                        add_generation_prompt: gen, date_string: "26 Jul 2024"});
    if (out.startsWith(bos)) out = out.slice(bos.length);
    const sys = (src.match(/<\|im_start\|>system(?:\n|\\n)([^{}'"+\\]*?)<\|im_end\|>/) || [])[1] || "";
    const lines = [`family ${c.family}`, `vocab ${c.vocab || "-"}`, `gen ${gen ? 1 : 0}`, `bos ${bos}`, `eos ${eos}`,
                   `date 26 Jul 2024`, `default_system ${JSON.stringify(sys)}`, `conv ${c.conv}`];
    // output last, as its byte length then the bytes
    const body = Buffer.from(out, "utf8");
    fs.writeFileSync(`${outDir}/${c.name}.txt`, Buffer.concat([Buffer.from(lines.join("\n") + `\noutput ${body.length}\n`), body]));
    console.log(`${c.name}: ${body.length} bytes`);
}
