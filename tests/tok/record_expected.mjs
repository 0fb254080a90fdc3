// record_expected.mjs - records llama.cpp's tokenization of tests/tok/corpus.json for the
// shared vocabularies (SentencePiece, byte-level BPE, Gemma 4, Unigram and, for the WordPiece
// tests to come, bert-bge) into tests/tok/expected/<vocab>.txt, which test_tok_reference.c
// compares sov against. The reference is llama.cpp as shipped in npm's node-llama-cpp
// 3.22.1 (its prebuilt linux-x64 binary, vocabulary-only load). Run once, from anywhere:
//
//   cd /work/ref && node /path/to/sov/tests/tok/record_expected.mjs [node_modules dir]
//
// (the argument defaults to /work/ref/node_modules). File format, one line each:
//   # bos <id> eos <id> eot <id> add_bos <0|1> add_eos <0|1> n_vocab <n>
//   # eog <id> <id> ...
//   <text as hex UTF-8> TAB <ids, parse_special> TAB <ids, no parse_special>
// Ids are space-separated; neither list has BOS/EOS (node-llama-cpp tokenizes with
// add_special off).
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath, pathToFileURL} from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.argv[2] ?? "/work/ref/node_modules";
const {getLlama} = await import(pathToFileURL(path.join(modules, "node-llama-cpp/dist/index.js")).href);
const shared = process.env.SOV_SHARED_MODELS ?? path.join(here, "../../../shared/models");
const corpus = JSON.parse(fs.readFileSync(path.join(here, "corpus.json"), "utf8"));
const all = ["llama-spm", "llama-bpe", "qwen2", "gpt-2", "phi-3", "deepseek-llm", "qwen35", "deepseek-coder",
             "falcon", "gemma-4", "nomic-bert-moe", "bert-bge"];
// SOV_VOCABS="qwen35 falcon" records only those
const vocabs = process.env.SOV_VOCABS ? process.env.SOV_VOCABS.split(/\s+/).filter(Boolean) : all;

const llama = await getLlama({gpu: false, logLevel: "error", build: "never"});
fs.mkdirSync(path.join(here, "expected"), {recursive: true});
for (const name of vocabs) {
    const model = await llama.loadModel({modelPath: path.join(shared, "vocab", `ggml-vocab-${name}.gguf`), vocabOnly: true});
    const t = model.tokens;
    const n = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
    const eog = [];
    for (let id = 0; id < n; id++) if (model.isEogToken(id)) eog.push(id);
    const lines = [
        `# bos ${t.bos ?? -1} eos ${t.eos ?? -1} eot ${t.eot ?? -1} add_bos ${t.shouldPrependBosToken ? 1 : 0} add_eos ${t.shouldAppendEosToken ? 1 : 0} n_vocab ${n}`,
        `# eog ${eog.join(" ")}`,
    ];
    for (const text of corpus) {
        const hex = Buffer.from(text, "utf8").toString("hex");
        const a = Array.from(model.tokenize(text, true)).join(" ");
        const b = Array.from(model.tokenize(text, false)).join(" ");
        lines.push(`${hex}\t${a}\t${b}`);
    }
    fs.writeFileSync(path.join(here, "expected", `${name}.txt`), lines.join("\n") + "\n");
    console.log(`${name}: ${corpus.length} texts, ${eog.length} end-of-generation tokens`);
    await model.dispose();
}
await llama.dispose();
