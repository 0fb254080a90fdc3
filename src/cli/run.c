/* run.c - `sov run`: generate text from a prompt, streaming tokens as they come, or chat.
 *
 * The prompt is evaluated in batches of up to n_batch tokens (logits only for the last),
 * then one token at a time is sampled and fed back. Chat mode renders the conversation
 * with the model's template; each turn re-renders the whole conversation, keeps the
 * cached positions that still match and evaluates only the rest. Timings go to stderr. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/status.h"
#include "core/util.h"
#include "sign/sign.h"

enum { MAX_STOPS = 16, MAX_TURNS = 256 };

typedef struct run_opts {
    const char *model, *prompt, *file, *system, *chat_template;
    const char *trusted_keys; /* run the model only if one of these keys signed it */
    const char *chat_template_file; /* Jinja template instead of the model's own */
    long n_predict, n_ctx, n_batch, threads;
    cli_split split; /* --tp/--ep/--pp: ranks the model is split across (cli/tp.c) */
    bool chat, ignore_eos, show_prompt;
    sov_kv_type kv_k, kv_v;
    const char *stops[MAX_STOPS];
    size_t n_stops;
    sov_sampler_params sp;
} run_opts;

typedef struct run_state {
    const sov_model *model;
    const sov_vocab *vocab;
    sov_context *ctx;
    sov_seq_id seq;
    float *logits;
    int32_t n_vocab;
    sov_token *cached; /* tokens whose positions are in the cache, in order */
    int32_t n_cached, cap_cached;
    /* totals for the report */
    double prompt_s, gen_s;
    long prompt_tokens, gen_tokens;
} run_state;

static void help(FILE *f) {
    fprintf(f,
            "usage: sov run [-m MODEL.gguf] [-p TEXT | -f FILE] [options]\n\n"
            "Generates text after the prompt and streams it to stdout; load time, prompt and\n"
            "generation speed go to stderr. Without -m it runs the built-in demo model (random\n"
            "weights, so its output is gibberish: use a real GGUF file for real text).\n\n"
            "  -m, --model FILE        GGUF model\n"
            "  -p, --prompt TEXT       prompt (default \"Once upon a time\")\n"
            "  -f, --file FILE         read the prompt from a file\n"
            "  -n, --n-predict N       tokens to generate (default 128; -1: until end of text or context)\n"
            "  -c, --ctx N             context length (default: the model's, at most 4096)\n"
            "  -b, --batch N           prompt tokens per forward pass (default 512)\n"
            "  -t, --threads N         threads (default: physical cores)\n"
            CLI_TP_HELP
            "  --temp F                temperature (default 0.8; 0 = greedy)\n"
            "  --top-k N               (default 40; 0 = off)\n"
            "  --top-p F               (default 0.95; 1 = off)\n"
            "  --min-p F               (default 0.05; 0 = off)\n"
            "  --repeat-penalty F      (default 1.0 = off)\n"
            "  --repeat-last-n N       window of the penalties (default 64)\n"
            "  --presence-penalty F    (default 0)\n"
            "  --frequency-penalty F   (default 0)\n"
            "  --seed N                random seed (default 0); same seed, same output\n"
            "  --stop TEXT             stop when this text is generated (repeatable)\n"
            "  --ignore-eos            keep generating past end-of-text tokens\n"
            "  --chat                  apply the model's chat template; interactive when stdin is\n"
            "                          a terminal, else one turn per stdin line (or just -p)\n"
            "  --system TEXT           system message for --chat\n"
            "  --chat-template NAME    use a built-in template family instead of the model's own\n"
            "                          Jinja template (chatml, llama3, llama2, mistral, gemma, zephyr,\n"
            "                          phi3, ...)\n"
            "  --chat-template-file F  render the chat with this Jinja template (docs/CHAT-TEMPLATES.md)\n"
            CLI_KV_TYPE_HELP
            "  --no-display-prompt     do not echo the prompt\n"
            "  --trusted-keys DIR      run the model only if a key in DIR (*.pub) signed it as it is\n"
            "                          (docs/SIGNING.md; the file is hashed while it loads)\n");
}

