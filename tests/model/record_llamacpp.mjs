// Records llama.cpp's greedy continuations of fixed prompts on the real model in
// ../shared/models (prompt token ids and 96 generated ids each) into
// expected/stories260K_greedy.json, the expectation test_stories_greedy.py holds sov to.
// llama.cpp runs through npm's node-llama-cpp (prebuilt bindings). Not run in CI; to
// re-record:
//   mkdir -p /tmp/ref && cd /tmp/ref && npm install --ignore-scripts node-llama-cpp@3.22.1
//   cp <sov>/tests/model/record_llamacpp.mjs . && node record_llamacpp.mjs <sov>/../shared/models <sov>/tests/model/expected
// Each prompt runs in its own node process: node-llama-cpp does not let a sequence whose
// generation was stopped early be reused.
import {execFileSync} from "node:child_process";
import fs from "node:fs";
import {fileURLToPath} from "node:url";

const prompts = ["Once upon a time", "The little dog", "Lily and Ben went to the park", "Tom had a red ball. He",
                 "One day, a cat", "The sun was"];
const N = 96;

if (process.argv[2] === "--one") {
    const [, , , modelsDir, text] = process.argv;
    const {getLlama} = await import("node-llama-cpp");
    const llama = await getLlama({gpu: false, build: "never"});
    const model = await llama.loadModel({modelPath: `${modelsDir}/stories260K.gguf`});
    const ctx = await model.createContext({contextSize: 512});
    const prompt = [model.tokens.bos, ...model.tokenize(text, false)];
    const out = [];
    for await (const t of ctx.getSequence().evaluate(prompt, {temperature: 0})) {
        out.push(t);
        if (out.length >= N || t === model.tokens.eos) break;
    }
    process.stdout.write(JSON.stringify({prompt: text, prompt_ids: prompt, ids: out, text: model.detokenize(out)}));
    process.exit(0);
}

const [modelsDir, outDir] = process.argv.slice(2);
const self = fileURLToPath(import.meta.url);
const records = prompts.map(p => JSON.parse(execFileSync(process.execPath, [self, "--one", modelsDir, p],
                                                         {stdio: ["ignore", "pipe", "ignore"]}).toString()));
const doc = {source: "llama.cpp de3ff81 via node-llama-cpp 3.22.1, greedy (temperature 0)", model: "stories260K.gguf",
             n: N, records};
fs.writeFileSync(`${outDir}/stories260K_greedy.json`, JSON.stringify(doc, null, 1) + "\n");
console.log(`wrote ${outDir}/stories260K_greedy.json`);
