/* digest_cache.c - a model file's SHA-256 remembered between starts (see digest_cache.h). */
#include "model/digest_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"

static const char HEADER[] = "sov-digest-cache 1\n";
enum { LINE_MAX_LEN = 200, FILE_MAX = 64 * 1024 };

digest_key digest_key_of_stat(const struct stat *st) {
    return (digest_key){
        .dev = (uint64_t)st->st_dev,
        .ino = (uint64_t)st->st_ino,
        .size = (uint64_t)st->st_size,
        .mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec,
        .ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000LL + st->st_ctim.tv_nsec,
    };
}

sov_status digest_key_of_path(const char *path, digest_key *out) {
    struct stat st;
    if (stat(path, &st) != 0) return sov_fail(SOV_ERR_IO, "digest cache: stat '%s': %s", path, strerror(errno));
    *out = digest_key_of_stat(&st);
    return SOV_OK;
}

bool digest_key_equal(const digest_key *a, const digest_key *b) {
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_ns == b->mtime_ns &&
           a->ctime_ns == b->ctime_ns;
}

bool digest_key_settled(const digest_key *k, int64_t now_ns) { return k->ctime_ns <= now_ns - DIGEST_CACHE_SETTLE_NS; }

/* ---- one line ---------------------------------------------------------------------- */

/* An unsigned decimal field followed by one space (or the end for the last field).
 * Returns the position after it, or NULL. */
static const char *field_u64(const char *p, const char *end, uint64_t *out) {
    if (p >= end || *p < '0' || *p > '9') return NULL;
    uint64_t v = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        const uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) return NULL;
        v = v * 10 + d;
    }
    if (p >= end || *p != ' ') return NULL;
    *out = v;
    return p + 1;
}

static const char *field_i64(const char *p, const char *end, int64_t *out) {
    const bool neg = p < end && *p == '-';
    uint64_t v;
    if (!(p = field_u64(p + neg, end, &v)) || v > (uint64_t)INT64_MAX) return NULL;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return p;
}

static bool is_hex_digest(const char *p, const char *end) {
    if (end - p != 64) return false;
    for (; p < end; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return false;
    return true;
}

/* Parses [p, end) (one line, without its newline) into k and hex. */
static bool parse_line(const char *p, const char *end, digest_key *k, char hex[65]) {
    if (!(p = field_u64(p, end, &k->dev)) || !(p = field_u64(p, end, &k->ino)) ||
        !(p = field_u64(p, end, &k->size)) || !(p = field_i64(p, end, &k->mtime_ns)) ||
        !(p = field_i64(p, end, &k->ctime_ns)) || !is_hex_digest(p, end))
        return false;
    memcpy(hex, p, 64);
    hex[64] = '\0';
    return true;
}

static int format_line(char *buf, size_t cap, const digest_key *k, const char hex[65]) {
    return snprintf(buf, cap, "%llu %llu %llu %lld %lld %.64s\n", (unsigned long long)k->dev,
                    (unsigned long long)k->ino, (unsigned long long)k->size, (long long)k->mtime_ns,
                    (long long)k->ctime_ns, hex);
}

/* ---- the whole file ------------------------------------------------------------------ */

/* Calls fn for every well-formed entry line of text (after the header); stops when fn
 * returns false. A text without the header has no entries. */
static void each_entry(const char *text, size_t len, bool (*fn)(const char *line, size_t n, const digest_key *k,
                                                              const char *hex, void *u),
                       void *u) {
    const size_t hl = sizeof HEADER - 1;
    if (!text || len < hl || memcmp(text, HEADER, hl) != 0) return;
    const char *p = text + hl, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        digest_key k;
        char hex[65];
        if (le - p <= LINE_MAX_LEN && parse_line(p, le, &k, hex) && !fn(p, (size_t)(le - p), &k, hex, u)) return;
        p = nl ? nl + 1 : end;
    }
}

typedef struct find_state {
    const digest_key *want;
    char *hex;
    bool found;
} find_state;

static bool find_fn(const char *line, size_t n, const digest_key *k, const char *hex, void *u) {
    (void)line, (void)n;
    find_state *f = u;
    if (!digest_key_equal(k, f->want)) return true;
    memcpy(f->hex, hex, 65);
    f->found = true; /* keep going: a later line (newer) for the same key wins */
    return true;
}

bool digest_cache_find(const char *text, size_t len, const digest_key *k, char hex[65]) {
    find_state f = {.want = k, .hex = hex};
    each_entry(text, len, find_fn, &f);
    return f.found;
}

/* Reads the cache file (at most FILE_MAX bytes); NULL when there is none. */
static char *read_cache(const char *path, size_t *len) {
    *len = 0;
    const int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return NULL;
    char *buf = malloc(FILE_MAX);
    size_t n = 0;
    while (buf && n < FILE_MAX) {
        const ssize_t r = read(fd, buf + n, FILE_MAX - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    *len = n;
    return buf;
}

bool digest_cache_lookup(const char *path, const digest_key *k, char hex[65]) {
    size_t len;
    char *text = read_cache(path, &len);
    const bool hit = digest_cache_find(text, len, k, hex);
    free(text);
    return hit;
}

typedef struct keep_state {
    const digest_key *drop; /* entries of this device and inode are replaced */
    size_t skip;            /* entries to leave out first (the oldest) */
    size_t count;
    FILE *out;
} keep_state;

static bool keep_fn(const char *line, size_t n, const digest_key *k, const char *hex, void *u) {
    (void)hex;
    keep_state *s = u;
    if (k->dev == s->drop->dev && k->ino == s->drop->ino) return true;
    if (s->out) {
        if (s->skip) {
            s->skip--;
            return true;
        }
        fwrite(line, 1, n, s->out);
        fputc('\n', s->out);
    } else {
        s->count++;
    }
    return true;
}

sov_status digest_cache_store(const char *path, const digest_key *k, const char hex[65]) {
    size_t len;
    char *text = read_cache(path, &len);
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        free(text);
        return sov_fail(SOV_ERR_IO, "digest cache: path too long: %s", path);
    }
    const int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        const int e = errno;
        if (fd >= 0) close(fd);
        free(text);
        return sov_fail(SOV_ERR_IO, "digest cache: cannot write '%s': %s", tmp, strerror(e));
    }
    keep_state s = {.drop = k};
    each_entry(text, len, keep_fn, &s); /* count the entries that stay */
    s.skip = s.count >= DIGEST_CACHE_MAX ? s.count - (DIGEST_CACHE_MAX - 1) : 0;
    s.out = f;
    fputs(HEADER, f);
    each_entry(text, len, keep_fn, &s);
    char line[LINE_MAX_LEN + 2];
    format_line(line, sizeof line, k, hex);
    fputs(line, f);
    free(text);
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        const int e = errno;
        unlink(tmp);
        return sov_fail(SOV_ERR_IO, "digest cache: cannot replace '%s': %s", path, strerror(e));
    }
    return SOV_OK;
}
