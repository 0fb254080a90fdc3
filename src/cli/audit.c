/* audit.c - `sov audit`: verify, export and follow the audit log (docs/AUDIT.md).
 *
 *   verify --db DB       walks the whole chain in the store (src/audit/verify.c) against the
 *                        signed heads and the trusted public keys; exit 0 only when it all
 *                        verifies, 1 when something does not (the first bad record named),
 *                        2 when it cannot verify at all (no store, no trusted key)
 *   verify --export F    the same over an export file alone
 *   export --db DB       JSON lines: a header, records (links for those a filter leaves
 *                        out), signed heads; verifiable alone
 *   tail --db DB         the last records, and new ones as they come with --follow
 *
 * The store is opened read-only, so a running server is never disturbed. Heads are read
 * before the chain row and the chain row before the records: anything a head or the row
 * names was committed before the records are read, so a server appending meanwhile cannot
 * make a sound log look truncated. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit.h"
#include "cli/cli.h"
#include "core/status.h"
#include "store/store.h"

enum { EXIT_BAD = 1, EXIT_CANNOT = 2, PAGE = 1000, MAX_PUBS = 64 };

static void help(FILE *f) {
    fprintf(f,
            "usage: sov audit verify --db DB [--pub FILE]... [--state-dir DIR] [--require-signed]\n"
            "       sov audit verify --export FILE [--pub FILE]... [--state-dir DIR] [--require-signed]\n"
            "       sov audit export --db DB [--since T] [--tenant NAME] [-o FILE]\n"
            "       sov audit tail   --db DB [-n N] [--follow] [--json]\n\n"
            "The audit log `sov serve --db DB` writes: one record per /v1 request, hash-chained, its head\n"
            "signed with the server's Ed25519 key (docs/AUDIT.md). DB is a SQLite file or a postgresql://\n"
            "URL (or SOV_DB).\n\n"
            "  verify     walks the whole chain. Exit 0 when every record, link and signed head verifies;\n"
            "             1 naming the first bad record and what happened (edited, deleted, inserted,\n"
            "             reordered, rewritten, tail truncated, head forged or signed by an unknown key);\n"
            "             2 when it cannot verify (no store, no trusted key)\n"
            "    --pub FILE          a trusted public key (audit-ed25519.pub of a server; repeat for\n"
            "                        several). Default: the audit-*.pub in the state folder, with a\n"
            "                        warning: keys from the same machine prove less than a copy kept apart\n"
            "    --state-dir DIR     default: the SQLite file's folder, or ~/.local/state/sov\n"
            "    --export FILE       verify an export file instead of the store\n"
            "    --require-signed    records after the last signed head are a failure, not a note\n"
            "  export     JSON lines: a header, every record (with its prev and hash, and its text when\n"
            "             kept), then the signed heads; a third party verifies it alone\n"
            "    --since T           from the first record at or after T: 2026-12-03[T10:00[:00]][Z],\n"
            "                        @UNIXTIME, or a duration back from now (30m, 24h, 7d)\n"
            "    --tenant NAME       only this tenant's records in full; the others as links (prev,\n"
            "                        digest, hash: no content), so the chain still verifies\n"
            "    -o FILE             write there instead of stdout\n"
            "  tail       the last N records (default 10), one line each (or JSON lines)\n"
            "    --follow            then new records as they are committed (Ctrl-C ends)\n");
}

/* Prints "sov audit: ..." and returns code. */
static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "sov audit: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

/* The last failure's one-line detail, and code. */
static int fail_last(int code) { return fail(code, "%s", sov_last_error()); }

typedef struct audit_opts {
    const char *cmd, *db, *export_file, *state_dir, *since, *tenant, *out;
    const char *pubs[MAX_PUBS];
    int n_pubs;
    long n;
    bool require_signed, follow, json;
} audit_opts;

