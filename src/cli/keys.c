/* keys.c - `sov keys`: tenants' API keys in the state store (src/store) — create, list,
 * revoke, usage, and tenants' scheduling weights. A running `sov serve` on the same store
 * sees every change within a second.
 *
 * `create` prints the new key on stdout's last line, once: only its salted hash is
 * stored. With --client-cert-subject (or --client-cert FILE, whose subject is read) the key
 * is bound to a TLS client certificate subject: under mTLS that certificate alone stands
 * for the key, and the key works only with it (docs/TLS.md). `list` and `usage` print one
 * tab-separated line per key or tenant (a header line too when stdout is a terminal), or
 * JSON lines with --json. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth.h"
#include "cli/cli.h"
#include "server/tls.h"
#include "store/store.h"

static void help(FILE *f) {
    fprintf(f, "usage: sov keys create --db DB --tenant NAME [--models M1,M2] [--rpm N] [--tpm N]\n"
               "                       [--tokens-per-day N] [--admin] [--weight W]\n"
               "                       [--client-cert-subject SUBJECT | --client-cert FILE]\n"
               "       sov keys list   --db DB [--json]\n"
               "       sov keys revoke --db DB ID\n"
               "       sov keys usage  --db DB [--since T] [--by-key] [--json]\n"
               "       sov keys weight --db DB TENANT WEIGHT\n\n"
               "API keys of the tenants a `sov serve --db DB` serves. DB is a SQLite file (created when\n"
               "missing) or a postgresql:// URL; SOV_DB in the environment stands for --db. A running\n"
               "server sees every change within a second.\n\n"
               "  create       a new key for the tenant (created when new), printed once on stdout's last\n"
               "               line: only its salted hash is kept\n"
               "    --models M1,M2        models the key may use (default: every model)\n"
               "    --rpm N               requests per minute (default: no limit)\n"
               "    --tpm N               tokens per minute, prompt + completion (default: no limit)\n"
               "    --tokens-per-day N    tokens per UTC day, prompt + completion (default: no limit)\n"
               "    --admin               may read /metrics\n"
               "    --weight W            the tenant's share of the server under load (default 1)\n"
               "    --client-cert-subject SUBJECT\n"
               "                          bind the key to TLS client certificates with this subject, in\n"
               "                          RFC 2253 form as `openssl x509 -noout -subject -nameopt\n"
               "                          RFC2253,-esc_msb` prints it (e.g. CN=radiology,O=Hospital; matched\n"
               "                          exactly): under mTLS the certificate alone stands for the key,\n"
               "                          and the key works only over a connection with that certificate\n"
               "    --client-cert FILE    the same, with the subject read from a PEM certificate\n"
               "  list         every key: id, tenant, models, rpm, tpm, tokens/day, created, last used,\n"
               "               revoked, admin, weight, prefix (never the key), client certificate subject\n"
               "  revoke ID    the key stops working within a second; running requests finish\n"
               "  usage        requests and tokens per tenant (per key with --by-key) since T:\n"
               "               2026-12-03, 2026-12-03T10:00[:00][Z], @UNIXTIME, or a duration back\n"
               "               from now: 30m, 24h, 7d (default: all; hour granularity)\n"
               "  weight       sets a tenant's scheduling weight (0 < W <= 1000)\n");
}

typedef struct keys_opts {
    const char *db, *tenant, *models, *since, *subject, *cert;
    long rpm, tpm, tpd;
    double weight;
    bool admin, json, by_key;
    const char *pos[2];
    int n_pos;
} keys_opts;

static int parse(int argc, char **argv, keys_opts *o) {
    bool bad = false;
    for (int i = 1; i < argc && !bad; i++) {
        if (cli_flag(argv, &i, "--help") || cli_flag(argv, &i, "-h")) {
            help(stdout);
            exit(0);
        } else if (cli_opt_str(argc, argv, &i, "--db", &o->db, &bad) ||
                   cli_opt_str(argc, argv, &i, "--tenant", &o->tenant, &bad) ||
                   cli_opt_str(argc, argv, &i, "--models", &o->models, &bad) ||
                   cli_opt_str(argc, argv, &i, "--since", &o->since, &bad) ||
                   cli_opt_str(argc, argv, &i, "--client-cert-subject", &o->subject, &bad) ||
                   cli_opt_str(argc, argv, &i, "--client-cert", &o->cert, &bad) ||
                   cli_opt_int(argc, argv, &i, "--rpm", &o->rpm, &bad) ||
                   cli_opt_int(argc, argv, &i, "--tpm", &o->tpm, &bad) ||
                   cli_opt_int(argc, argv, &i, "--tokens-per-day", &o->tpd, &bad) ||
                   cli_opt_float(argc, argv, &i, "--weight", &o->weight, &bad)) {
        } else if (cli_flag(argv, &i, "--admin")) {
            o->admin = true;
        } else if (cli_flag(argv, &i, "--json")) {
            o->json = true;
        } else if (cli_flag(argv, &i, "--by-key")) {
            o->by_key = true;
        } else if (argv[i][0] == '-' && argv[i][1] && !(argv[i][1] >= '0' && argv[i][1] <= '9')) {
            return cli_error("keys", "unknown option '%s'; see sov keys --help", argv[i]);
        } else if (o->n_pos < 2) {
            o->pos[o->n_pos++] = argv[i];
        } else {
            return cli_error("keys", "unexpected argument '%s'; see sov keys --help", argv[i]);
        }
    }
    if (bad) return 2;
    if (!o->db) o->db = getenv("SOV_DB");
    if (!o->db || !*o->db)
        return cli_error("keys", "no state store given: --db FILE or --db postgresql://... (or SOV_DB)");
    if (o->rpm < 0 || o->tpm < 0 || o->tpd < 0)
        return cli_error("keys", "limits cannot be negative (0 means none)");
    return 0;
}

static int open_store(const keys_opts *o, bool read_only, store **st) {
    const store_open_params p = {.read_only = read_only};
    const sov_status s = store_open(o->db, &p, st);
    return s ? cli_status_error("keys", s) : 0;
}

static void iso_time(int64_t t, char *buf, size_t cap) {
    if (t <= 0) {
        snprintf(buf, cap, "-");
        return;
    }
    const time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void limit_str(int64_t v, char *buf, size_t cap) {
    if (v > 0)
        snprintf(buf, cap, "%lld", (long long)v);
    else
        snprintf(buf, cap, "-");
}

/* ---- create ---- */

