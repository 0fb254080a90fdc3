/* serve.c - `sov serve`: the OpenAI-compatible HTTP server (src/server) over one model.
 *
 * Loads the model (progress on stderr), sizes the context for --parallel sequences of
 * --ctx positions sharing a KV pool of --kv-cache-mb, and runs the server until SIGTERM
 * or SIGINT. Without -m it serves the built-in demo model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/util.h"
#include "policy/policy.h"
#include "server/server.h"
#include "sign/sign.h"
#include "tenants/tenants.h"

typedef struct serve_opts {
    const char *model, *host, *alias, *ready_file, *db, *sched;
    long port, parallel, n_ctx, kv_mb, threads, n_batch, queue, body_kb, http_timeout;
    double timeout, shutdown_timeout;
    bool kv_f32, metrics_open;
    const char *trusted_keys; /* refuse a model not signed by one of the keys in this folder */
} serve_opts;

static void help(FILE *f) {
    fprintf(
        f, "usage: sov serve [-m MODEL.gguf] [--host 127.0.0.1] [--port 8080] [--parallel N] [--ctx TOKENS]\n"
           "                 [--kv-cache-mb MB] [-t THREADS] [options]\n\n"
           "Serves the model over HTTP with the OpenAI API: POST /v1/chat/completions and\n"
           "/v1/completions (streaming or not), GET /v1/models, /health, /ready, /metrics.\n"
           "Requests are batched continuously: every running stream advances one token per step\n"
           "and new prompts join as room allows. Without -m it serves the built-in demo model\n"
           "(random weights: gibberish by design).\n\n"
           "  -m, --model FILE        GGUF model\n"
           "  --host ADDR             address to listen on (default 127.0.0.1)\n"
           "  --port N                port (default 8080; 0: any free port)\n"
           "  -np, --parallel N       sequences generating at once (default 16)\n"
           "  -c, --ctx N             positions per sequence (default: the model's, at most 4096)\n"
           "  --kv-cache-mb MB        KV cache pool shared by all sequences and the prefix cache\n"
           "                          (default: room for every sequence's full context, at most 2048)\n"
           "  -t, --threads N         threads for the forward pass (default: physical cores)\n"
           "  -b, --batch N           tokens per engine step: prompt chunks share it with the streams\n"
           "                          (default 512)\n"
           "  --queue N               requests that may wait beyond --parallel; more get 429 (default 256)\n"
           "  --timeout S             per-request deadline in seconds (default 600; 0: none)\n"
           "  --shutdown-timeout S    after SIGTERM, how long running requests may finish (default 30)\n"
           "  --max-body-kb KB        largest request body (default 4096)\n"
           "  --http-timeout S        idle connection timeout (default 60)\n"
           "  --alias NAME            the model id clients use (default: the file name without .gguf)\n"
           "  --kv-f32                keep the KV cache in float32 (default float16)\n"
           "  --ready-file FILE       write \"HOST PORT\" there once listening (for scripts)\n\n"
           "Tenants (docs/TENANTS.md):\n"
           "  --db DB                 state store: a SQLite file or a postgresql:// URL (or SOV_DB).\n"
           "                          Once it holds an API key (sov keys create), every /v1 request\n"
           "                          needs one; keys' model lists, limits and usage apply. Without\n"
           "                          --db the server is open to anyone who can reach it.\n"
           "  --metrics-open          serve /metrics without an admin key\n"
           "  --sched fair|fifo       share slots and prompt budget fairly across tenants (default)\n"
           "                          or admit in arrival order\n\n"
           "Signed models (docs/SIGNING.md):\n"
           "  --trusted-keys DIR      serve the model only if MODEL.gguf.sig holds a valid signature by\n"
           "                          one of the *.pub keys in DIR over the file as it is (its SHA-256,\n"
           "                          size and name); an unsigned, unknown-key, altered or renamed model\n"
           "                          is refused before the server listens. Needed when the policy says\n"
           "                          require_signed_models = true\n");
}