static int parse_args(int argc, char **argv, run_opts *o) {
    bool bad = false;
    for (int i = 1; i < argc && !bad; i++) {
        long v;
        double d;
        if (cli_flag(argv, &i, "--help") || cli_flag(argv, &i, "-h")) {
            help(stdout);
            exit(0);
        } else if (cli_opt_str(argc, argv, &i, "-m", &o->model, &bad) ||
                   cli_opt_str(argc, argv, &i, "--model", &o->model, &bad) ||
                   cli_opt_str(argc, argv, &i, "-p", &o->prompt, &bad) ||
                   cli_opt_str(argc, argv, &i, "--prompt", &o->prompt, &bad) ||
                   cli_opt_str(argc, argv, &i, "-f", &o->file, &bad) ||
                   cli_opt_str(argc, argv, &i, "--file", &o->file, &bad) ||
                   cli_opt_str(argc, argv, &i, "--system", &o->system, &bad) ||
                   cli_opt_str(argc, argv, &i, "--chat-template", &o->chat_template, &bad) ||
                   cli_opt_str(argc, argv, &i, "--chat-template-file", &o->chat_template_file, &bad) ||
                   cli_opt_str(argc, argv, &i, "--trusted-keys", &o->trusted_keys, &bad)) {
        } else if (cli_opt_int(argc, argv, &i, "-n", &o->n_predict, &bad) ||
                   cli_opt_int(argc, argv, &i, "--n-predict", &o->n_predict, &bad) ||
                   cli_opt_int(argc, argv, &i, "-c", &o->n_ctx, &bad) ||
                   cli_opt_int(argc, argv, &i, "--ctx", &o->n_ctx, &bad) ||
                   cli_opt_int(argc, argv, &i, "-b", &o->n_batch, &bad) ||
                   cli_opt_int(argc, argv, &i, "--batch", &o->n_batch, &bad) ||
                   cli_opt_int(argc, argv, &i, "-t", &o->threads, &bad) ||
                   cli_opt_int(argc, argv, &i, "--threads", &o->threads, &bad) ||
                   cli_opt_split(argc, argv, &i, &o->split, &bad)) {
        } else if (cli_opt_float(argc, argv, &i, "--temp", &d, &bad)) o->sp.temperature = (float)d;
        else if (cli_opt_int(argc, argv, &i, "--top-k", &v, &bad)) o->sp.top_k = (int32_t)v;
        else if (cli_opt_float(argc, argv, &i, "--top-p", &d, &bad)) o->sp.top_p = (float)d;
        else if (cli_opt_float(argc, argv, &i, "--min-p", &d, &bad)) o->sp.min_p = (float)d;
        else if (cli_opt_float(argc, argv, &i, "--repeat-penalty", &d, &bad)) o->sp.repeat_penalty = (float)d;
        else if (cli_opt_int(argc, argv, &i, "--repeat-last-n", &v, &bad)) o->sp.repeat_last_n = (int32_t)v;
        else if (cli_opt_float(argc, argv, &i, "--presence-penalty", &d, &bad)) o->sp.presence_penalty = (float)d;
        else if (cli_opt_float(argc, argv, &i, "--frequency-penalty", &d, &bad)) o->sp.frequency_penalty = (float)d;
        else if (cli_opt_int(argc, argv, &i, "--seed", &v, &bad)) o->sp.seed = (uint64_t)v;
        else if (cli_flag(argv, &i, "--stop")) {
            if (i + 1 >= argc) return cli_error("run", "--stop needs a text");
            if (o->n_stops == MAX_STOPS) return cli_error("run", "at most %d --stop strings", MAX_STOPS);
            o->stops[o->n_stops++] = argv[++i];
        } else if (cli_flag(argv, &i, "--chat")) o->chat = true;
        else if (cli_flag(argv, &i, "--ignore-eos")) o->ignore_eos = true;
        else if (cli_opt_kv_type(argc, argv, &i, &o->kv_k, &o->kv_v, &bad)) {
        }
        else if (cli_flag(argv, &i, "--no-display-prompt")) o->show_prompt = false;
        else return cli_error("run", "unknown option '%s'; see sov run --help", argv[i]);
    }
    if (bad) return 2;
    if (o->prompt && o->file) return cli_error("run", "give the prompt with -p or -f, not both");
    if (o->n_predict < -1) return cli_error("run", "-n must be -1 or more");
    if (o->n_ctx < 0 || o->n_batch < 0 || o->threads < 0 || o->n_ctx > (1 << 24) || o->n_batch > 65536 ||
        o->threads > 1024)
        return cli_error("run", "-c, -b and -t must be positive and sensible");
    return 0;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error("run", "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (n + 1 == cap) {
            char *p = realloc(buf, cap *= 2);
            if (!p) {
                free(buf);
                buf = NULL;
            }
            buf = p;
        }
    }
    fclose(f);
    if (!buf) cli_error("run", "out of memory reading '%s'", path);
    else buf[n] = '\0';
    return buf;
}

