// record_wordpiece.mjs - records llama.cpp's tokenization of tests/tok/corpus.json plus the
// WordPiece texts below for the BERT vocabulary ggml-vocab-bert-bge.gguf into
// tests/tok/expected/bert-bge.txt, and of a cased variant of it (the same file with
// tokenizer.ggml.normalizer.lowercase = false inserted as the first key, which also turns
// accent stripping off) into tests/tok/expected/bert-bge-cased.txt, which test_tok_wordpiece.c compares sov against. The
// reference is llama.cpp as shipped in npm's node-llama-cpp 3.22.1 (prebuilt linux-x64
// binary, vocabulary-only load). Same file format as record_expected.mjs. Run once:
//
//   node tests/tok/record_wordpiece.mjs [node_modules dir]   (default /work/peers/node_modules)
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath, pathToFileURL} from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.argv[2] ?? "/work/peers/node_modules";
const {getLlama} = await import(pathToFileURL(path.join(modules, "node-llama-cpp/dist/index.js")).href);
const shared = process.env.SOV_SHARED_MODELS ?? path.join(here, "../../../shared/models");
const corpus = JSON.parse(fs.readFileSync(path.join(here, "corpus.json"), "utf8"));
// what WordPiece does differently: specials in text, ## continuations, unknown words, case
// and accents, marks, CJK blocks, ASCII symbols vs other symbols, very long words
const extra = [
    "[CLS] a sentence [SEP] another [SEP]", "[MASK] is [UNK] [PAD] [unused0]", "##ing ## # playing",
    "unaffable unbelievably tokenization", "ÀÉÎÕÜ Çà Ñandú İstanbul ΣΑΣ ǅungla", "e\u0301 a\u0300\u0301 \u0301alone",
    "한국어 ㄱㄴㄷ ᄀᄁ 가각 힣", "𠀀𠀁 𪜀 㐀 丁 龥 豈 ＡＢＣ", "$100 + 5% ^ ` | ~ < > © ® ™ € £ ¥",
    "x".repeat(120), "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a\u0000b\ufffdc\u00adsoft\u200bzero", "word" + "\u0301".repeat(8), "1,234.56 1e-9 0x1F",
];
const texts = corpus.concat(extra);

// the vocabulary with one bool key inserted after the header (a vocabulary-only file has
// no tensors, so nothing after the keys needs realigning); test_tok_wordpiece.c builds the
// same bytes
function withBoolKey(buf, key, value) {
    const k = Buffer.from(key, "utf8");
    const kv = Buffer.alloc(8 + k.length + 4 + 1);
    kv.writeBigUInt64LE(BigInt(k.length), 0);
    k.copy(kv, 8);
    kv.writeUInt32LE(7, 8 + k.length); // GGUF bool
    kv.writeUInt8(value ? 1 : 0, 12 + k.length);
    const head = Buffer.from(buf.subarray(0, 24));
    head.writeBigUInt64LE(head.readBigUInt64LE(16) + 1n, 16);
    return Buffer.concat([head, kv, buf.subarray(24)]);
}

const llama = await getLlama({gpu: false, logLevel: "error", build: "never"});
const base = path.join(shared, "vocab", "ggml-vocab-bert-bge.gguf");
const cased = path.join(fs.mkdtempSync("/tmp/wpm-"), "bert-bge-cased.gguf");
fs.writeFileSync(cased, withBoolKey(fs.readFileSync(base), "tokenizer.ggml.normalizer.lowercase", false));
for (const [name, file] of [["bert-bge", base], ["bert-bge-cased", cased]]) {
const model = await llama.loadModel({modelPath: file, vocabOnly: true});
const t = model.tokens;
const n = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
const eog = [];
for (let id = 0; id < n; id++) if (model.isEogToken(id)) eog.push(id);
const lines = [
    `# bos ${t.bos ?? -1} eos ${t.eos ?? -1} eot ${t.eot ?? -1} add_bos ${t.shouldPrependBosToken ? 1 : 0} add_eos ${t.shouldAppendEosToken ? 1 : 0} n_vocab ${n}`,
    `# eog ${eog.join(" ")}`,
];
for (const text of texts) {
    const hex = Buffer.from(text, "utf8").toString("hex");
    const a = Array.from(model.tokenize(text, true)).join(" ");
    const b = Array.from(model.tokenize(text, false)).join(" ");
    lines.push(`${hex}\t${a}\t${b}`);
}
fs.mkdirSync(path.join(here, "expected"), {recursive: true});
fs.writeFileSync(path.join(here, "expected", `${name}.txt`), lines.join("\n") + "\n");
console.log(`${name}: ${texts.length} texts, ${eog.length} end-of-generation tokens`);
await model.dispose();
}
await llama.dispose();
