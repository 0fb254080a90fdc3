/* seccomp.c - the seccomp-bpf filter of the lockdown: the system calls a serving process
 * no longer makes, read top to bottom, each with its reason.
 *
 * The filter is a deny list over an allow default, built with libseccomp and installed
 * on every thread at once (SCMP_FLTATR_CTL_TSYNC) with no_new_privs. Why not an allow
 * list, as OpenSSH's sandbox-seccomp-filter.c: sov serve runs glibc, libevent, libpq,
 * SQLite, OpenSSL, jansson (and the sanitizers in test builds); the set of calls they make
 * changes with every library update, and a missed one would break serving in production.
 * What must not happen is narrow and can be listed completely: creating a new channel out
 * of the process. So the table names every way to do that, and a denied call fails with
 * EACCES (network) or EPERM (the rest) — never a kill — so the process keeps serving.
 *
 * Seccomp sees only register arguments, never the address connect() is given (a pointer),
 * so the network part works on socket(): after the lockdown no socket of any family can be
 * created, except Unix sockets when PostgreSQL is on one (or the operator named one) and
 * TCP sockets when PostgreSQL is reached over TCP (Landlock then limits their connect() to
 * its port). Sockets that exist (the listening socket, clients, the database connection)
 * keep working. Arguments are compared on their low 32 bits where the kernel reads an int,
 * so garbage in the upper half of a register cannot slip past. */
#include <errno.h>
#include <seccomp.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

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

/* The table: one call per line, refused with `err`; `net` entries only while egress is
 * locked (not with --allow-egress). socket() and the send calls are refused by argument
 * (socket_rules, fastopen_rules below). */
typedef struct sb_deny {
    const char *call;
    bool net;
    int err;
    const char *why;
} sb_deny;

// clang-format off
static const sb_deny deny_table[] = {
    {"bind",              true,  EACCES, "no new bound sockets: the server's own are bound before"},
    {"listen",            true,  EACCES, "no new listening sockets"},
    {"io_uring_setup",    false, EPERM,  "io_uring runs socket, connect, open, send unfiltered"},
    {"io_uring_enter",    false, EPERM,  "(the same)"},
    {"io_uring_register", false, EPERM,  "(the same)"},
#ifndef SB_SANITIZER /* LeakSanitizer's exit-time check ptraces the process's own threads */
    {"ptrace",            false, EPERM,  "reaching into another process of the same user to make it connect"},
#endif
    {"process_vm_readv",  false, EPERM,  "reading another process's memory"},
    {"process_vm_writev", false, EPERM,  "writing another process's memory (to make it connect)"},
    {"pidfd_getfd",       false, EPERM,  "taking another process's sockets"},
    {"execve",            false, EPERM,  "no helper program (a shell, curl): a server never starts one"},
    {"execveat",          false, EPERM,  "(the same)"},
    {"bpf",               false, EPERM,  "BPF programs: kernel power an exploited request must not get"},
    {"perf_event_open",   false, EPERM,  "(the same, and a side channel)"},
    {"userfaultfd",       false, EPERM,  "a tool for exploiting kernel races"},
    {"kexec_load",        false, EPERM,  "root powers a server run as root must not hand out"},
    {"kexec_file_load",   false, EPERM,  "(the same)"},
    {"init_module",       false, EPERM,  "(the same: kernel modules)"},
    {"finit_module",      false, EPERM,  "(the same)"},
    {"delete_module",     false, EPERM,  "(the same)"},
    {"mount",             false, EPERM,  "(the same: mounts)"},
    {"umount2",           false, EPERM,  "(the same)"},
    {"fsopen",            false, EPERM,  "(the same)"},
    {"fsmount",           false, EPERM,  "(the same)"},
    {"fsconfig",          false, EPERM,  "(the same)"},
    {"fspick",            false, EPERM,  "(the same)"},
    {"move_mount",        false, EPERM,  "(the same)"},
    {"open_tree",         false, EPERM,  "(the same)"},
    {"mount_setattr",     false, EPERM,  "(the same)"},
    {"pivot_root",        false, EPERM,  "(the same)"},
    {"chroot",            false, EPERM,  "(the same)"},
    {"swapon",            false, EPERM,  "(the same)"},
    {"swapoff",           false, EPERM,  "(the same)"},
    {"reboot",            false, EPERM,  "(the same)"},
    {"open_by_handle_at", false, EPERM,  "file handles that reach outside the filesystem rules"},
    {"unshare",           false, EPERM,  "new namespaces: nothing needs one"},
    {"setns",             false, EPERM,  "entering another process's namespaces (another network)"},
};
// clang-format on

/* Families a new socket may have (when allowed): everything else is refused. */
static bool family_allowed(int family, const sb_net *net) {
    if (family == AF_UNIX) return net->unix_sockets;
    if (family == AF_INET || family == AF_INET6) return net->tcp;
    return false;
}

enum { FAMILY_LIMIT = 128 }; /* above every family Linux has (46 in 6.x) */
#define MASK32 0xffffffffull
#define MSG_FASTOPEN_BIT 0x20000000ull /* MSG_FASTOPEN: a send that connects */

