/* test_sign.c - signed models (src/sign): keys, the signed message, the .sig parser and its
 * malformed corpus, every verdict of the checks, and the digest sov_model_load computes
 * while loading (which the serve-time check relies on) against independent hashes.
 *
 * Known answers come from outside sov: the RFC 8032 test 1 key, whose key id and
 * signature over stories260K.gguf's message were computed with python's hashlib and
 * `openssl pkeyutl -sign -rawin` (Ed25519 signatures are deterministic), and the SHA-256
 * of the shared models from ../shared/models/SHA256SUMS. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/synth.h"
#include "quant/quant.h"
#include "sign/sign.h"
#include "test.h"

/* RFC 8032, 7.1, test 1: the secret key as PKCS#8 PEM, its public key as SPKI PEM */
static const char RFC_SECRET[] = "-----BEGIN PRIVATE KEY-----\n"
                                 "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
                                 "-----END PRIVATE KEY-----\n";
static const char RFC_PUBLIC[] = "-----BEGIN PUBLIC KEY-----\n"
                                 "MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n"
                                 "-----END PUBLIC KEY-----\n";
/* hashlib.sha256(bytes.fromhex("d75a9801...511a")).hexdigest()[:16] */
static const char RFC_KEY_ID[] = "21fe31dfa154a261";
static const char STORIES_SHA[] = "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d";
enum { STORIES_SIZE = 1185376 };
/* openssl pkeyutl -sign -inkey rfc.pem -rawin -in <the message below> | openssl base64 -A */
static const char KAT_SIG[] =
    "iWlt8VKa0geqA/dGfSl33QuMTnZy6iBBb2fo50/ocI/Mx4UtBoFEn3bHTtzU5JPpVthsChNyLbzsUJr0wN1ACQ==";

static void write_file(const char *path, const void *data, size_t len, mode_t mode) {
    unlink(path);
    const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    CHECK(fd >= 0);
    if (fd < 0) return;
    CHECK(write(fd, data, len) == (ssize_t)len);
    fchmod(fd, mode);
    close(fd);
}

/* A whole file, malloc'd. */
static char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            char *p = realloc(buf, cap *= 2);
            if (!p) free(buf);
            buf = p;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

static void copy_file(const char *from, const char *to) {
    size_t len;
    char *b = read_text(from, &len);
    CHECK(b != NULL);
    if (b) write_file(to, b, len, 0644);
    free(b);
}

/* A fresh scratch folder under the test folder. */
static const char *scratch(const char *name, char *buf, size_t cap) {
    test_tmp_path(name, buf, cap);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", buf);
    CHECK(system(cmd) == 0);
    mkdir(buf, 0700);
    return buf;
}

