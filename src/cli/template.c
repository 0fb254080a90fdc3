/* template.c - `sov template render`: a conversation through a chat template (the
 * model's own tokenizer.chat_template, or a .jinja file) printed exactly, for people
 * debugging a model's prompt and for the template tests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "gguf/gguf.h"

#define MAX_VARS 64

static void template_help(FILE *f) {
    fprintf(f,
            "usage: sov template render [-m MODEL.gguf | --template FILE.jinja] --messages FILE.json\n"
            "                           [--tools FILE.json] [--bos TEXT] [--eos TEXT]\n"
            "                           [--no-generation-prompt] [--var KEY=JSON]... [--now UNIXTIME]\n\n"
            "Renders the conversation with the chat template and prints the prompt exactly as the\n"
            "model would see it (no newline added). The interpreter follows Hugging Face's\n"
            "environment (python3-jinja2, trim_blocks, lstrip_blocks); see docs/CHAT-TEMPLATES.md.\n"
            "  -m, --model FILE        GGUF file whose tokenizer.chat_template to use (a\n"
            "                          vocabulary-only file will do); BOS/EOS texts from it\n"
            "  --template FILE         the Jinja template source instead\n"
            "  --messages FILE         JSON array of messages ({\"role\", \"content\", ...}); - for stdin\n"
            "  --tools FILE            JSON array of tools (OpenAI function schemas)\n"
            "  --bos TEXT, --eos TEXT  bos_token / eos_token (override the model's)\n"
            "  --no-generation-prompt  add_generation_prompt=false (default true)\n"
            "  --var KEY=JSON          another template variable, e.g. --var enable_thinking=false\n"
            "  --now UNIXTIME          the time strftime_now renders (default: now)\n");
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 14, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        if (f != stdin) fclose(f);
        return NULL;
    }
    for (size_t got = 1; got > 0;) {
        if (n + 1 >= cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b) {
                free(buf);
                if (f != stdin) fclose(f);
                return NULL;
            }
            buf = b;
        }
        got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
    }
    const bool bad = ferror(f);
    if (f != stdin) fclose(f);
    if (!buf || bad) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

static char *token_text(const sov_vocab *v, sov_token t) {
    if (t < 0) return NULL;
    const int32_t n = sov_token_to_piece(v, t, true, NULL, 0);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    sov_token_to_piece(v, t, true, s, n);
    s[n] = '\0';
    return s;
}

/* When sov's tokenizer does not support the file's vocabulary, its metadata still holds
 * the template and the BOS/EOS texts: read them with the GGUF reader. */
static char *meta_token(const gguf_file *g, const char *id_key) {
    uint32_t id;
    const gguf_kv *toks = gguf_find(g, "tokenizer.ggml.tokens");
    if (!gguf_get_u32(g, id_key, &id) || !toks || toks->type != GGUF_ARRAY || toks->arr_type != GGUF_STRING ||
        id >= toks->arr_n)
        return NULL;
    const gguf_str s = gguf_arr_str(toks, id);
    return strndup(s.ptr, (size_t)s.len);
}