/* ---- evaluation ---- */

static bool remember(run_state *s, const sov_token *t, int32_t n) {
    if (s->n_cached + n > s->cap_cached) {
        int32_t cap = s->cap_cached ? s->cap_cached : 256;
        while (cap < s->n_cached + n) cap *= 2;
        sov_token *p = realloc(s->cached, (size_t)cap * sizeof *p);
        if (!p) return false;
        s->cached = p;
        s->cap_cached = cap;
    }
    memcpy(s->cached + s->n_cached, t, (size_t)n * sizeof *t);
    s->n_cached += n;
    return true;
}

/* Feeds tokens into the sequence in batches; s->logits holds the last token's logits. */
static sov_status eval(run_state *s, const sov_token *toks, int32_t n, int32_t n_batch) {
    sov_token *tk = malloc((size_t)n_batch * sizeof *tk);
    sov_seq_id *sq = malloc((size_t)n_batch * sizeof *sq);
    int32_t *ps = malloc((size_t)n_batch * sizeof *ps);
    uint8_t *lg = calloc((size_t)n_batch, 1);
    sov_status st = (tk && sq && ps && lg) ? SOV_OK : SOV_ERR_NOMEM;
    for (int32_t at = 0; at < n && !st; at += n_batch) {
        const int32_t m = SOV_MIN(n_batch, n - at);
        const int32_t base = sov_seq_length(s->ctx, s->seq);
        for (int32_t i = 0; i < m; i++) {
            tk[i] = toks[at + i];
            sq[i] = s->seq;
            ps[i] = base + i;
            lg[i] = at + i == n - 1;
        }
        const sov_batch b = {m, tk, sq, ps, lg};
        st = sov_decode(s->ctx, &b, s->logits);
        if (!st && !remember(s, tk, m)) st = SOV_ERR_NOMEM;
    }
    free(tk);
    free(sq);
    free(ps);
    free(lg);
    return st;
}

/* Prints the complete UTF-8 characters of pending text, keeping a trailing partial one. */
static void emit(const char *text, size_t n) {
    if (n == 0) return;
    fwrite(text, 1, n, stdout);
    fflush(stdout);
}

static size_t utf8_complete_prefix(const char *s, size_t n) {
    size_t i = n, back = 0;
    while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) {
        i--;
        back++;
    }
    if (i == 0) return n;
    const unsigned char lead = (unsigned char)s[i - 1];
    const size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return (back + 1 >= need || need == 1) ? n : i - 1;
}

