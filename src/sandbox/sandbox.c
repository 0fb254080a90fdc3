/* sandbox.c - the lockdown's plan: from what the server was started with (its store, its
 * state folder, its model and configuration, the Unix sockets the operator named) to the
 * Landlock rules (landlock.c) and the seccomp filter (seccomp.c), applied in that order,
 * checked, and described for the start-up message, /ready and /metrics.
 *
 * What stays allowed after the lockdown, and why (docs/SANDBOX.md has the full table):
 *   - accepting and serving on the listening sockets, the store's open connection: these
 *     sockets exist already, nothing new is created;
 *   - PostgreSQL must survive an outage, and libpq reconnects with a new socket: a Unix
 *     socket when the URL names a socket folder, a TCP socket when it names a host (then
 *     Landlock, ABI >= 4, lets connect() reach only the URL's port(s); a host *name* is
 *     looked up in /etc/hosts, never in DNS: UDP stays refused);
 *   - Unix sockets the operator named (--allow-unix-socket);
 *   - reading the model and configuration files, writing in the state folder (and the
 *     SQLite store's folder, which needs its -wal and -shm files), /dev/null and
 *     /dev/urandom, this process's own /proc entries. */
#include "sandbox/sandbox.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "core/status.h"
#include "core/util.h"
#include "sandbox/sandbox_impl.h"

#if defined(__SANITIZE_ADDRESS__)
#define SB_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SB_SANITIZER 1
#endif
#endif

/* ---- the store's routes ---- */

static bool is_postgres(const char *db) {
    return db && (strncmp(db, "postgresql://", 13) == 0 || strncmp(db, "postgres://", 11) == 0);
}

/* The value of a connection option: the URL's, else libpq's default (environment or
 * built-in); NULL when neither has one. */
static const char *opt(const PQconninfoOption *url, const PQconninfoOption *dflt, const char *key) {
    for (const PQconninfoOption *o = url; o && o->keyword; o++)
        if (strcmp(o->keyword, key) == 0 && o->val && o->val[0]) return o->val;
    for (const PQconninfoOption *o = dflt; o && o->keyword; o++)
        if (strcmp(o->keyword, key) == 0 && o->val && o->val[0]) return o->val;
    return NULL;
}

/* Item i of a comma-separated list into buf ("" when the list is shorter). */
static void list_item(const char *list, size_t i, char *buf, size_t cap) {
    buf[0] = '\0';
    for (size_t k = 0; list && k < i; k++) {
        list = strchr(list, ',');
        if (list) list++;
    }
    if (!list) return;
    const char *end = strchr(list, ',');
    const size_t n = end ? (size_t)(end - list) : strlen(list);
    snprintf(buf, cap, "%.*s", (int)SOV_MIN(n, cap - 1), list);
}

static size_t list_len(const char *list) {
    if (!list) return 0;
    size_t n = 1;
    for (const char *c = list; *c; c++)
        n += *c == ',';
    return n;
}

static sov_status add_port(sandbox_db_routes *r, const char *text) {
    char *end = NULL;
    const long port = text[0] ? strtol(text, &end, 10) : 5432; /* libpq's default */
    if ((text[0] && (!end || *end)) || port < 1 || port > 65535)
        return sov_fail(SOV_ERR_ARG, "sandbox: the PostgreSQL port '%.32s' is not a number 1..65535", text);
    for (size_t i = 0; i < r->n_ports; i++)
        if (r->ports[i] == port) return SOV_OK;
    if (r->n_ports == SANDBOX_MAX_PORTS)
        return sov_fail(SOV_ERR_ARG, "sandbox: more than %d PostgreSQL ports in --db", SANDBOX_MAX_PORTS);
    r->ports[r->n_ports++] = (int)port;
    return SOV_OK;
}

