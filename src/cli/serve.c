/* serve.c - `sov serve`: the OpenAI-compatible HTTP server (src/server) over one model.
 *
 * Loads the model (progress on stderr), sizes the context for --parallel sequences of
 * --ctx positions sharing a KV pool of --kv-cache-mb, and runs the server until SIGTERM
 * or SIGINT. Without -m it serves the built-in demo model. With --tls-cert and --tls-key
 * it speaks HTTPS (and with --tls-client-ca, mTLS): the certificate and key are loaded and
 * checked before anything else, so a bad one fails in a second (src/server/tls.h). Once
 * everything is open the server locks itself down (src/sandbox, docs/SANDBOX.md): no new
 * outbound connections unless --allow-egress, files limited to the model and the state
 * folder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "audit/audit.h"
#include "cli/cli.h"
#include "core/util.h"
#include "policy/policy.h"
#include "sandbox/sandbox.h"
#include "server/server.h"
#include "server/tls.h"
#include "sign/sign.h"
#include "tenants/tenants.h"

typedef struct serve_opts {
    const char *model, *host, *alias, *ready_file, *db, *sched, *policy;
    const char *node; /* this replica's name in the X-Sov-Node header (docs/REPLICAS.md) */
    const char *tls_cert, *tls_key, *tls_client_ca;
    long port, parallel, n_ctx, kv_mb, threads, n_batch, queue, body_kb, http_timeout;
    cli_split split; /* --tp/--ep/--pp: ranks the model is split across (cli/tp.c) */
    double timeout, shutdown_timeout;
    bool metrics_open;
    sov_kv_type kv_k, kv_v;
    const char *state_dir; /* the one folder written at run time: audit key, SQLite temp files */
    long sign_every;
    bool no_audit;
    /* sandbox (docs/SANDBOX.md) */
    bool allow_egress, mlock;
    const char *unix_sockets[SANDBOX_MAX_PATHS];
    size_t n_unix_sockets;
    const char *trusted_keys; /* refuse a model not signed by one of the keys in this folder */
    const char *chat_template_file; /* Jinja chat template instead of the model's own */
    bool no_digest_cache;           /* hash the model at every start */
    double cpu_watts, dram_pj;      /* energy estimate (docs/ENERGY.md); 0: the defaults */
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
           CLI_TP_HELP
           "  -b, --batch N           tokens per engine step: prompt chunks share it with the streams\n"
           "                          (default 512)\n"
           "  --queue N               requests that may wait beyond --parallel; more get 429 (default 256)\n"
           "  --timeout S             per-request deadline in seconds (default 600; 0: none)\n"
           "  --shutdown-timeout S    after SIGTERM, how long running requests may finish (default 30)\n"
           "  --max-body-kb KB        largest request body (default 4096)\n"
           "  --http-timeout S        idle connection timeout (default 60)\n"
           "  --alias NAME            the model id clients use (default: the file name without .gguf)\n"
           CLI_KV_TYPE_HELP
           "  --ready-file FILE       write \"HOST PORT\" there once listening (for scripts)\n\n"
           "Tenants (docs/TENANTS.md):\n"
           "  --db DB                 state store: a SQLite file or a postgresql:// URL (or SOV_DB).\n"
           "                          Once it holds an API key (sov keys create), every /v1 request\n"
           "                          needs one; keys' model lists, limits and usage apply. Without\n"
           "                          --db the server is open to anyone who can reach it.\n"
           "  --metrics-open          serve /metrics without an admin key\n"
           "  --sched fair|fifo       share slots and prompt budget fairly across tenants (default)\n"
           "                          or admit in arrival order\n\n"
           "Data policy (docs/POLICY.md):\n"
           "  --policy FILE           the data-handling policy: retention of prompt text, region label,\n"
           "                          signed models, egress, redaction of personal data (also in\n"
           "                          prompts with redact_prompts = true); checked at start-up\n"
           "                          (sov policy check FILE)\n\n"
           "HTTPS (docs/TLS.md):\n"
           "  --tls-cert FILE         serve HTTPS with this PEM certificate (then its intermediates);\n"
           "                          TLS 1.2 and 1.3 only, ECDHE with AEAD ciphers. An expired or\n"
           "                          not yet valid certificate is refused at start-up\n"
           "  --tls-key FILE          its PEM private key (unencrypted)\n"
           "  --tls-client-ca FILE    mTLS: every client needs a certificate issued by a CA in FILE\n"
           "                          (only those CAs are trusted); a key created with sov keys create\n"
           "                          --client-cert-subject stands for the certificate's owner\n\n"
           "Audit log (with --db; docs/AUDIT.md): a hash-chained record of every /v1 request, committed\n"
           "before the answer's last byte, the chain's head signed with this server's Ed25519 key.\n"
           "  --audit-sign-every N    sign the chain head every N records (default 256; also every 10 s\n"
           "                          while records are unsigned, and at shutdown)\n"
           "  --no-audit              no audit log (said at start-up)\n"
           "  --node NAME             name this replica in an X-Sov-Node header on every answer (1-64\n"
           "                          of A-Z a-z 0-9 . _ -; several replicas behind one load balancer:\n"
           "                          docs/REPLICAS.md)\n"
           "What it keeps of prompts and completions (hashes, nothing, or the text for N days) and\n"
           "the region label in every record come from the data policy (--policy).\n\n"
           "Sandbox (docs/SANDBOX.md): once listening, the process cannot open new outbound\n"
           "connections (seccomp + Landlock; PostgreSQL in --db may still reconnect), read files but\n"
           "its model, or write outside the state folder; /ready and /metrics say what is in force.\n"
           "  --state-dir DIR         the one folder written at run time: the audit signing key\n"
           "                          (audit-ed25519.pem, made on first use), SQLite's temporary files\n"
           "                          (default: the SQLite file's folder; with PostgreSQL or no --db,\n"
           "                          $HOME/.local/state/sov)\n"
           "  --allow-unix-socket PATH  a Unix socket the server may still connect to (repeatable)\n"
           "  --allow-egress          do NOT refuse new outbound connections (said loudly at start-up,\n"
           "                          in /ready and in /metrics: sov_egress_locked 0)\n"
           "  --mlock                 keep weights, KV cache and activations in RAM, never in swap\n"
           "                          (needs RLIMIT_MEMLOCK above their size, or CAP_IPC_LOCK)\n\n"
           "Signed models (docs/SIGNING.md):\n"
           "Chat template (docs/CHAT-TEMPLATES.md): the model's own tokenizer.chat_template (Jinja);\n"
           "  --chat-template-file FILE  render chats with this Jinja template instead (an error in it\n"
           "                          stops the start; one in the model's is a warning, with a fallback)\n\n"
           "  --trusted-keys DIR      serve the model only if MODEL.gguf.sig holds a valid signature by\n"
           "                          one of the *.pub keys in DIR over the file as it is (its SHA-256,\n"
           "                          size and name); an unsigned, unknown-key, altered or renamed model\n"
           "                          is refused before the server listens. Needed when the policy says\n"
           "                          require_signed_models = true\n"
           "The model's SHA-256 (in /v1/models and every audit record) is computed while loading and\n"
           "remembered in STATE-DIR/model-digests under the file's inode, size, mtime and ctime, so\n"
           "a restart on an unchanged file does not hash it again (any write to the file changes its\n"
           "ctime; docs/SIGNING.md):\n"
           "  --no-digest-cache       hash the model file at every start\n\n"
           "Energy (docs/ENERGY.md): joules per request in usage.energy_joules and /metrics, from the\n"
           "RAPL counters when readable, else estimated (usage.energy_source says which):\n"
           "  --cpu-watts W           estimate: watts of one busy core (default 10)\n"
           "  --dram-pj-per-byte PJ   estimate: DRAM energy per byte read (default 100)\n");
}

