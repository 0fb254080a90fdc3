/* sandbox.h - the serving process's lockdown: after start-up it cannot open new outbound
 * connections, read files other than its model and configuration, or write outside its
 * state folder, enforced by the kernel (docs/SANDBOX.md).
 *
 *   sov serve: load model, open store, bind, start threads ─▶ sandbox_lockdown() ─▶ serve
 *                                                              │
 *      PR_SET_DUMPABLE 0 (no core dumps, no ptrace by others)  │
 *      Landlock (landlock.c): fs rules, TCP connect only to    │ every thread, not
 *        the PostgreSQL port(s), abstract Unix sockets and     │ only the caller
 *        signals scoped                                        │
 *      seccomp (seccomp.c): the deny table, errno not kill,    │
 *        SECCOMP_FILTER_FLAG_TSYNC; no_new_privs               ┘
 *
 * Applied once, irreversibly, by the thread that serves HTTP once everything is open.
 * Without Landlock (old kernel, or disabled) it falls back to seccomp alone and says so;
 * with allow_egress the network part is off (and says so) but the rest still applies.
 *
 * Memory hygiene lives here too (memory.c): locking weights, KV cache and activations in
 * RAM (--mlock) with a clear error naming RLIMIT_MEMLOCK, and keeping regions that hold
 * prompts and what derives from them out of core dumps. */
#ifndef SOV_SANDBOX_SANDBOX_H
#define SOV_SANDBOX_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>

#include "sov.h"

enum { SANDBOX_MAX_PORTS = 8, SANDBOX_MAX_PATHS = 16 };

typedef struct sandbox_params {
    bool allow_egress;     /* --allow-egress: the network part off (the rest stays) */
    const char *db;        /* the state store (--db): a SQLite path or postgresql:// URL, or NULL */
    const char *state_dir; /* the one folder written at run time (--state-dir), or NULL */
    const char *read_paths[SANDBOX_MAX_PATHS]; /* files or folders read at run time: the
                                                  model, configuration files */
    size_t n_read_paths;
    const char *unix_sockets[SANDBOX_MAX_PATHS]; /* Unix sockets the operator named
                                                    (--allow-unix-socket) */
    size_t n_unix_sockets;
    int landlock_abi_max; /* tests: use at most this Landlock ABI (0: what the kernel
                             has; -1: act as if the kernel had none) */
} sandbox_params;

/* Where the state store's PostgreSQL server is, as far as the sandbox must know: whether
 * reconnecting needs a new Unix socket, a new TCP socket (to which ports), and a host name
 * lookup (read /etc/hosts; DNS itself stays refused). */
typedef struct sandbox_db_routes {
    bool postgres;                /* the store is PostgreSQL (else SQLite, or none) */
    bool unix_socket;             /* some host is a Unix socket folder */
    bool tcp;                     /* some host is reached over TCP */
    bool by_name;                 /* some TCP host is a name, not an address */
    int ports[SANDBOX_MAX_PORTS]; /* TCP ports, each once */
    size_t n_ports;
    const char *files[4]; /* sslrootcert, sslcert, sslkey, passfile when named in the URL
                             (point into `buf`) */
    size_t n_files;
    char buf[1024];
} sandbox_db_routes;

/* Reads the routes from a store name (NULL or a SQLite path: no routes). PostgreSQL URLs
 * are parsed by libpq (PQconninfoParse), with libpq's environment defaults (PGHOST,
 * PGPORT, ...). Errors: SOV_ERR_ARG (a URL libpq cannot parse, more than
 * SANDBOX_MAX_PORTS ports, a port that is not 1..65535). */
sov_status sandbox_db_routes_of(const char *db, sandbox_db_routes *out);

/* What is in force, for the start-up message, /ready and /metrics. */
typedef struct sandbox_status {
    bool active;          /* sandbox_lockdown ran */
    bool seccomp;         /* the seccomp filter is installed on every thread */
    bool egress_locked;   /* no new outbound connections (the network part is on) */
    int landlock_abi;     /* the Landlock ABI in force (0: none) */
    bool landlock_fs;     /* filesystem rules */
    bool landlock_net;    /* TCP bind/connect rules */
    bool landlock_scoped; /* abstract Unix sockets and signals scoped (ABI >= 6) */
    char summary[96];     /* "seccomp+landlock(net,fs) ABI 7", "seccomp only", ... */
    char detail[768];     /* one line: what remains allowed and what is not covered */
} sandbox_status;

/* Locks the calling process down (see the top of this file). Call once, after every
 * listening socket is bound, the store is open, the model is mapped and the threads are
 * started. Errors (with sov_last_error() saying what to do): SOV_ERR_UNSUPPORTED when the
 * network lockdown was asked for and the kernel cannot enforce it (no seccomp), SOV_ERR_IO
 * when a step failed half-way (some threads restricted, some not: do not serve),
 * SOV_ERR_ARG for bad params. *out says what is in force in every case. */
sov_status sandbox_lockdown(const sandbox_params *p, sandbox_status *out);

/* The Landlock ABI this kernel offers (0 when none). */
int sandbox_landlock_abi(void);

/* Prometheus lines (gauges sov_egress_locked, sov_sandbox_*) into buf; the length written,
 * truncated at cap. s may be an all-zero status (no sandbox). */
size_t sandbox_metrics(const sandbox_status *s, char *buf, size_t cap);

/* ---- memory (memory.c) ---- */

typedef struct sandbox_region {
    const char *what; /* "weights", "KV cache", "activations" */
    const void *addr;
    size_t bytes;
} sandbox_region;

/* Keeps the regions in RAM (mlock2 with MLOCK_ONFAULT: each page is locked as it is first
 * used, so a lazily filled KV pool costs only what it holds). Checks RLIMIT_MEMLOCK first
 * (unless the process has CAP_IPC_LOCK) and fails with one line naming it, the size needed
 * and how to raise it. Errors: SOV_ERR_NOMEM (the limit, or the kernel refused);
 * nothing stays locked then. */
sov_status sandbox_lock_memory(const sandbox_region *r, size_t n);

/* Excludes a mapping from core dumps (MADV_DONTDUMP); addr must be page-aligned. Best
 * effort: a kernel that refuses leaves the region dumpable. */
void sandbox_dontdump(void *addr, size_t bytes);

#endif
