/* audit.h - the tamper-evident audit log: one record per /v1 request, chained by hashes
 * like git's commits, the chain's head signed with Ed25519 like a Certificate Transparency
 * tree head, a verification walk that names the first record edited, deleted, inserted or
 * reordered, and a JSON-lines export a third party can verify alone (docs/AUDIT.md).
 *
 *   record k:  D_k = SHA-256("sov-audit-record-v1\n" || fields of k)     (the digest)
 *              H_k = SHA-256("sov-audit-link-v1\n" || H_{k-1} || D_k)    (the chain; H_0 = 0^32)
 *   head:      Ed25519 over "sov-audit-head-v1\n" || seq || H_seq || time || key id
 *
 * A record's fields are its metadata and the SHA-256 of its prompt and completion, never
 * their text: the text (kept only when the data policy says "full") sits beside the record
 * and may be deleted when it expires without breaking the chain.
 *
 * This module is pure (no database, no threads): record.c encodes and hashes, key.c holds
 * the Ed25519 key files and signs and checks heads, verify.c is the walk, export.c the JSON
 * lines. The store (src/store/store_audit.c) appends records in transactions and assigns
 * their place in the chain; the server's store worker (src/tenants) signs heads. */
#ifndef SOV_AUDIT_AUDIT_H
#define SOV_AUDIT_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/policy.h"
#include "sov.h"

enum {
    AUDIT_VERSION = 2,     /* the record encoding written today (2: with the request's energy) */
    AUDIT_VERSION_MIN = 1, /* the oldest encoding still verified (1: before energy) */
    AUDIT_EXPORT_VERSION = 1, /* the export's header version (records carry their own "v") */
    AUDIT_HASH_BYTES = 32, /* SHA-256 */
    AUDIT_HEX_LEN = 64,    /* a SHA-256 in lowercase hex */
    AUDIT_KEY_ID_LEN = 16, /* hex digits of a key id */
    AUDIT_SIG_BYTES = 64,  /* Ed25519 */
    AUDIT_PUB_BYTES = 32,  /* Ed25519 raw public key */
    AUDIT_TEXT_MAX = 256,  /* bytes of model, endpoint (longer ones are cut by the writer) */
};

/* ---- records ---------------------------------------------------------------------- */

/* One request. Every string is UTF-8 without NUL; lengths are bounded by the arrays. */
typedef struct audit_record {
    int64_t seq;                             /* place in the chain, from 1 (fixed by the links;
                                                not itself hashed) */
    int32_t version;                         /* encoding (AUDIT_VERSION) */
    int64_t time_ms;                         /* when the request arrived, Unix milliseconds */
    char node[AUDIT_KEY_ID_LEN + 1];         /* key id of the server that wrote it */
    char tenant[65];                         /* the authenticated tenant; "" before auth */
    int64_t key_id;                          /* the API key's id in the store; 0: none */
    char model[AUDIT_TEXT_MAX + 1];          /* the served model's id */
    char model_sha256[AUDIT_HEX_LEN + 1];    /* the model file's SHA-256 (hex) */
    char model_signer[AUDIT_KEY_ID_LEN + 1]; /* key id that signed the model; "" unsigned */
    char endpoint[AUDIT_TEXT_MAX + 1];       /* "/v1/chat/completions", ... */
    int32_t status;                          /* HTTP status sent; 499: the client left first */
    int64_t prompt_tokens, completion_tokens, cached_tokens;
    int64_t latency_ms;                    /* arrival to the end of the answer */
    char finish_reason[16];                /* stop, length, timeout, cancelled, error, "" */
    char client[64];                       /* the peer's address */
    char response_id[64];                  /* "chatcmpl-..." / "cmpl-..."; "" for others */
    char region[65];                       /* the data policy's region label */
    int32_t retention;                     /* policy_retention when written */
    char prompt_sha256[AUDIT_HEX_LEN + 1]; /* "" with retention none or no prompt read */
    char completion_sha256[AUDIT_HEX_LEN + 1];
    int64_t energy_uj;                     /* version >= 2: microjoules attributed to the request */
    char energy_source[16];                /* version >= 2: "rapl", "estimated", or "" (none) */
    uint8_t prev[AUDIT_HASH_BYTES]; /* H of the record before (zeros for the first) */
    uint8_t hash[AUDIT_HASH_BYTES]; /* H of this record */
} audit_record;

/* The canonical encoding (docs/AUDIT.md): the tag, then each field in order, integers as
 * 8 bytes big-endian, strings as a 4-byte big-endian length and their bytes. Writes at most
 * cap bytes and returns the full length. */
