/* sign.h - signed models: Ed25519 keys, the signature file beside a model, and the checks
 * a loader makes before it serves the model (docs/SIGNING.md).
 *
 * A signer holds an Ed25519 secret key (PKCS#8 PEM); an operator trusts public keys (SPKI
 * PEM, the `*.pub` files of a folder). Both are what `openssl genpkey -algorithm ed25519`
 * and `openssl pkey -pubout` write. A key's id is the first 16 hex digits of the SHA-256
 * of its raw 32-byte public key.
 *
 * Signing MODEL.gguf writes MODEL.gguf.sig, a small JSON object (the record):
 *
 *   {"format": "sov-model-signature-v1", "name": "m.gguf", "size": 123,
 *    "sha256": "<64 lowercase hex>", "key_id": "<16 lowercase hex>",
 *    "signature": "<base64 of the 64-byte Ed25519 signature>"}
 *
 * The signature is pure Ed25519 (RFC 8032) over the signed message, this exact text:
 *
 *   "sov-model-signature-v1\n" "sha256 " SHA256 "\n" "size " SIZE "\n" "name " NAME "\n"
 *
 * SIZE in decimal without leading zeros; NAME the file's base name: 1..255 bytes of UTF-8
 * without control characters or '/', so no field can run into the next and the message
 * decodes one way only. The key id is not part of the message: it only says which key to
 * try, and a wrong one fails the signature.
 *
 * Checking a model is two halves around sov_model_load, so that an unsigned, foreign or
 * renamed file is refused in milliseconds and the hash is computed once, while loading:
 * sign_check_before_load (signature file, key, signature, size, name), then
 * sign_check_after_load (the SHA-256 the loader computed over the bytes it mapped). */
#ifndef SOV_SIGN_SIGN_H
#define SOV_SIGN_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sov.h"

#define SIGN_FORMAT "sov-model-signature-v1"
#define SIGN_SECRET_FILE "sov-model-signing.pem"
#define SIGN_PUBLIC_FILE "sov-model-signing.pub"

enum {
    SIGN_NAME_MAX = 255,           /* bytes of a model's file name */
    SIGN_RECORD_MAX = 64 * 1024,   /* bytes of a .sig file */
    SIGN_KEY_FILE_MAX = 64 * 1024, /* bytes of a PEM key file */
    SIGN_TRUST_MAX = 1024,         /* keys in a trusted folder */
    SIGN_MESSAGE_MAX = 512,        /* bytes of a signed message */
};

/* ---- keys ---- */

typedef struct sign_key sign_key; /* an Ed25519 public key, with its secret half or not */

/* Makes a key pair in dir (created with mode 0700 when missing): SIGN_SECRET_FILE (mode
 * 0600) and SIGN_PUBLIC_FILE. Never overwrites: SOV_ERR_ARG when either exists. Writes the
 * new key's id to key_id. Errors: SOV_ERR_IO, SOV_ERR_ARG, SOV_ERR_NOMEM. */
sov_status sign_keygen(const char *dir, char key_id[17]);

/* Reads a secret key (PKCS#8 PEM, unencrypted). Refused (SOV_ERR_ARG) when the file can
 * be read by group or others, as ssh does. Errors: SOV_ERR_IO, SOV_ERR_FORMAT (not an
 * Ed25519 private key), SOV_ERR_ARG, SOV_ERR_NOMEM. */
sov_status sign_key_load_secret(const char *path, sign_key **out);
/* Reads a public key (SPKI PEM). Errors: SOV_ERR_IO, SOV_ERR_FORMAT, SOV_ERR_NOMEM. */
sov_status sign_key_load_public(const char *path, sign_key **out);
void sign_key_free(sign_key *key);
/* The key's id: 16 lowercase hex digits; owned by the key. */
const char *sign_key_id(const sign_key *key);

/* The public keys a loader accepts. */
typedef struct sign_trust sign_trust;

/* Every `*.pub` file in dir. A file that is not an Ed25519 public key is an error naming
 * it (a typo must not quietly shrink the set); an empty folder is an error too. */
sov_status sign_trust_load_dir(const char *dir, sign_trust **out);
/* Trusts exactly one public key file. */
sov_status sign_trust_load_key(const char *pub_path, sign_trust **out);
size_t sign_trust_count(const sign_trust *trust);
void sign_trust_free(sign_trust *trust);

/* ---- the record (.sig file) ---- */

