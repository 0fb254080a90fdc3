/* key.c - the audit log's Ed25519 keys (OpenSSL EVP_PKEY_ED25519) and signed chain heads
 * (see audit.h).
 *
 * Key files are standard PEM, readable by `openssl pkey`: the private key PKCS#8 in
 * STATE_DIR/audit-ed25519.pem, mode 0600 (a key file others may read is refused rather
 * than used), the public key SPKI beside it. A new key is written to a temporary file and
 * linked into place, so two servers starting at once on one state folder end up with the
 * same key, never a torn file. A key id is the first 16 hex digits of SHA-256 of the raw
 * 32-byte public key (the same rule as signed models use).
 *
 * A head's signature is plain Ed25519 (no pre-hash) over the message of
 * audit_head_message, so `openssl pkeyutl -verify -rawin` checks it (docs/AUDIT.md). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"
#include "core/status.h"

struct audit_key {
    EVP_PKEY *pkey;
    char id[AUDIT_KEY_ID_LEN + 1];
};

static const char HEAD_TAG[] = "sov-audit-head-v1\n";

/* ---- key ids ---- */

static void key_id_of(const uint8_t raw[AUDIT_PUB_BYTES], char id[AUDIT_KEY_ID_LEN + 1]) {
    char hex[AUDIT_HEX_LEN + 1];
    audit_sha256_hex(raw, AUDIT_PUB_BYTES, hex);
    memcpy(id, hex, AUDIT_KEY_ID_LEN);
    id[AUDIT_KEY_ID_LEN] = '\0';
}

static bool raw_public(EVP_PKEY *pkey, uint8_t raw[AUDIT_PUB_BYTES]) {
    size_t n = AUDIT_PUB_BYTES;
    return EVP_PKEY_get_id(pkey) == EVP_PKEY_ED25519 && EVP_PKEY_get_raw_public_key(pkey, raw, &n) == 1 &&
           n == AUDIT_PUB_BYTES;
}

/* ---- files ---- */

/* mkdir -p with mode 0700 for what it creates. */
static sov_status make_dirs(const char *dir) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return sov_fail(SOV_ERR_ARG, "audit: state folder name too long: %s", dir);
    for (char *p = path + 1;; p++) {
        const char c = *p;
        if (c != '/' && c != '\0') continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return sov_fail(SOV_ERR_IO, "audit: cannot create the state folder %s: %s", path,
                            strerror(errno));
        *p = c;
        if (!c) break;
    }
    return SOV_OK;
}

static void join(char *out, size_t cap, const char *dir, const char *file) {
    snprintf(out, cap, "%s/%s", dir, file);
}

/* Writes a PEM (private or public) to path through a temporary file: link() for the private
 * key (never replaces one another process wrote first: EEXIST), rename() for the public. */
static sov_status write_pem(const char *path, EVP_PKEY *pkey, bool private, bool *lost_race) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    const int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, private ? 0600 : 0644);
    if (fd < 0) return sov_fail(SOV_ERR_IO, "audit: cannot write %s: %s", tmp, strerror(errno));
    FILE *f = fdopen(fd, "w");
    bool ok = f && (private ? PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL)
                            : PEM_write_PUBKEY(f, pkey)) == 1;
    ok = ok && fflush(f) == 0 && fsync(fd) == 0;
    if (f)
        ok = fclose(f) == 0 && ok;
    else
        close(fd);
    if (ok) {
        if (private) {
            ok = link(tmp, path) == 0;
            if (!ok && errno == EEXIST && lost_race) *lost_race = true, ok = true;
        } else {
            ok = rename(tmp, path) == 0;
        }
    }
    const int err = errno;
    unlink(tmp);
    if (!ok) return sov_fail(SOV_ERR_IO, "audit: cannot write %s: %s", path, strerror(err));
    return SOV_OK;
}