/* A replica's name goes into a response header verbatim: a short token, nothing to escape. */
static bool node_name_ok(const char *s) {
    const size_t n = strlen(s);
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '.' || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
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
                   cli_opt_str(argc, argv, &i, "--node", &o->node, &bad) ||
                   cli_opt_str(argc, argv, &i, "--sched", &o->sched, &bad) ||
                   cli_opt_str(argc, argv, &i, "--policy", &o->policy, &bad) ||
                   cli_opt_str(argc, argv, &i, "--tls-cert", &o->tls_cert, &bad) ||
                   cli_opt_str(argc, argv, &i, "--tls-key", &o->tls_key, &bad) ||
                   cli_opt_str(argc, argv, &i, "--tls-client-ca", &o->tls_client_ca, &bad) ||
                   cli_opt_str(argc, argv, &i, "--state-dir", &o->state_dir, &bad) ||
                   cli_opt_str(argc, argv, &i, "--trusted-keys", &o->trusted_keys, &bad) ||
                   cli_opt_str(argc, argv, &i, "--chat-template-file", &o->chat_template_file, &bad)) {
        } else if (cli_opt_str(argc, argv, &i, "--allow-unix-socket", &o->unix_sockets[o->n_unix_sockets],
                               &bad)) {
            if (!bad && ++o->n_unix_sockets == SANDBOX_MAX_PATHS)
                return cli_error("serve", "at most %d --allow-unix-socket options", SANDBOX_MAX_PATHS - 1);
        } else if (cli_opt_int(argc, argv, &i, "--port", &o->port, &bad) ||
                   cli_opt_int(argc, argv, &i, "-np", &o->parallel, &bad) ||
                   cli_opt_int(argc, argv, &i, "--parallel", &o->parallel, &bad) ||
                   cli_opt_int(argc, argv, &i, "-c", &o->n_ctx, &bad) ||
                   cli_opt_int(argc, argv, &i, "--ctx", &o->n_ctx, &bad) ||
                   cli_opt_int(argc, argv, &i, "--kv-cache-mb", &o->kv_mb, &bad) ||
                   cli_opt_int(argc, argv, &i, "-t", &o->threads, &bad) ||
                   cli_opt_int(argc, argv, &i, "--threads", &o->threads, &bad) ||
                   cli_opt_split(argc, argv, &i, &o->split, &bad) ||
                   cli_opt_int(argc, argv, &i, "-b", &o->n_batch, &bad) ||
                   cli_opt_int(argc, argv, &i, "--batch", &o->n_batch, &bad) ||
                   cli_opt_int(argc, argv, &i, "--queue", &o->queue, &bad) ||
                   cli_opt_int(argc, argv, &i, "--max-body-kb", &o->body_kb, &bad) ||
                   cli_opt_int(argc, argv, &i, "--http-timeout", &o->http_timeout, &bad) ||
                   cli_opt_float(argc, argv, &i, "--timeout", &o->timeout, &bad) ||
                   cli_opt_float(argc, argv, &i, "--shutdown-timeout", &o->shutdown_timeout, &bad) ||
                   cli_opt_float(argc, argv, &i, "--cpu-watts", &o->cpu_watts, &bad) ||
                   cli_opt_float(argc, argv, &i, "--dram-pj-per-byte", &o->dram_pj, &bad) ||
                   cli_opt_int(argc, argv, &i, "--audit-sign-every", &o->sign_every, &bad)) {
        } else if (cli_opt_kv_type(argc, argv, &i, &o->kv_k, &o->kv_v, &bad)) {
        } else if (cli_flag(argv, &i, "--metrics-open")) {
            o->metrics_open = true;
        } else if (cli_flag(argv, &i, "--no-audit")) {
            o->no_audit = true;
        } else if (cli_flag(argv, &i, "--allow-egress")) {
            o->allow_egress = true;
        } else if (cli_flag(argv, &i, "--mlock")) {
            o->mlock = true;
        } else if (cli_flag(argv, &i, "--no-digest-cache")) {
            o->no_digest_cache = true;
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
    if (o->cpu_watts < 0 || o->cpu_watts > 10000 || o->dram_pj < 0 || o->dram_pj > 1e6)
        return cli_error("serve", "--cpu-watts must be 0..10000 and --dram-pj-per-byte 0..1000000");
    if (o->sched && strcmp(o->sched, "fair") != 0 && strcmp(o->sched, "fifo") != 0)
        return cli_error("serve", "--sched must be fair or fifo, not '%s'", o->sched);
    if (!o->tls_cert != !o->tls_key)
        return cli_error("serve", "--tls-cert and --tls-key go together: give the certificate and its key");
    if (o->tls_client_ca && !o->tls_cert)
        return cli_error("serve", "--tls-client-ca needs HTTPS: give --tls-cert and --tls-key too");
    if (o->node && !node_name_ok(o->node))
        return cli_error("serve", "--node must be 1-64 characters of A-Z a-z 0-9 . _ -");
    if (!o->db) o->db = getenv("SOV_DB");
    if (o->db && !*o->db) o->db = NULL;
    if (o->sign_every < 1 || o->sign_every > 1000000)
        return cli_error("serve", "--audit-sign-every must be 1..1000000");
    return 0;
}

