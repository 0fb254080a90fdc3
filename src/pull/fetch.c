/* fetch.c - `sov pull`'s transfers with libcurl: the tree listing, a HEAD for the
 * checksum headers when the tree has none, and the file itself into DIR/.partial with
 * resumption (Range), then the SHA-256 check and the rename into the models folder
 * (pull.h says the whole protocol). */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/status.h"
#include "pull/pull.h"
#include "sign/sign.h"

/* What one request collected. */
typedef struct xfer {
    const pull_opts *opts;
    CURL *curl;
    /* a body kept in memory (the tree listing) */
    char *mem;
    size_t mem_len;
    size_t mem_cap;
    bool too_big;
    /* or a body appended to a file (the model) */
    int fd;
    uint64_t resumed;  /* bytes present before this transfer */
    bool started;      /* the first body byte arrived and the status was looked at */
    bool write_failed; /* disk error */
    long status;       /* of the response whose body is written */
    uint64_t known_total;
    struct timespec t0;
    /* checksum headers: X-Linked-Etag from any response of the redirect chain, ETag from
     * the last one */
    char linked_sha[65];
    char etag_sha[65];
} xfer;

static double elapsed(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) * 1e-9;
}

static size_t on_header(char *buf, size_t size, size_t n, void *user) {
    xfer *x = user;
    const size_t len = size * n;
    if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) x->etag_sha[0] = '\0'; /* a new response */
    const char *colon = memchr(buf, ':', len);
    if (!colon) return len;
    const size_t name_n = (size_t)(colon - buf);
    const char *value = colon + 1;
    const size_t value_n = len - name_n - 1;
    if (name_n == 13 && strncasecmp(buf, "x-linked-etag", 13) == 0)
        pull_etag_sha256(value, value_n, x->linked_sha);
    else if (name_n == 4 && strncasecmp(buf, "etag", 4) == 0)
        pull_etag_sha256(value, value_n, x->etag_sha);
    return len;
}

static size_t on_body_mem(char *buf, size_t size, size_t n, void *user) {
    xfer *x = user;
    const size_t len = size * n;
    if (x->mem_len + len > PULL_TREE_MAX) {
        x->too_big = true;
        return 0;
    }
    if (x->mem_len + len + 1 > x->mem_cap) {
        size_t cap = x->mem_cap ? x->mem_cap * 2 : 64 * 1024;
        while (cap < x->mem_len + len + 1)
            cap *= 2;
        char *p = realloc(x->mem, cap);
        if (!p) return 0;
        x->mem = p;
        x->mem_cap = cap;
    }
    memcpy(x->mem + x->mem_len, buf, len);
    x->mem_len += len;
    x->mem[x->mem_len] = '\0';
    return len;
}

static size_t on_body_file(char *buf, size_t size, size_t n, void *user) {
    xfer *x = user;
    const size_t len = size * n;
    if (!x->started) {
        x->started = true;
        curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &x->status);
        if (x->status == 200 && x->resumed) { /* the server ignored the Range: start over */
            if (ftruncate(x->fd, 0) != 0 || lseek(x->fd, 0, SEEK_SET) != 0) {
                x->write_failed = true;
                return 0;
            }
            x->resumed = 0;
        }
    }
    if (x->status != 200 && x->status != 206) return len; /* an error page: not the model */
    for (size_t off = 0; off < len;) {
        const ssize_t w = write(x->fd, buf + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            x->write_failed = true;
            return 0;
        }
        off += (size_t)w;
    }
    return len;
}

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
    xfer *x = user;
    (void)ultotal, (void)ulnow;
    if (!x->opts->progress || x->fd < 0) return 0;
    uint64_t total = x->known_total;
    if (!total && dltotal > 0) total = x->resumed + (uint64_t)dltotal;
    x->opts->progress(x->opts->progress_user, x->resumed + (uint64_t)dlnow, total, (uint64_t)dlnow,
                      elapsed(&x->t0));
    return 0;
}