static bool is_address(const char *host) {
    unsigned char a[16];
    return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

/* One host of the list (hostaddr wins over host, as in libpq). */
static sov_status add_host(sandbox_db_routes *r, const char *host, const char *hostaddr, const char *port) {
    if (!hostaddr[0] && (!host[0] || host[0] == '/' || host[0] == '@')) {
        r->unix_socket = true; /* a socket folder (empty: libpq's default, /var/run/postgresql) */
        return SOV_OK;
    }
    r->tcp = true;
    if (!hostaddr[0] && !is_address(host)) r->by_name = true;
    return add_port(r, port);
}

/* Files libpq may read again when it reconnects over TCP (TLS, passwords). */
static void add_files(sandbox_db_routes *r, const PQconninfoOption *url) {
    static const char *const keys[] = {"sslrootcert", "sslcert", "sslkey", "passfile"};
    size_t used = 0;
    for (size_t k = 0; k < SOV_ARRAY_LEN(keys); k++) {
        const char *v = opt(url, NULL, keys[k]);
        if (!v || strcmp(v, "system") == 0 || used + strlen(v) + 1 > sizeof r->buf) continue;
        memcpy(r->buf + used, v, strlen(v) + 1);
        r->files[r->n_files++] = r->buf + used;
        used += strlen(v) + 1;
    }
}

sov_status sandbox_db_routes_of(const char *db, sandbox_db_routes *out) {
    memset(out, 0, sizeof *out);
    if (!is_postgres(db)) return SOV_OK;
    out->postgres = true;
    char *err = NULL;
    PQconninfoOption *url = PQconninfoParse(db, &err);
    if (!url) {
        char line[200];
        snprintf(line, sizeof line, "%s", err ? err : "out of memory");
        line[strcspn(line, "\n")] = '\0';
        PQfreemem(err);
        return sov_fail(SOV_ERR_ARG, "sandbox: cannot read the PostgreSQL URL in --db: %s", line);
    }
    PQconninfoOption *dflt = PQconndefaults();
    const char *hosts = opt(url, dflt, "host"), *addrs = opt(url, dflt, "hostaddr"),
               *ports = opt(url, dflt, "port");
    const size_t n = SOV_MAX(SOV_MAX(list_len(hosts), list_len(addrs)), 1);
    sov_status st = SOV_OK;
    for (size_t i = 0; i < n && !st; i++) {
        char host[256], addr[256], port[32];
        list_item(hosts, i, host, sizeof host);
        list_item(addrs, i, addr, sizeof addr);
        list_item(ports, list_len(ports) == 1 ? 0 : i, port, sizeof port);
        st = add_host(out, host, addr, port);
    }
    if (!st) add_files(out, url);
    PQconninfoFree(url);
    PQconninfoFree(dflt);
    return st;
}

/* ---- the Landlock plan ---- */

/* Paths the plan points into. */
typedef struct path_store {
    char db_dir[1024], proc[64], pg_dir[1024], exe[1024];
} path_store;

static void fs_rule(sb_landlock_plan *pl, const char *path, bool write) {
    if (path && path[0] && pl->n_fs < SB_MAX_FS_RULES) pl->fs[pl->n_fs++] = (sb_fs_rule){path, write};
}

/* The SQLite store's folder: its journal, -wal and -shm files live beside it. */
static void sqlite_dir(const char *db, char *buf, size_t cap) {
    buf[0] = '\0';
    if (!db || is_postgres(db) || !db[0] || db[0] == ':') return;
    const char *slash = strrchr(db, '/');
    if (!slash)
        snprintf(buf, cap, ".");
    else if (slash == db)
        snprintf(buf, cap, "/");
    else
        snprintf(buf, cap, "%.*s", (int)SOV_MIN((size_t)(slash - db), cap - 1), db);
}

static void plan_fs(const sandbox_params *p, const sandbox_db_routes *r, path_store *ps,
                    sb_landlock_plan *pl) {
    for (size_t i = 0; i < p->n_read_paths && i < SANDBOX_MAX_PATHS; i++)
        fs_rule(pl, p->read_paths[i], false);
    fs_rule(pl, p->state_dir, true);
    sqlite_dir(p->db, ps->db_dir, sizeof ps->db_dir);
    fs_rule(pl, ps->db_dir, true);
    /* this process's /proc entries (glibc reads its own maps for thread stacks; the
     * sanitizers read them too), the null device and the kernel's random source (jansson
     * seeds its hash tables from it) */
    snprintf(ps->proc, sizeof ps->proc, "/proc/%d", (int)getpid());
    fs_rule(pl, ps->proc, false);
    fs_rule(pl, "/dev/null", true);
    fs_rule(pl, "/dev/urandom", false);
    fs_rule(pl, "/dev/random", false);
    if (r->by_name) { /* a PostgreSQL host name is looked up in /etc/hosts (DNS stays refused) */
        fs_rule(pl, "/etc/hosts", false);
        fs_rule(pl, "/etc/nsswitch.conf", false);
        fs_rule(pl, "/etc/host.conf", false);
        fs_rule(pl, "/etc/gai.conf", false);
    }
    if (r->tcp) { /* libpq's TLS over TCP: OpenSSL's configuration and CAs, the user's certificates */
        fs_rule(pl, "/etc/ssl", false);
        const char *home = getenv("HOME");
        if (home && home[0]) {
            snprintf(ps->pg_dir, sizeof ps->pg_dir, "%s/.postgresql", home);
            if (access(ps->pg_dir, F_OK) == 0) fs_rule(pl, ps->pg_dir, false);
        }
        for (size_t i = 0; i < r->n_files; i++)
            fs_rule(pl, r->files[i], false);
    }
#ifdef SB_SANITIZER
    /* sanitizer builds only: symbolizing a report reads the executable and the libraries */
    const ssize_t n = readlink("/proc/self/exe", ps->exe, sizeof ps->exe - 1);
    if (n > 0) ps->exe[n] = '\0';
    fs_rule(pl, ps->exe, false);
    fs_rule(pl, "/usr", false);
#endif
}

/* ---- checks and descriptions ---- */

/* Every thread's /proc status shows the filter (Seccomp: 2) and no_new_privs. */
static sov_status check_threads(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return sov_fail(SOV_ERR_IO, "sandbox: cannot list this process's threads to check them: %s",
                        strerror(errno));
    sov_status st = SOV_OK;
    struct dirent *e;
    while (!st && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[96], line[128];
        snprintf(path, sizeof path, "/proc/self/task/%.32s/status", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue; /* the thread ended */
        bool filter = false, nnp = false;
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "Seccomp:", 8) == 0) filter = atoi(line + 8) == 2;
            if (strncmp(line, "NoNewPrivs:", 11) == 0) nnp = atoi(line + 11) == 1;
        }
        fclose(f);
        if (!filter || !nnp)
            st =
                sov_fail(SOV_ERR_IO, "sandbox: thread %s is not under the seccomp filter after installing it",
                         e->d_name);
    }
    closedir(d);
    return st;
}

