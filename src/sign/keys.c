/* keys.c - Ed25519 signing keys: generation, the PEM files, key ids, and the set of keys an
 * operator trusts (the *.pub files of a folder).
 *
 * Everything cryptographic is OpenSSL's (EVP_PKEY_ED25519); the files are the standard
 * PKCS#8 and SPKI PEM that `openssl pkey` reads. Key files are read whole into memory
 * (bounded) before OpenSSL parses them, and an encrypted secret key is refused rather than
 * prompting for a password on the terminal. */
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

#include "core/status.h"
#include "sign/sign_impl.h"

struct sign_key {
    EVP_PKEY *pkey;
    bool secret;
    char id[17];
};

struct sign_trust {
    sign_key **keys;
    size_t n;
};

/* ---- key ids ---- */

static sov_status key_wrap(EVP_PKEY *pkey, bool secret, sign_key **out) {
    unsigned char raw[32], md[32];
    size_t len = sizeof raw;
    unsigned int md_len = 0;
    if (EVP_PKEY_get_raw_public_key(pkey, raw, &len) != 1 || len != sizeof raw ||
        EVP_Digest(raw, len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != sizeof md) {
        EVP_PKEY_free(pkey);
        return sov_fail(SOV_ERR_FORMAT, "sign: cannot read the raw Ed25519 public key");
    }
    sign_key *k = calloc(1, sizeof *k);
    if (!k) {
        EVP_PKEY_free(pkey);
        return sov_fail(SOV_ERR_NOMEM, "sign: out of memory");
    }
    k->pkey = pkey;
    k->secret = secret;
    for (int i = 0; i < 8; i++)
        snprintf(k->id + 2 * i, 3, "%02x", md[i]);
    *out = k;
    return SOV_OK;
}

const char *sign_key_id(const sign_key *key) { return key->id; }

void sign_key_free(sign_key *key) {
    if (!key) return;
    EVP_PKEY_free(key->pkey);
    free(key);
}

/* ---- reading key files ---- */

/* Reads a whole small file. *buf is malloc'd (NUL-terminated). */
static sov_status read_small(const char *path, const char *what, char **buf, size_t *len, struct stat *st) {
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sov_fail(SOV_ERR_IO, "cannot open %s '%s': %s", what, path, strerror(errno));
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode) || st->st_size > SIGN_KEY_FILE_MAX) {
        close(fd);
        return sov_fail(SOV_ERR_FORMAT, "%s '%s' is not a regular file of at most %d bytes", what, path,
                        SIGN_KEY_FILE_MAX);
    }
    char *b = malloc((size_t)st->st_size + 1);
    size_t n = 0;
    while (b && n < (size_t)st->st_size) {
        const ssize_t r = read(fd, b + n, (size_t)st->st_size - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    if (!b) return sov_fail(SOV_ERR_NOMEM, "sign: out of memory");
    if (n != (size_t)st->st_size) {
        free(b);
        return sov_fail(SOV_ERR_IO, "cannot read %s '%s'", what, path);
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return SOV_OK;
}

/* OpenSSL would otherwise prompt on the terminal for an encrypted key's password. */
static int no_password(char *buf, int size, int rwflag, void *u) {
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

static bool is_ed25519(const EVP_PKEY *pkey) { return pkey && EVP_PKEY_get_id(pkey) == EVP_PKEY_ED25519; }

sov_status sign_key_load_secret(const char *path, sign_key **out) {
    *out = NULL;
    char *text;
    size_t len;
    struct stat st;
    sov_status s = read_small(path, "secret key", &text, &len, &st);
    if (s) return s;
    if (st.st_mode & 077) {
        free(text);
        return sov_fail(SOV_ERR_ARG, "secret key '%s' can be read by others (mode %04o): chmod 600 '%s'",
                        path, (unsigned)(st.st_mode & 07777), path);
    }
    BIO *bio = BIO_new_mem_buf(text, (int)len);
    EVP_PKEY *pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL) : NULL;
    BIO_free(bio);
    OPENSSL_cleanse(text, len);
    free(text);
    if (!is_ed25519(pkey)) {
        EVP_PKEY_free(pkey);
        return sov_fail(
            SOV_ERR_FORMAT,
            "'%s' is not an unencrypted Ed25519 private key in PEM (make one with sov model keygen)", path);
    }
    return key_wrap(pkey, true, out);
}

sov_status sign_key_load_public(const char *path, sign_key **out) {
    *out = NULL;
    char *text;
    size_t len;
    struct stat st;
    sov_status s = read_small(path, "public key", &text, &len, &st);
    if (s) return s;
    BIO *bio = BIO_new_mem_buf(text, (int)len);
    EVP_PKEY *pkey = bio ? PEM_read_bio_PUBKEY(bio, NULL, no_password, NULL) : NULL;
    BIO_free(bio);
    free(text);
    if (!is_ed25519(pkey)) {
        EVP_PKEY_free(pkey);
        return sov_fail(SOV_ERR_FORMAT,
                        "'%s' is not an Ed25519 public key in PEM (the .pub file sov model keygen writes)",
                        path);
    }
    return key_wrap(pkey, false, out);
}

/* ---- for the rest of the module (sign_impl.h) ---- */

EVP_PKEY *sign_key_pkey_(const sign_key *key, bool *secret) {
    *secret = key->secret;
    return key->pkey;
}

const sign_key *sign_trust_find_(const sign_trust *t, const char *key_id) {
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->keys[i]->id, key_id) == 0) return t->keys[i];
    return NULL;
}

