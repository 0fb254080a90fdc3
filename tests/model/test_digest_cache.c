/* test_digest_cache.c - the model digest cache: its file format (malformed lines are
 * misses, never errors), and loads of a real model file that skip hashing only while the
 * file is unchanged — an in-place edit with the mtime put back is still hashed, and the
 * hash is checked against sha256sum(1), an independent implementation. */
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "model/digest_cache.h"
#include "sov.h"
#include "test.h"

static const char HEX_A[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
static const char HEX_B[] = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

static const digest_key KEY = {.dev = 2049, .ino = 1234567, .size = 1048576, .mtime_ns = 1700000000123456789LL,
                               .ctime_ns = 1700000001000000000LL};
#define KEY_LINE "2049 1234567 1048576 1700000000123456789 1700000001000000000 "

static bool find(const char *text, char hex[65]) { return digest_cache_find(text, strlen(text), &KEY, hex); }

static void test_format(void) {
    char hex[65];
    CHECK(find("sov-digest-cache 1\n" KEY_LINE "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", hex));
    CHECK_STREQ(hex, HEX_A);
    /* no final newline; a later line for the same key wins */
    CHECK(find("sov-digest-cache 1\n" KEY_LINE "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n" KEY_LINE
               "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210",
               hex));
    CHECK_STREQ(hex, HEX_B);
    /* every one of these is a miss */
    static const char *const bad[] = {
        "",
        KEY_LINE "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", /* no header */
        "sov-digest-cache 2\n" KEY_LINE "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
        "sov-digest-cache 1\n" KEY_LINE "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef\n",
        "sov-digest-cache 1\n" KEY_LINE "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n",
        "sov-digest-cache 1\n" KEY_LINE "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0\n",
        "sov-digest-cache 1\n" KEY_LINE " 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
        "sov-digest-cache 1\n2049  1234567 1048576 1700000000123456789 1700000001000000000 "
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
        "sov-digest-cache 1\n2049 1234567 1048577 1700000000123456789 1700000001000000000 "
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", /* other size */
        "sov-digest-cache 1\n2049 1234567 1048576 1700000000123456789 1700000001000000001 "
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", /* other ctime */
        "sov-digest-cache 1\n99999999999999999999999 1234567 1048576 1700000000123456789 1700000001000000000 "
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", /* overflow */
        "sov-digest-cache 1\n-2049 1234567 1048576 1700000000123456789 1700000001000000000 "
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
        "sov-digest-cache 1\n2049 1234567 1048576 --1700000000123456789 1700000001000000000 "
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
        "sov-digest-cache 1\n2049 1234567",
        "sov-digest-cache 1\n\n\n\n",
    };
    for (size_t i = 0; i < SOV_ARRAY_LEN_T(bad); i++) CHECK_MSG(!find(bad[i], hex), "bad case %zu matched", i);
    /* an embedded NUL and bytes past a length: only len bytes are read */
    const char nul[] = "sov-digest-cache 1\n" KEY_LINE "0123456789abcdef0123456789abcdef\0"
                       "123456789abcdef0123456789abcdef\n";
    CHECK(!digest_cache_find(nul, sizeof nul - 1, &KEY, hex));
    const char cut[] = "sov-digest-cache 1\n" KEY_LINE "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n";
    CHECK(!digest_cache_find(cut, sizeof cut - 10, &KEY, hex));
    CHECK(!digest_cache_find(NULL, 0, &KEY, hex));
}

static void test_store(void) {
    char path[512], hex[65];
    test_tmp_path("digest-cache-store", path, sizeof path);
    unlink(path);
    CHECK(!digest_cache_lookup(path, &KEY, hex)); /* no file: a miss */
    CHECK_EQ(digest_cache_store(path, &KEY, HEX_A), SOV_OK);
    CHECK(digest_cache_lookup(path, &KEY, hex));
    CHECK_STREQ(hex, HEX_A);
    /* the same file changed: its entry is replaced, not added */
    digest_key k2 = KEY;
    k2.ctime_ns += 5;
    CHECK_EQ(digest_cache_store(path, &k2, HEX_B), SOV_OK);
    CHECK(!digest_cache_lookup(path, &KEY, hex));
    CHECK(digest_cache_lookup(path, &k2, hex));
    CHECK_STREQ(hex, HEX_B);
    /* other files are kept, the oldest dropped beyond DIGEST_CACHE_MAX */
    for (int i = 0; i < DIGEST_CACHE_MAX + 5; i++) {
        digest_key k = KEY;
        k.ino = 1000 + (uint64_t)i;
        CHECK_EQ(digest_cache_store(path, &k, HEX_A), SOV_OK);
    }
    int kept = 0;
    for (int i = 0; i < DIGEST_CACHE_MAX + 5; i++) {
        digest_key k = KEY;
        k.ino = 1000 + (uint64_t)i;
        kept += digest_cache_lookup(path, &k, hex);
        if (i >= 5) CHECK_MSG(digest_cache_lookup(path, &k, hex), "entry %d (of the newest %d) lost", i, DIGEST_CACHE_MAX);
    }
    CHECK_EQ(kept, DIGEST_CACHE_MAX);
    /* garbage in the file: a miss, and the next store starts it afresh */
    FILE *f = fopen(path, "w");
    fputs("\x01\xff garbage\nsov-digest-cache 1\n", f);
    fclose(f);
    CHECK(!digest_cache_lookup(path, &k2, hex));
    CHECK_EQ(digest_cache_store(path, &k2, HEX_A), SOV_OK);
    CHECK(digest_cache_lookup(path, &k2, hex));
    unlink(path);
}

/* SHA-256 of a file by sha256sum(1). */
static bool sha256sum(const char *path, char hex[65]) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "sha256sum '%s'", path);
    FILE *p = popen(cmd, "r");
    if (!p) return false;
    const bool ok = fscanf(p, "%64s", hex) == 1;
    return pclose(p) == 0 && ok && strlen(hex) == 64;
}

