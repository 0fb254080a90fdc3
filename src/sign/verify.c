/* verify.c - is this model the one a trusted key signed? The checks and their verdicts.
 *
 * The order is chosen so that each verdict means one thing. The record must parse
 * (else MALFORMED) and name a trusted key (UNKNOWN_KEY); its signature must hold over the
 * record's own claims (BAD_SIGNATURE: the .sig was edited or forged). Only then are the
 * claims compared with the file: size and SHA-256 (ALTERED) and name (RENAMED). A valid
 * signature over claims the file does not meet therefore always means the file changed
 * after signing, never that the .sig did. */
#include <errno.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/status.h"
#include "sign/sign_impl.h"

const char *sign_verdict_name(sign_verdict v) {
    static const char *const names[] = {
#define SIGN_VERDICT_NAME_(name, text) text,
        SIGN_VERDICT_MAP(SIGN_VERDICT_NAME_)
#undef SIGN_VERDICT_NAME_
    };
    return (unsigned)v < SIGN_VERDICT_COUNT ? names[v] : "cannot check";
}

static bool ed25519_verify(const sign_key *key, const sign_record *r) {
    char msg[SIGN_MESSAGE_MAX];
    const int len = sign_message(r, msg, sizeof msg);
    bool secret;
    EVP_PKEY *pkey = sign_key_pkey_(key, &secret);
    EVP_MD_CTX *ctx = len > 0 ? EVP_MD_CTX_new() : NULL;
    const bool ok =
        ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) == 1 &&
        EVP_DigestVerify(ctx, r->sig, sizeof r->sig, (const unsigned char *)msg, (size_t)len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

sign_verdict sign_record_check(const sign_trust *trust, const sign_record *r) {
    const sign_key *key = sign_trust_find_(trust, r->key_id);
    if (!key) return SIGN_UNKNOWN_KEY;
    return ed25519_verify(key, r) ? SIGN_OK : SIGN_BAD_SIGNATURE;
}

static sign_verdict say(char *why, size_t cap, sign_verdict v, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static sign_verdict say(char *why, size_t cap, sign_verdict v, const char *fmt, ...) {
    if (!why || cap == 0) return v;
    int n = snprintf(why, cap, "%s: ", sign_verdict_name(v));
    if (n < 0 || (size_t)n >= cap) return v;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why + n, cap - (size_t)n, fmt, ap);
    va_end(ap);
    return v;
}

sign_verdict sign_record_match(const sign_record *r, const char *name, uint64_t size, const char *sha256,
                               char *why, size_t cap) {
    if (size != r->size)
        return say(why, cap, SIGN_ALTERED, "'%s' is %llu bytes but was signed at %llu bytes", name,
                   (unsigned long long)size, (unsigned long long)r->size);
    /* both are public values; a constant-time compare costs nothing and settles the question */
    if (sha256 && (strlen(sha256) != 64 || CRYPTO_memcmp(sha256, r->sha256, 64) != 0))
        return say(why, cap, SIGN_ALTERED, "the SHA-256 of '%s' is %.16s..., not the signed %.16s...", name,
                   sha256, r->sha256);
    if (strcmp(name, r->name) != 0)
        return say(why, cap, SIGN_RENAMED,
                   "the file is '%s' but was signed as '%s' (rename it back, or sign it under the new name)",
                   name, r->name);
    return SIGN_OK;
}

sign_verdict sign_check_before_load(const sign_trust *trust, const char *model_path, const char *sig_path,
                                    sign_record *rec, char *why, size_t cap) {
    char own[4096];
    if (!sig_path) {
        if (snprintf(own, sizeof own, "%s.sig", model_path) >= (int)sizeof own)
            return say(why, cap, SIGN_ERROR, "the path '%.100s...' is too long", model_path);
        sig_path = own;
    }
    const char *name = sign_base_name(model_path);
    const sov_status s = sign_record_read(sig_path, rec);
    if (s == SOV_ERR_NOT_FOUND)
        return say(why, cap, SIGN_UNSIGNED,
                   "no signature file '%s' (sign it: sov model sign --key SECRET.pem %s)", sig_path,
                   model_path);
    if (s == SOV_ERR_IO) return say(why, cap, SIGN_ERROR, "%s", sov_last_error());
    if (s) return say(why, cap, SIGN_MALFORMED, "'%s': %s", sig_path, sov_last_error());
    const sign_verdict v = sign_record_check(trust, rec);
    if (v == SIGN_UNKNOWN_KEY)
        return say(why, cap, v,
                   "'%s' was signed by key %s, which is not among the %zu trusted (add its .pub to the "
                   "trusted keys if you trust the signer)",
                   name, rec->key_id, sign_trust_count(trust));
    if (v == SIGN_BAD_SIGNATURE)
        return say(why, cap, v,
                   "'%s' does not hold a valid signature by key %s over its contents: the signature file was "
                   "altered or forged",
                   sig_path, rec->key_id);
    struct stat st;
    if (stat(model_path, &st) != 0)
        return say(why, cap, SIGN_ERROR, "cannot open '%s': %s", model_path, strerror(errno));
    return sign_record_match(rec, name, (uint64_t)st.st_size, NULL, why, cap);
}

sign_verdict sign_check_after_load(const sign_record *rec, const char *model_path, const char *sha256,
                                   uint64_t size, char *why, size_t cap) {
    if (!sha256 || strlen(sha256) != 64)
        return say(why, cap, SIGN_ERROR, "the model was loaded without its SHA-256");
    return sign_record_match(rec, sign_base_name(model_path), size, sha256, why, cap);
}