size_t audit_record_encode(const audit_record *r, uint8_t *buf, size_t cap);
/* D: SHA-256 of the encoding. SOV_ERR_FORMAT for a version this sov cannot encode. */
sov_status audit_record_digest(const audit_record *r, uint8_t digest[AUDIT_HASH_BYTES]);
/* H = SHA-256(link tag || prev || digest). */
void audit_link_hash(const uint8_t prev[AUDIT_HASH_BYTES], const uint8_t digest[AUDIT_HASH_BYTES],
                     uint8_t out[AUDIT_HASH_BYTES]);
/* Sets r->prev and r->hash to chain r after prev. */
sov_status audit_record_chain(audit_record *r, const uint8_t prev[AUDIT_HASH_BYTES]);

const char *audit_retention_name(int32_t retention); /* "hashes", "none", "full" ("?" else) */
int32_t audit_retention_parse(const char *name);     /* -1 when unknown */

/* Hex helpers: lowercase; parse accepts exactly 2*n hex digits. */
void audit_hex(const uint8_t *bytes, size_t n, char *out); /* out: 2n+1 bytes */
bool audit_unhex(const char *hex, uint8_t *out, size_t n);
/* SHA-256 of bytes as lowercase hex (out: 65 bytes). */
void audit_sha256_hex(const void *data, size_t len, char out[AUDIT_HEX_LEN + 1]);

/* Incremental SHA-256 (streamed completions). NULL when out of memory. */
typedef struct audit_hasher audit_hasher;
audit_hasher *audit_hasher_new(void);
void audit_hasher_add(audit_hasher *h, const void *data, size_t len);
/* Writes the hex digest and frees the hasher. */
void audit_hasher_end(audit_hasher *h, char out[AUDIT_HEX_LEN + 1]);
void audit_hasher_free(audit_hasher *h);

/* ---- keys and signed heads --------------------------------------------------------- */

/* A signing key: Ed25519, PKCS#8 PEM in STATE_DIR/audit-ed25519.pem (mode 0600) with its
 * public key (SPKI PEM) beside it in audit-ed25519.pub. A key id is the first 16 hex digits
 * of SHA-256 of the raw 32-byte public key. */
typedef struct audit_key audit_key;

#define AUDIT_KEY_FILE "audit-ed25519.pem"
#define AUDIT_PUB_FILE "audit-ed25519.pub"

/* Opens the key in state_dir; creates the folder (0700) and a new key when there is none.
 * Errors: SOV_ERR_IO (cannot create or read; a key file others may read is refused),
 * SOV_ERR_FORMAT (not an Ed25519 PEM key), SOV_ERR_NOMEM. */
sov_status audit_key_open(const char *state_dir, audit_key **out);
void audit_key_free(audit_key *k);
const char *audit_key_id(const audit_key *k);

/* A trusted public key. */
typedef struct audit_pub {
    char id[AUDIT_KEY_ID_LEN + 1];
    uint8_t raw[AUDIT_PUB_BYTES];
} audit_pub;

/* Reads an Ed25519 public key (SPKI PEM). Errors: SOV_ERR_IO, SOV_ERR_FORMAT. */
sov_status audit_pub_load(const char *path, audit_pub *out);
/* Every audit-*.pub in dir (appended to *keys, *n; the caller frees *keys). A folder
 * without any is not an error. */
sov_status audit_pubs_in_dir(const char *dir, audit_pub **keys, size_t *n);

/* A signed chain head: "the chain had seq records and its last hash was hash". */
typedef struct audit_head {
    int64_t seq;
    uint8_t hash[AUDIT_HASH_BYTES];
    int64_t time_ms;
    char key_id[AUDIT_KEY_ID_LEN + 1];
    uint8_t sig[AUDIT_SIG_BYTES];
} audit_head;

/* The signed message of a head (docs/AUDIT.md); returns its length (<= cap). */
size_t audit_head_message(const audit_head *h, uint8_t *buf, size_t cap);
sov_status audit_head_sign(const audit_key *k, int64_t seq, const uint8_t hash[AUDIT_HASH_BYTES],
                           int64_t time_ms, audit_head *out);

typedef enum audit_head_check {
    AUDIT_HEAD_OK = 0,
    AUDIT_HEAD_UNKNOWN_KEY, /* signed by a key not among the trusted */
    AUDIT_HEAD_BAD_SIGNATURE,
} audit_head_check;

audit_head_check audit_head_verify(const audit_head *h, const audit_pub *keys, size_t n_keys);

/* ---- verification ------------------------------------------------------------------ */

/* What the walk needs of one record: where it claims to be, its links, and whether its
 * hash recomputes from its own fields (and its stored text matches its hashes). */