static bool copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    char buf[65536];
    size_t n;
    bool ok = a && b;
    while (ok && (n = fread(buf, 1, sizeof buf, a)) > 0) ok = fwrite(buf, 1, n, b) == n;
    if (a) fclose(a);
    if (b && fclose(b) != 0) ok = false;
    return ok;
}

/* Loads path with the digest (and the cache when cache is set); the SHA-256 in hex and
 * whether it came from the cache. */
static bool load(const char *path, const char *cache, char hex[65], bool *cached) {
    sov_model_params mp = sov_model_default_params();
    mp.digest = true;
    mp.digest_cache = cache;
    sov_model *m = NULL;
    if (sov_model_load(path, &mp, &m) != SOV_OK) return false;
    sov_model_info info;
    sov_model_get_info(m, &info);
    snprintf(hex, 65, "%s", info.sha256);
    *cached = info.sha256_cached;
    sov_model_free(m);
    return true;
}

static void test_load(void) {
    char src[512], path[512], cache[512];
    if (!test_shared_model("stories260K.gguf", src, sizeof src)) SKIP("no ../shared/models/stories260K.gguf");
    test_tmp_path("digest-cache-model.gguf", path, sizeof path);
    test_tmp_path("digest-cache-file", cache, sizeof cache);
    unlink(path);
    unlink(cache);
    CHECK(copy_file(src, path));
    char want[65], got[65];
    bool cached = true;
    CHECK(sha256sum(path, want));

    /* a file written a moment ago is hashed, but not remembered (its ctime is not settled) */
    CHECK(load(path, cache, got, &cached));
    CHECK(!cached);
    CHECK_STREQ(got, want);
    CHECK_EQ(access(cache, F_OK), -1);

    const struct timespec settle = {.tv_sec = DIGEST_CACHE_SETTLE_NS / 1000000000LL, .tv_nsec = 200000000};
    nanosleep(&settle, NULL);
    CHECK(load(path, cache, got, &cached)); /* hashed and remembered */
    CHECK(!cached);
    CHECK_STREQ(got, want);
    CHECK_EQ(access(cache, F_OK), 0);
    CHECK(load(path, cache, got, &cached)); /* remembered */
    CHECK(cached);
    CHECK_STREQ(got, want);
    CHECK(load(path, NULL, got, &cached)); /* no cache: hashed */
    CHECK(!cached);
    CHECK_STREQ(got, want);

    /* an in-place edit of the last byte with the mtime put back: the ctime still moved, so
     * the file is hashed again and the new hash is the file's */
    struct stat st;
    CHECK_EQ(stat(path, &st), 0);
    const int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    unsigned char byte = 0;
    CHECK_EQ(pread(fd, &byte, 1, st.st_size - 1), 1);
    byte ^= 0x5a;
    CHECK_EQ(pwrite(fd, &byte, 1, st.st_size - 1), 1);
    const struct timespec times[2] = {st.st_atim, st.st_mtim};
    CHECK_EQ(futimens(fd, times), 0);
    close(fd);
    struct stat st2;
    CHECK_EQ(stat(path, &st2), 0);
    CHECK_EQ(st2.st_mtim.tv_nsec, st.st_mtim.tv_nsec); /* the mtime is as it was */
    CHECK_EQ(st2.st_size, st.st_size);
    char edited[65];
    CHECK(sha256sum(path, edited));
    CHECK(strcmp(edited, want) != 0);
    CHECK(load(path, cache, got, &cached));
    CHECK(!cached);
    CHECK_STREQ(got, edited);

    /* a cache file of garbage is a miss, not an error */
    nanosleep(&settle, NULL);
    FILE *f = fopen(cache, "w");
    fputs("sov-digest-cache 1\nnot a line\n\xff\xfe\n", f);
    fclose(f);
    CHECK(load(path, cache, got, &cached));
    CHECK(!cached);
    CHECK_STREQ(got, edited);
    CHECK(load(path, cache, got, &cached));
    CHECK(cached);
    CHECK_STREQ(got, edited);
    unlink(path);
    unlink(cache);
}

int main(void) {
    RUN(test_format);
    RUN(test_store);
    RUN(test_load);
    TEST_EXIT();
}