static void append(char *buf, size_t cap, const char *fmt, const char *a) {
    const size_t n = strlen(buf);
    if (n + 1 < cap) snprintf(buf + n, cap - n, fmt, a);
}

static void describe(const sandbox_params *p, const sandbox_db_routes *r, const sb_net *net,
                     const sb_landlock_result *ll, sandbox_status *s) {
    char ports[64] = "";
    for (size_t i = 0; i < r->n_ports; i++) {
        char one[12];
        snprintf(one, sizeof one, "%s%d", i ? "," : "", r->ports[i]);
        append(ports, sizeof ports, "%s", one);
    }
    const bool ll_any = s->landlock_abi > 0 && ll->fs;
    char ll_part[48] = "";
    if (ll_any)
        snprintf(ll_part, sizeof ll_part, "+landlock(%s) ABI %d", ll->net ? "net,fs" : "fs", s->landlock_abi);
    const char *egress = s->egress_locked ? "" : net->lock ? "egress PARTLY locked; " : "egress ALLOWED; ";
    snprintf(s->summary, sizeof s->summary, "%s%s%s", egress, s->seccomp ? "seccomp" : "no seccomp",
             ll_any       ? ll_part
             : s->seccomp ? " only"
                          : "");
    char *d = s->detail;
    const size_t cap = sizeof s->detail;
    d[0] = '\0';
    if (!net->lock) {
        append(d, cap, "%s", "new outbound connections are NOT refused (--allow-egress)");
    } else {
        append(d, cap, "%s", "no new sockets (no DNS, UDP, raw, netlink; no new listeners)");
        if (net->unix_sockets)
            append(d, cap, "%s",
                   " except Unix sockets (PostgreSQL's or named; the kernel cannot limit which path "
                   "they reach)");
        if (net->tcp) {
            append(d, cap, "%s", net->unix_sockets ? " and TCP" : " except TCP");
            if (ll->net)
                append(d, cap, " to port %s (PostgreSQL, any host)", ports);
            else
                append(d, cap, " for PostgreSQL (port %s NOT enforced: no Landlock network rules)", ports);
        }
    }
    if (ll_any) {
        append(d, cap, "%s", "; files: read the model and configuration");
        if (p->state_dir) append(d, cap, ", write only %s", p->state_dir);
        if (ll->missing[0]) append(d, cap, " (absent, so unreachable: %s)", ll->missing);
    } else {
        append(d, cap, "%s", "; files: NOT restricted (no Landlock on this kernel)");
    }
    append(d, cap, "%s", "; no core dumps, no ptrace, no exec");
}

