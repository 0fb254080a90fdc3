/* common.c - option parsing, error printing, progress display, --since times and the state
 * folder for the subcommands. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "kv/kv.h"

int cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "sov %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int cli_status_error(const char *cmd, sov_status st) {
    const char *detail = sov_last_error();
    fprintf(stderr, "sov %s: %s\n", cmd, detail && *detail ? detail : sov_strerror(st));
    return 1;
}

bool cli_flag(char **argv, int *i, const char *name) { return strcmp(argv[*i], name) == 0; }

bool cli_opt_str(int argc, char **argv, int *i, const char *name, const char **out, bool *bad) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0) return false;
    if (a[n] == '=') {
        *out = a + n + 1;
        return true;
    }
    if (a[n] != '\0') return false;
    if (*i + 1 >= argc) {
        fprintf(stderr, "sov: option %s needs a value\n", name);
        *bad = true;
        return true;
    }
    *out = argv[++*i];
    return true;
}

static bool kv_type_value(const char *name, const char *v, sov_kv_type *out, bool *bad) {
    if (*bad) return true;
    if (!kv_type_parse(v, out)) {
        fprintf(stderr, "sov: option %s takes f16, q8_0, q4_0 or f32, not '%s'\n", name, v);
        *bad = true;
    }
    return true;
}

bool cli_opt_kv_type(int argc, char **argv, int *i, sov_kv_type *k, sov_kv_type *v, bool *bad) {
    const char *s;
    if (cli_opt_str(argc, argv, i, "--kv-type", &s, bad)) {
        kv_type_value("--kv-type", s, k, bad);
        *v = *k;
        return true;
    }
    if (cli_opt_str(argc, argv, i, "-ctk", &s, bad) || cli_opt_str(argc, argv, i, "--cache-type-k", &s, bad))
        return kv_type_value("-ctk", s, k, bad);
    if (cli_opt_str(argc, argv, i, "-ctv", &s, bad) || cli_opt_str(argc, argv, i, "--cache-type-v", &s, bad))
        return kv_type_value("-ctv", s, v, bad);
    if (cli_flag(argv, i, "--kv-f32")) {
        *k = *v = SOV_KV_F32;
        return true;
    }
    return false;
}

int64_t cli_kv_bytes_per_pos(const sov_model_info *info, sov_kv_type k, sov_kv_type v) {
    if (k == SOV_KV_DEFAULT) k = SOV_KV_F16;
    if (v == SOV_KV_DEFAULT) v = k;
    const size_t kr = kv_row_bytes(k, info->head_dim), vr = kv_row_bytes(v, info->head_dim);
    if (!kr || !vr) return 0;
    return (int64_t)info->n_layer * info->n_head_kv * (int64_t)(kr + vr);
}

void cli_warn_ctx(const char *cmd, const sov_model_info *info, int64_t n_ctx) {
    if (info->n_ctx_train > 0 && n_ctx > info->n_ctx_train)
        fprintf(stderr, "sov %s: warning: a context of %lld positions passes the model's training context of %d; "
                "outputs past it are unreliable\n", cmd, (long long)n_ctx, info->n_ctx_train);
}

bool cli_opt_int(int argc, char **argv, int *i, const char *name, long *out, bool *bad) {
    const char *v;
    if (!cli_opt_str(argc, argv, i, name, &v, bad)) return false;
    if (*bad) return true;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end) {
        fprintf(stderr, "sov: option %s needs an integer, not '%s'\n", name, v);
        *bad = true;
        return true;
    }
    *out = x;
    return true;
}

bool cli_opt_float(int argc, char **argv, int *i, const char *name, double *out, bool *bad) {
    const char *v;
    if (!cli_opt_str(argc, argv, i, name, &v, bad)) return false;
    if (*bad) return true;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end) {
        fprintf(stderr, "sov: option %s needs a number, not '%s'\n", name, v);
        *bad = true;
        return true;
    }
    *out = x;
    return true;
}

void cli_progress(float fraction, void *label) {
    static int last = -1;
    const char *what = label ? label : "working";
    int pct = (int)(fraction * 100.0f + 0.5f);
    if (pct == last) return;
    if (isatty(STDERR_FILENO)) {
        int bars = pct / 4;
        fprintf(stderr, "\r%s [%.*s%*s] %3d%%", what, bars, "=========================", 25 - bars, "", pct);
        if (pct >= 100) fputc('\n', stderr);
    } else if (pct / 25 != last / 25 || pct >= 100) {
        fprintf(stderr, "%s: %d%%\n", what, pct);
    }
    last = pct >= 100 ? -1 : pct;
    fflush(stderr);
}

int64_t cli_parse_time(const char *v, int64_t now) {
    char *end;
    if (v[0] == '@') {
        errno = 0;
        const long long t = strtoll(v + 1, &end, 10);
        return errno || end == v + 1 || *end || t < 0 ? -1 : (int64_t)t;
    }
    errno = 0;
    const double x = strtod(v, &end);
    if (!errno && end != v && x >= 0 && end[0] && !end[1] && (v[0] >= '0' && v[0] <= '9') &&
        (end[0] == 's' || end[0] == 'm' || end[0] == 'h' || end[0] == 'd')) {
        const double mul = end[0] == 's' ? 1 : end[0] == 'm' ? 60 : end[0] == 'h' ? 3600 : 86400;
        return (int64_t)((double)now - x * mul);
    }
    static const char *const fmts[] = {
        "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%MZ", "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",  "%Y-%m-%d %H:%M",    "%Y-%m-%d"};
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
        struct tm tm = {0};
        const char *p = strptime(v, fmts[i], &tm);
        if (p && !*p) return (int64_t)timegm(&tm);
    }
    return -1;
}

const char *cli_state_dir(const char *db, const char *given, char *buf, size_t cap) {
    const bool sqlite = db && *db && strncmp(db, "postgresql://", 13) != 0 && strncmp(db, "postgres://", 11) != 0;
    if (given) {
        snprintf(buf, cap, "%s", given);
    } else if (sqlite) {
        const char *slash = strrchr(db, '/');
        if (slash) snprintf(buf, cap, "%.*s", slash == db ? 1 : (int)(slash - db), db);
        else snprintf(buf, cap, ".");
    } else {
        const char *home = getenv("HOME");
        if (!home || !*home) return NULL;
        snprintf(buf, cap, "%s/.local/state/sov", home);
    }
    return buf;
}
