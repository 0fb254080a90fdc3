/* gen_model.c - `sov gen-model`: write a synthetic GGUF model with random weights. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "model/synth.h"
#include "quant/quant.h"

static void help(FILE *f) {
    fprintf(f,
            "usage: sov gen-model -o OUT.gguf [options]\n\n"
            "Writes a model of a supported architecture and shape with seeded random weights\n"
            "(for tests and benchmarks: speed does not depend on the weights' values).\n\n"
            "  -o, --output PATH     file to write (required)\n"
            "  --arch NAME           llama (default), qwen2, qwen3, qwen2moe, qwen3moe, deepseek2, mistral, gemma3,\n"
            "                        phi3, exaone4, or the encoders bert, nomic-bert and nomic-bert-moe\n"
            "                        (embeddings only; --kv-heads, --tied and the rope options other than\n"
            "                        --rope-base do not apply)\n"
            "  --dim N               model width (default 256)\n"
            "  --layers N            blocks (default 4)\n"
            "  --heads N             query heads (default 8)\n"
            "  --kv-heads N          key/value heads (default 4)\n"
            "  --head-dim N          head size (default dim / heads)\n"
            "  --ffn N               feed-forward width (default 768; with llama experts, each expert's)\n"
            "  --experts N           mixture of experts: N experts per layer (llama: Mixtral-shaped;\n"
            "                        qwen3moe default 8; nomic-bert-moe: every second layer, default 8)\n"
            "  --experts-used K      experts each token is routed to (qwen3moe default 2)\n"
            "  --expert-ffn N        qwen3moe, qwen2moe, deepseek2: one expert's feed-forward width (default 64)\n"
            "  --shared-ffn N        qwen2moe: the shared expert's width (default 128)\n"
            "deepseek2 (defaults: 16 experts, 4 used, 2 groups, 1 used, 1 shared, 1 dense layer, sigmoid):\n"
            "  --shared-experts N    shared experts (-1: none)     --dense-layers N  leading dense layers (-1: none)\n"
            "  --expert-groups N     expert groups (-1: none)      --expert-groups-used N\n"
            "  --q-lora N            q_lora_rank (default 128; -1: plain attn_q)\n"
            "  --kv-lora N           kv_lora_rank (default 128)    --qk-nope N  non-rotated query/key dims (64)\n"
            "  --v-head N            value head size (default 64); --rope-dims: rotated dims (default 32)\n"
            "  --gating N            1 softmax (V2), 2 sigmoid with exp_probs_b (V3, default)\n"
            "  --post-norm           A.X K1: an RMSNorm of each MoE block's output (post_ffw_norm)\n"
            "  --mtp N               N multi-token-prediction blocks after --layers (nextn_predict_layers)\n"
            "  --vocab N             synthetic vocabulary size (default 4096)\n"
            "  --vocab-from FILE     copy the tokenizer of another GGUF (e.g. ../shared/models/vocab/*)\n"
            "  --ctx N               training context length to record (default 2048)\n"
            "  --type T              type of the layer matrices: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0\n"
            "                        Q4_K Q5_K Q6_K (default F32)\n"
            "  --embd-type T         token_embd.weight type (default: --type)\n"
            "  --output-type T       output.weight type (default: --type)\n"
            "  --tied                no output.weight: logits use the embedding\n"
            "  --rope-base F         rope.freq_base (default 10000; qwen2/qwen3 1e6)\n"
            "  --rope-scaling S      linear or yarn, with --rope-factor F\n"
            "  --rope-freqs          write a rope_freqs.weight tensor (Llama 3.1 style)\n"
            "  --rope-dims N         dimensions rotated per head (default: the head size)\n"
            "  --swa N               gemma3/exaone4 sliding window (default 16; 0: none)\n"
            "  --swa-pattern N       every N-th layer global, the others local (default gemma3 6,\n"
            "                        exaone4 4, at most --layers)\n"
            "  --seed N              random seed (default 1)\n"
            "  --name S              general.name\n"
            "  --pooling N           <arch>.pooling_type for embeddings: 0 none, 1 mean, 2 cls,\n"
            "                        3 last, 4 rank (default: no key, which means mean)\n"
            "\nexample (TinyLlama-1.1B shape, Q4_0):\n"
            "  sov gen-model -o tl.gguf --dim 2048 --layers 22 --heads 32 --kv-heads 4 --ffn 5632 \\\n"
            "      --vocab-from ../shared/models/vocab/ggml-vocab-llama-spm.gguf --type Q4_0\n");
}

static bool parse_type(const char *s, uint32_t *out) {
    int t = sov_type_from_name(s);
    if (t < 0) {
        fprintf(stderr, "sov gen-model: unknown type '%s'\n", s);
        return false;
    }
    *out = (uint32_t)t;
    return true;
}

int cmd_gen_model(int argc, char **argv) {
    sov_synth_params p = sov_synth_default_params();
    const char *out = NULL, *type = NULL, *embd_type = NULL, *output_type = NULL;
    bool bad = false;
    for (int i = 1; i < argc && !bad; i++) {
        long v;
        double d;
        if (cli_flag(argv, &i, "--help") || cli_flag(argv, &i, "-h")) {
            help(stdout);
            return 0;
        } else if (cli_opt_str(argc, argv, &i, "-o", &out, &bad) || cli_opt_str(argc, argv, &i, "--output", &out, &bad)) {
        } else if (cli_opt_str(argc, argv, &i, "--arch", &p.arch, &bad)) {
        } else if (cli_opt_int(argc, argv, &i, "--dim", &v, &bad)) p.n_embd = (int32_t)v;
        else if (cli_opt_int(argc, argv, &i, "--layers", &v, &bad)) p.n_layer = (int32_t)v;
        else if (cli_opt_int(argc, argv, &i, "--heads", &v, &bad)) p.n_head = (int32_t)v;
        else if (cli_opt_int(argc, argv, &i, "--kv-heads", &v, &bad)) p.n_head_kv = (int32_t)v;
        else if (cli_opt_int(argc, argv, &i, "--head-dim", &v, &bad)) p.head_dim = (int32_t)v;
        else if (cli_opt_int(argc, argv, &i, "--ffn", &v, &bad)) p.n_ff = (int32_t)v;
        else if (cli_opt_int(argc, argv, &i, "--experts", &v, &bad)) p.n_expert = (int32_t)v;
        else if (cli_opt_int(argc, argv, &i, "--experts-used", &v, &bad)) p.n_expert_used = (int32_t)v;
        else if (cli_opt_int(argc, argv, &i, "--expert-ffn", &v, &bad)) p.n_ff_exp = (int32_t)v;
        else if (cli_opt_int(argc, argv, &i, "--shared-ffn", &v, &bad)) p.n_ff_shexp = (int32_t)v;
        else if (cli_opt_int(argc, argv, &i, "--shared-experts", &v, &bad)) p.n_expert_shared = (int32_t)v;
        else if (cli_opt_int(argc, argv, &i, "--expert-groups", &v, &bad)) p.n_expert_groups = (int32_t)v;
        else if (cli_opt_int(argc, argv, &i, "--expert-groups-used", &v, &bad)) p.n_group_used = (int32_t)v;
        else if (cli_opt_int(argc, argv, &i, "--dense-layers", &v, &bad)) p.n_dense_lead = (int32_t)v;
        else if (cli_opt_int(argc, argv, &i, "--q-lora", &v, &bad)) p.n_lora_q = (int32_t)v;
        else if (cli_opt_int(argc, argv, &i, "--kv-lora", &v, &bad)) p.n_lora_kv = (int32_t)v;
        else if (cli_opt_int(argc, argv, &i, "--qk-nope", &v, &bad)) p.qk_nope = (int32_t)v;
        else if (cli_opt_int(argc, argv, &i, "--v-head", &v, &bad)) p.v_head = (int32_t)v;
        else if (cli_opt_int(argc, argv, &i, "--gating", &v, &bad)) p.expert_gating = (int32_t)v;
        else if (cli_flag(argv, &i, "--post-norm")) p.post_norm = true;
        else if (cli_opt_int(argc, argv, &i, "--mtp", &v, &bad)) p.n_mtp = (int32_t)v;
        else if (cli_opt_int(argc, argv, &i, "--vocab", &v, &bad)) p.n_vocab = (int32_t)v;
        else if (cli_opt_int(argc, argv, &i, "--ctx", &v, &bad)) p.n_ctx = (int32_t)v;
        else if (cli_opt_int(argc, argv, &i, "--seed", &v, &bad)) p.seed = (uint64_t)v;
        else if (cli_opt_float(argc, argv, &i, "--rope-base", &d, &bad)) p.rope_base = (float)d;
        else if (cli_opt_float(argc, argv, &i, "--rope-factor", &d, &bad)) p.rope_factor = (float)d;
        else if (cli_opt_str(argc, argv, &i, "--rope-scaling", &p.rope_scaling, &bad)) {
        } else if (cli_flag(argv, &i, "--rope-freqs")) p.rope_freqs = true;
        else if (cli_flag(argv, &i, "--tied")) p.tied = true;
        else if (cli_opt_int(argc, argv, &i, "--rope-dims", &v, &bad)) p.n_rot = (int32_t)v;
        else if (cli_opt_int(argc, argv, &i, "--swa", &v, &bad)) p.n_swa = (int32_t)v;
        else if (cli_opt_int(argc, argv, &i, "--swa-pattern", &v, &bad)) p.swa_pattern = (int32_t)v;
        else if (cli_opt_str(argc, argv, &i, "--vocab-from", &p.vocab_from, &bad)) {
        } else if (cli_opt_str(argc, argv, &i, "--type", &type, &bad)) {
        } else if (cli_opt_str(argc, argv, &i, "--embd-type", &embd_type, &bad)) {
        } else if (cli_opt_str(argc, argv, &i, "--output-type", &output_type, &bad)) {
        } else if (cli_opt_str(argc, argv, &i, "--name", &p.name, &bad)) {
        } else if (cli_opt_int(argc, argv, &i, "--pooling", &v, &bad)) {
            if (v < 0 || v > 1000) return cli_error("gen-model", "--pooling takes a number from 0 to 1000");
            p.has_pooling = true;
            p.pooling = (uint32_t)v;
        } else {
            return cli_error("gen-model", "unknown option '%s'; see sov gen-model --help", argv[i]);
        }
    }
    if (bad) return 2;
    if (!out) return cli_error("gen-model", "an output file is required (-o OUT.gguf); see --help");
    if (type && !parse_type(type, &p.type)) return 2;
    p.embd_type = p.output_type = p.type;
    if (embd_type && !parse_type(embd_type, &p.embd_type)) return 2;
    if (output_type && !parse_type(output_type, &p.output_type)) return 2;
    if (p.rope_scaling && !(p.rope_factor > 0))
        return cli_error("gen-model", "--rope-scaling needs --rope-factor F (F > 0)");
    sov_status st = sov_synth_write(&p, out, cli_progress, "writing");
    if (st) return cli_status_error("gen-model", st);
    fprintf(stderr, "wrote %s\n", out);
    return 0;
}