/* The subject a key is bound to, from --client-cert-subject or --client-cert, checked to
 * look like what the server compares it with (OpenSSL's RFC 2253 string). */
static int bound_subject(const keys_opts *o, char *buf, size_t cap) {
    buf[0] = '\0';
    if (o->subject && o->cert)
        return cli_error("keys", "give --client-cert-subject or --client-cert, not both");
    if (o->cert) {
        const sov_status st = tls_cert_file_subject(o->cert, buf, cap);
        return st ? cli_status_error("keys", st) : 0;
    }
    if (!o->subject) return 0;
    const char *s = o->subject;
    if (!s[0] || strlen(s) >= cap)
        return cli_error("keys", "the client certificate subject must be 1 to %zu bytes", cap - 1);
    if (s[0] == '/' || !strchr(s, '='))
        return cli_error(
            "keys",
            "'%s' is not an RFC 2253 subject: write it as `openssl x509 -noout -subject -nameopt "
            "RFC2253,-esc_msb -in CERT` prints it (e.g. CN=radiology,O=Hospital), or give "
            "--client-cert CERT",
            s);
    for (size_t i = 1; s[i]; i++)
        if (s[i] == ' ' && s[i - 1] == ',' && (i < 2 || s[i - 2] != '\\'))
            return cli_error("keys",
                             "'%s' has a space after a comma: RFC 2253 subjects have none "
                             "(CN=radiology,O=Hospital), and the server matches them exactly",
                             s);
    snprintf(buf, cap, "%s", s);
    return 0;
}

/* A certificate stands for one tenant: a subject another tenant's unrevoked key is bound
 * to is refused (the server would refuse both, as ambiguous). */
static int subject_free_for(store *st, const char *subject, const char *tenant) {
    store_key *keys = NULL;
    size_t n = 0;
    const sov_status s = store_keys(st, &keys, &n);
    if (s) return cli_status_error("keys", s);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        if (!keys[i].revoked && strcmp(keys[i].client_subject, subject) == 0 &&
            strcmp(keys[i].tenant, tenant))
            rc = cli_error("keys",
                           "the client certificate subject '%s' already stands for tenant '%s' (key %lld): "
                           "revoke that key first (sov keys revoke %lld)",
                           subject, keys[i].tenant, (long long)keys[i].id, (long long)keys[i].id);
    free(keys);
    return rc;
}