/* Samples up to n_predict tokens after what is in the cache, streaming the text. */
static sov_status generate(run_state *s, const run_opts *o, sov_sampler *smp, int32_t n_ctx) {
    sov_stopper *stop = NULL;
    sov_status st = sov_stopper_new(o->stops, o->n_stops, &stop);
    if (st) return st;
    char pending[256];
    size_t n_pending = 0;
    bool stopped = false;
    const double t0 = sov_now_s();
    long produced = 0;
    for (long i = 0; (o->n_predict < 0 || i < o->n_predict) && !stopped; i++) {
        if (sov_seq_length(s->ctx, s->seq) >= n_ctx) {
            fprintf(stderr, "\n[context full: %d tokens]\n", n_ctx);
            break;
        }
        const sov_token t = sov_sampler_sample(smp, s->logits);
        sov_sampler_accept(smp, t);
        produced++;
        if (!o->ignore_eos && sov_vocab_is_eog(s->vocab, t)) break;
        char piece[256];
        int32_t len = sov_token_to_piece(s->vocab, t, false, piece, sizeof piece);
        if (len < 0) len = 0;
        if (len > (int32_t)sizeof piece) len = sizeof piece;
        if (n_pending + (size_t)len > sizeof pending) n_pending = 0; /* cannot happen with real tokens */
        memcpy(pending + n_pending, piece, (size_t)len);
        n_pending += (size_t)len;
        const size_t ready = utf8_complete_prefix(pending, n_pending);
        if (ready) {
            const char *out;
            const size_t n_out = sov_stopper_feed(stop, pending, ready, &out, &stopped);
            emit(out, n_out);
            memmove(pending, pending + ready, n_pending - ready);
            n_pending -= ready;
        }
        if (stopped) break;
        if ((st = eval(s, &t, 1, 1))) break;
    }
    if (!stopped) {
        const char *out = NULL;
        size_t n_out = n_pending ? sov_stopper_feed(stop, pending, n_pending, &out, &stopped) : 0;
        emit(out, n_out);
        if (!stopped) {
            n_out = sov_stopper_flush(stop, &out);
            emit(out, n_out);
        }
    }
    s->gen_s += sov_now_s() - t0;
    s->gen_tokens += produced;
    sov_stopper_free(stop);
    return st;
}

/* Tokenizes text (special tokens parsed) into a fresh array. */
static sov_token *tokenize(const sov_vocab *v, const char *text, bool add_special, int32_t *n_out) {
    const size_t len = strlen(text);
    int32_t cap = (int32_t)SOV_MIN(len + 8, (size_t)INT32_MAX / 8);
    sov_token *t = malloc((size_t)cap * sizeof *t);
    if (!t) return NULL;
    int32_t n = sov_tokenize(v, text, len, add_special, true, t, cap);
    if (n > cap) {
        sov_token *p = realloc(t, (size_t)n * sizeof *t);
        if (!p) {
            free(t);
            return NULL;
        }
        t = p;
        n = sov_tokenize(v, text, len, add_special, true, t, n);
    }
    if (n < 0) {
        free(t);
        return NULL;
    }
    *n_out = n;
    return t;
}

/* Evaluates the prompt tokens that differ from what is cached, reusing the common prefix. */
static sov_status feed_prompt(run_state *s, const sov_token *toks, int32_t n, int32_t n_batch, int32_t n_ctx) {
    int32_t common = 0;
    while (common < n && common < s->n_cached && toks[common] == s->cached[common]) common++;
    if (common == n && n > 0) common--; /* re-evaluate the last token to get its logits */
    if (n >= n_ctx)
        return sov_fail(SOV_ERR_CONTEXT, "the prompt has %d tokens, more than the context of %d (raise -c)", n, n_ctx);
    sov_status st = sov_seq_truncate(s->ctx, s->seq, common);
    if (st) return st;
    s->n_cached = common;
    const double t0 = sov_now_s();
    st = eval(s, toks + common, n - common, n_batch);
    s->prompt_s += sov_now_s() - t0;
    s->prompt_tokens += n - common;
    return st;
}

static void report(const run_state *s, double load_s) {
    fprintf(stderr, "\n\nload %.2f s | prompt %ld tokens, %.1f tokens/s | generation %ld tokens, %.1f tokens/s\n",
            load_s, s->prompt_tokens, s->prompt_s > 0 ? (double)s->prompt_tokens / s->prompt_s : 0.0,
            s->gen_tokens, s->gen_s > 0 ? (double)s->gen_tokens / s->gen_s : 0.0);
}

