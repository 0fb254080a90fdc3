/* policy.h - the node's data-handling policy (`sov serve --policy FILE`): what of a prompt
 * and a completion may be kept, where the node says it is, which models it loads, whether
 * data may leave it, and what is redacted.
 *
 * The file is `key = value` lines (TOML's subset: # comments, strings in double quotes
 * without escapes, integers, true/false, one-line lists of strings in [ ]), validated at
 * start-up: an unknown or repeated key, a wrong type, a value out of range, trailing
 * garbage or bytes that are not UTF-8 are an error naming the file and line. The format,
 * an example and every rule: docs/POLICY.md. Keys:
 *
 *   retention      = "none" | "hashes" | "full"   what the audit store keeps of prompt and
 *                                                  completion text: nothing, their SHA-256
 *                                                  (the default), or the text itself
 *   retention_days = N                             with "full": the text is deleted by the
 *                                                  server N days after the request (1..3650)
 *   region         = "KR-Seoul-1"                  a label shown in /v1/models, /ready,
 *                                                  /metrics and every audit record (1..64
 *                                                  bytes of A-Z a-z 0-9 . _ : / -)
 *   require_signed_models = true|false             refuse models without a trusted signature
 *   allow_egress   = true|false                    the sandbox's network lockdown off/on
 *   redact         = ["email", "phone", "rrn", "card", "ip"]   what is redacted in anything
 *                                                  sov stores or logs (default: all)
 *   redact_prompts = true|false                    redact prompts before inference too
 *
 * A policy is plain data: parsing is a pure function of the text (fuzzed by
 * fuzz/fuzz_policy.c; malformed corpus in tests/policy/corpus/). Who reads which field:
 * the audit log (retention, retention_days, region, redact), the server (region in
 * /v1/models, /ready and /metrics; redact_prompts), the sandbox (allow_egress), model
 * loading (require_signed_models). */
#ifndef SOV_POLICY_POLICY_H
#define SOV_POLICY_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sov.h"

typedef enum policy_retention {
    POLICY_RETAIN_HASHES = 0,    /* the default: SHA-256 of prompt and completion only */
    POLICY_RETAIN_NONE = 1,      /* not even hashes */
    POLICY_RETAIN_FULL = 2,      /* the text, for retention_days */
} policy_retention;

/* What the redactor recognises (bit flags). */
enum {
    POLICY_REDACT_EMAIL = 1u << 0,
    POLICY_REDACT_PHONE = 1u << 1, /* Korean 010-xxxx-xxxx and international numbers */
    POLICY_REDACT_RRN = 1u << 2,   /* Korean resident registration numbers (check digit) */
    POLICY_REDACT_CARD = 1u << 3,  /* payment card numbers (Luhn) */
    POLICY_REDACT_IP = 1u << 4,    /* IPv4 and IPv6 addresses */
    POLICY_REDACT_ALL = (1u << 5) - 1,
};

typedef struct sov_policy {
    policy_retention retention;
    int32_t retention_days;      /* with POLICY_RETAIN_FULL; 0 otherwise */
    char region[65];             /* "" when not set */
    bool require_signed_models;
    bool allow_egress;
    uint32_t redact;             /* POLICY_REDACT_* flags */
    bool redact_prompts;
} sov_policy;

/* The policy of a node without a policy file: hashes retained, no region, unsigned models
 * allowed, egress locked, everything redacted in what sov stores or logs, prompts not
 * redacted. */
static inline sov_policy policy_default(void) {
    return (sov_policy){.retention = POLICY_RETAIN_HASHES, .redact = POLICY_REDACT_ALL};
}

/* Limits of the file (docs/POLICY.md). */
enum {
    POLICY_MAX_BYTES = 64 * 1024, /* a policy is a few lines; anything bigger is a mistake */
    POLICY_MAX_LINE = 1024,       /* bytes per line, without the line break */
    POLICY_REGION_MAX = 64,       /* bytes of region (sov_policy.region holds it and a NUL) */
    POLICY_DAYS_MAX = 3650,       /* retention_days: ten years */
};

/* Parses a policy file's text (len bytes; NUL bytes are an error) into *out, which is
 * written only on success. file_name names the file in messages (NULL: "policy").
 * Pure: no I/O, no clock, no global state. Keys not in the text keep policy_default()'s
 * values. Errors: SOV_ERR_FORMAT with one line in sov_last_error() that names the file
 * and line and says what to write instead, e.g.
 *   policy.toml:7: unknown key 'retension' (did you mean 'retention'?); keys: retention, ... */
sov_status policy_parse(const char *text, size_t len, const char *file_name, sov_policy *out);

/* Reads and parses the file at path (at most POLICY_MAX_BYTES). Errors: SOV_ERR_IO
 * (cannot open or read it, or too big) and policy_parse's. */
sov_status policy_load(const char *path, sov_policy *out);

/* "none", "hashes", "full". */
const char *policy_retention_name(policy_retention r);

/* The name a redaction kind has in the file ("email", "phone", "rrn", "card", "ip") of one
 * POLICY_REDACT_* bit; NULL for anything else. */
const char *policy_redact_name(uint32_t bit);

/* A one-line summary for logs ("retention hashes, region KR-Seoul-1, redact
 * email,phone,rrn,card,ip (prompts too), signed models required, egress locked"). Writes
 * at most cap bytes (NUL included) and returns buf. */
char *policy_describe(const sov_policy *p, char *buf, size_t cap);

#endif