static sov_status read_private(const char *path, EVP_PKEY **out) {
    *out = NULL;
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sov_fail(errno == ENOENT ? SOV_ERR_NOT_FOUND : SOV_ERR_IO, "audit: cannot read %s: %s", path,
                        strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || (st.st_mode & 077) != 0) {
        close(fd);
        return sov_fail(SOV_ERR_IO, "audit: the signing key %s may be read by other users: chmod 600 it",
                        path);
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return sov_fail(SOV_ERR_NOMEM, "audit: cannot read %s", path);
    }
    EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    uint8_t raw[AUDIT_PUB_BYTES];
    if (!pkey || !raw_public(pkey, raw)) {
        EVP_PKEY_free(pkey);
        return sov_fail(SOV_ERR_FORMAT, "audit: %s is not an Ed25519 private key in PEM: move it away", path);
    }
    *out = pkey;
    return SOV_OK;
}

static EVP_PKEY *generate(void) {
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
    if (!ctx || EVP_PKEY_keygen_init(ctx) != 1 || EVP_PKEY_keygen(ctx, &pkey) != 1) pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

/* The key of the folder, made on first use. */
static sov_status load_or_create(const char *state_dir, EVP_PKEY **out) {
    char path[4200];
    join(path, sizeof path, state_dir, AUDIT_KEY_FILE);
    sov_status st = read_private(path, out);
    if (st != SOV_ERR_NOT_FOUND) return st;
    EVP_PKEY *pkey = generate();
    if (!pkey) return sov_fail(SOV_ERR_NOMEM, "audit: cannot generate an Ed25519 key");
    bool lost = false;
    st = write_pem(path, pkey, true, &lost);
    EVP_PKEY_free(pkey);
    if (st != SOV_OK) return st;
    return read_private(path, out); /* ours, or the one another process linked first */
}

sov_status audit_key_open(const char *state_dir, audit_key **out) {
    *out = NULL;
    sov_status st = make_dirs(state_dir);
    audit_key *k = st == SOV_OK ? calloc(1, sizeof *k) : NULL;
    if (st == SOV_OK && !k) st = sov_fail(SOV_ERR_NOMEM, "audit: out of memory");
    if (st == SOV_OK) st = load_or_create(state_dir, &k->pkey);
    uint8_t raw[AUDIT_PUB_BYTES];
    if (st == SOV_OK && !raw_public(k->pkey, raw)) st = sov_fail(SOV_ERR_FORMAT, "audit: not an Ed25519 key");
    if (st == SOV_OK) {
        key_id_of(raw, k->id);
        char pub[4200];
        join(pub, sizeof pub, state_dir, AUDIT_PUB_FILE);
        audit_pub have;
        if (audit_pub_load(pub, &have) != SOV_OK || strcmp(have.id, k->id) != 0)
            st = write_pem(pub, k->pkey, false, NULL);
    }
    if (st != SOV_OK) {
        audit_key_free(k);
        return st;
    }
    *out = k;
    return SOV_OK;
}

void audit_key_free(audit_key *k) {
    if (!k) return;
    EVP_PKEY_free(k->pkey);
    free(k);
}

const char *audit_key_id(const audit_key *k) { return k->id; }

sov_status audit_pub_load(const char *path, audit_pub *out) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "re");
    if (!f) return sov_fail(SOV_ERR_IO, "audit: cannot read the public key %s: %s", path, strerror(errno));
    EVP_PKEY *pkey = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    const bool ok = pkey && raw_public(pkey, out->raw);
    EVP_PKEY_free(pkey);
    if (!ok) return sov_fail(SOV_ERR_FORMAT, "audit: %s is not an Ed25519 public key in PEM", path);
    key_id_of(out->raw, out->id);
    return SOV_OK;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