/* One chat turn: append the user's message, render, evaluate, generate, keep the reply. */
static int chat_turn(run_state *s, const run_opts *o, const sov_chat_template *jt, sov_sampler *smp,
                     sov_chat_message *msgs, size_t *n_msgs, const char *user, int32_t n_ctx, int32_t n_batch) {
    if (*n_msgs + 2 > MAX_TURNS) return cli_error("run", "the conversation is too long");
    msgs[(*n_msgs)++] = (sov_chat_message){"user", strdup(user)};
    char *prompt = NULL;
    if (jt) { /* the model's own (or --chat-template-file) Jinja template */
        const sov_status jst = sov_chat_template_apply(jt, s->vocab, msgs, *n_msgs, true, &prompt);
        if (jst) return cli_status_error("run", jst);
    } else {
        int32_t need = sov_chat_apply(s->vocab, o->chat_template, msgs, *n_msgs, true, NULL, 0);
        if (need < 0) return cli_status_error("run", (sov_status)-need);
        prompt = malloc((size_t)need + 1);
        if (!prompt) return cli_error("run", "out of memory");
        sov_chat_apply(s->vocab, o->chat_template, msgs, *n_msgs, true, prompt, need + 1);
    }
    int32_t n;
    sov_token *toks = tokenize(s->vocab, prompt, true, &n);
    free(prompt);
    if (!toks) return cli_error("run", "cannot tokenize the conversation: %s", sov_last_error());
    sov_status st = feed_prompt(s, toks, n, n_batch, n_ctx);
    free(toks);
    if (st) return cli_status_error("run", st);
    const int32_t before = s->n_cached;
    st = generate(s, o, smp, n_ctx);
    if (st) return cli_status_error("run", st);
    /* the reply's text is what the model produced after the prompt */
    char reply[65536];
    const int32_t len = sov_detokenize(s->vocab, s->cached + before, s->n_cached - before, false, false, reply,
                                       sizeof reply);
    reply[len < 0 ? 0 : SOV_MIN(len, (int32_t)sizeof reply - 1)] = '\0';
    msgs[(*n_msgs)++] = (sov_chat_message){"assistant", strdup(reply)};
    fputc('\n', stdout);
    return 0;
}

static int run_chat(run_state *s, const run_opts *o, sov_sampler *smp, int32_t n_ctx, int32_t n_batch) {
    sov_chat_template *jt = NULL; /* --chat-template NAME picks a built-in family instead */
    if (!o->chat_template && cli_chat_template_load("run", o->chat_template_file, s->vocab, &jt)) return 1;
    const char *family = o->chat_template ? o->chat_template : sov_chat_template_detect(s->vocab);
    if (!jt && !family) {
        return cli_error("run", "the model has no chat template sov recognises; pass --chat-template NAME "
                                "(chatml, llama3, llama2, mistral, gemma, zephyr, phi3, ...) or "
                                "--chat-template-file FILE");
    }
    if (!jt) fprintf(stderr, "chat template: %s\n", family);
    sov_chat_message msgs[MAX_TURNS];
    size_t n_msgs = 0;
    if (o->system) msgs[n_msgs++] = (sov_chat_message){"system", strdup(o->system)};
    int rc = 0;
    const bool tty = isatty(STDIN_FILENO);
    if (o->prompt || o->file) {
        rc = chat_turn(s, o, jt, smp, msgs, &n_msgs, o->prompt, n_ctx, n_batch);
    } else {
        char line[16384];
        for (;;) {
            if (tty) {
                fprintf(stderr, "\n> ");
                fflush(stderr);
            }
            if (!fgets(line, sizeof line, stdin)) break;
            line[strcspn(line, "\r\n")] = '\0';
            if (!line[0]) continue;
            if ((rc = chat_turn(s, o, jt, smp, msgs, &n_msgs, line, n_ctx, n_batch))) break;
        }
    }
    for (size_t i = 0; i < n_msgs; i++) free((char *)msgs[i].content);
    sov_chat_template_free(jt);
    return rc;
}