static int cmd_create(const keys_opts *o) {
    if (!o->tenant) return cli_error("keys", "create needs --tenant NAME");
    if (o->weight != -1 && !(o->weight > 0 && o->weight <= 1000))
        return cli_error("keys", "--weight must be in (0, 1000]");
    store_key k = {
        .rpm = o->rpm, .tpm = o->tpm, .tpd = o->tpd, .admin = o->admin, .created = (int64_t)time(NULL)};
    if (strlen(o->tenant) > STORE_TENANT_MAX)
        return cli_error("keys", "the tenant name is longer than %d bytes", STORE_TENANT_MAX);
    if (o->models && strlen(o->models) > STORE_MODELS_MAX)
        return cli_error("keys", "the model list is longer than %d bytes", STORE_MODELS_MAX);
    snprintf(k.tenant, sizeof k.tenant, "%s", o->tenant);
    snprintf(k.models, sizeof k.models, "%s", o->models ? o->models : "");
    int rc = bound_subject(o, k.client_subject, sizeof k.client_subject);
    if (rc) return rc;
    char key[AUTH_KEY_LEN + 1];
    sov_status s = auth_key_new(key, &k);
    if (s) return cli_status_error("keys", s);
    store *st;
    rc = open_store(o, false, &st);
    if (rc) return rc;
    if (k.client_subject[0] && (rc = subject_free_for(st, k.client_subject, k.tenant))) {
        store_close(st);
        return rc;
    }
    int64_t id = 0;
    s = store_key_add(st, &k, &id);
    if (!s && o->weight != -1) s = store_tenant_set_weight(st, k.tenant, o->weight);
    store_close(st);
    if (s) return cli_status_error("keys", s);
    char rpm[24], tpm[24], tpd[24];
    limit_str(k.rpm, rpm, sizeof rpm);
    limit_str(k.tpm, tpm, sizeof tpm);
    limit_str(k.tpd, tpd, sizeof tpd);
    printf("created key %lld (%s…) for tenant '%s': models %s, rpm %s, tpm %s, tokens/day %s%s%s%s%s\n",
           (long long)id, k.prefix, k.tenant, k.models[0] ? k.models : "*", rpm, tpm, tpd,
           k.admin ? ", admin" : "", k.client_subject[0] ? ", client certificate '" : "", k.client_subject,
           k.client_subject[0] ? "'" : "");
    printf("%s\n", key);
    fflush(stdout);
    fprintf(stderr,
            "sov keys: the key above is shown only once; store it now (the server keeps only a hash)\n");
    return 0;
}

/* ---- list ---- */

static int cmd_list(const keys_opts *o) {
    store *st;
    int rc = open_store(o, true, &st);
    if (rc) return rc;
    store_key *keys = NULL;
    size_t n = 0;
    const sov_status s = store_keys(st, &keys, &n);
    store_close(st);
    if (s) return cli_status_error("keys", s);
    if (!o->json && isatty(STDOUT_FILENO))
        printf(
            "id\ttenant\tmodels\trpm\ttpm\ttokens/day\tcreated\tlast used\trevoked\tadmin\tweight\tprefix\t"
            "client cert subject\n");
    for (size_t i = 0; i < n; i++) {
        const store_key *k = &keys[i];
        char created[32], used[32], revoked[32];
        iso_time(k->created, created, sizeof created);
        iso_time(k->last_used, used, sizeof used);
        iso_time(k->revoked, revoked, sizeof revoked);
        if (o->json) {
            json_t *j = json_pack("{sI ss ss sI sI sI ss ss ss sb sf ss ss}", "id", (json_int_t)k->id,
                                  "tenant", k->tenant, "models", k->models, "rpm", (json_int_t)k->rpm, "tpm",
                                  (json_int_t)k->tpm, "tokens_per_day", (json_int_t)k->tpd, "created",
                                  created, "last_used", used, "revoked", revoked, "admin", k->admin, "weight",
                                  k->weight, "prefix", k->prefix, "client_cert_subject", k->client_subject);
            char *line = j ? json_dumps(j, JSON_COMPACT) : NULL;
            if (line) printf("%s\n", line);
            free(line);
            json_decref(j);
            continue;
        }
        char rpm[24], tpm[24], tpd[24];
        limit_str(k->rpm, rpm, sizeof rpm);
        limit_str(k->tpm, tpm, sizeof tpm);
        limit_str(k->tpd, tpd, sizeof tpd);
        printf("%lld\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%g\t%s\t%s\n", (long long)k->id, k->tenant,
               k->models[0] ? k->models : "*", rpm, tpm, tpd, created, used, revoked,
               k->admin ? "admin" : "-", k->weight, k->prefix,
               k->client_subject[0] ? k->client_subject : "-");
    }
    free(keys);
    return 0;
}

/* ---- revoke, weight ---- */

static int cmd_revoke(const keys_opts *o) {
    if (o->n_pos != 1)
        return cli_error("keys", "revoke needs the key's id (the first column of sov keys list)");
    char *end;
    errno = 0;
    const long long id = strtoll(o->pos[0], &end, 10);
    if (errno || end == o->pos[0] || *end || id <= 0)
        return cli_error("keys", "'%s' is not a key id (the first column of sov keys list)", o->pos[0]);
    store *st;
    int rc = open_store(o, false, &st);
    if (rc) return rc;
    const sov_status s = store_key_revoke(st, id, (int64_t)time(NULL));
    store_close(st);
    if (s == SOV_ERR_NOT_FOUND) return cli_error("keys", "there is no key %lld (see sov keys list)", id);
    if (s) return cli_status_error("keys", s);
    printf("revoked key %lld\n", id);
    return 0;
}

