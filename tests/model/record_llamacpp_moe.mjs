// Records llama.cpp's greedy tokens and next-token log-probabilities on synthetic qwen2moe
// and deepseek2 models into expected/moe_llamacpp.json, the expectation
// test_moe_llamacpp.py holds sov to. Each model is written by `sov gen-model` with the
// arguments recorded beside its results (synthetic vocabulary, fixed seed), so the test
// regenerates the identical file. At each of N steps llama.cpp's full next-token
// distribution (temperature 1, no top-k/top-p/min-p: the softmax of its logits) is read,
// its argmax fed back (greedy), and the TOP best log-probabilities kept: log-probabilities
// are the logits up to one constant per step. llama.cpp runs through npm's node-llama-cpp
// (prebuilt bindings, llama.cpp de3ff81), KV cache F16, one thread. Not run in CI; to
// re-record:
//   mkdir -p /tmp/ref && cd /tmp/ref && npm install --ignore-scripts node-llama-cpp@3.22.1
//   cp <sov>/tests/model/record_llamacpp_moe.mjs . &&
//   node record_llamacpp_moe.mjs <sov>/build/sov <sov>/tests/model/expected
// Each model runs in its own node process.
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
    {name: "qwen2moe", args: ["--arch", "qwen2moe", ...SHAPE, "--experts", "8", "--experts-used", "2",
                              "--expert-ffn", "64", "--shared-ffn", "128", "--seed", "31"]},
    // DeepSeek-V3 / A.X K1 shape: q_lora, sigmoid gating with exp_probs_b, 16 experts in 2
    // groups (1 used), top-4, 1 shared expert, 1 dense layer, weights normalised x 2.5
    {name: "deepseek2-v3", args: ["--arch", "deepseek2", ...SHAPE, "--seed", "32"]},
    // DeepSeek-V2-Lite shape: plain attn_q, softmax gating, no groups, 2 shared experts
    {name: "deepseek2-v2lite", args: ["--arch", "deepseek2", ...SHAPE, "--q-lora", "-1", "--gating", "1",
                                      "--expert-groups", "-1", "--shared-experts", "2", "--type", "F16",
                                      "--seed", "33"]},
    // DeepSeek-V3's YaRN: factor 4 over an original context of 256, mscale_all_dim 1
    {name: "deepseek2-yarn", args: ["--arch", "deepseek2", ...SHAPE, "--rope-scaling", "yarn", "--rope-factor", "4",
                                    "--ctx", "1024", "--seed", "34"]},
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
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "moe-rec-"));
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
fs.writeFileSync(`${outDir}/moe_llamacpp.json`, JSON.stringify(doc) + "\n");
console.log(`wrote ${outDir}/moe_llamacpp.json`);