int cmd_run(int argc, char **argv) {
    run_opts o = {.n_predict = 128, .show_prompt = true, .sp = sov_sampler_default_params()};
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc;
    char demo[1024];
    if (!o.model) {
        if (cli_demo_model_path(demo, sizeof demo)) return 1;
        o.model = demo;
        fprintf(stderr, "sov: no -m given: running the built-in DEMO model, which has RANDOM WEIGHTS —\n"
                        "     its output is gibberish by design. For real text: sov run -m MODEL.gguf\n");
    }
    char *file_text = NULL;
    if (o.file && !(file_text = read_file(o.file))) return 1;
    if (file_text) o.prompt = file_text;
    if (!o.prompt && !o.chat) o.prompt = "Once upon a time";

    const double t_load = sov_now_s();
    sign_record signature = {0};
    if (o.trusted_keys && cli_signed_before_load("run", o.trusted_keys, o.model, &signature)) {
        free(file_text);
        return 1;
    }
    sov_tp *tp = NULL;
    if (cli_tp_start("run", &o.split, argc, argv, &tp)) {
        free(file_text);
        return 1;
    }
    sov_model_params mp = sov_model_default_params();
    mp.progress = sov_tp_rank(tp) == 0 ? cli_progress : NULL;
    mp.progress_user = "loading";
    mp.digest = o.trusted_keys != NULL;
    mp.tp = tp;
    sov_model *model = NULL;
    sov_status st = sov_model_load(o.model, &mp, &model);
    if (st) {
        free(file_text);
        sov_tp_free(tp);
        return cli_status_error("run", st);
    }
    if (sov_tp_rank(tp) > 0) {
        free(file_text);
        return cli_tp_worker("run", model, tp);
    }
    sov_model_info info;
    sov_model_get_info(model, &info);
    if (o.trusted_keys && cli_signed_after_load("run", &signature, o.model, &info)) {
        sov_model_free(model);
        sov_tp_free(tp);
        free(file_text);
        return 1;
    }
    sov_context_params cp = sov_context_default_params();
    cp.n_ctx = (int32_t)o.n_ctx;
    cli_warn_ctx("run", &info, o.n_ctx);
    cp.n_batch = (int32_t)(o.n_batch ? o.n_batch : 512);
    cp.n_threads = (int32_t)o.threads;
    cp.kv_type = o.kv_k;
    cp.kv_type_v = o.kv_v;
    run_state s = {.model = model, .vocab = sov_model_vocab(model), .n_vocab = info.n_vocab};
    sov_sampler *smp = NULL;
    st = sov_context_new(model, &cp, &s.ctx);
    if (!st) st = sov_seq_new(s.ctx, &s.seq);
    if (!st) st = sov_sampler_new(&o.sp, info.n_vocab, &smp);
    if (!st && !(s.logits = malloc((size_t)info.n_vocab * sizeof(float)))) st = SOV_ERR_NOMEM;
    const double load_s = sov_now_s() - t_load;
    if (!st) {
        fprintf(stderr, "model: %s (%s, %s, %.1fM params) | %d threads | %s kernels | context %d\n",
                info.name[0] ? info.name : o.model, info.arch, info.weight_type, (double)info.n_params / 1e6,
                sov_context_threads(s.ctx), sov_context_isa(s.ctx), cp.n_ctx ? cp.n_ctx : SOV_MIN(info.n_ctx_train, 4096));
        const int32_t n_ctx = cp.n_ctx ? cp.n_ctx : SOV_MIN(info.n_ctx_train, 4096);
        if (o.chat) {
            rc = run_chat(&s, &o, smp, n_ctx, cp.n_batch);
        } else {
            int32_t n;
            sov_token *toks = tokenize(s.vocab, o.prompt, true, &n);
            if (!toks) {
                rc = cli_error("run", "cannot tokenize the prompt: %s", sov_last_error());
            } else {
                for (int32_t i = 0; i < n; i++) sov_sampler_accept(smp, toks[i]);
                if (o.show_prompt) {
                    fputs(o.prompt, stdout);
                    fflush(stdout);
                }
                st = n > 0 ? feed_prompt(&s, toks, n, cp.n_batch, n_ctx)
                           : sov_fail(SOV_ERR_ARG, "the prompt is empty");
                if (!st) st = generate(&s, &o, smp, n_ctx);
                if (st) rc = cli_status_error("run", st);
                free(toks);
            }
        }
        report(&s, load_s);
    } else {
        rc = cli_status_error("run", st);
    }
    free(s.logits);
    free(s.cached);
    sov_sampler_free(smp);
    sov_context_free(s.ctx);
    sov_model_free(model);
    sov_tp_free(tp);
    free(file_text);
    return rc;
}