/* ---- keygen ---- */

static sov_status write_pem(const char *path, mode_t mode, EVP_PKEY *pkey, bool secret) {
    const int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) return sov_fail(SOV_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(path);
        return sov_fail(SOV_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    }
    /* PEM_write_PrivateKey with no cipher writes unencrypted PKCS#8 ("BEGIN PRIVATE KEY") */
    bool ok = secret ? PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) == 1
                     : PEM_write_PUBKEY(f, pkey) == 1;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fd) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok) {
        unlink(path);
        return sov_fail(SOV_ERR_IO, "cannot write '%s'", path);
    }
    return SOV_OK;
}

static bool exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

sov_status sign_keygen(const char *dir, char key_id[17]) {
    key_id[0] = '\0';
    char secret[4096], pub[4096];
    if (snprintf(secret, sizeof secret, "%s/%s", dir, SIGN_SECRET_FILE) >= (int)sizeof secret ||
        snprintf(pub, sizeof pub, "%s/%s", dir, SIGN_PUBLIC_FILE) >= (int)sizeof pub)
        return sov_fail(SOV_ERR_ARG, "the folder name '%.100s...' is too long", dir);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return sov_fail(SOV_ERR_IO, "cannot create the folder '%s': %s", dir, strerror(errno));
    if (exists(secret) || exists(pub))
        return sov_fail(SOV_ERR_ARG,
                        "'%s' already holds a signing key (%s); keygen never overwrites one: "
                        "choose another --out folder",
                        dir, exists(secret) ? SIGN_SECRET_FILE : SIGN_PUBLIC_FILE);
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!pkey) return sov_fail(SOV_ERR_NOMEM, "sign: OpenSSL cannot generate an Ed25519 key");
    sov_status s = write_pem(secret, 0600, pkey, true);
    if (!s) {
        s = write_pem(pub, 0644, pkey, false);
        if (s) unlink(secret);
    }
    if (s) {
        EVP_PKEY_free(pkey);
        return s;
    }
    sign_key *k;
    if ((s = key_wrap(pkey, true, &k))) return s;
    memcpy(key_id, k->id, 17);
    sign_key_free(k);
    return SOV_OK;
}

/* ---- trusted keys ---- */

static sov_status trust_add(sign_trust *t, sign_key *k) {
    if (sign_trust_find_(t, k->id)) { /* the same key under two names */
        sign_key_free(k);
        return SOV_OK;
    }
    if (t->n == SIGN_TRUST_MAX) {
        sign_key_free(k);
        return sov_fail(SOV_ERR_ARG, "more than %d trusted keys", SIGN_TRUST_MAX);
    }
    sign_key **p = realloc(t->keys, (t->n + 1) * sizeof *p);
    if (!p) {
        sign_key_free(k);
        return sov_fail(SOV_ERR_NOMEM, "sign: out of memory");
    }
    t->keys = p;
    t->keys[t->n++] = k;
    return SOV_OK;
}

static bool is_pub_name(const char *name) {
    const size_t n = strlen(name);
    return name[0] != '.' && n > 4 && strcmp(name + n - 4, ".pub") == 0;
}

sov_status sign_trust_load_dir(const char *dir, sign_trust **out) {
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d) return sov_fail(SOV_ERR_IO, "cannot open the trusted keys folder '%s': %s", dir, strerror(errno));
    sign_trust *t = calloc(1, sizeof *t);
    sov_status s = t ? SOV_OK : sov_fail(SOV_ERR_NOMEM, "sign: out of memory");
    for (struct dirent *e; !s && (e = readdir(d));) {
        if (!is_pub_name(e->d_name)) continue;
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) {
            s = sov_fail(SOV_ERR_ARG, "the path of '%s' in '%s' is too long", e->d_name, dir);
            break;
        }
        sign_key *k;
        s = sign_key_load_public(path, &k);
        if (!s) s = trust_add(t, k);
    }
    closedir(d);
    if (!s && t->n == 0)
        s = sov_fail(SOV_ERR_NOT_FOUND,
                     "the trusted keys folder '%s' holds no *.pub file: copy the public keys of the signers "
                     "you trust there",
                     dir);
    if (s) {
        sign_trust_free(t);
        return s;
    }
    *out = t;
    return SOV_OK;
}

sov_status sign_trust_load_key(const char *pub_path, sign_trust **out) {
    *out = NULL;
    sign_trust *t = calloc(1, sizeof *t);
    if (!t) return sov_fail(SOV_ERR_NOMEM, "sign: out of memory");
    sign_key *k;
    sov_status s = sign_key_load_public(pub_path, &k);
    if (!s) s = trust_add(t, k);
    if (s) {
        sign_trust_free(t);
        return s;
    }
    *out = t;
    return SOV_OK;
}

size_t sign_trust_count(const sign_trust *trust) { return trust->n; }

void sign_trust_free(sign_trust *trust) {
    if (!trust) return;
    for (size_t i = 0; i < trust->n; i++)
        sign_key_free(trust->keys[i]);
    free(trust->keys);
    free(trust);
}