static int parse_args(int argc, char **argv, serve_opts *o) {
    bool bad = false;
    for (int i = 1; i < argc && !bad; i++) {
        if (cli_flag(argv, &i, "--help") || cli_flag(argv, &i, "-h")) {
            help(stdout);
            exit(0);
        } else if (cli_opt_str(argc, argv, &i, "-m", &o->model, &bad) ||
                   cli_opt_str(argc, argv, &i, "--model", &o->model, &bad) ||
                   cli_opt_str(argc, argv, &i, "--host", &o->host, &bad) ||
                   cli_opt_str(argc, argv, &i, "--alias", &o->alias, &bad) ||
                   cli_opt_str(argc, argv, &i, "--ready-file", &o->ready_file, &bad) ||
                   cli_opt_str(argc, argv, &i, "--db", &o->db, &bad) ||
                   cli_opt_str(argc, argv, &i, "--sched", &o->sched, &bad) ||
                   cli_opt_str(argc, argv, &i, "--trusted-keys", &o->trusted_keys, &bad)) {
        } else if (cli_opt_int(argc, argv, &i, "--port", &o->port, &bad) ||
                   cli_opt_int(argc, argv, &i, "-np", &o->parallel, &bad) ||
                   cli_opt_int(argc, argv, &i, "--parallel", &o->parallel, &bad) ||
                   cli_opt_int(argc, argv, &i, "-c", &o->n_ctx, &bad) ||
                   cli_opt_int(argc, argv, &i, "--ctx", &o->n_ctx, &bad) ||
                   cli_opt_int(argc, argv, &i, "--kv-cache-mb", &o->kv_mb, &bad) ||
                   cli_opt_int(argc, argv, &i, "-t", &o->threads, &bad) ||
                   cli_opt_int(argc, argv, &i, "--threads", &o->threads, &bad) ||
                   cli_opt_int(argc, argv, &i, "-b", &o->n_batch, &bad) ||
                   cli_opt_int(argc, argv, &i, "--batch", &o->n_batch, &bad) ||
                   cli_opt_int(argc, argv, &i, "--queue", &o->queue, &bad) ||
                   cli_opt_int(argc, argv, &i, "--max-body-kb", &o->body_kb, &bad) ||
                   cli_opt_int(argc, argv, &i, "--http-timeout", &o->http_timeout, &bad) ||
                   cli_opt_float(argc, argv, &i, "--timeout", &o->timeout, &bad) ||
                   cli_opt_float(argc, argv, &i, "--shutdown-timeout", &o->shutdown_timeout, &bad)) {
        } else if (cli_flag(argv, &i, "--kv-f32")) {
            o->kv_f32 = true;
        } else if (cli_flag(argv, &i, "--metrics-open")) {
            o->metrics_open = true;
        } else {
            return cli_error("serve", "unknown option '%s'; see sov serve --help", argv[i]);
        }
    }
    if (bad) return 2;
    if (o->port < 0 || o->port > 65535) return cli_error("serve", "--port must be 0..65535");
    if (o->parallel < 1 || o->parallel > 1024) return cli_error("serve", "--parallel must be 1..1024");
    if (o->n_ctx < 0 || o->n_ctx > (1 << 20)) return cli_error("serve", "--ctx must be 0..1048576");
    if (o->kv_mb < 0 || o->kv_mb > (1 << 20)) return cli_error("serve", "--kv-cache-mb must be positive");
    if (o->threads < 0 || o->threads > 1024) return cli_error("serve", "-t must be 0..1024");
    if (o->n_batch < 1 || o->n_batch > 65536) return cli_error("serve", "--batch must be 1..65536");
    if (o->queue < 0 || o->queue > 1000000) return cli_error("serve", "--queue must be 0..1000000");
    if (o->body_kb < 1 || o->body_kb > (1 << 20))
        return cli_error("serve", "--max-body-kb must be 1..1048576");
    if (o->http_timeout < 1 || o->http_timeout > 86400)
        return cli_error("serve", "--http-timeout must be 1..86400");
    if (o->timeout < 0 || o->shutdown_timeout < 0) return cli_error("serve", "timeouts cannot be negative");
    if (o->sched && strcmp(o->sched, "fair") != 0 && strcmp(o->sched, "fifo") != 0)
        return cli_error("serve", "--sched must be fair or fifo, not '%s'", o->sched);
    if (!o->db) o->db = getenv("SOV_DB");
    if (o->db && !*o->db) o->db = NULL;
    return 0;
}

/* The model id: the alias, else the file name without folder and .gguf. */
static void model_id(const serve_opts *o, char *buf, size_t cap) {
    if (o->alias) {
        snprintf(buf, cap, "%s", o->alias);
        return;
    }
    const char *base = strrchr(o->model, '/');
    base = base ? base + 1 : o->model;
    snprintf(buf, cap, "%s", base);
    const size_t n = strlen(buf);
    if (n > 5 && strcmp(buf + n - 5, ".gguf") == 0) buf[n - 5] = '\0';
}