static int parse(int argc, char **argv, audit_opts *o) {
    bool bad = false;
    for (int i = 1; i < argc && !bad; i++) {
        const char *pub = NULL;
        if (cli_flag(argv, &i, "--help") || cli_flag(argv, &i, "-h")) {
            help(stdout);
            exit(0);
        } else if (cli_opt_str(argc, argv, &i, "--pub", &pub, &bad)) {
            if (pub && o->n_pubs < MAX_PUBS) o->pubs[o->n_pubs++] = pub;
        } else if (cli_opt_str(argc, argv, &i, "--db", &o->db, &bad) ||
                   cli_opt_str(argc, argv, &i, "--export", &o->export_file, &bad) ||
                   cli_opt_str(argc, argv, &i, "--state-dir", &o->state_dir, &bad) ||
                   cli_opt_str(argc, argv, &i, "--since", &o->since, &bad) ||
                   cli_opt_str(argc, argv, &i, "--tenant", &o->tenant, &bad) ||
                   cli_opt_str(argc, argv, &i, "-o", &o->out, &bad) ||
                   cli_opt_int(argc, argv, &i, "-n", &o->n, &bad)) {
        } else if (cli_flag(argv, &i, "--require-signed")) {
            o->require_signed = true;
        } else if (cli_flag(argv, &i, "--follow") || cli_flag(argv, &i, "-f")) {
            o->follow = true;
        } else if (cli_flag(argv, &i, "--json")) {
            o->json = true;
        } else if (!o->cmd && argv[i][0] != '-') {
            o->cmd = argv[i];
        } else {
            return fail(EXIT_CANNOT, "unknown option '%s'; see sov audit --help", argv[i]);
        }
    }
    if (bad) return EXIT_CANNOT;
    if (!o->cmd) {
        help(stderr);
        return EXIT_CANNOT;
    }
    if (!o->db) o->db = getenv("SOV_DB");
    if (o->db && !*o->db) o->db = NULL;
    if (!o->db && !(o->export_file && strcmp(o->cmd, "verify") == 0))
        return fail(EXIT_CANNOT, "no state store given: --db FILE or --db postgresql://... (or SOV_DB)");
    if (o->n < 0 || o->n > 1000000) return fail(EXIT_CANNOT, "-n must be 0..1000000");
    return 0;
}

static store *open_store(const char *db) {
    const store_open_params p = {.read_only = true};
    store *s = NULL;
    const sov_status st = store_open(db, &p, &s);
    if (st) fail_last(0);
    return s;
}

/* ---- trusted keys ---- */

/* --pub files, else the state folder's audit-*.pub (said, with why that proves less). */
static int trusted_keys(const audit_opts *o, audit_pub **keys, size_t *n) {
    *keys = NULL;
    *n = 0;
    if (o->n_pubs > 0) {
        *keys = calloc((size_t)o->n_pubs, sizeof **keys);
        if (!*keys) return fail(EXIT_CANNOT, "out of memory");
        for (int i = 0; i < o->n_pubs; i++, (*n)++)
            if (audit_pub_load(o->pubs[i], &(*keys)[i]) != SOV_OK) return fail_last(EXIT_CANNOT);
        return 0;
    }
    char dir[4096];
    if (!cli_state_dir(o->db, o->state_dir, dir, sizeof dir)) snprintf(dir, sizeof dir, ".");
    if (audit_pubs_in_dir(dir, keys, n) != SOV_OK) return fail_last(EXIT_CANNOT);
    if (*n == 0)
        return fail(
            EXIT_CANNOT,
            "no trusted public key: pass --pub FILE (a server's audit-ed25519.pub), or --state-dir DIR "
            "holding audit-*.pub (looked in %s)",
            dir);
    fprintf(
        stderr,
        "sov audit: warning: trusting the %zu key(s) found in %s: an insider who can change the log on this "
        "machine could change these too; keep a copy of the public key elsewhere and pass it with --pub\n",
        *n, dir);
    return 0;
}

/* ---- reporting ---- */