typedef struct sign_record {
    char name[SIGN_NAME_MAX + 1]; /* the model's file name when signed */
    uint64_t size;                /* its size in bytes */
    char sha256[65];              /* its SHA-256, lowercase hex */
    char key_id[17];              /* which key signed */
    unsigned char sig[64];        /* Ed25519 over sign_message() */
} sign_record;

/* True when name can be signed: 1..255 bytes of UTF-8, no control character, no '/',
 * not "." or "..". */
bool sign_name_ok(const char *name);
/* The part of path after its last '/'. */
const char *sign_base_name(const char *path);

/* Writes the signed message of the record's name, size and sha256 (and a NUL) into buf;
 * returns its length, or -1 when it does not fit or a field is invalid. */
int sign_message(const sign_record *r, char *buf, size_t cap);

/* Parses a .sig file's text (outside input: strict, every field checked, nothing else
 * allowed). Errors: SOV_ERR_FORMAT with the field at fault in sov_last_error(). */
sov_status sign_record_parse(const char *text, size_t len, sign_record *out);
/* The record as the .sig file's text (JSON, trailing newline); malloc'd, NULL when out of
 * memory. */
char *sign_record_json(const sign_record *r);

/* Signs (name, size, sha256) with a secret key into *out. Errors: SOV_ERR_ARG (a name
 * sign_name_ok refuses, a malformed hash, a public-only key), SOV_ERR_NOMEM. */
sov_status sign_record_make(const sign_key *secret, const char *name, uint64_t size, const char *sha256,
                            sign_record *out);

/* Reads a .sig file (at most SIGN_RECORD_MAX bytes) and parses it. Errors: SOV_ERR_NOT_FOUND
 * (no such file), SOV_ERR_IO, SOV_ERR_FORMAT. */
sov_status sign_record_read(const char *path, sign_record *out);
/* Writes the record to path atomically (a temporary file renamed over it). */
sov_status sign_record_write(const char *path, const sign_record *r);

/* The SHA-256 (hex) and size of a file, read from start to end. */
sov_status sign_file_sha256(const char *path, char hex[65], uint64_t *size);

/* ---- checks ---- */

#define SIGN_VERDICT_MAP(X)                                                                                  \
    X(OK, "signed by a trusted key")                                                                         \
    X(UNSIGNED, "unsigned")                                                                                  \
    X(MALFORMED, "malformed signature file")                                                                 \
    X(UNKNOWN_KEY, "signed by an unknown key")                                                               \
    X(BAD_SIGNATURE, "bad signature")                                                                        \
    X(ALTERED, "altered after signing")                                                                      \
    X(RENAMED, "renamed after signing")                                                                      \
    X(ERROR, "cannot check")

typedef enum sign_verdict {
#define SIGN_VERDICT_ENUM_(name, text) SIGN_##name,
    SIGN_VERDICT_MAP(SIGN_VERDICT_ENUM_)
#undef SIGN_VERDICT_ENUM_
        SIGN_VERDICT_COUNT
} sign_verdict;

/* "unsigned", "altered after signing", ...; never NULL. */
const char *sign_verdict_name(sign_verdict v);

/* Is the record itself good: its key trusted and its signature valid over its claims?
 * SIGN_OK, SIGN_UNKNOWN_KEY or SIGN_BAD_SIGNATURE. */
sign_verdict sign_record_check(const sign_trust *trust, const sign_record *r);

/* Does a file match the record's claims? SIGN_OK, SIGN_ALTERED (size, or sha256 when not
 * NULL) or SIGN_RENAMED. why (may be NULL) gets a one-line reason. */
sign_verdict sign_record_match(const sign_record *r, const char *name, uint64_t size, const char *sha256,
                               char *why, size_t cap);

/* Before loading model_path: its signature file (sig_path, or model_path + ".sig" when
 * NULL) is read and parsed, its key looked up in trust, its signature verified, and the
 * file's current size and name compared with what was signed. On SIGN_OK *rec holds the
 * record; otherwise why holds the one-line reason, starting with the verdict's name. */
sign_verdict sign_check_before_load(const sign_trust *trust, const char *model_path, const char *sig_path,
                                    sign_record *rec, char *why, size_t cap);
/* After loading: the SHA-256 and size of the bytes actually loaded against the record. */
sign_verdict sign_check_after_load(const sign_record *rec, const char *model_path, const char *sha256,
                                   uint64_t size, char *why, size_t cap);

#endif