static sov_status rule(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned n,
                       const struct scmp_arg_cmp *cmp) {
    const int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) return SOV_OK; /* this architecture has no such call */
    const int rc = seccomp_rule_add_array(ctx, action, nr, n, cmp);
    if (rc < 0) return sov_fail(SOV_ERR_IO, "sandbox: seccomp rule for %s: %s", name, strerror(-rc));
    return SOV_OK;
}

/* socket(): refused for every family not allowed; TCP families only as stream sockets of
 * TCP itself (no UDP for DNS, no raw, no SCTP/MPTCP/SMC, which Landlock's TCP rules do not
 * cover). */
static sov_status socket_rules(scmp_filter_ctx ctx, const sb_net *net) {
    const uint32_t deny = SCMP_ACT_ERRNO(EACCES);
    sov_status st = SOV_OK;
    for (int f = 0; f < FAMILY_LIMIT && !st; f++) {
        if (family_allowed(f, net)) continue;
        const struct scmp_arg_cmp c[] = {SCMP_A0(SCMP_CMP_MASKED_EQ, MASK32, (uint64_t)f)};
        st = rule(ctx, deny, "socket", 1, c);
    }
    const struct scmp_arg_cmp beyond[] = {SCMP_A0(SCMP_CMP_GE, FAMILY_LIMIT, 0)};
    if (!st) st = rule(ctx, deny, "socket", 1, beyond);
    const int inet[] = {AF_INET, AF_INET6};
    const int not_stream[] = {SOCK_DGRAM, SOCK_RAW, SOCK_RDM, SOCK_SEQPACKET, SOCK_DCCP, SOCK_PACKET};
    for (size_t i = 0; net->tcp && i < SOV_ARRAY_LEN(inet) && !st; i++) {
        for (size_t t = 0; t < SOV_ARRAY_LEN(not_stream) && !st; t++) {
            const struct scmp_arg_cmp c[] = {SCMP_A0(SCMP_CMP_MASKED_EQ, MASK32, (uint64_t)inet[i]),
                                             SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, (uint64_t)not_stream[t])};
            st = rule(ctx, deny, "socket", 2, c);
        }
        /* protocol 0 (the default) or IPPROTO_TCP (6) only */
        const struct scmp_arg_cmp c[] = {SCMP_A0(SCMP_CMP_MASKED_EQ, MASK32, (uint64_t)inet[i]),
                                         SCMP_A2(SCMP_CMP_GT, 6, 0)};
        if (!st) st = rule(ctx, deny, "socket", 2, c);
    }
    return st;
}

/* sendto/sendmsg/sendmmsg with MSG_FASTOPEN: TCP Fast Open connects inside a send, without
 * connect(), on a socket that is not connected yet. */
static sov_status fastopen_rules(scmp_filter_ctx ctx) {
    const uint32_t deny = SCMP_ACT_ERRNO(EACCES);
    const struct scmp_arg_cmp a3[] = {SCMP_A3(SCMP_CMP_MASKED_EQ, MSG_FASTOPEN_BIT, MSG_FASTOPEN_BIT)};
    const struct scmp_arg_cmp a2[] = {SCMP_A2(SCMP_CMP_MASKED_EQ, MSG_FASTOPEN_BIT, MSG_FASTOPEN_BIT)};
    sov_status st = rule(ctx, deny, "sendto", 1, a3);
    if (!st) st = rule(ctx, deny, "sendmmsg", 1, a3);
    if (!st) st = rule(ctx, deny, "sendmsg", 1, a2);
    return st;
}

static sov_status build(scmp_filter_ctx ctx, const sb_net *net) {
    sov_status st = SOV_OK;
    for (size_t i = 0; i < SOV_ARRAY_LEN(deny_table) && !st; i++)
        if (net->lock || !deny_table[i].net)
            st = rule(ctx, SCMP_ACT_ERRNO((uint32_t)deny_table[i].err), deny_table[i].call, 0, NULL);
    if (!net->lock) return st;
    if (!st) st = socket_rules(ctx, net);
    if (!st) st = fastopen_rules(ctx);
    return st;
}

sov_status sb_seccomp_install(const sb_net *net) {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) return sov_fail(SOV_ERR_NOMEM, "sandbox: cannot start a seccomp filter");
    /* every thread at once (the engine, the thread pool and the store worker run already);
     * calls of another ABI (i386 int 0x80 on x86-64) fail instead of killing */
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    if (rc == 0) rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 1);
    if (rc == 0) rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_ERRNO(EPERM));
    sov_status st =
        rc ? sov_fail(SOV_ERR_IO, "sandbox: seccomp attributes: %s", strerror(-rc)) : build(ctx, net);
    if (!st) {
        rc = seccomp_load(ctx);
        if (rc == -EINVAL || rc == -ENOSYS || rc == -EOPNOTSUPP)
            st = sov_fail(SOV_ERR_UNSUPPORTED, "sandbox: this kernel has no seccomp filters (%s)",
                          strerror(-rc));
        else if (rc != 0)
            st = sov_fail(SOV_ERR_IO, "sandbox: cannot install the seccomp filter on every thread: %s",
                          rc < 0 ? strerror(-rc) : "a thread refused");
    }
    seccomp_release(ctx);
    return st;
}
