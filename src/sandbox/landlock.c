/* landlock.c - the Landlock rule set of the lockdown, applied to every thread.
 *
 * Landlock (Linux 5.13+) lets an unprivileged process drop access to the filesystem
 * (ABI 1-3, 5), to TCP bind/connect by port (ABI 4) and to abstract Unix sockets and
 * signals outside its domain (ABI 6). The rule set is built from the plan: each path
 * gets read access, or read-write for the state folder; with `net`, TCP connect is
 * allowed only to the PostgreSQL ports and TCP bind nowhere (the listening sockets are
 * bound before the lockdown). Every access right this ABI knows is handled, so whatever
 * has no rule is refused with EACCES.
 *
 * Landlock restricts only the calling thread (there is no TSYNC on ABI <= 7) and the
 * server's threads (engine, thread pool, store worker) exist already. So each of them is
 * asked to restrict itself: a real-time signal queued to it (rt_tgsigqueueinfo, carrying
 * the job in si_value) runs a handler that sets no_new_privs and calls
 * landlock_restrict_self on the shared rule set, then reports back. Threads are taken one
 * at a time from /proc/self/task until a pass finds none left (a thread created by an
 * unrestricted one before it was restricted shows up in the next pass; threads created
 * afterwards inherit the domain). The caller restricts itself last, so that it can still
 * signal and list the others. The same technique serves glibc's setuid() across threads.
 *
 * The kernel ABI (structs and bits) is written out here from the kernel's documentation
 * because Debian 12's headers stop at ABI 2. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/status.h"
#include "core/util.h"
#include "sandbox/sandbox_impl.h"

/* ---- the kernel ABI (include/uapi/linux/landlock.h) ---- */

#define LL_CREATE_RULESET_VERSION (1u << 0)
#define LL_RULE_PATH_BENEATH 1
#define LL_RULE_NET_PORT 2

#define LL_FS_EXECUTE (1ull << 0)
#define LL_FS_WRITE_FILE (1ull << 1)
#define LL_FS_READ_FILE (1ull << 2)
#define LL_FS_READ_DIR (1ull << 3)
#define LL_FS_REMOVE_DIR (1ull << 4)
#define LL_FS_REMOVE_FILE (1ull << 5)
#define LL_FS_MAKE_DIR (1ull << 7)
#define LL_FS_MAKE_REG (1ull << 8)
#define LL_FS_ABI1 ((1ull << 13) - 1) /* EXECUTE .. MAKE_SYM */
#define LL_FS_REFER (1ull << 13)      /* ABI 2 */
#define LL_FS_TRUNCATE (1ull << 14)   /* ABI 3 */
#define LL_FS_IOCTL_DEV (1ull << 15)  /* ABI 5 */
#define LL_NET_BIND_TCP (1ull << 0)   /* ABI 4 */
#define LL_NET_CONNECT_TCP (1ull << 1)
#define LL_SCOPE_ABSTRACT_UNIX (1ull << 0) /* ABI 6 */
#define LL_SCOPE_SIGNAL (1ull << 1)

