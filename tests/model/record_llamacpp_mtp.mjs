// Records llama.cpp's greedy tokens and next-token log-probabilities on a synthetic
// deepseek2 model with a multi-token-prediction block (nextn_predict_layers 1) into
// expected/mtp_llamacpp.json, the expectation test_deepseek_mtp.py holds sov to: llama.cpp
// de3ff81 loads the file's trunk and leaves the MTP block out of its forward pass, as sov
// does. (A file with A.X K1's post_ffw_norm it refuses: "wrong number of tensors; expected
// 98, got 94", so there is nothing to record for that.) The model is written by
// `sov gen-model` with the arguments recorded beside its results (synthetic vocabulary,
// fixed seed), so the test regenerates the identical file. At each of N steps llama.cpp's
// full next-token distribution (temperature 1, no truncation) is read, its argmax fed back
// (greedy), and the TOP best log-probabilities kept. llama.cpp runs through npm's
// node-llama-cpp (prebuilt bindings, llama.cpp de3ff81), KV cache F16, one thread. Not run
// in CI; to re-record:
//   mkdir -p /tmp/ref && cd /tmp/ref && npm install --ignore-scripts node-llama-cpp@3.22.1
//   cp <sov>/tests/model/record_llamacpp_mtp.mjs . &&
//   node record_llamacpp_mtp.mjs <sov>/build/sov <sov>/tests/model/expected
import {execFileSync} from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {fileURLToPath} from "node:url";

const N = 32;
const TOP = 16;
const CTX = 256;
// 24 fixed prompt ids (inside the 4096-token synthetic vocabulary)
const PROMPT = Array.from({length: 24}, (_, i) => 10 + ((i * 7919 + 13) % 4000));
const SHAPE = ["--dim", "256", "--layers", "3", "--heads", "4", "--kv-heads", "2", "--ffn", "512"];
const MODELS = [
    // DeepSeek-V3 / A.X K1 shape (q_lora, sigmoid gating with exp_probs_b, grouped top-k,
    // shared expert, a dense first layer) with one MTP block after its 3 layers
    {name: "deepseek2-mtp", args: ["--arch", "deepseek2", ...SHAPE, "--mtp", "1", "--seed", "35"]},
];

if (process.argv[2] === "--one") {
    const [, , , modelPath] = process.argv;
    const {getLlama} = await import("node-llama-cpp");
    const llama = await getLlama({gpu: false, build: "never"});
    const model = await llama.loadModel({modelPath});
    const ctx = await model.createContext({contextSize: CTX, threads: 1});
    const it = ctx.getSequence().evaluateWithMetadata(PROMPT, {probabilities: true},
                                                       {temperature: 1, topK: 0, topP: 1, minP: 0, seed: 1});
    const ids = [], top = [];
    let r = await it.next();
    for (let step = 0; step < N; step++) {
        const best = [...r.value.probabilities.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, TOP);
        ids.push(best[0][0]);
        top.push(best.map(([id, p]) => [id, Number(Math.log(p).toFixed(6))]));
        if (step + 1 < N) r = await it.next(best[0][0]); /* feed the argmax back: greedy */
    }
    process.stdout.write(JSON.stringify({ids, top}));
    process.exit(0);
}

const [sov, outDir] = process.argv.slice(2);
const self = fileURLToPath(import.meta.url);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "mtp-rec-"));
const records = MODELS.map(m => {
    const file = path.join(tmp, `${m.name}.gguf`);
    execFileSync(sov, ["gen-model", "-o", file, ...m.args], {stdio: "ignore"});
    const got = JSON.parse(execFileSync(process.execPath, [self, "--one", file],
                                        {stdio: ["ignore", "pipe", "ignore"]}).toString());
    fs.rmSync(file);
    return {name: m.name, gen_model_args: m.args, prompt_ids: PROMPT, ids: got.ids, top_logprobs: got.top};
});
fs.rmSync(tmp, {recursive: true});
const doc = {source: "llama.cpp de3ff81 via node-llama-cpp 3.22.1: greedy, next-token log-probabilities " +
             "(temperature 1, no truncation), KV cache F16, context " + CTX, n: N, top: TOP, records};
fs.writeFileSync(`${outDir}/mtp_llamacpp.json`, JSON.stringify(doc) + "\n");
console.log(`wrote ${outDir}/mtp_llamacpp.json`);
