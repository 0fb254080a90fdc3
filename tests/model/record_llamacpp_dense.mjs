// Records llama.cpp's greedy tokens on synthetic gemma3 / phi3 / exaone4 models into
// expected/dense_greedy.json, the expectation test_dense_llamacpp.py holds sov to.
// Each model is written by `sov gen-model` with the arguments recorded beside its tokens
// (F32 weights, a real vocabulary from ../shared/models/vocab, fixed seed), so the test
// regenerates the identical file. llama.cpp runs through npm's node-llama-cpp (prebuilt
// bindings, llama.cpp de3ff81). Not run in CI; to re-record:
//   mkdir -p /tmp/ref && cd /tmp/ref && npm install --ignore-scripts node-llama-cpp@3.22.1
//   cp <sov>/tests/model/record_llamacpp_dense.mjs . &&
//   node record_llamacpp_dense.mjs <sov>/build/sov <sov>/../shared/models <sov>/tests/model/expected
// Each model runs in its own node process.
import {execFileSync} from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {fileURLToPath} from "node:url";

const N = 32;
const CTX = 2048;
// 24 fixed prompt ids (present in every vocabulary used below)
const PROMPT = Array.from({length: 24}, (_, i) => 10 + ((i * 7919 + 13) % 4000));
const SHAPE = ["--dim", "256", "--layers", "4", "--heads", "4", "--kv-heads", "2", "--ffn", "512"];
const MODELS = [
    {name: "gemma3", args: ["--arch", "gemma3", ...SHAPE, "--head-dim", "64", "--swa", "8", "--seed", "21"],
     vocab: "vocab/ggml-vocab-llama-spm.gguf"},
    {name: "phi3", args: ["--arch", "phi3", ...SHAPE, "--rope-dims", "48", "--seed", "22"],
     vocab: "vocab/ggml-vocab-phi-3.gguf"},
    // llama.cpp makes exaone4 hybrid (local layers, NoPE global ones) only for 64 layers
    {name: "exaone4-hybrid", args: ["--arch", "exaone4", "--dim", "64", "--layers", "64", "--heads", "2",
                                    "--kv-heads", "1", "--ffn", "128", "--swa", "8", "--seed", "23"],
     vocab: "vocab/ggml-vocab-gpt-2.gguf"},
    {name: "exaone4", args: ["--arch", "exaone4", ...SHAPE, "--swa", "0", "--seed", "24"],
     vocab: "vocab/ggml-vocab-gpt-2.gguf"},
];

if (process.argv[2] === "--one") {
    const [, , , modelPath] = process.argv;
    const {getLlama} = await import("node-llama-cpp");
    const llama = await getLlama({gpu: false, build: "never"});
    const model = await llama.loadModel({modelPath});
    const ctx = await model.createContext({contextSize: CTX, threads: 1});
    const out = [];
    for await (const t of ctx.getSequence().evaluate(PROMPT, {temperature: 0})) {
        out.push(t);
        if (out.length >= N) break;
    }
    process.stdout.write(JSON.stringify(out));
    process.exit(0);
}

const [sov, modelsDir, outDir] = process.argv.slice(2);
const self = fileURLToPath(import.meta.url);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "dense-rec-"));
const records = MODELS.map(m => {
    const file = path.join(tmp, `${m.name}.gguf`);
    execFileSync(sov, ["gen-model", "-o", file, ...m.args, "--vocab-from", path.join(modelsDir, m.vocab)],
                 {stdio: "ignore"});
    const ids = JSON.parse(execFileSync(process.execPath, [self, "--one", file],
                                        {stdio: ["ignore", "pipe", "ignore"]}).toString());
    fs.rmSync(file);
    return {name: m.name, gen_model_args: m.args, vocab: m.vocab, prompt_ids: PROMPT, ids};
});
fs.rmSync(tmp, {recursive: true});
const doc = {source: "llama.cpp de3ff81 via node-llama-cpp 3.22.1, greedy (temperature 0), context " + CTX,
             n: N, records};
fs.writeFileSync(`${outDir}/dense_greedy.json`, JSON.stringify(doc, null, 1) + "\n");
console.log(`wrote ${outDir}/dense_greedy.json`);