size_t sandbox_metrics(const sandbox_status *s, char *buf, size_t cap) {
    const int n = snprintf(
        buf, cap,
        "# HELP sov_egress_locked 1 when the kernel refuses new outbound connections from this process "
        "but to the state store (docs/SANDBOX.md); 0 with --allow-egress or when not enforceable\n"
        "# TYPE sov_egress_locked gauge\nsov_egress_locked %d\n"
        "# HELP sov_sandbox_seccomp 1 when the seccomp filter is installed on every thread\n"
        "# TYPE sov_sandbox_seccomp gauge\nsov_sandbox_seccomp %d\n"
        "# HELP sov_sandbox_landlock_abi the Landlock ABI in force (0: none)\n"
        "# TYPE sov_sandbox_landlock_abi gauge\nsov_sandbox_landlock_abi %d\n"
        "# HELP sov_sandbox_landlock_fs 1 when file access is limited to the model, config and state folder\n"
        "# TYPE sov_sandbox_landlock_fs gauge\nsov_sandbox_landlock_fs %d\n"
        "# HELP sov_sandbox_landlock_net 1 when TCP connect is limited to the store's port(s)\n"
        "# TYPE sov_sandbox_landlock_net gauge\nsov_sandbox_landlock_net %d\n",
        s->egress_locked, s->seccomp, s->landlock_abi, s->landlock_fs, s->landlock_net);
    return n < 0 ? 0 : SOV_MIN((size_t)n, cap ? cap - 1 : 0);
}

/* ---- the lockdown ---- */

static int plan_abi(const sandbox_params *p) {
    const int kernel = sandbox_landlock_abi();
    if (p->landlock_abi_max < 0) return 0;
    return p->landlock_abi_max > 0 ? SOV_MIN(kernel, p->landlock_abi_max) : kernel;
}

sov_status sandbox_lockdown(const sandbox_params *p, sandbox_status *out) {
    memset(out, 0, sizeof *out);
    out->active = true;
    sandbox_db_routes r;
    sov_status st = sandbox_db_routes_of(p->db, &r);
    if (st) return st;
    /* no core dumps of prompts, no ptrace by other processes of the same user */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return sov_fail(SOV_ERR_IO, "sandbox: PR_SET_DUMPABLE: %s", strerror(errno));
    const sb_net net = {
        .lock = !p->allow_egress, .unix_sockets = r.unix_socket || p->n_unix_sockets > 0, .tcp = r.tcp};

    path_store ps;
    memset(&ps, 0, sizeof ps);
    sb_landlock_plan pl = {.abi = plan_abi(p), .net = net.lock, .scope_abstract_unix = net.lock};
    for (size_t i = 0; i < r.n_ports && net.tcp; i++)
        pl.connect_ports[pl.n_connect_ports++] = r.ports[i];
    plan_fs(p, &r, &ps, &pl);
    sb_landlock_result ll;
    memset(&ll, 0, sizeof ll);
    if (pl.abi > 0) {
        st = sb_landlock_apply(&pl, &ll);
        if (st == SOV_ERR_IO) return st; /* some threads restricted, some not */
        if (st) fprintf(stderr, "sov: %s: going on with seccomp alone\n", sov_last_error());
    }
    out->landlock_abi = ll.fs ? pl.abi : 0;
    out->landlock_fs = ll.fs;
    out->landlock_net = ll.net;
    out->landlock_scoped = ll.scoped;

    st = sb_seccomp_install(&net);
    if (st && net.lock) return st; /* the lockdown was asked for and cannot be had */
    if (st) fprintf(stderr, "sov: %s (egress is allowed anyway)\n", sov_last_error());
    out->seccomp = !st;
    if (out->seccomp && (st = check_threads())) return st;
    /* locked means no new connection but to the store; TCP sockets without Landlock's port
     * rule could reach anything */
    out->egress_locked = net.lock && out->seccomp && (!net.tcp || ll.net);
    describe(p, &r, &net, &ll, out);
    return SOV_OK;
}