/* One request. Returns the curl code; fills x->status. */
static CURLcode request(const char *url, xfer *x, bool head, uint64_t range_from) {
    CURL *c = curl_easy_init();
    if (!c) return CURLE_OUT_OF_MEMORY;
    struct curl_slist *hdrs = NULL;
    char auth[4096 + 32], range[32];
    if (x->opts->token && *x->opts->token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", x->opts->token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    const bool https_only = strncmp(url, "https://", 8) == 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, https_only ? "https" : "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "sov/" SOV_VERSION_STRING);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, x->opts->timeout_s > 0 ? x->opts->timeout_s : 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    if (head) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (x->fd >= 0) {
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body_file);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
        /* a plain Range header (not RESUME_FROM, which fails on a 200): a server that
         * ignores it answers 200 and on_body_file starts the file over */
        snprintf(range, sizeof range, "%llu-", (unsigned long long)range_from);
        if (range_from) curl_easy_setopt(c, CURLOPT_RANGE, range);
    } else {
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body_mem);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    }
    x->curl = c; /* the body callback asks it for the final response's status */
    x->status = 0;
    x->started = false;
    clock_gettime(CLOCK_MONOTONIC, &x->t0);
    const CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &x->status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return rc;
}

static void notice(const pull_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void notice(const pull_opts *o, const char *fmt, ...) {
    (void)o;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sov pull: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static const char *http_what(long status) {
    switch (status) {
    case 401:
    case 403: return "access denied (a gated or private repository needs HF_TOKEN)";
    case 404: return "not found";
    case 429: return "rate limited by the hub; try again later";
    default: return status >= 500 ? "the hub failed (server error)" : "unexpected HTTP status";
    }
}

/* The tree listing of src->repo. */
static sov_status get_tree(const char *endpoint, const pull_source *src, const pull_opts *o,
                           pull_tree *tree) {
    char rest[PULL_REPO_MAX + 64];
    snprintf(rest, sizeof rest, "api/models/%s/tree/main?recursive=true", src->repo);
    char *url = pull_url(endpoint, rest);
    if (!url) return sov_fail(SOV_ERR_NOMEM, "out of memory");
    xfer x = {.opts = o, .fd = -1};
    const CURLcode rc = request(url, &x, false, 0);
    sov_status st = SOV_OK;
    if (x.too_big)
        st = sov_fail(SOV_ERR_FORMAT, "%s: the tree listing is larger than %d bytes", url, PULL_TREE_MAX);
    else if (rc != CURLE_OK)
        st = sov_fail(SOV_ERR_IO, "%s: %s", url, curl_easy_strerror(rc));
    else if (x.status == 404)
        st = sov_fail(SOV_ERR_NOT_FOUND, "no such repository: %s on %s", src->repo, endpoint);
    else if (x.status != 200)
        st = sov_fail(SOV_ERR_IO, "%s: HTTP %ld, %s", url, x.status, http_what(x.status));
    else
        st = pull_tree_parse(x.mem ? x.mem : "", x.mem_len, tree);
    free(x.mem);
    free(url);
    return st;
}

static sov_status mkdir_p(const char *dir) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return sov_fail(SOV_ERR_ARG, "path too long: %s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return sov_fail(SOV_ERR_IO, "%s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return sov_fail(SOV_ERR_IO, "%s: %s", buf, strerror(errno));
    return SOV_OK;
}

static bool read_small(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    const size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    return true;
}

static sov_status write_small(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return sov_fail(SOV_ERR_IO, "%s: %s", path, strerror(errno));
    const bool wrote = fprintf(f, "%s\n", text) >= 0;
    const bool closed = fclose(f) == 0; /* once, whatever fprintf did */
    return wrote && closed ? SOV_OK : sov_fail(SOV_ERR_IO, "%s: %s", path, strerror(errno));
}

static sov_status fsync_path(const char *path, int flags) {
    const int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0) return sov_fail(SOV_ERR_IO, "%s: %s", path, strerror(errno));
    const int r = fsync(fd);
    close(fd);
    return r == 0 ? SOV_OK : sov_fail(SOV_ERR_IO, "fsync %s: %s", path, strerror(errno));
}

/* Downloads url into part (resuming what is there), retrying dropped transfers. */
static sov_status download(const char *url, const char *part, const pull_file *f, const pull_opts *o,
                           pull_result *res) {
    const int tries = 1 + (o->retries > 0 ? o->retries : 0);
    for (int attempt = 1;; attempt++) {
        struct stat sb;
        uint64_t have = stat(part, &sb) == 0 ? (uint64_t)sb.st_size : 0;
        if (f->has_size && have > f->size) {
            if (truncate(part, 0) != 0) return sov_fail(SOV_ERR_IO, "%s: %s", part, strerror(errno));
            have = 0;
        }
        if (f->has_size && have == f->size && have > 0) return SOV_OK; /* complete: verify it */
        const int fd = open(part, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) return sov_fail(SOV_ERR_IO, "%s: %s", part, strerror(errno));
        xfer x = {.opts = o, .fd = fd, .resumed = have, .known_total = f->has_size ? f->size : 0};
        res->attempts++;
        res->resumed_from = have;
        const CURLcode rc = request(url, &x, false, have);
        const int close_rc = close(fd);
        if (x.write_failed || close_rc != 0)
            return sov_fail(SOV_ERR_IO, "%s: write failed: %s", part, strerror(errno));
        if (x.status == 404) return sov_fail(SOV_ERR_NOT_FOUND, "no such file: %s", url);
        if (x.status == 416 && have > 0 && !f->has_size) return SOV_OK; /* nothing after what we have */
        if (x.status == 416) {
            if (truncate(part, 0) != 0) return sov_fail(SOV_ERR_IO, "%s: %s", part, strerror(errno));
        } else if (rc == CURLE_OK && (x.status == 200 || x.status == 206)) {
            if (!f->has_size || (stat(part, &sb) == 0 && (uint64_t)sb.st_size == f->size)) return SOV_OK;
        } else if (rc == CURLE_OK) {
            return sov_fail(SOV_ERR_IO, "%s: HTTP %ld, %s", url, x.status, http_what(x.status));
        }
        if (attempt >= tries) {
            stat(part, &sb);
            return sov_fail(
                SOV_ERR_IO,
                "transfer interrupted (%s) with %lld bytes kept in %s; run the same sov pull again to resume",
                rc ? curl_easy_strerror(rc) : "short body", (long long)sb.st_size, part);
        }
        stat(part, &sb);
        notice(o, "transfer interrupted at %lld bytes (%s); resuming (attempt %d of %d)",
               (long long)sb.st_size, rc ? curl_easy_strerror(rc) : "short body", attempt + 1, tries);
        struct timespec wait = {.tv_sec = 0, .tv_nsec = 200000000L * attempt};
        if (wait.tv_nsec >= 1000000000L) wait = (struct timespec){.tv_sec = 1};
        nanosleep(&wait, NULL);
    }
}

/* The SHA-256 the hub states for f: the tree's lfs.oid, else the headers of a HEAD. */
static sov_status expected_sha(const char *url, const pull_file *f, const pull_opts *o, char hex[65]) {
    if (o->sha256) {
        if (!pull_etag_sha256(o->sha256, strlen(o->sha256), hex))
            return sov_fail(SOV_ERR_ARG, "--sha256 '%s' is not 64 hex digits", o->sha256);
        if (f->sha256[0] && strcmp(f->sha256, hex) != 0)
            return sov_fail(SOV_ERR_ARG, "--sha256 %s differs from the hub's %s for %s", hex, f->sha256,
                            f->path);
        return SOV_OK;
    }
    if (f->sha256[0]) {
        memcpy(hex, f->sha256, 65);
        return SOV_OK;
    }
    xfer x = {.opts = o, .fd = -1};
    const CURLcode rc = request(url, &x, true, 0);
    if (rc != CURLE_OK) return sov_fail(SOV_ERR_IO, "%s: %s", url, curl_easy_strerror(rc));
    if (x.status == 404) return sov_fail(SOV_ERR_NOT_FOUND, "no such file: %s", url);
    if (x.status != 200) return sov_fail(SOV_ERR_IO, "%s: HTTP %ld, %s", url, x.status, http_what(x.status));
    const char *h = x.linked_sha[0] ? x.linked_sha : x.etag_sha;
    if (!h[0])
        return sov_fail(SOV_ERR_ARG,
                        "the hub states no SHA-256 for %s (no lfs.oid, X-Linked-Etag or ETag); "
                        "give it with --sha256 HEX",
                        f->path);
    memcpy(hex, h, 65);
    return SOV_OK;
}

static sov_status pull_file_into(const char *endpoint, const pull_source *src, const pull_file *f,
                                 const char *dir, const pull_opts *o, pull_result *res) {
    const char *base = strrchr(f->path, '/');
    base = base ? base + 1 : f->path;
    char rest[PULL_REPO_MAX + PULL_PATH_MAX + 32];
    snprintf(rest, sizeof rest, "%s/resolve/main/%s", src->repo, f->path);
    char *url = pull_url(endpoint, rest);
    if (!url) return sov_fail(SOV_ERR_NOMEM, "out of memory");
    char want[65], partdir[4096], part[4096 + 300], meta[4096 + 310], old[65];
    sov_status st = expected_sha(url, f, o, want);
    if (st) goto done;
    if (snprintf(res->path, sizeof res->path, "%s/%s", dir, base) >= (int)sizeof res->path ||
        snprintf(partdir, sizeof partdir, "%s/" PULL_PARTIAL_DIR, dir) >= (int)sizeof partdir) {
        st = sov_fail(SOV_ERR_ARG, "the models folder's path is too long");
        goto done;
    }
    snprintf(part, sizeof part, "%s/%s", partdir, base);
    snprintf(meta, sizeof meta, "%s.sha256", part);
    struct stat sb;
    if (stat(res->path, &sb) == 0) { /* already there: the same file, or refuse to replace it */
        char have[65];
        uint64_t size;
        st = sign_file_sha256(res->path, have, &size);
        if (!st && strcmp(have, want) != 0)
            st = sov_fail(SOV_ERR_ARG,
                          "%s exists with other contents (sha256 %s, the hub's is %s); move it away first",
                          res->path, have, want);
        if (!st) {
            res->already = true;
            memcpy(res->sha256, have, 65);
            res->size = size;
        }
        goto done;
    }
    if ((st = mkdir_p(dir)) || (st = mkdir_p(partdir))) goto done;
    if (read_small(meta, old, sizeof old) && strcmp(old, want) != 0)
        unlink(part); /* another version's bytes */
    if ((st = write_small(meta, want))) goto done;
    st = download(url, part, f, o, res);
    if (st) {
        if (st == SOV_ERR_NOT_FOUND) unlink(part), unlink(meta);
        goto done;
    }
    char got[65];
    uint64_t size = 0;
    if ((st = sign_file_sha256(part, got, &size))) goto done;
    if (strcmp(got, want) != 0 || (f->has_size && size != f->size)) {
        unlink(part);
        unlink(meta);
        rmdir(partdir);
        st = sov_fail(SOV_ERR_FORMAT,
                      "checksum mismatch for %s: the hub states sha256 %s, the download has %s "
                      "(%llu bytes); the download was deleted",
                      f->path, want, got, (unsigned long long)size);
        goto done;
    }
    if ((st = fsync_path(part, O_RDONLY))) goto done;
    if (rename(part, res->path) != 0) {
        st = sov_fail(SOV_ERR_IO, "rename %s -> %s: %s", part, res->path, strerror(errno));
        goto done;
    }
    unlink(meta);
    rmdir(partdir); /* when empty */
    st = fsync_path(dir, O_RDONLY | O_DIRECTORY);
    memcpy(res->sha256, got, 65);
    res->size = size;
done:
    free(url);
    return st;
}

sov_status pull_model(const pull_source *src, const char *dir, const pull_opts *opts, pull_result *out) {
    memset(out, 0, sizeof *out);
    const char *endpoint = opts->endpoint && *opts->endpoint ? opts->endpoint : PULL_DEFAULT_ENDPOINT;
    if (strncmp(endpoint, "http://", 7) != 0 && strncmp(endpoint, "https://", 8) != 0)
        return sov_fail(SOV_ERR_ARG, "endpoint '%s' is not an http:// or https:// URL", endpoint);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) return sov_fail(SOV_ERR_NOMEM, "libcurl failed to start");
    pull_tree tree;
    sov_status st = get_tree(endpoint, src, opts, &tree);
    if (!st) {
        const pull_file *f =
            src->path[0] ? pull_tree_find(&tree, src->path) : pull_tree_pick(&tree, src->quant);
        if (!f && src->path[0])
            st = sov_fail(SOV_ERR_NOT_FOUND, "no such file: %s in %s", src->path, src->repo);
        else if (!f && src->quant[0])
            st = sov_fail(SOV_ERR_NOT_FOUND, "no GGUF model tagged %s in %s", src->quant, src->repo);
        else if (!f)
            st = sov_fail(SOV_ERR_NOT_FOUND, "no GGUF model in %s", src->repo);
        else
            st = pull_file_into(endpoint, src, f, dir, opts, out);
        pull_tree_free(&tree);
    }
    curl_global_cleanup();
    return st;
}