struct ll_ruleset_attr { /* the kernel reads the first 8 (ABI 1-3), 16 (4-5) or 24 bytes */
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

struct ll_path_beneath_attr {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

struct ll_net_port_attr {
    uint64_t allowed_access;
    uint64_t port;
};

int sandbox_landlock_abi(void) {
    const long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);
    return abi > 0 ? (int)abi : 0;
}

static uint64_t fs_handled(int abi) {
    uint64_t m = LL_FS_ABI1;
    if (abi >= 2) m |= LL_FS_REFER;
    if (abi >= 3) m |= LL_FS_TRUNCATE;
    if (abi >= 5) m |= LL_FS_IOCTL_DEV;
    return m;
}

/* The rights a rule grants: reading a file or a folder's files; for the state folder also
 * creating, writing, truncating and removing files and folders in it. Never EXECUTE,
 * devices, sockets, FIFOs, symlinks or REFER (moving files in from elsewhere). */
static uint64_t rule_rights(const sb_fs_rule *r, bool dir, int abi) {
    uint64_t m = LL_FS_READ_FILE;
    if (r->write) m |= LL_FS_WRITE_FILE | LL_FS_TRUNCATE;
    if (dir) m |= LL_FS_READ_DIR;
    if (dir && r->write) m |= LL_FS_REMOVE_DIR | LL_FS_REMOVE_FILE | LL_FS_MAKE_DIR | LL_FS_MAKE_REG;
    return m & fs_handled(abi);
}

static void note_missing(sb_landlock_result *res, const char *path) {
    const size_t n = strlen(res->missing);
    if (n + 8 < sizeof res->missing)
        snprintf(res->missing + n, sizeof res->missing - n, "%s%s", n ? ", " : "", path);
}

/* Adds one path rule; a path that does not exist gets none (and is noted). */
static sov_status add_path(int fd, const sb_fs_rule *r, int abi, sb_landlock_result *res) {
    const int pfd = open(r->path, O_PATH | O_CLOEXEC);
    if (pfd < 0) {
        note_missing(res, r->path);
        return SOV_OK;
    }
    struct stat st;
    struct ll_path_beneath_attr a = {.parent_fd = pfd};
    const bool ok = fstat(pfd, &st) == 0;
    if (ok) a.allowed_access = rule_rights(r, S_ISDIR(st.st_mode), abi);
    const long rc = ok ? syscall(SYS_landlock_add_rule, fd, LL_RULE_PATH_BENEATH, &a, 0) : -1;
    const int err = errno;
    close(pfd);
    if (rc != 0)
        return sov_fail(SOV_ERR_UNSUPPORTED, "sandbox: Landlock refused a rule for %s: %s", r->path,
                        strerror(err));
    return SOV_OK;
}

static sov_status add_port(int fd, int port) {
    struct ll_net_port_attr a = {.allowed_access = LL_NET_CONNECT_TCP, .port = (uint64_t)port};
    if (syscall(SYS_landlock_add_rule, fd, LL_RULE_NET_PORT, &a, 0) != 0)
        return sov_fail(SOV_ERR_UNSUPPORTED, "sandbox: Landlock refused the rule for TCP port %d: %s", port,
                        strerror(errno));
    return SOV_OK;
}

/* The rule set as a file descriptor, or -1 (sov_last_error set). */
static int build_ruleset(const sb_landlock_plan *plan, sb_landlock_result *res) {
    struct ll_ruleset_attr attr = {.handled_access_fs = fs_handled(plan->abi)};
    size_t size = sizeof attr.handled_access_fs;
    if (plan->abi >= 4) {
        size += sizeof attr.handled_access_net;
        if (plan->net) attr.handled_access_net = LL_NET_BIND_TCP | LL_NET_CONNECT_TCP;
    }
    if (plan->abi >= 6) {
        size += sizeof attr.scoped;
        attr.scoped = LL_SCOPE_SIGNAL | (plan->scope_abstract_unix ? LL_SCOPE_ABSTRACT_UNIX : 0);
    }
    const int fd = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
    if (fd < 0) {
        sov_fail(SOV_ERR_UNSUPPORTED, "sandbox: Landlock refused the rule set (ABI %d): %s", plan->abi,
                 strerror(errno));
        return -1;
    }
    sov_status st = SOV_OK;
    for (size_t i = 0; i < plan->n_fs && !st; i++)
        st = add_path(fd, &plan->fs[i], plan->abi, res);
    for (size_t i = 0; plan->net && plan->abi >= 4 && i < plan->n_connect_ports && !st; i++)
        st = add_port(fd, plan->connect_ports[i]);
    if (st) {
        close(fd);
        return -1;
    }
    res->fs = true;
    res->net = plan->net && plan->abi >= 4;
    res->scoped = plan->abi >= 6;
    return fd;
}

/* ---- every thread ---- */

/* The request one thread answers at a time. */
typedef struct ll_job {
    int fd;            /* the rule set */
    _Atomic int state; /* 1: asked, 2: answered */
    _Atomic int err;   /* the thread's errno, 0: restricted */
} ll_job;

/* Runs on the asked thread: only async-signal-safe calls (raw system calls, atomics). A
 * signal that is not our own queued request is ignored; anything able to send one could
 * kill the process anyway. */
static void on_restrict(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    if (si->si_code != SI_QUEUE || si->si_pid != getpid() || !si->si_value.sival_ptr) return;
    ll_job *j = si->si_value.sival_ptr;
    if (atomic_load(&j->state) != 1) return;
    const int saved = errno;
    int err = 0;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || syscall(SYS_landlock_restrict_self, j->fd, 0) != 0)
        err = errno;
    atomic_store(&j->err, err);
    atomic_store(&j->state, 2);
    errno = saved;
}

