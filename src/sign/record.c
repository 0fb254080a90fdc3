/* record.c - the signature file (MODEL.gguf.sig): the signed message, parsing (strict: it
 * is outside input), writing, and making a signature.
 *
 * The parser accepts exactly one shape: a JSON object with the six fields of sign.h and
 * nothing else, duplicate keys refused, each value of the right type and form (lowercase
 * hex of the right length, canonical base64 of exactly 64 bytes, a name sign_name_ok
 * accepts). Anything else is SOV_ERR_FORMAT naming the field, so a damaged file is
 * reported as malformed rather than as a bad signature. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"
#include "sign/sign_impl.h"

enum { SIG_B64_LEN = 88 }; /* base64 of 64 bytes, with its "==" */

/* ---- names and the message ---- */

const char *sign_base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

bool sign_name_ok(const char *name) {
    const size_t n = strlen(name);
    if (n == 0 || n > SIGN_NAME_MAX || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return false;
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f || c == '/') return false;
    }
    json_t *utf8 = json_stringn(name, n); /* jansson refuses strings that are not UTF-8 */
    const bool ok = utf8 != NULL;
    json_decref(utf8);
    return ok;
}

static bool is_hex(const char *s, size_t n) {
    if (strlen(s) != n) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

int sign_message(const sign_record *r, char *buf, size_t cap) {
    if (!sign_name_ok(r->name) || !is_hex(r->sha256, 64)) return -1;
    const int n = snprintf(buf, cap, SIGN_FORMAT "\nsha256 %s\nsize %llu\nname %s\n", r->sha256,
                           (unsigned long long)r->size, r->name);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* ---- base64 of the signature ---- */

static void sig_to_b64(const unsigned char sig[64], char out[SIG_B64_LEN + 1]) {
    EVP_EncodeBlock((unsigned char *)out, sig, 64);
}

/* Canonical base64 only: decoding and re-encoding must give the same text back, which
 * refuses whitespace, missing padding and stray bits in the last character. */
static bool sig_from_b64(const char *b64, unsigned char sig[64]) {
    if (strlen(b64) != SIG_B64_LEN) return false;
    unsigned char raw[66];
    if (EVP_DecodeBlock(raw, (const unsigned char *)b64, SIG_B64_LEN) != 66) return false;
    char again[SIG_B64_LEN + 1];
    sig_to_b64(raw, again);
    if (strcmp(again, b64) != 0) return false;
    memcpy(sig, raw, 64);
    return true;
}

/* ---- parsing ---- */

static sov_status field_error(const char *field, const char *want) {
    return sov_fail(SOV_ERR_FORMAT, "signature file: \"%s\" must be %s", field, want);
}

static const char *string_field(json_t *o, const char *field) {
    return json_string_value(json_object_get(o, field));
}

static sov_status parse_fields(json_t *o, sign_record *out) {
    static const char *const known[] = {"format", "name", "size", "sha256", "key_id", "signature"};
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        bool ok = false;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            ok = ok || strcmp(key, known[i]) == 0;
        if (!ok) return sov_fail(SOV_ERR_FORMAT, "signature file: unknown field \"%.64s\"", key);
    }
    const char *format = string_field(o, "format");
    if (!format) return field_error("format", "the string \"" SIGN_FORMAT "\"");
    if (strcmp(format, SIGN_FORMAT) != 0)
        return sov_fail(SOV_ERR_FORMAT,
                        "signature file: format \"%.64s\" is not one this sov reads (" SIGN_FORMAT ")",
                        format);
    const char *name = string_field(o, "name");
    if (!name || !sign_name_ok(name))
        return field_error("name", "a file name: 1..255 bytes of UTF-8, no '/' or control characters");
    json_t *size = json_object_get(o, "size");
    if (!json_is_integer(size) || json_integer_value(size) < 0)
        return field_error("size", "a whole number of bytes, 0 or more");
    const char *sha = string_field(o, "sha256");
    if (!sha || !is_hex(sha, 64)) return field_error("sha256", "64 lowercase hex digits");
    const char *kid = string_field(o, "key_id");
    if (!kid || !is_hex(kid, 16)) return field_error("key_id", "16 lowercase hex digits");
    const char *sig = string_field(o, "signature");
    if (!sig || !sig_from_b64(sig, out->sig)) return field_error("signature", "the base64 of 64 bytes");
    snprintf(out->name, sizeof out->name, "%s", name);
    out->size = (uint64_t)json_integer_value(size);
    memcpy(out->sha256, sha, 65);
    memcpy(out->key_id, kid, 17);
    return SOV_OK;
}

sov_status sign_record_parse(const char *text, size_t len, sign_record *out) {
    memset(out, 0, sizeof *out);
    if (len > SIGN_RECORD_MAX)
        return sov_fail(SOV_ERR_FORMAT, "signature file: %zu bytes, more than the %d a signature takes", len,
                        SIGN_RECORD_MAX);
    json_error_t err;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!o) return sov_fail(SOV_ERR_FORMAT, "signature file: not JSON (line %d: %s)", err.line, err.text);
    const sov_status s = json_is_object(o) ? parse_fields(o, out)
                                           : sov_fail(SOV_ERR_FORMAT, "signature file: not a JSON object");
    json_decref(o);
    if (s) memset(out, 0, sizeof *out);
    return s;
}

/* ---- writing ---- */