int cmd_serve(int argc, char **argv) {
    serve_opts o = {.host = "127.0.0.1",
                    .port = 8080,
                    .parallel = 16,
                    .threads = 0,
                    .n_batch = 512,
                    .queue = 256,
                    .body_kb = 4096,
                    .http_timeout = 60,
                    .timeout = 600,
                    .shutdown_timeout = 30};
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc;
    sov_status st;
    char demo[1024];
    if (!o.model) {
        if (cli_demo_model_path(demo, sizeof demo)) return 1;
        o.model = demo;
        fprintf(stderr, "sov: no -m given: serving the built-in DEMO model, which has RANDOM WEIGHTS —\n"
                        "     its output is gibberish by design. For real text: sov serve -m MODEL.gguf\n");
    }
    char id[256];
    model_id(&o, id, sizeof id);
    const sov_policy data_policy = policy_default();
    /* signed models: the signature file, key, size and name are checked before the load
     * (an unsigned model is refused in milliseconds), the SHA-256 computed while loading after */
    sign_record signature = {0};
    if (data_policy.require_signed_models && !o.trusted_keys)
        return cli_error("serve", "the policy requires signed models (require_signed_models = true): give "
                                  "--trusted-keys DIR, the folder of the signers' .pub files");
    if (o.trusted_keys && cli_signed_before_load("serve", o.trusted_keys, o.model, &signature)) return 1;
    /* the state store first: a store that cannot be opened fails in a second, not after
     * the model has loaded */
    tenants *tn = NULL;
    if (o.db) {
        const tenants_params tp = {.db = o.db, .model_id = id};
        st = tenants_open(&tp, &tn);
        if (st) return cli_status_error("serve", st);
        if (tenants_auth_required(tn))
            fprintf(stderr, "sov serve: tenants from %s: %zu API key(s); every /v1 request needs one\n",
                    tenants_store_describe(tn), tenants_key_count(tn));
        else
            fprintf(stderr,
                    "sov serve: %s holds no API keys yet: serving WITHOUT authentication until one is "
                    "created (sov keys create --db ... --tenant NAME)\n",
                    tenants_store_describe(tn));
    } else {
        fprintf(stderr,
                "sov serve: no --db: serving WITHOUT authentication, one default tenant (anyone who can "
                "reach the port can use the model)\n");
    }
    fprintf(stderr, "sov serve: loading %s\n", o.model);
    sov_model_params mp = sov_model_default_params();
    mp.progress = cli_progress;
    mp.progress_user = "loading";
    mp.digest = true; /* the file's SHA-256 names the exact weights in /v1/models (and the audit) */
    sov_model *model = NULL;
    st = sov_model_load(o.model, &mp, &model);
    if (st) {
        tenants_close(tn);
        return cli_status_error("serve", st);
    }
    sov_model_info info;
    sov_model_get_info(model, &info);
    if (o.trusted_keys && cli_signed_after_load("serve", &signature, o.model, &info)) {
        sov_model_free(model);
        tenants_close(tn);
        return 1;
    }
    const int32_t n_ctx = (int32_t)(o.n_ctx ? o.n_ctx : SOV_MIN(info.n_ctx_train, 4096));
    /* bytes of one position's keys and values in every layer */
    const int64_t per_pos = (int64_t)info.n_layer * info.n_head_kv * info.head_dim * 2 * (o.kv_f32 ? 4 : 2);
    int64_t kv_bytes =
        o.kv_mb ? o.kv_mb * (1 << 20) : SOV_MIN(per_pos * n_ctx * o.parallel, (int64_t)2048 << 20);
    sov_context_params cp = sov_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_seq_max = (int32_t)o.parallel;
    cp.n_batch = (int32_t)SOV_MAX(o.n_batch, o.parallel);
    cp.kv_cache_bytes = kv_bytes;
    cp.n_threads = (int32_t)o.threads;
    cp.kv_type = o.kv_f32 ? SOV_KV_F32 : SOV_KV_F16;
    sov_context *ctx = NULL;
    if ((st = sov_context_new(model, &cp, &ctx))) {
        rc = cli_status_error("serve", st);
        sov_model_free(model);
        tenants_close(tn);
        return rc;
    }
    fprintf(stderr,
            "model: %s (%s, %s, %.1fM params) | %d threads | %s kernels | KV cache %.0f MB (%lld positions, "
            "%d per sequence)\n",
            info.name[0] ? info.name : id, info.arch, info.weight_type, (double)info.n_params / 1e6,
            sov_context_threads(ctx), sov_context_isa(ctx), (double)kv_bytes / (1 << 20),
            (long long)sov_kv_blocks_total(ctx) * sov_kv_block_size(ctx), n_ctx);
    const server_params sp = {
        .host = o.host,
        .port = (int)o.port,
        .model_id = id,
        .n_parallel = (int32_t)o.parallel,
        .n_batch = cp.n_batch,
        .max_queue = (int32_t)o.queue,
        .n_ctx = n_ctx,
        .max_body = (size_t)o.body_kb * 1024,
        .request_timeout_s = o.timeout,
        .shutdown_timeout_s = o.shutdown_timeout,
        .http_timeout_s = (int)o.http_timeout,
        .ready_file = o.ready_file,
        .tenants = tn,
        .model_sha256 = info.sha256,
        .model_signer = o.trusted_keys ? signature.key_id : NULL,
        .data_policy = &data_policy,
        .metrics_open = o.metrics_open,
        .policy = o.sched && strcmp(o.sched, "fifo") == 0 ? SCHED_POLICY_FIFO : SCHED_POLICY_FAIR,
    };
    rc = server_run(model, ctx, &sp);
    tenants_close(tn);
    sov_context_free(ctx);
    sov_model_free(model);
    return rc;
}