/* Asks thread tid to restrict itself and waits (10 s of wall time at most: on a loaded
 * machine, busy MPI ranks beside it, a thread may wait seconds for a core, and 2 s made
 * `sov serve` refuse to start in a test run). 0, ESRCH (the thread is gone), ETIMEDOUT or
 * the thread's errno. */
static int restrict_thread(pid_t tid, int sig, ll_job *j) {
    atomic_store(&j->state, 1);
    atomic_store(&j->err, 0);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = sig;
    si.si_code = SI_QUEUE;
    si.si_pid = getpid();
    si.si_uid = getuid();
    si.si_value.sival_ptr = j;
    if (syscall(SYS_rt_tgsigqueueinfo, getpid(), tid, sig, &si) != 0) return errno;
    const struct timespec pause = {0, 100 * 1000};
    const double give_up = sov_now_s() + 10.0;
    for (;;) {
        if (atomic_load(&j->state) == 2) return atomic_load(&j->err);
        if (sov_now_s() > give_up) return ETIMEDOUT;
        nanosleep(&pause, NULL);
    }
}

static bool seen_before(const pid_t *done, size_t n, pid_t tid) {
    for (size_t i = 0; i < n; i++)
        if (done[i] == tid) return true;
    return false;
}

/* One pass over /proc/self/task: restricts every thread not done yet. *found: how many
 * were new. */
static sov_status restrict_pass(int sig, ll_job *j, pid_t **done, size_t *n_done, size_t *cap, int *found) {
    *found = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d) return sov_fail(SOV_ERR_IO, "sandbox: cannot list this process's threads: %s", strerror(errno));
    const pid_t self = (pid_t)syscall(SYS_gettid);
    sov_status st = SOV_OK;
    struct dirent *e;
    while (!st && (e = readdir(d)) != NULL) {
        const pid_t tid = (pid_t)atoi(e->d_name);
        if (tid <= 0 || tid == self || seen_before(*done, *n_done, tid)) continue;
        if (*n_done == *cap) {
            const size_t c = *cap ? *cap * 2 : 64;
            pid_t *p = realloc(*done, c * sizeof *p);
            if (!p) {
                st = sov_fail(SOV_ERR_NOMEM, "sandbox: out of memory");
                break;
            }
            *done = p;
            *cap = c;
        }
        (*done)[(*n_done)++] = tid;
        const int err = restrict_thread(tid, sig, j);
        if (err == ESRCH) continue; /* it ended meanwhile */
        if (err)
            st = sov_fail(SOV_ERR_IO,
                          "sandbox: thread %d could not apply Landlock (%s): refusing to serve "
                          "half-restricted; run with --allow-egress only if you must",
                          (int)tid, strerror(err));
        (*found)++;
    }
    closedir(d);
    return st;
}

static sov_status restrict_all(int fd, sb_landlock_result *res) {
    const int sig = SIGRTMIN + 5; /* unused by sov and its libraries */
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_restrict;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, &old) != 0)
        return sov_fail(SOV_ERR_UNSUPPORTED, "sandbox: cannot install a signal handler: %s", strerror(errno));
    ll_job j = {.fd = fd};
    pid_t *done = NULL;
    size_t n_done = 0, cap = 0;
    int found = 0, passes = 0;
    sov_status st;
    do {
        st = restrict_pass(sig, &j, &done, &n_done, &cap, &found);
        res->threads += found;
    } while (!st && found > 0 && ++passes < 100);
    free(done);
    if (!st &&
        (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || syscall(SYS_landlock_restrict_self, fd, 0) != 0))
        st =
            sov_fail(SOV_ERR_IO, "sandbox: the serving thread could not apply Landlock: %s", strerror(errno));
    if (!st) res->threads++;
    sigaction(sig, &old, NULL);
    return st;
}

sov_status sb_landlock_apply(const sb_landlock_plan *plan, sb_landlock_result *res) {
    memset(res, 0, sizeof *res);
    if (plan->abi < 1) return sov_fail(SOV_ERR_UNSUPPORTED, "sandbox: Landlock is not available");
    const int fd = build_ruleset(plan, res);
    if (fd < 0) {
        res->fs = res->net = res->scoped = false;
        return SOV_ERR_UNSUPPORTED;
    }
    const sov_status st = restrict_all(fd, res);
    close(fd);
    if (st) res->fs = res->net = res->scoped = false;
    return st;
}