typedef struct audit_link {
    int64_t seq;
    uint8_t prev[AUDIT_HASH_BYTES];
    uint8_t hash[AUDIT_HASH_BYTES];
    bool intact;
    char why[160]; /* when not intact: what does not match */
} audit_link;

/* The link of a stored record and its text (NULL when none is kept). */
void audit_record_link(const audit_record *r, const char *prompt_text, const char *completion_text,
                       audit_link *out);

typedef enum audit_problem_kind {                    /* in the order a tie on the record number is reported */
                                  AUDIT_EDITED = 0,  /* its fields, hash or text do not match */
                                  AUDIT_DELETED,     /* records missing: the chain skips from one record to a
                                                        later one */
                                  AUDIT_INSERTED,    /* a record that is not part of the chain */
                                  AUDIT_REORDERED,   /* two records swapped */
                                  AUDIT_REWRITTEN,   /* the chain differs from a signed head: records changed
                                                        and re-hashed */
                                  AUDIT_TRUNCATED,   /* the chain ends before a signed head (or the store's
                                                        chain head) */
                                  AUDIT_HEAD_FORGED, /* a head whose signature is invalid */
                                  AUDIT_HEAD_UNKNOWN, /* a head signed by a key not trusted */
} audit_problem_kind;

const char *audit_problem_name(audit_problem_kind k); /* "edited", "deleted", ... */

typedef struct audit_problem {
    audit_problem_kind kind;
    int64_t seq, seq_end; /* the record (or first and last of a range) */
    char detail[240];
} audit_problem;

enum { AUDIT_PROBLEMS_KEPT = 16 };

typedef struct audit_report {
    int64_t records;             /* records walked (links included) */
    int64_t first_seq, last_seq; /* 0 and 0 when empty */
    uint8_t last_hash[AUDIT_HASH_BYTES];
    int64_t heads, heads_matched;                /* trusted heads with a valid signature; of them, matched */
    int64_t signed_through;                      /* the highest seq a matched head covers (0: none) */
    int64_t unsigned_tail;                       /* records after it */
    size_t n_problems;                           /* all found */
    audit_problem problems[AUDIT_PROBLEMS_KEPT]; /* the first found */
    audit_problem first;                         /* the one with the lowest record number */
} audit_report;

/* The chain head the store says it has (its chain row): a tripwire for a tail deleted or
 * appended behind the server's back. */
typedef struct audit_claim {
    bool known;
    int64_t seq;
    uint8_t hash[AUDIT_HASH_BYTES];
} audit_claim;

/* The walk, fed one record at a time in stored order (so any length fits in memory).
 * anchor: the hash before the first record fed (zeros when it starts at record 1; an
 * export that starts later gives its first record's prev, which only a signed head after
 * it can vouch for). Heads are checked against the trusted keys first; those that fail
 * are problems, the rest are matched against the records as they pass. */
typedef struct audit_verifier audit_verifier;

audit_verifier *audit_verifier_new(const uint8_t anchor[AUDIT_HASH_BYTES], int64_t anchor_seq,
                                   const audit_head *heads, size_t n_heads, const audit_pub *keys,
                                   size_t n_keys);
void audit_verifier_push(audit_verifier *v, const audit_link *l);
/* Ends the walk, fills *out and frees v. claim may be NULL. */
void audit_verifier_finish(audit_verifier *v, const audit_claim *claim, audit_report *out);

/* ---- export (JSON lines) ------------------------------------------------------------ */

/* One line of an export: the header, a record (with its text when kept), a link (a record
 * left out by a filter: its prev, digest and hash only) or a signed head. */
typedef enum audit_line_kind {
    AUDIT_LINE_HEADER = 0,
    AUDIT_LINE_RECORD,
    AUDIT_LINE_LINK,
    AUDIT_LINE_HEAD,
} audit_line_kind;

typedef struct audit_line {
    audit_line_kind kind;
    audit_record rec;                 /* RECORD; LINK: seq, prev, hash */
    uint8_t digest[AUDIT_HASH_BYTES]; /* LINK */
    char *prompt_text;                /* RECORD with text (malloc'd) */
    char *completion_text;
    audit_head head;   /* HEAD */
    int64_t first_seq; /* HEADER: the first record or link in the export */
} audit_line;

/* The JSON of a line (malloc'd, no newline); NULL when out of memory. */
char *audit_line_json(const audit_line *l);
/* Parses one line (outside input: bounded, every field type- and range-checked). On
 * failure returns SOV_ERR_FORMAT with sov_last_error() naming the field. Free with
 * audit_line_free (also after a failure). */
sov_status audit_line_parse(const char *text, size_t len, audit_line *out);
void audit_line_free(audit_line *l);
/* The link of a parsed RECORD or LINK line. */
void audit_line_link(const audit_line *l, audit_link *out);

#endif
