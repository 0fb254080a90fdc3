/* sandbox_impl.h - what sandbox.c hands to the two kernel mechanisms: the seccomp filter
 * (seccomp.c) and the Landlock rule set (landlock.c). Internal to src/sandbox/. */
#ifndef SOV_SANDBOX_IMPL_H
#define SOV_SANDBOX_IMPL_H

#include <stdbool.h>
#include <stddef.h>

#include "sandbox/sandbox.h"

/* What the seccomp filter lets new sockets be. */
typedef struct sb_net {
    bool lock;         /* false: the network part is off (--allow-egress) */
    bool unix_sockets; /* socket(AF_UNIX, ...) stays allowed (PostgreSQL on a socket, or
                          sockets the operator named) */
    bool tcp;          /* socket(AF_INET/AF_INET6, SOCK_STREAM, TCP) stays allowed
                          (PostgreSQL over TCP; Landlock limits the port) */
} sb_net;

/* Installs the filter on every thread of the process (TSYNC), with no_new_privs. Errors:
 * SOV_ERR_UNSUPPORTED (the kernel has no seccomp filters), SOV_ERR_IO (another failure);
 * sov_last_error() says which. */
sov_status sb_seccomp_install(const sb_net *net);

enum { SB_MAX_FS_RULES = 48 };

/* One filesystem rule: a path and whether it may be written (else only read). */
typedef struct sb_fs_rule {
    const char *path;
    bool write;
} sb_fs_rule;

typedef struct sb_landlock_plan {
    int abi;                        /* the ABI to use (>= 1) */
    sb_fs_rule fs[SB_MAX_FS_RULES]; /* everything else is neither read nor written */
    size_t n_fs;
    bool net;                             /* handle TCP bind and connect (needs ABI >= 4) */
    int connect_ports[SANDBOX_MAX_PORTS]; /* with net: the only TCP ports connect may reach */
    size_t n_connect_ports;
    bool scope_abstract_unix; /* ABI >= 6: no connecting to abstract Unix sockets
                                 outside the sandbox */
} sb_landlock_plan;

/* What landlock.c did: which paths were missing (no rule, so not reachable). */
typedef struct sb_landlock_result {
    bool fs, net, scoped;
    int threads;       /* threads restricted, the caller included */
    char missing[256]; /* "state folder /x (missing), ..." */
} sb_landlock_result;

/* Restricts every thread of the process, then the calling one. Errors: SOV_ERR_UNSUPPORTED
 * when the kernel refuses the rule set before anything was restricted (the caller falls
 * back to seccomp alone), SOV_ERR_IO when a thread could not be restricted after others
 * were (the process must not serve). */
sov_status sb_landlock_apply(const sb_landlock_plan *plan, sb_landlock_result *res);

#endif
