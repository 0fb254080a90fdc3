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