/* The audit log: with --db, unless --no-audit (said either way). */
static const tenants_audit_params *audit_params(const serve_opts *o, tenants_audit_params *ap, const char *dir) {
    if (!o->db || o->no_audit) {
        fprintf(stderr, "sov serve: %s: requests are NOT recorded in an audit log\n",
                o->db ? "--no-audit" : "no --db, so no audit log");
        return NULL;
    }
    const char *skew = getenv("SOV_TEST_CLOCK_OFFSET"); /* tests: text expiry without waiting days */
    *ap = (tenants_audit_params){.state_dir = dir, .sign_every = o->sign_every,
                                 .clock_offset_s = skew ? atoll(skew) : 0};
    return ap;
}

/* What the audit log took, at shutdown (the records per commit show the group commit). */
static void audit_summary(tenants *tn) {
    if (!tn || !tenants_audit_key_id(tn)) return;
    tenants_stats ts;
    tenants_get_stats(tn, &ts);
    fprintf(stderr,
            "sov serve: audit: %llu records in %llu commits (%.2f ms each), %llu failed, %llu heads signed\n",
            (unsigned long long)ts.audit_records, (unsigned long long)ts.audit_commits,
            ts.audit_commits ? ts.audit_seconds * 1e3 / (double)ts.audit_commits : 0.0,
            (unsigned long long)ts.audit_failed, (unsigned long long)ts.audit_heads);
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

/* HTTPS: the certificate and key checked now, before the store and the model. */
static int open_tls(const serve_opts *o, tls_ctx **out) {
    *out = NULL;
    if (!o->tls_cert) return 0;
    const tls_params tp = {.cert = o->tls_cert, .key = o->tls_key, .client_ca = o->tls_client_ca};
    const sov_status st = tls_ctx_new(&tp, out);
    if (st) return cli_status_error("serve", st);
    const char *w = tls_warnings(*out);
    for (const char *e; *w; w = *e ? e + 1 : e) {
        e = strchr(w, '\n');
        if (!e) e = w + strlen(w);
        fprintf(stderr, "sov serve: warning: %.*s\n", (int)(e - w), w);
    }
    fprintf(stderr, "sov serve: %s\n", tls_describe(*out));
    return 0;
}

/* Ranks > 0 of `sov serve --tp R` open no port, store or log: they load their shard and
 * follow rank 0's context (docs/TP.md). */
static int serve_tp_worker(const serve_opts *o, sov_tp *tp) {
    sov_model_params mp = sov_model_default_params();
    mp.tp = tp;
    sov_model *model = NULL;
    const sov_status st = sov_model_load(o->model, &mp, &model);
    if (st) {
        sov_tp_free(tp);
        return cli_status_error("serve", st);
    }
    return cli_tp_worker("serve", model, tp);
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
                    .shutdown_timeout = 30,
                    .sign_every = 256};
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc;
    sov_status st;
    /* the data policy before anything slow: a mistake in it fails at once, with its line */
    sov_policy data_policy = policy_default();
    if (o.policy && (st = policy_load(o.policy, &data_policy))) return cli_status_error("serve", st);
    char demo[1024];
    if (!o.model) {
        if (cli_demo_model_path(demo, sizeof demo)) return 1;
        o.model = demo;
        fprintf(stderr, "sov: no -m given: serving the built-in DEMO model, which has RANDOM WEIGHTS —\n"
                        "     its output is gibberish by design. For real text: sov serve -m MODEL.gguf\n");
    }
    sov_tp *ranks = NULL; /* --tp */
    if (cli_tp_start("serve", &o.split, argc, argv, &ranks)) return 1;
    if (sov_tp_rank(ranks) > 0) return serve_tp_worker(&o, ranks);
    char id[256];
    model_id(&o, id, sizeof id);
    /* everything opened from here on is closed once, at the end (rc says how it went) */
    tls_ctx *tls = NULL;
    tenants *tn = NULL;
    sov_model *model = NULL;
    sov_context *ctx = NULL;
    sov_chat_template *chat_tmpl = NULL;
    if ((rc = open_tls(&o, &tls))) {
        sov_tp_free(ranks);
        return rc;
    }
    /* the operator's chat template before anything slow: an error in it stops the start */
    if (o.chat_template_file && (rc = cli_chat_template_load("serve", o.chat_template_file, NULL, &chat_tmpl)))
        goto done;
    /* the configuration is valid (its errors are single lines): say what this node enforces */
    char policy_line[256];
    fprintf(stderr, "sov serve: data policy%s%s: %s\n",
            o.policy ? " from " : " (default; --policy FILE to set one)", o.policy ? o.policy : "",
            policy_describe(&data_policy, policy_line, sizeof policy_line));
    char state_buf[4096];
    const char *state = cli_state_dir(o.db, o.state_dir, state_buf, sizeof state_buf);
    struct stat state_st;
    /* SQLite's temporary files (large sorts) go to the state folder, the one writable place
     * under the sandbox (set before any thread starts; an operator's own setting wins) */
    if (state && stat(state, &state_st) == 0 && S_ISDIR(state_st.st_mode)) setenv("SQLITE_TMPDIR", state, 0);
    tenants_audit_params ap;
    const tenants_audit_params *audit = audit_params(&o, &ap, state);
    if (o.db && !o.no_audit && !state) {
        rc = cli_error("serve", "no folder for the audit signing key: give --state-dir DIR (HOME is not set)");
        goto done;
    }
    /* signed models: the signature file, key, size and name are checked before the load
     * (an unsigned model is refused in milliseconds), the SHA-256 computed while loading after */
    sign_record signature = {0};
    if (data_policy.require_signed_models && !o.trusted_keys) {
        rc = cli_error("serve", "the policy requires signed models (require_signed_models = true): give "
                                "--trusted-keys DIR, the folder of the signers' .pub files");
        goto done;
    }
    if (o.trusted_keys && (rc = cli_signed_before_load("serve", o.trusted_keys, o.model, &signature))) goto done;
    /* the state store first: a store that cannot be opened fails in a second, not after
     * the model has loaded */
    if (o.db) {
        const tenants_params tp = {.db = o.db, .model_id = id, .audit = audit};
        if ((st = tenants_open(&tp, &tn))) {
            rc = cli_status_error("serve", st);
            goto done;
        }
        if (audit)
            fprintf(stderr, "sov serve: audit log in the state store, chain heads signed by key %s (%s/%s)\n",
                    tenants_audit_key_id(tn), state, AUDIT_KEY_FILE);
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
    mp.digest = true;      /* the file's SHA-256 names the exact weights in /v1/models (and the audit) */
    mp.prefault = o.mlock; /* the weights in use are then resident, and locked at once */
    mp.tp = ranks;
    char digest_cache[4200];
    if (!o.no_digest_cache && state && stat(state, &state_st) == 0 && S_ISDIR(state_st.st_mode)) {
        snprintf(digest_cache, sizeof digest_cache, "%s/%s", state, CLI_DIGEST_CACHE_FILE);
        mp.digest_cache = digest_cache;
    }
    if ((st = sov_model_load(o.model, &mp, &model))) {
        rc = cli_status_error("serve", st);
        goto done;
    }
    sov_model_info info;
    sov_model_get_info(model, &info);
    fprintf(stderr, "sov serve: model SHA-256 %s (%s)\n", info.sha256,
            info.sha256_cached ? "remembered: the file is unchanged since it was hashed"
            : mp.digest_cache  ? "hashed while loading"
                               : "hashed while loading; no digest cache");
    if (o.trusted_keys && (rc = cli_signed_after_load("serve", &signature, o.model, &info))) goto done;
    if (!o.chat_template_file && (rc = cli_chat_template_load("serve", NULL, sov_model_vocab(model), &chat_tmpl)))
        goto done;
    const int32_t n_ctx = (int32_t)(o.n_ctx ? o.n_ctx : SOV_MIN(info.n_ctx_train, 4096));
    cli_warn_ctx("serve", &info, n_ctx);
    /* bytes of one position's keys and values in every layer; the default pool holds
     * n_ctx positions per sequence plus a block (the scheduler keeps one in reserve) */
    const int64_t per_pos = cli_kv_bytes_per_pos(&info, o.kv_k, o.kv_v);
    if (per_pos == 0) {
        rc = cli_error("serve", "this KV cache type cannot hold the model's heads of %d values (quantized "
                       "types need a multiple of 32 or a divisor of 32)", info.head_dim);
        goto done;
    }
    int64_t kv_bytes =
        o.kv_mb ? o.kv_mb * (1 << 20) : SOV_MIN(per_pos * (n_ctx + 16) * o.parallel, (int64_t)2048 << 20);
    sov_context_params cp = sov_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_seq_max = (int32_t)o.parallel;
    cp.n_batch = (int32_t)SOV_MAX(o.n_batch, o.parallel);
    cp.kv_cache_bytes = kv_bytes;
    cp.n_threads = (int32_t)o.threads;
    cp.kv_type = o.kv_k;
    cp.kv_type_v = o.kv_v;
    if ((st = sov_context_new(model, &cp, &ctx)) || (o.mlock && (st = sov_context_lock_memory(ctx)))) {
        rc = cli_status_error("serve", st);
        goto done;
    }
    fprintf(stderr,
            "model: %s (%s, %s, %.1fM params) | %d threads | %s kernels | KV cache %.0f MB (%lld positions, "
            "%d per sequence)\n",
            info.name[0] ? info.name : id, info.arch, info.weight_type, (double)info.n_params / 1e6,
            sov_context_threads(ctx), sov_context_isa(ctx), (double)kv_bytes / (1 << 20),
            (long long)sov_kv_blocks_total(ctx) * sov_kv_block_size(ctx), n_ctx);
    sandbox_params sbp = {.allow_egress = o.allow_egress || data_policy.allow_egress,
                          .db = o.db,
                          .state_dir = state,
                          .read_paths = {o.model},
                          .n_read_paths = 1,
                          .n_unix_sockets = o.n_unix_sockets};
    for (size_t i = 0; i < o.n_unix_sockets; i++) sbp.unix_sockets[i] = o.unix_sockets[i];
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
        .tls = tls,
        .audit_node = tn ? tenants_audit_key_id(tn) : NULL,
        .node = o.node,
        .metrics_open = o.metrics_open,
        .policy = o.sched && strcmp(o.sched, "fifo") == 0 ? SCHED_POLICY_FIFO : SCHED_POLICY_FAIR,
        .sandbox = &sbp,
        .chat_template = chat_tmpl,
        .cpu_watts = o.cpu_watts,
        .dram_pj_per_byte = o.dram_pj,
        .kv_bytes_per_pos = per_pos,
    };
    rc = server_run(model, ctx, &sp);
    audit_summary(tn);
done:
    tenants_close(tn); /* after the last audit records and the last signed head */
    tls_ctx_free(tls);
    sov_chat_template_free(chat_tmpl);
    sov_context_free(ctx);
    sov_model_free(model);
    sov_tp_free(ranks);
    return rc;
}