static int report(const audit_report *r, bool require_signed, const char *what) {
    char last[AUDIT_HEX_LEN + 1];
    audit_hex(r->last_hash, AUDIT_HASH_BYTES, last);
    if (r->n_problems == 0 && (!require_signed || r->unsigned_tail == 0)) {
        printf("sov audit verify: OK: %s: %lld records (%lld..%lld), chain head %.16s…; %lld signed heads "
               "match, "
               "signed through record %lld",
               what, (long long)r->records, (long long)r->first_seq, (long long)r->last_seq, last,
               (long long)r->heads_matched, (long long)r->signed_through);
        if (r->unsigned_tail > 0)
            printf(
                "; %lld records after the last signed head (signed within 10 s, at shutdown or at the next "
                "start; a truncation of these alone would not show)",
                (long long)r->unsigned_tail);
        printf("\n");
        return 0;
    }
    if (r->n_problems == 0) {
        printf("sov audit verify: FAILED: %s: first bad record %lld (unsigned): %lld records after the last "
               "signed "
               "head at record %lld (--require-signed)\n",
               what, (long long)(r->signed_through + 1), (long long)r->unsigned_tail,
               (long long)r->signed_through);
        return EXIT_BAD;
    }
    printf("sov audit verify: FAILED: %s: first bad record %lld (%s): %s\n", what, (long long)r->first.seq,
           audit_problem_name(r->first.kind), r->first.detail);
    printf("  %zu problem(s) in all%s:\n", r->n_problems,
           r->n_problems > AUDIT_PROBLEMS_KEPT ? ", the first 16" : "");
    for (size_t i = 0; i < r->n_problems && i < AUDIT_PROBLEMS_KEPT; i++)
        printf("  record %lld: %s: %s\n", (long long)r->problems[i].seq,
               audit_problem_name(r->problems[i].kind), r->problems[i].detail);
    return EXIT_BAD;
}

/* ---- verify --db ---- */

static int verify_db(const audit_opts *o, const audit_pub *keys, size_t n_keys) {
    store *s = open_store(o->db);
    if (!s) return EXIT_CANNOT;
    audit_report r;
    const sov_status st = store_audit_verify(s, keys, n_keys, &r); /* store_audit_verify.c */
    const int rc = st ? fail_last(EXIT_CANNOT) : report(&r, o->require_signed, store_describe(s));
    store_close(s);
    return rc;
}

/* ---- verify --export ---- */

/* Reads the next line of f into *buf (growing it); its length, or -1 at the end. */
static ssize_t next_line(FILE *f, char **buf, size_t *cap) {
    ssize_t n = getline(buf, cap, f);
    while (n > 0 && ((*buf)[n - 1] == '\n' || (*buf)[n - 1] == '\r'))
        (*buf)[--n] = '\0';
    return n;
}

/* First pass: the header's first record, the anchor (that record's prev) and the heads. */
static int export_heads(FILE *f, const char *path, uint8_t anchor[AUDIT_HASH_BYTES], int64_t *anchor_seq,
                        audit_head **heads, size_t *n_heads) {
    char *buf = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t len;
    bool header = false, first = true;
    int rc = 0;
    while (!rc && (len = next_line(f, &buf, &cap)) >= 0) {
        lineno++;
        audit_line l;
        if (audit_line_parse(buf, (size_t)len, &l) != SOV_OK) {
            rc = fail(EXIT_BAD, "%s:%zu: %s", path, lineno, sov_last_error());
        } else if (lineno == 1 && l.kind != AUDIT_LINE_HEADER) {
            rc = fail(EXIT_BAD, "%s:1: not a sov audit export (no header line)", path);
        } else if (l.kind == AUDIT_LINE_HEADER) {
            header = true;
            *anchor_seq = l.first_seq - 1;
        } else if (l.kind == AUDIT_LINE_HEAD) {
            audit_head *grown = realloc(*heads, (*n_heads + 1) * sizeof **heads);
            if (!grown) rc = fail(EXIT_CANNOT, "out of memory");
            if (grown) (*heads = grown)[(*n_heads)++] = l.head;
        } else if (first) {
            first = false;
            memcpy(anchor, l.rec.prev, AUDIT_HASH_BYTES);
        }
        audit_line_free(&l);
    }
    free(buf);
    if (!rc && !header) rc = fail(EXIT_BAD, "%s is empty: not a sov audit export", path);
    if (*anchor_seq == 0) memset(anchor, 0, AUDIT_HASH_BYTES); /* from record 1: the chain starts at zeros */
    return rc;
}