static int cmd_weight(const keys_opts *o) {
    if (o->n_pos != 2)
        return cli_error("keys", "weight needs a tenant and a weight: sov keys weight --db DB TENANT W");
    char *end;
    errno = 0;
    const double w = strtod(o->pos[1], &end);
    if (errno || end == o->pos[1] || *end || !(w > 0 && w <= 1000))
        return cli_error("keys", "the weight must be a number in (0, 1000], not '%s'", o->pos[1]);
    store *st;
    int rc = open_store(o, false, &st);
    if (rc) return rc;
    const sov_status s = store_tenant_set_weight(st, o->pos[0], w);
    store_close(st);
    if (s == SOV_ERR_NOT_FOUND)
        return cli_error("keys", "there is no tenant '%s' (see sov keys list)", o->pos[0]);
    if (s) return cli_status_error("keys", s);
    printf("tenant '%s' now has weight %g\n", o->pos[0], w);
    return 0;
}

/* ---- usage ---- */

static void usage_line(const keys_opts *o, const char *tenant, const store_usage_row *r,
                       const store_usage_row *sum) {
    const long long total = (long long)(sum->prompt_tokens + sum->completion_tokens);
    if (o->json) {
        json_t *j = json_pack("{ss sI sI sI sI sI}", "tenant", tenant, "requests", (json_int_t)sum->requests,
                              "prompt_tokens", (json_int_t)sum->prompt_tokens, "completion_tokens",
                              (json_int_t)sum->completion_tokens, "cached_tokens",
                              (json_int_t)sum->cached_tokens, "total_tokens", (json_int_t)total);
        if (j && r) {
            json_object_set_new(j, "key_id", json_integer(r->key_id));
            json_object_set_new(j, "prefix", json_string(r->prefix));
        }
        char *line = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (line) printf("%s\n", line);
        free(line);
        json_decref(j);
        return;
    }
    if (r)
        printf("%s\t%lld\t%s\t", tenant, (long long)r->key_id, r->prefix);
    else
        printf("%s\t", tenant);
    printf("%lld\t%lld\t%lld\t%lld\t%lld\n", (long long)sum->requests, (long long)sum->prompt_tokens,
           (long long)sum->completion_tokens, (long long)sum->cached_tokens, total);
}

static int cmd_usage(const keys_opts *o) {
    const int64_t now = (int64_t)time(NULL);
    int64_t since = 0;
    if (o->since && (since = cli_parse_time(o->since, now)) < 0)
        return cli_error("keys",
                         "--since '%s' is not a date (2026-12-03[T10:00[:00]][Z]), @UNIXTIME or a duration "
                         "(30m, 24h, 7d)",
                         o->since);
    store *st;
    int rc = open_store(o, true, &st);
    if (rc) return rc;
    store_usage_row *rows = NULL;
    size_t n = 0;
    const sov_status s = store_usage(st, since, &rows, &n);
    store_close(st);
    if (s) return cli_status_error("keys", s);
    if (!o->json && isatty(STDOUT_FILENO))
        printf("tenant\t%srequests\tprompt_tokens\tcompletion_tokens\tcached_tokens\ttotal_tokens\n",
               o->by_key ? "key\tprefix\t" : "");
    for (size_t i = 0; i < n;) {
        if (o->by_key) {
            usage_line(o, rows[i].tenant, &rows[i], &rows[i]);
            i++;
            continue;
        }
        store_usage_row sum = rows[i]; /* rows come ordered by tenant: add up its keys */
        size_t j = i + 1;
        for (; j < n && strcmp(rows[j].tenant, rows[i].tenant) == 0; j++) {
            sum.requests += rows[j].requests;
            sum.prompt_tokens += rows[j].prompt_tokens;
            sum.completion_tokens += rows[j].completion_tokens;
            sum.cached_tokens += rows[j].cached_tokens;
        }
        usage_line(o, rows[i].tenant, NULL, &sum);
        i = j;
    }
    free(rows);
    return 0;
}

int cmd_keys(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    keys_opts o = {.weight = -1}; /* -1: not given */
    int rc = parse(argc - 1, argv + 1, &o);
    if (rc) return rc;
    if (strcmp(sub, "create") == 0) return cmd_create(&o);
    if (strcmp(sub, "list") == 0) return cmd_list(&o);
    if (strcmp(sub, "revoke") == 0) return cmd_revoke(&o);
    if (strcmp(sub, "usage") == 0) return cmd_usage(&o);
    if (strcmp(sub, "weight") == 0) return cmd_weight(&o);
    return cli_error("keys", "unknown subcommand '%s': create, list, revoke, usage or weight", sub);
}