char *sign_record_json(const sign_record *r) {
    char b64[SIG_B64_LEN + 1];
    sig_to_b64(r->sig, b64);
    json_t *o = json_pack("{ss ss sI ss ss ss}", "format", SIGN_FORMAT, "name", r->name, "size",
                          (json_int_t)r->size, "sha256", r->sha256, "key_id", r->key_id, "signature", b64);
    char *text = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
    json_decref(o);
    if (!text) return NULL;
    const size_t n = strlen(text);
    char *out = realloc(text, n + 2);
    if (!out) {
        free(text);
        return NULL;
    }
    out[n] = '\n';
    out[n + 1] = '\0';
    return out;
}

sov_status sign_record_make(const sign_key *secret, const char *name, uint64_t size, const char *sha256,
                            sign_record *out) {
    memset(out, 0, sizeof *out);
    bool can_sign;
    EVP_PKEY *pkey = sign_key_pkey_(secret, &can_sign);
    if (!can_sign) return sov_fail(SOV_ERR_ARG, "sign: a public key cannot sign; give the secret key (.pem)");
    if (!sign_name_ok(name))
        return sov_fail(
            SOV_ERR_ARG,
            "cannot sign a file named '%.80s': a signed name is 1..255 bytes of UTF-8 without control "
            "characters; rename the file",
            name);
    if (!is_hex(sha256, 64))
        return sov_fail(SOV_ERR_ARG, "sign: the SHA-256 must be 64 lowercase hex digits");
    if (size > INT64_MAX) return sov_fail(SOV_ERR_ARG, "sign: the size is out of range");
    snprintf(out->name, sizeof out->name, "%s", name);
    out->size = size;
    memcpy(out->sha256, sha256, 65);
    memcpy(out->key_id, sign_key_id(secret), 17);
    char msg[SIGN_MESSAGE_MAX];
    const int len = sign_message(out, msg, sizeof msg);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t sig_len = sizeof out->sig;
    /* Ed25519 is used pure: no digest is named, the whole message is signed */
    const bool ok = len > 0 && ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, pkey) == 1 &&
                    EVP_DigestSign(ctx, out->sig, &sig_len, (const unsigned char *)msg, (size_t)len) == 1 &&
                    sig_len == sizeof out->sig;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        memset(out, 0, sizeof *out);
        return sov_fail(SOV_ERR_NOMEM, "sign: OpenSSL cannot make the Ed25519 signature");
    }
    return SOV_OK;
}

/* ---- files ---- */

sov_status sign_record_read(const char *path, sign_record *out) {
    memset(out, 0, sizeof *out);
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        const int e = errno;
        return sov_fail(e == ENOENT ? SOV_ERR_NOT_FOUND : SOV_ERR_IO, "cannot open '%s': %s", path,
                        strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return sov_fail(SOV_ERR_FORMAT, "'%s' is not a regular file", path);
    }
    char *buf = malloc(SIGN_RECORD_MAX + 1);
    size_t n = 0;
    while (buf && n <= SIGN_RECORD_MAX) { /* one byte more than allowed says "too long" */
        const ssize_t r = read(fd, buf + n, SIGN_RECORD_MAX + 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            const int e = errno;
            close(fd);
            free(buf);
            return sov_fail(SOV_ERR_IO, "cannot read '%s': %s", path, strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    if (!buf) return sov_fail(SOV_ERR_NOMEM, "sign: out of memory");
    const sov_status s = sign_record_parse(buf, n, out);
    free(buf);
    return s;
}

sov_status sign_record_write(const char *path, const sign_record *r) {
    char *text = sign_record_json(r);
    if (!text) return sov_fail(SOV_ERR_NOMEM, "sign: out of memory");
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)getpid()) >= (int)sizeof tmp) {
        free(text);
        return sov_fail(SOV_ERR_ARG, "the path '%.100s...' is too long", path);
    }
    const int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        const int e = errno;
        free(text);
        return sov_fail(SOV_ERR_IO, "cannot create '%s': %s", tmp, strerror(e));
    }
    const size_t len = strlen(text);
    size_t done = 0;
    while (done < len) {
        const ssize_t w = write(fd, text + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        done += (size_t)w;
    }
    free(text);
    const bool ok = done == len && fsync(fd) == 0;
    if (close(fd) != 0 || !ok || rename(tmp, path) != 0) {
        const int e = errno;
        unlink(tmp);
        return sov_fail(SOV_ERR_IO, "cannot write '%s': %s", path, strerror(e));
    }
    return SOV_OK;
}

sov_status sign_file_sha256(const char *path, char hex[65], uint64_t *size) {
    hex[0] = '\0';
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sov_fail(SOV_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return sov_fail(SOV_ERR_IO, "'%s' is not a regular file", path);
    }
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    const size_t cap = (size_t)4 << 20;
    unsigned char *buf = malloc(cap);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = buf && ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
    uint64_t total = 0;
    int err = 0;
    while (ok) {
        const ssize_t r = read(fd, buf, cap);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) err = errno;
        if (r <= 0) break;
        ok = EVP_DigestUpdate(ctx, buf, (size_t)r) == 1;
        total += (uint64_t)r;
    }
    unsigned char md[32];
    unsigned int md_len = 0;
    ok = ok && !err && EVP_DigestFinal_ex(ctx, md, &md_len) == 1 && md_len == sizeof md;
    EVP_MD_CTX_free(ctx);
    free(buf);
    close(fd);
    if (err) return sov_fail(SOV_ERR_IO, "cannot read '%s': %s", path, strerror(err));
    if (!ok) return sov_fail(SOV_ERR_NOMEM, "sign: cannot hash '%s' (out of memory)", path);
    for (size_t i = 0; i < sizeof md; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    *size = total;
    return SOV_OK;
}