static int verify_export(const audit_opts *o, const audit_pub *keys, size_t n_keys) {
    FILE *f = fopen(o->export_file, "re");
    if (!f) return fail(EXIT_CANNOT, "cannot read %s: %s", o->export_file, strerror(errno));
    uint8_t anchor[AUDIT_HASH_BYTES] = {0};
    int64_t anchor_seq = 0;
    audit_head *heads = NULL;
    size_t n_heads = 0;
    int rc = export_heads(f, o->export_file, anchor, &anchor_seq, &heads, &n_heads);
    audit_verifier *v = rc ? NULL : audit_verifier_new(anchor, anchor_seq, heads, n_heads, keys, n_keys);
    if (!rc && !v) rc = fail(EXIT_CANNOT, "out of memory");
    char *buf = NULL;
    size_t cap = 0;
    ssize_t len;
    rewind(f);
    while (v && (len = next_line(f, &buf, &cap)) >= 0) {
        audit_line l;
        if (audit_line_parse(buf, (size_t)len, &l) == SOV_OK &&
            (l.kind == AUDIT_LINE_RECORD || l.kind == AUDIT_LINE_LINK)) {
            audit_link link;
            audit_line_link(&l, &link);
            audit_verifier_push(v, &link);
        }
        audit_line_free(&l);
    }
    free(buf);
    fclose(f);
    free(heads);
    if (!v) return rc;
    audit_report r;
    audit_verifier_finish(v, NULL, &r);
    if (anchor_seq > 0 && r.heads_matched == 0 && r.records > 0)
        fprintf(stderr,
                "sov audit: note: this export starts at record %lld; only a signed head after that "
                "vouches for where it starts, and none matched\n",
                (long long)anchor_seq + 1);
    return report(&r, o->require_signed, o->export_file);
}

static int cmd_verify(const audit_opts *o) {
    audit_pub *keys = NULL;
    size_t n_keys = 0;
    int rc = trusted_keys(o, &keys, &n_keys);
    if (!rc) rc = o->export_file ? verify_export(o, keys, n_keys) : verify_db(o, keys, n_keys);
    free(keys);
    return rc;
}

/* ---- export ---- */

static bool put_line(FILE *out, const audit_line *l) {
    char *s = audit_line_json(l);
    const bool ok = s && fprintf(out, "%s\n", s) >= 0;
    if (!s) fail(0, "record %lld cannot be written as JSON (not UTF-8?)", (long long)l->rec.seq);
    free(s);
    return ok;
}

static bool export_row(FILE *out, const store_audit_row *row, const char *tenant) {
    audit_line l = {.kind = AUDIT_LINE_RECORD, .rec = row->rec};
    if (tenant && strcmp(row->rec.tenant, tenant) != 0) {
        l.kind = AUDIT_LINE_LINK;
        if (audit_record_digest(&row->rec, l.digest) != SOV_OK) memset(l.digest, 0, sizeof l.digest);
    } else {
        l.prompt_text = row->prompt_text;
        l.completion_text = row->completion_text;
    }
    return put_line(out, &l);
}

static int export_to(store *s, FILE *out, int64_t from, const char *tenant) {
    const audit_line header = {.kind = AUDIT_LINE_HEADER, .first_seq = from};
    bool ok = put_line(out, &header);
    for (int64_t next = from; ok;) {
        store_audit_row *rows = NULL;
        size_t n = 0;
        const sov_status st = store_audit_read(s, next, PAGE, &rows, &n);
        if (st) return fail_last(EXIT_CANNOT);
        for (size_t i = 0; ok && i < n; i++)
            ok = export_row(out, &rows[i], tenant);
        if (n) next = rows[n - 1].rec.seq + 1;
        store_audit_rows_free(rows, n);
        if (n < PAGE) break;
    }
    audit_head *heads = NULL;
    size_t n_heads = 0;
    const sov_status st = ok ? store_audit_heads(s, from, &heads, &n_heads) : SOV_OK;
    if (st) return fail_last(EXIT_CANNOT);
    for (size_t i = 0; ok && i < n_heads; i++) {
        const audit_line l = {.kind = AUDIT_LINE_HEAD, .head = heads[i]};
        ok = put_line(out, &l);
    }
    free(heads);
    return ok ? 0 : EXIT_CANNOT;
}