sov_status audit_pubs_in_dir(const char *dir, audit_pub **keys, size_t *n) {
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? SOV_OK
                               : sov_fail(SOV_ERR_IO, "audit: cannot read %s: %s", dir, strerror(errno));
    char *names[256];
    size_t k = 0;
    for (struct dirent *e; (e = readdir(d)) && k < 256;) {
        const size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "audit-", 6) == 0 && len > 4 && strcmp(e->d_name + len - 4, ".pub") == 0)
            if ((names[k] = strdup(e->d_name))) k++;
    }
    closedir(d);
    qsort(names, k, sizeof *names, by_name);
    sov_status st = SOV_OK;
    for (size_t i = 0; i < k; i++) {
        char path[4200];
        join(path, sizeof path, dir, names[i]);
        audit_pub p;
        if (st == SOV_OK) st = audit_pub_load(path, &p);
        audit_pub *grown = st == SOV_OK ? realloc(*keys, (*n + 1) * sizeof **keys) : NULL;
        if (st == SOV_OK && !grown) st = sov_fail(SOV_ERR_NOMEM, "audit: out of memory");
        if (grown) {
            *keys = grown;
            (*keys)[(*n)++] = p;
        }
        free(names[i]);
    }
    return st;
}

/* ---- heads ---- */

size_t audit_head_message(const audit_head *h, uint8_t *buf, size_t cap) {
    uint8_t m[sizeof HEAD_TAG - 1 + 8 + AUDIT_HASH_BYTES + 8 + 4 + AUDIT_KEY_ID_LEN];
    size_t o = 0;
    memcpy(m, HEAD_TAG, sizeof HEAD_TAG - 1);
    o += sizeof HEAD_TAG - 1;
    for (int i = 0; i < 8; i++)
        m[o++] = (uint8_t)((uint64_t)h->seq >> (56 - 8 * i));
    memcpy(m + o, h->hash, AUDIT_HASH_BYTES);
    o += AUDIT_HASH_BYTES;
    for (int i = 0; i < 8; i++)
        m[o++] = (uint8_t)((uint64_t)h->time_ms >> (56 - 8 * i));
    const size_t n = strnlen(h->key_id, AUDIT_KEY_ID_LEN);
    const uint8_t len[4] = {0, 0, 0, (uint8_t)n};
    memcpy(m + o, len, 4);
    o += 4;
    memcpy(m + o, h->key_id, n);
    o += n;
    if (buf) memcpy(buf, m, o <= cap ? o : cap);
    return o;
}

sov_status audit_head_sign(const audit_key *k, int64_t seq, const uint8_t hash[AUDIT_HASH_BYTES],
                           int64_t time_ms, audit_head *out) {
    memset(out, 0, sizeof *out);
    out->seq = seq;
    memcpy(out->hash, hash, AUDIT_HASH_BYTES);
    out->time_ms = time_ms;
    snprintf(out->key_id, sizeof out->key_id, "%s", k->id);
    uint8_t m[128];
    const size_t n = audit_head_message(out, m, sizeof m);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t sig_len = AUDIT_SIG_BYTES;
    const bool ok = ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, k->pkey) == 1 &&
                    EVP_DigestSign(ctx, out->sig, &sig_len, m, n) == 1 && sig_len == AUDIT_SIG_BYTES;
    EVP_MD_CTX_free(ctx);
    return ok ? SOV_OK
              : sov_fail(SOV_ERR_NOMEM, "audit: cannot sign the chain head at record %lld", (long long)seq);
}

static bool signature_ok(const audit_head *h, const audit_pub *key) {
    uint8_t m[128];
    const size_t n = audit_head_message(h, m, sizeof m);
    EVP_PKEY *pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, key->raw, AUDIT_PUB_BYTES);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    const bool ok = pkey && ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) == 1 &&
                    EVP_DigestVerify(ctx, h->sig, AUDIT_SIG_BYTES, m, n) == 1;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    return ok;
}

audit_head_check audit_head_verify(const audit_head *h, const audit_pub *keys, size_t n_keys) {
    for (size_t i = 0; i < n_keys; i++)
        if (strcmp(keys[i].id, h->key_id) == 0)
            return signature_ok(h, &keys[i]) ? AUDIT_HEAD_OK : AUDIT_HEAD_BAD_SIGNATURE;
    return AUDIT_HEAD_UNKNOWN_KEY;
}