static sign_key *rfc_secret(void) {
    char dir[512], path[600];
    scratch("sign_rfc", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/rfc.pem", dir);
    write_file(path, RFC_SECRET, strlen(RFC_SECRET), 0600);
    sign_key *k = NULL;
    CHECK(sign_key_load_secret(path, &k) == SOV_OK);
    return k;
}

static sign_trust *rfc_trust(void) {
    char dir[512], path[600];
    scratch("sign_rfc_trust", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/rfc.pub", dir);
    write_file(path, RFC_PUBLIC, strlen(RFC_PUBLIC), 0644);
    sign_trust *t = NULL;
    CHECK(sign_trust_load_dir(dir, &t) == SOV_OK);
    return t;
}

/* ---- keys ---- */

static void key_id_is_sha256_of_the_raw_public_key(void) {
    sign_key *k = rfc_secret();
    CHECK(k && strcmp(sign_key_id(k), RFC_KEY_ID) == 0);
    sign_key_free(k);
    sign_trust *t = rfc_trust();
    CHECK(t && sign_trust_count(t) == 1);
    sign_trust_free(t);
}

static void keygen_writes_a_pair_and_never_overwrites(void) {
    char dir[512], secret[600], pub[600];
    scratch("sign_keygen", dir, sizeof dir);
    strcat(dir, "/new"); /* a folder keygen creates */
    char id[17];
    CHECK(sign_keygen(dir, id) == SOV_OK);
    CHECK(strlen(id) == 16);
    snprintf(secret, sizeof secret, "%s/" SIGN_SECRET_FILE, dir);
    snprintf(pub, sizeof pub, "%s/" SIGN_PUBLIC_FILE, dir);
    struct stat st;
    CHECK(stat(secret, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(stat(pub, &st) == 0 && S_ISREG(st.st_mode));
    CHECK(stat(dir, &st) == 0 && (st.st_mode & 0077) == 0);
    sign_key *ks = NULL, *kp = NULL;
    CHECK(sign_key_load_secret(secret, &ks) == SOV_OK);
    CHECK(sign_key_load_public(pub, &kp) == SOV_OK);
    CHECK(ks && kp && strcmp(sign_key_id(ks), id) == 0 && strcmp(sign_key_id(kp), id) == 0);
    /* a second keygen in the same folder is refused and leaves the key alone */
    size_t len0, len1;
    char *before = read_text(secret, &len0);
    char id2[17];
    CHECK(sign_keygen(dir, id2) == SOV_ERR_ARG);
    char *after = read_text(secret, &len1);
    CHECK(before && after && len0 == len1 && memcmp(before, after, len0) == 0);
    free(before);
    free(after);
    /* two keygens give two different keys */
    char dir2[512];
    scratch("sign_keygen2", dir2, sizeof dir2);
    CHECK(sign_keygen(dir2, id2) == SOV_OK && strcmp(id, id2) != 0);
    sign_key_free(ks);
    sign_key_free(kp);
}

static void secret_key_files_are_checked(void) {
    char dir[512], path[600];
    scratch("sign_secret", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/open.pem", dir);
    write_file(path, RFC_SECRET, strlen(RFC_SECRET), 0644);
    sign_key *k = NULL;
    CHECK(sign_key_load_secret(path, &k) == SOV_ERR_ARG && !k); /* readable by others */
    CHECK(strstr(sov_last_error(), "chmod 600") != NULL);
    /* a public key is not a secret key, and the reverse */
    snprintf(path, sizeof path, "%s/pub.pem", dir);
    write_file(path, RFC_PUBLIC, strlen(RFC_PUBLIC), 0600);
    CHECK(sign_key_load_secret(path, &k) == SOV_ERR_FORMAT && !k);
    snprintf(path, sizeof path, "%s/secret.pub", dir);
    write_file(path, RFC_SECRET, strlen(RFC_SECRET), 0600);
    CHECK(sign_key_load_public(path, &k) == SOV_ERR_FORMAT && !k);
    /* another algorithm */
    EVP_PKEY *x = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
    snprintf(path, sizeof path, "%s/x25519.pem", dir);
    FILE *f = fopen(path, "w");
    CHECK(x && f && PEM_write_PrivateKey(f, x, NULL, NULL, 0, NULL, NULL) == 1);
    if (f) fclose(f);
    chmod(path, 0600);
    CHECK(sign_key_load_secret(path, &k) == SOV_ERR_FORMAT && !k);
    /* an encrypted key is refused, without prompting for a password */
    EVP_PKEY *e = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    snprintf(path, sizeof path, "%s/encrypted.pem", dir);
    f = fopen(path, "w");
    CHECK(e && f &&
          PEM_write_PKCS8PrivateKey(f, e, EVP_aes_256_cbc(), NULL, 0, NULL, (void *)"password") == 1);
    if (f) fclose(f);
    chmod(path, 0600);
    CHECK(sign_key_load_secret(path, &k) == SOV_ERR_FORMAT && !k);
    EVP_PKEY_free(x);
    EVP_PKEY_free(e);
    /* garbage, nothing, a folder */
    snprintf(path, sizeof path, "%s/garbage.pem", dir);
    write_file(path, "not a key\n", 10, 0600);
    CHECK(sign_key_load_secret(path, &k) == SOV_ERR_FORMAT && !k);
    snprintf(path, sizeof path, "%s/missing.pem", dir);
    CHECK(sign_key_load_secret(path, &k) == SOV_ERR_IO && !k);
    CHECK(sign_key_load_public(dir, &k) != SOV_OK && !k);
}

static void trusted_folder_is_every_pub_file(void) {
    char dir[512], path[600];
    scratch("sign_trust", dir, sizeof dir);
    sign_trust *t = NULL;
    CHECK(sign_trust_load_dir(dir, &t) == SOV_ERR_NOT_FOUND && !t); /* empty */
    CHECK(sign_trust_load_dir("/nonexistent/keys", &t) == SOV_ERR_IO && !t);
    snprintf(path, sizeof path, "%s/a.pub", dir);
    write_file(path, RFC_PUBLIC, strlen(RFC_PUBLIC), 0644);
    snprintf(path, sizeof path, "%s/same-key-again.pub", dir);
    write_file(path, RFC_PUBLIC, strlen(RFC_PUBLIC), 0644);
    snprintf(path, sizeof path, "%s/notes.txt", dir); /* not a .pub: ignored */
    write_file(path, "hello", 5, 0644);
    char kdir[512], id[17];
    scratch("sign_trust_other", kdir, sizeof kdir);
    CHECK(sign_keygen(kdir, id) == SOV_OK);
    char from[700];
    snprintf(from, sizeof from, "%s/" SIGN_PUBLIC_FILE, kdir);
    snprintf(path, sizeof path, "%s/other.pub", dir);
    copy_file(from, path);
    CHECK(sign_trust_load_dir(dir, &t) == SOV_OK);
    CHECK(t && sign_trust_count(t) == 2); /* the duplicate counted once */
    sign_trust_free(t);
    /* one bad .pub fails the whole folder, naming the file */
    snprintf(path, sizeof path, "%s/typo.pub", dir);
    write_file(path, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", 56, 0644);
    t = NULL;
    CHECK(sign_trust_load_dir(dir, &t) == SOV_ERR_FORMAT && !t);
    CHECK(strstr(sov_last_error(), "typo.pub") != NULL);
}

/* ---- the message and the record ---- */

static sign_record stories_record(void) {
    sign_record r = {.size = STORIES_SIZE};
    snprintf(r.name, sizeof r.name, "stories260K.gguf");
    memcpy(r.sha256, STORIES_SHA, 65);
    return r;
}

static void message_is_the_documented_text(void) {
    const sign_record r = stories_record();
    char buf[SIGN_MESSAGE_MAX];
    const int n = sign_message(&r, buf, sizeof buf);
    const char *want = "sov-model-signature-v1\n"
                       "sha256 270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d\n"
                       "size 1185376\n"
                       "name stories260K.gguf\n";
    CHECK(n == (int)strlen(want) && strcmp(buf, want) == 0);
    CHECK(sign_message(&r, buf, 20) == -1); /* does not fit */
    sign_record bad = r;
    snprintf(bad.name, sizeof bad.name, "a\nsize 1");
    CHECK(sign_message(&bad, buf, sizeof buf) == -1);
}

static void signature_matches_openssl_known_answer(void) {
    sign_key *k = rfc_secret();
    sign_record r = {0};
    CHECK(k && sign_record_make(k, "stories260K.gguf", STORIES_SIZE, STORIES_SHA, &r) == SOV_OK);
    CHECK(strcmp(r.key_id, RFC_KEY_ID) == 0);
    char *json = sign_record_json(&r);
    CHECK(json && strstr(json, KAT_SIG) != NULL);
    /* and the record parses back to itself */
    sign_record back = {0};
    CHECK(json && sign_record_parse(json, strlen(json), &back) == SOV_OK);
    CHECK(memcmp(&back, &r, sizeof r) == 0);
    sign_trust *t = rfc_trust();
    CHECK(t && sign_record_check(t, &back) == SIGN_OK);
    free(json);
    sign_trust_free(t);
    sign_key_free(k);
}

static void signature_over_another_name_size_or_hash_fails(void) {
    sign_key *k = rfc_secret();
    sign_trust *t = rfc_trust();
    sign_record r = {0};
    CHECK(k && t && sign_record_make(k, "stories260K.gguf", STORIES_SIZE, STORIES_SHA, &r) == SOV_OK);
    CHECK(sign_record_check(t, &r) == SIGN_OK);
    sign_record x = r;
    snprintf(x.name, sizeof x.name, "stories260K-v2.gguf");
    CHECK(sign_record_check(t, &x) == SIGN_BAD_SIGNATURE);
    x = r;
    x.size++;
    CHECK(sign_record_check(t, &x) == SIGN_BAD_SIGNATURE);
    x = r;
    x.sha256[10] = x.sha256[10] == '0' ? '1' : '0';
    CHECK(sign_record_check(t, &x) == SIGN_BAD_SIGNATURE);
    x = r;
    x.sig[0] ^= 1;
    CHECK(sign_record_check(t, &x) == SIGN_BAD_SIGNATURE);
    x = r; /* a key id the folder does not hold */
    snprintf(x.key_id, sizeof x.key_id, "0000000000000000");
    CHECK(sign_record_check(t, &x) == SIGN_UNKNOWN_KEY);
    /* another key's signature under this key's id */
    char dir[512], path[700], id[17];
    scratch("sign_other_key", dir, sizeof dir);
    CHECK(sign_keygen(dir, id) == SOV_OK);
    snprintf(path, sizeof path, "%s/" SIGN_SECRET_FILE, dir);
    sign_key *other = NULL;
    CHECK(sign_key_load_secret(path, &other) == SOV_OK);
    CHECK(other && sign_record_make(other, "stories260K.gguf", STORIES_SIZE, STORIES_SHA, &x) == SOV_OK);
    CHECK(sign_record_check(t, &x) == SIGN_UNKNOWN_KEY);
    memcpy(x.key_id, RFC_KEY_ID, 17);
    CHECK(sign_record_check(t, &x) == SIGN_BAD_SIGNATURE);
    /* a public key cannot sign; names that cannot be signed */
    snprintf(path, sizeof path, "%s/" SIGN_PUBLIC_FILE, dir);
    sign_key *pub = NULL;
    CHECK(sign_key_load_public(path, &pub) == SOV_OK);
    CHECK(pub && sign_record_make(pub, "m.gguf", 1, STORIES_SHA, &x) == SOV_ERR_ARG);
    CHECK(sign_record_make(k, "a\tb.gguf", 1, STORIES_SHA, &x) == SOV_ERR_ARG);
    CHECK(sign_record_make(k, "m.gguf", 1, "abc", &x) == SOV_ERR_ARG);
    sign_key_free(pub);
    sign_key_free(other);
    sign_trust_free(t);
    sign_key_free(k);
}

static void names_that_can_be_signed(void) {
    CHECK(sign_name_ok("model.gguf"));
    CHECK(sign_name_ok("모델.gguf"));
    CHECK(sign_name_ok("a b (1).gguf"));
    CHECK(!sign_name_ok(""));
    CHECK(!sign_name_ok("."));
    CHECK(!sign_name_ok(".."));
    CHECK(!sign_name_ok("dir/model.gguf"));
    CHECK(!sign_name_ok("a\nb"));
    CHECK(!sign_name_ok("a\x7f"));
    CHECK(!sign_name_ok("mod\xe8le.gguf")); /* Latin-1, not UTF-8 */
    char longname[300];
    memset(longname, 'a', 255);
    longname[255] = '\0';
    CHECK(sign_name_ok(longname));
    longname[255] = 'a';
    longname[256] = '\0';
    CHECK(!sign_name_ok(longname));
    CHECK(strcmp(sign_base_name("/a/b/c.gguf"), "c.gguf") == 0);
    CHECK(strcmp(sign_base_name("c.gguf"), "c.gguf") == 0);
}

static void parser_corpus_good_and_malformed(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/sign/corpus", getenv("SOV_TEST_DATA") ? getenv("SOV_TEST_DATA") : "tests");
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d) return;
    int good = 0, bad = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len;
        char *text = read_text(path, &len);
        CHECK(text != NULL);
        if (!text) continue;
        sign_record r = {0};
        const sov_status s = sign_record_parse(text, len, &r);
        if (strncmp(e->d_name, "good-", 5) == 0) {
            good++;
            CHECK_MSG(s == SOV_OK, "%s: %s", e->d_name, sov_last_error());
            /* what parses prints back to the same record */
            char *again = s == SOV_OK ? sign_record_json(&r) : NULL;
            sign_record r2 = {0};
            CHECK(again && sign_record_parse(again, strlen(again), &r2) == SOV_OK &&
                  memcmp(&r, &r2, sizeof r) == 0);
            free(again);
        } else {
            bad++;
            CHECK_MSG(s == SOV_ERR_FORMAT, "%s was accepted", e->d_name);
            CHECK(strncmp(sov_last_error(), "signature file", 14) == 0);
        }
        free(text);
    }
    closedir(d);
    CHECK(good >= 5 && bad >= 40);
    /* larger than a signature can be */
    char *big = malloc(SIGN_RECORD_MAX + 2);
    CHECK(big != NULL);
    if (big) {
        memset(big, ' ', SIGN_RECORD_MAX + 1);
        big[SIGN_RECORD_MAX + 1] = '\0';
        sign_record r = {0};
        CHECK(sign_record_parse(big, SIGN_RECORD_MAX + 1, &r) == SOV_ERR_FORMAT);
    }
    free(big);
}

/* ---- the checks, on real files ---- */

typedef struct fixture {
    char dir[512], model[700], sig[800], keys[700];
    sign_trust *trust;
    sign_key *secret;
} fixture;

/* A folder with a copy of stories260K.gguf signed by a fresh key, trusted in keys/. */
static bool fixture_open(fixture *f, const char *name) {
    char src[1024];
    if (!test_shared_model("stories260K.gguf", src, sizeof src)) return false;
    scratch(name, f->dir, sizeof f->dir);
    snprintf(f->model, sizeof f->model, "%s/stories.gguf", f->dir);
    snprintf(f->sig, sizeof f->sig, "%s.sig", f->model);
    snprintf(f->keys, sizeof f->keys, "%s/keys", f->dir);
    copy_file(src, f->model);
    char id[17], path[900];
    CHECK(sign_keygen(f->keys, id) == SOV_OK);
    snprintf(path, sizeof path, "%s/" SIGN_SECRET_FILE, f->keys);
    CHECK(sign_key_load_secret(path, &f->secret) == SOV_OK);
    CHECK(sign_trust_load_dir(f->keys, &f->trust) == SOV_OK);
    char sha[65];
    uint64_t size = 0;
    sign_record r = {0};
    CHECK(sign_file_sha256(f->model, sha, &size) == SOV_OK);
    CHECK(strcmp(sha, STORIES_SHA) == 0 && size == STORIES_SIZE);
    CHECK(sign_record_make(f->secret, "stories.gguf", size, sha, &r) == SOV_OK);
    CHECK(sign_record_write(f->sig, &r) == SOV_OK);
    return f->trust && f->secret;
}

static void fixture_close(fixture *f) {
    sign_trust_free(f->trust);
    sign_key_free(f->secret);
}

/* The whole check as a loader makes it, with the hash read from the file. */
static sign_verdict check_file(const fixture *f, const char *model, const char *sig, char *why, size_t cap) {
    sign_record r = {0};
    sign_verdict v = sign_check_before_load(f->trust, model, sig, &r, why, cap);
    if (v != SIGN_OK) return v;
    char sha[65];
    uint64_t size;
    if (sign_file_sha256(model, sha, &size) != SOV_OK) return SIGN_ERROR;
    return sign_check_after_load(&r, model, sha, size, why, cap);
}

static void every_verdict_on_real_files(void) {
    fixture f = {0};
    if (!fixture_open(&f, "sign_verdicts")) {
        fixture_close(&f);
        return;
    }
    char why[1024], path[900], sig[1000];
    CHECK(check_file(&f, f.model, NULL, why, sizeof why) == SIGN_OK);

    /* unsigned: no .sig */
    snprintf(path, sizeof path, "%s/unsigned.gguf", f.dir);
    copy_file(f.model, path);
    CHECK(check_file(&f, path, NULL, why, sizeof why) == SIGN_UNSIGNED);
    CHECK(strncmp(why, "unsigned: ", 10) == 0 && strstr(why, "unsigned.gguf.sig"));

    /* malformed .sig */
    snprintf(sig, sizeof sig, "%s.sig", path);
    write_file(sig, "{\"format\": 1}", 13, 0644);
    CHECK(check_file(&f, path, NULL, why, sizeof why) == SIGN_MALFORMED);
    CHECK(strncmp(why, "malformed signature file: ", 26) == 0);
    unlink(sig);

    /* renamed: the signed copy under another name */
    snprintf(path, sizeof path, "%s/renamed.gguf", f.dir);
    snprintf(sig, sizeof sig, "%s.sig", path);
    copy_file(f.model, path);
    copy_file(f.sig, sig);
    CHECK(check_file(&f, path, NULL, why, sizeof why) == SIGN_RENAMED);
    CHECK(strstr(why, "'stories.gguf'") != NULL);

    /* altered: one byte flipped (same size; caught by the hash) */
    char adir[600];
    snprintf(adir, sizeof adir, "%s/altered", f.dir);
    mkdir(adir, 0700);
    snprintf(path, sizeof path, "%s/stories.gguf", adir);
    snprintf(sig, sizeof sig, "%s.sig", path);
    copy_file(f.model, path);
    copy_file(f.sig, sig);
    CHECK(check_file(&f, path, NULL, why, sizeof why) == SIGN_OK);
    int fd = open(path, O_RDWR);
    unsigned char byte = 0;
    CHECK(fd >= 0 && pread(fd, &byte, 1, 500000) == 1);
    byte ^= 0x01;
    CHECK(pwrite(fd, &byte, 1, 500000) == 1);
    close(fd);
    CHECK(check_file(&f, path, NULL, why, sizeof why) == SIGN_ALTERED);
    CHECK(strstr(why, "SHA-256") != NULL);
    /* altered: one byte appended (caught before loading, by the size) */
    fd = open(path, O_WRONLY | O_APPEND);
    CHECK(fd >= 0 && write(fd, "x", 1) == 1);
    close(fd);
    sign_record r = {0};
    CHECK(sign_check_before_load(f.trust, path, NULL, &r, why, sizeof why) == SIGN_ALTERED);
    CHECK(strstr(why, "1185377 bytes") != NULL);

    /* bad signature: the .sig's claimed hash edited to match an altered file */
    sign_record good = {0};
    CHECK(sign_record_read(f.sig, &good) == SOV_OK);
    sign_record forged = good;
    forged.sha256[0] = forged.sha256[0] == 'a' ? 'b' : 'a';
    snprintf(sig, sizeof sig, "%s/forged.sig", f.dir);
    CHECK(sign_record_write(sig, &forged) == SOV_OK);
    CHECK(check_file(&f, f.model, sig, why, sizeof why) == SIGN_BAD_SIGNATURE);

    /* unknown key: signed by a key outside the trusted folder */
    char odir[600], id[17];
    snprintf(odir, sizeof odir, "%s/other-keys", f.dir);
    CHECK(sign_keygen(odir, id) == SOV_OK);
    snprintf(path, sizeof path, "%s/" SIGN_SECRET_FILE, odir);
    sign_key *other = NULL;
    CHECK(sign_key_load_secret(path, &other) == SOV_OK);
    sign_record by_other = {0};
    CHECK(other && sign_record_make(other, "stories.gguf", good.size, good.sha256, &by_other) == SOV_OK);
    snprintf(sig, sizeof sig, "%s/other.sig", f.dir);
    CHECK(sign_record_write(sig, &by_other) == SOV_OK);
    CHECK(check_file(&f, f.model, sig, why, sizeof why) == SIGN_UNKNOWN_KEY);
    CHECK(strstr(why, id) != NULL);
    sign_key_free(other);

    /* the verdict names are the ones the docs list */
    CHECK(strcmp(sign_verdict_name(SIGN_UNSIGNED), "unsigned") == 0);
    CHECK(strcmp(sign_verdict_name(SIGN_VERDICT_COUNT), "cannot check") == 0);
    fixture_close(&f);
}

/* ---- the digest sov_model_load computes while loading ---- */

static void load_digest(const char *path, bool prefault, char out[65], uint64_t *bytes) {
    sov_model_params p = sov_model_default_params();
    p.digest = true;
    p.prefault = prefault;
    sov_model *m = NULL;
    CHECK_MSG(sov_model_load(path, &p, &m) == SOV_OK, "%s", sov_last_error());
    out[0] = '\0';
    if (!m) return;
    sov_model_info info;
    sov_model_get_info(m, &info);
    snprintf(out, 65, "%s", info.sha256);
    *bytes = info.file_bytes;
    sov_model_free(m);
}

static void model_digest_equals_the_file_hash(void) {
    char path[1024], got[65];
    uint64_t bytes = 0;
    if (test_shared_model("stories260K.gguf", path, sizeof path)) { /* F32: nothing repacked */
        load_digest(path, false, got, &bytes);
        CHECK_STREQ(got, STORIES_SHA);
        CHECK(bytes == STORIES_SIZE);
        load_digest(path, true, got, &bytes);
        CHECK_STREQ(got, STORIES_SHA);
        sov_model_params p = sov_model_default_params();
        sov_model *m = NULL;
        CHECK(sov_model_load(path, &p, &m) == SOV_OK);
        sov_model_info info;
        if (m) sov_model_get_info(m, &info);
        CHECK(m && info.sha256[0] == '\0'); /* no digest asked, none computed */
        sov_model_free(m);
    }
    /* Q4_0 and Q8_0 are repacked at load while the hash runs beside on its own thread and
     * the file pages are released behind it: the hash must still be the file's, and the
     * model the same as one loaded without a hash. The file spans several hash chunks. */
    const uint32_t types[] = {SOV_TYPE_Q4_0, SOV_TYPE_Q8_0};
    for (size_t i = 0; i < SOV_ARRAY_LEN_T(types); i++) {
        sov_synth_params sp = sov_synth_default_params();
        sp.n_embd = 512;
        sp.n_layer = 6;
        sp.n_head = 8;
        sp.n_head_kv = 4;
        sp.n_ff = 1536;
        sp.n_vocab = 8192;
        sp.type = types[i];
        sp.embd_type = types[i];
        sp.output_type = types[i];
        char name[64];
        snprintf(name, sizeof name, "sign_digest_%u.gguf", types[i]);
        test_tmp_path(name, path, sizeof path);
        CHECK(sov_synth_write(&sp, path, NULL, NULL) == SOV_OK);
        char want[65];
        uint64_t size = 0;
        CHECK(sign_file_sha256(path, want, &size) == SOV_OK);
        CHECK(size > (uint64_t)8 << 20); /* more than two of the hasher's chunks */
        load_digest(path, false, got, &bytes);
        CHECK_STREQ(got, want);
        CHECK(bytes == size);
        /* and the loaded model is the same model: repacking was not disturbed */
        sov_model_params p = sov_model_default_params();
        p.digest = true;
        sov_model *a = NULL, *b = NULL;
        CHECK(sov_model_load(path, &p, &a) == SOV_OK);
        p.digest = false;
        CHECK(sov_model_load(path, &p, &b) == SOV_OK);
        if (a && b) {
            sov_context_params cp = sov_context_default_params();
            cp.n_ctx = 64;
            cp.n_threads = 1;
            sov_context *ca = NULL, *cb = NULL;
            CHECK(sov_context_new(a, &cp, &ca) == SOV_OK && sov_context_new(b, &cp, &cb) == SOV_OK);
            sov_seq_id sa = 0, sb = 0;
            CHECK(ca && cb && sov_seq_new(ca, &sa) == SOV_OK && sov_seq_new(cb, &sb) == SOV_OK);
            const sov_token toks[4] = {1, 100, 200, 300};
            const int32_t pos[4] = {0, 1, 2, 3};
            const uint8_t want_logits[4] = {0, 0, 0, 1};
            sov_seq_id seqa[4] = {sa, sa, sa, sa}, seqb[4] = {sb, sb, sb, sb};
            const sov_batch ba = {4, toks, seqa, pos, want_logits}, bb = {4, toks, seqb, pos, want_logits};
            float *la = malloc(sizeof(float) * 8192), *lb = malloc(sizeof(float) * 8192);
            CHECK(la && lb && ca && cb && sov_decode(ca, &ba, la) == SOV_OK &&
                  sov_decode(cb, &bb, lb) == SOV_OK);
            CHECK(la && lb && memcmp(la, lb, sizeof(float) * 8192) == 0);
            free(la);
            free(lb);
            sov_context_free(ca);
            sov_context_free(cb);
        }
        sov_model_free(a);
        sov_model_free(b);
        unlink(path);
    }
}

int main(void) {
    RUN(key_id_is_sha256_of_the_raw_public_key);
    RUN(keygen_writes_a_pair_and_never_overwrites);
    RUN(secret_key_files_are_checked);
    RUN(trusted_folder_is_every_pub_file);
    RUN(message_is_the_documented_text);
    RUN(signature_matches_openssl_known_answer);
    RUN(signature_over_another_name_size_or_hash_fails);
    RUN(names_that_can_be_signed);
    RUN(parser_corpus_good_and_malformed);
    RUN(every_verdict_on_real_files);
    RUN(model_digest_equals_the_file_hash);
    TEST_EXIT();
}