/* The first record --since names: the first at or after T, or (none) the one after the last. */
static int export_start(store *s, const char *since, int64_t *from) {
    const int64_t t = cli_parse_time(since, (int64_t)time(NULL));
    if (t < 0)
        return fail(EXIT_CANNOT,
                    "--since '%s' is not a date (2026-12-03[T10:00[:00]][Z]), @UNIXTIME or a duration "
                    "(30m, 24h, 7d)",
                    since);
    if (store_audit_first_since(s, t * 1000, from) != SOV_OK) return fail_last(EXIT_CANNOT);
    if (*from > 0) return 0;
    uint8_t hash[AUDIT_HASH_BYTES];
    if (store_audit_chain(s, from, hash) != SOV_OK) return fail_last(EXIT_CANNOT);
    (*from)++;
    return 0;
}

static int cmd_export(const audit_opts *o) {
    int64_t from = 1;
    store *s = open_store(o->db);
    if (!s) return EXIT_CANNOT;
    int rc = o->since ? export_start(s, o->since, &from) : 0;
    FILE *out = rc ? NULL : o->out ? fopen(o->out, "we") : stdout;
    if (!rc && !out) rc = fail(EXIT_CANNOT, "cannot write %s: %s", o->out, strerror(errno));
    if (rc) {
        store_close(s);
        return rc;
    }
    rc = export_to(s, out, from, o->tenant);
    if (fflush(out) != 0 && !rc) rc = fail(EXIT_CANNOT, "cannot write the export: %s", strerror(errno));
    if (o->out) fclose(out);
    store_close(s);
    return rc;
}

/* ---- tail ---- */

static void tail_line(const store_audit_row *row, bool json) {
    const audit_record *r = &row->rec;
    if (json) {
        const audit_line l = {.kind = AUDIT_LINE_RECORD, .rec = *r};
        put_line(stdout, &l);
        return;
    }
    char when[40];
    const time_t t = (time_t)(r->time_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    printf("#%lld %s.%03dZ %s key=%lld %s %d %s prompt=%lld completion=%lld cached=%lld %lldms %s %s%s\n",
           (long long)r->seq, when, (int)(r->time_ms % 1000), r->tenant[0] ? r->tenant : "-",
           (long long)r->key_id, r->endpoint, r->status, r->finish_reason[0] ? r->finish_reason : "-",
           (long long)r->prompt_tokens, (long long)r->completion_tokens, (long long)r->cached_tokens,
           (long long)r->latency_ms, r->client[0] ? r->client : "-", r->response_id[0] ? r->response_id : "-",
           row->prompt_text || row->completion_text ? " +text" : "");
}

static int cmd_tail(const audit_opts *o) {
    store *s = open_store(o->db);
    if (!s) return EXIT_CANNOT;
    int64_t last = 0;
    uint8_t hash[AUDIT_HASH_BYTES];
    sov_status st = store_audit_chain(s, &last, hash);
    int64_t from = last - (o->n ? o->n : 10) + 1;
    if (from < 1) from = 1;
    for (bool first = true; !st && (first || o->follow); first = false) {
        if (!first) {
            const struct timespec ts = {0, 500 * 1000000L};
            nanosleep(&ts, NULL);
        }
        store_audit_row *rows = NULL;
        size_t n = 0;
        st = store_audit_read(s, from, PAGE, &rows, &n);
        for (size_t i = 0; !st && i < n; i++)
            tail_line(&rows[i], o->json);
        if (n) from = rows[n - 1].rec.seq + 1;
        store_audit_rows_free(rows, n);
        fflush(stdout);
    }
    const int rc = st ? fail_last(EXIT_CANNOT) : 0;
    store_close(s);
    return rc;
}

int cmd_audit(int argc, char **argv) {
    audit_opts o = {0};
    const int rc = parse(argc, argv, &o);
    if (rc) return rc;
    if (strcmp(o.cmd, "verify") == 0) return cmd_verify(&o);
    if (strcmp(o.cmd, "export") == 0) return cmd_export(&o);
    if (strcmp(o.cmd, "tail") == 0) return cmd_tail(&o);
    return fail(EXIT_CANNOT, "unknown subcommand '%s': verify, export or tail (see sov audit --help)", o.cmd);
}