static int render(int argc, char **argv) {
    const char *model = NULL, *tmpl_path = NULL, *msgs_path = NULL, *tools_path = NULL, *bos = NULL,
               *eos = NULL;
    const char *names[MAX_VARS], *values[MAX_VARS];
    size_t n_vars = 0;
    long now = 0;
    bool gen = true, bad = false;
    for (int i = 1; i < argc && !bad; i++) {
        const char *var = NULL;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            template_help(stdout);
            return 0;
        }
        if (cli_opt_str(argc, argv, &i, "-m", &model, &bad) ||
            cli_opt_str(argc, argv, &i, "--model", &model, &bad) ||
            cli_opt_str(argc, argv, &i, "--template", &tmpl_path, &bad) ||
            cli_opt_str(argc, argv, &i, "--messages", &msgs_path, &bad) ||
            cli_opt_str(argc, argv, &i, "--tools", &tools_path, &bad) ||
            cli_opt_str(argc, argv, &i, "--bos", &bos, &bad) ||
            cli_opt_str(argc, argv, &i, "--eos", &eos, &bad) ||
            cli_opt_int(argc, argv, &i, "--now", &now, &bad))
            continue;
        if (cli_flag(argv, &i, "--no-generation-prompt")) {
            gen = false;
            continue;
        }
        if (cli_opt_str(argc, argv, &i, "--var", &var, &bad)) {
            if (bad) break;
            const char *eq = strchr(var, '=');
            if (!eq || eq == var) return cli_error("template", "--var needs KEY=JSON, got '%s'", var);
            if (n_vars == MAX_VARS) return cli_error("template", "more than %d --var options", MAX_VARS);
            names[n_vars] = strndup(var, (size_t)(eq - var));
            values[n_vars++] = eq + 1;
            continue;
        }
        return cli_error("template", "unknown option '%s'; see sov template render --help", argv[i]);
    }
    int rc = 1;
    sov_vocab *vocab = NULL;
    sov_chat_template *t = NULL;
    char *src = NULL, *msgs = NULL, *tools = NULL, *vbos = NULL, *veos = NULL, *out = NULL;
    if (bad) goto done;
    if (!msgs_path) {
        rc = cli_error("template", "--messages FILE is required; see sov template render --help");
        goto done;
    }
    if (!!model == !!tmpl_path) {
        rc = cli_error("template", "give exactly one of -m MODEL.gguf and --template FILE.jinja");
        goto done;
    }
    size_t src_len = 0;
    const char *source;
    gguf_file *g = NULL;
    if (model) {
        sov_status st = sov_vocab_load(model, &vocab);
        if (st == SOV_ERR_UNSUPPORTED && gguf_open(model, &g) == SOV_OK) {
            gguf_str ts;
            if (gguf_get_str(g, "tokenizer.chat_template", &ts))
                src = strndup(ts.ptr, (size_t)(src_len = ts.len));
            vbos = meta_token(g, "tokenizer.ggml.bos_token_id");
            veos = meta_token(g, "tokenizer.ggml.eos_token_id");
            gguf_close(g);
            if (!src) {
                rc = cli_error("template", "%s has no tokenizer.chat_template; use --template FILE", model);
                goto done;
            }
            source = src;
        } else if (st) {
            rc = cli_status_error("template", st);
            goto done;
        } else
            source = sov_vocab_chat_template(vocab, &src_len);
        if (!source) {
            rc = cli_error("template", "%s has no tokenizer.chat_template; use --template FILE", model);
            goto done;
        }
        if (vocab) {
            vbos = token_text(vocab, sov_vocab_bos(vocab));
            veos = token_text(vocab, sov_vocab_eos(vocab));
        }
    } else {
        if (!(src = read_file(tmpl_path, &src_len))) {
            rc = cli_error("template", "cannot read %s", tmpl_path);
            goto done;
        }
        source = src;
    }
    if (!(msgs = read_file(msgs_path, NULL))) {
        rc = cli_error("template", "cannot read %s", msgs_path);
        goto done;
    }
    if (tools_path && !(tools = read_file(tools_path, NULL))) {
        rc = cli_error("template", "cannot read %s", tools_path);
        goto done;
    }
    sov_status st = sov_chat_template_compile(source, src_len, &t);
    if (st) {
        rc = cli_status_error("template", st);
        goto done;
    }
    const sov_chat_template_vars v = {.messages_json = msgs,
                                      .tools_json = tools,
                                      .bos_token = bos ? bos : vbos,
                                      .eos_token = eos ? eos : veos,
                                      .add_generation_prompt = gen,
                                      .extra_names = names,
                                      .extra_json = values,
                                      .n_extra = n_vars,
                                      .now = now};
    size_t len = 0;
    if ((st = sov_chat_template_render(t, &v, &out, &len))) {
        rc = cli_status_error("template", st);
        goto done;
    }
    rc = fwrite(out, 1, len, stdout) == len && fflush(stdout) == 0
             ? 0
             : cli_error("template", "cannot write the output");
done:
    for (size_t i = 0; i < n_vars; i++)
        free((char *)names[i]);
    free(out);
    free(src);
    free(msgs);
    free(tools);
    free(vbos);
    free(veos);
    sov_chat_template_free(t);
    sov_vocab_free(vocab);
    return rc;
}

int cmd_template(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        template_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "render")) return render(argc - 1, argv + 1);
    return cli_error("template", "unknown subcommand '%s'; the one there is: render", argv[1]);
}
