/* memory.c - keeping what holds prompts out of swap and out of core dumps.
 *
 * --mlock locks the model's weights, the KV cache and the activation buffers with
 * mlock2(MLOCK_ONFAULT): every page is locked when it is first touched and from then on
 * never written to swap, while the KV pool (reserved for the worst case, filled lazily)
 * costs only what it holds. The kernel counts the whole range against RLIMIT_MEMLOCK all
 * the same, so the limit is checked first and the error names it, the size needed and
 * how to raise it — a root process with CAP_IPC_LOCK has no limit. Locking is all or
 * nothing: a failure half-way unlocks what was locked.
 *
 * MADV_DONTDUMP marks the KV pool and the activation buffers (anonymous mappings) so that
 * a core dump, when the system takes one (the server also sets PR_SET_DUMPABLE 0 when it
 * locks itself down), leaves them out. */
#include <errno.h>
#include <linux/capability.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/status.h"
#include "core/util.h"
#include "sandbox/sandbox.h"

static size_t page_size(void) {
    const long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}

/* The page-aligned span of a region. */
static void span(const sandbox_region *r, uintptr_t *lo, size_t *len) {
    const uintptr_t pg = page_size();
    *lo = (uintptr_t)r->addr & ~(pg - 1);
    const uintptr_t hi = ((uintptr_t)r->addr + r->bytes + pg - 1) & ~(pg - 1);
    *len = hi - *lo;
}

static bool has_ipc_lock(void) {
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    if (syscall(SYS_capget, &h, d) != 0) return false;
    return (d[CAP_IPC_LOCK / 32].effective >> (CAP_IPC_LOCK % 32)) & 1u;
}

static void mb(char *buf, size_t cap, double bytes) {
    if (bytes >= (double)(1 << 20))
        snprintf(buf, cap, "%.0f MB", bytes / (1 << 20));
    else
        snprintf(buf, cap, "%.0f KB", bytes / 1024);
}

/* The one-line error: what is needed, what the limit is, what to do. */
static sov_status limit_error(const sandbox_region *r, size_t n, size_t total, const char *limit) {
    char what[256] = "", need[32];
    for (size_t i = 0; i < n; i++) {
        if (!r[i].addr || !r[i].bytes) continue;
        char one[64], sz[32];
        mb(sz, sizeof sz, (double)r[i].bytes);
        snprintf(one, sizeof one, "%s%s %s", what[0] ? ", " : "", r[i].what, sz);
        const size_t w = strlen(what);
        snprintf(what + w, sizeof what - w, "%s", one);
    }
    mb(need, sizeof need, (double)total);
    return sov_fail(SOV_ERR_NOMEM,
                    "--mlock needs %s of locked memory (%s) but RLIMIT_MEMLOCK is %s: raise it (ulimit -l "
                    "unlimited; systemd: LimitMEMLOCK=infinity; /etc/security/limits.conf: memlock) or run "
                    "without --mlock",
                    need, what, limit);
}

sov_status sandbox_lock_memory(const sandbox_region *r, size_t n) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!r[i].addr || !r[i].bytes) continue;
        uintptr_t lo;
        size_t len;
        span(&r[i], &lo, &len);
        total += len;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0)
        return sov_fail(SOV_ERR_IO, "--mlock: getrlimit: %s", strerror(errno));
    char limit[32];
    if (rl.rlim_cur == RLIM_INFINITY)
        snprintf(limit, sizeof limit, "unlimited");
    else
        mb(limit, sizeof limit, (double)rl.rlim_cur);
    if (rl.rlim_cur != RLIM_INFINITY && total > rl.rlim_cur && !has_ipc_lock())
        return limit_error(r, n, total, limit);
    for (size_t i = 0; i < n; i++) {
        if (!r[i].addr || !r[i].bytes) continue;
        uintptr_t lo;
        size_t len;
        span(&r[i], &lo, &len);
        if (mlock2((const void *)lo, len, MLOCK_ONFAULT) == 0) continue;
        const int err = errno;
        for (size_t k = 0; k < i; k++) {
            if (!r[k].addr || !r[k].bytes) continue;
            span(&r[k], &lo, &len);
            munlock((const void *)lo, len);
        }
        if (err == ENOMEM || err == EAGAIN || err == EPERM) return limit_error(r, n, total, limit);
        return sov_fail(SOV_ERR_IO, "--mlock: cannot lock the %s: %s", r[i].what, strerror(err));
    }
    return SOV_OK;
}

void sandbox_dontdump(void *addr, size_t bytes) {
    if (addr && bytes) (void)madvise(addr, bytes, MADV_DONTDUMP); /* best effort: see the header */
}
