/* main.c - the sov command: dispatches to a subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} command;

static const command commands[] = {
    {"run", cmd_run, "generate text from a prompt (streams tokens), or chat"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server with continuous batching"},
    {"keys", cmd_keys, "tenants' API keys, limits and usage in the state store"},
    {"policy", cmd_policy, "check a data-handling policy file; redact personal data from text"},
    {"audit", cmd_audit, "verify, export and follow the tamper-evident audit log"},
    {"model", cmd_model, "sign models and verify their signatures (keygen, sign, verify)"},
    {"bench", cmd_bench, "measure prompt and generation speed (llama-bench style)"},
    {"pull", cmd_pull, "download a GGUF model from a Hugging Face-compatible hub (checked, resumable)"},
    {"models", cmd_models, "list local models: architecture, type, size, hash, signature"},
    {"doctor", cmd_doctor, "check the machine and configuration (OK / WARN / FAIL, what to do)"},
    {"inspect", cmd_inspect, "show a GGUF file's metadata and tensors"},
    {"template", cmd_template, "render a conversation through a chat template (Jinja)"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"detokenize", cmd_detokenize, "print the text of token ids"},
    {"embed", cmd_embed, "one embedding per input line (JSON arrays), for scripts"},
    {"gen-model", cmd_gen_model, "write a synthetic GGUF model with random weights"},
    {"quantize", cmd_quantize, "rewrite a model's weights in a smaller type (Q8_0, Q4_K_M, ...)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: sov <command> [options]   (sov <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nsov %s - a sovereign AI inference stack\n", SOV_VERSION_STRING);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("sov %s\n", SOV_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "sov: unknown command '%s'; run 'sov --help' for the list\n", argv[1]);
    return 2;
}
