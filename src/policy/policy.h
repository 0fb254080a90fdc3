/* policy.h - the node's data-handling policy (`sov serve --policy FILE`): what of a prompt
 * and a completion may be kept, where the node says it is, which models it loads, whether
 * data may leave it, and what is redacted.
 *
 * The file is `key = value` lines (TOML's subset: # comments, strings in double quotes,
 * integers, true/false, lists of strings in [ ]), validated at start-up: an unknown key, a
 * wrong type or a value out of range is an error naming the file and line. Keys:
 *
 *   retention      = "none" | "hashes" | "full"   what the audit store keeps of prompt and
 *                                                  completion text: nothing, their SHA-256
 *                                                  (the default), or the text itself
 *   retention_days = N                             with "full": the text is deleted by the
 *                                                  server N days after the request (1..3650)
 *   region         = "KR-Seoul-1"                  a label shown in /v1/models, /ready and
 *                                                  every audit record (<= 64 bytes)
 *   require_signed_models = true|false             refuse models without a trusted signature
 *   allow_egress   = true|false                    the sandbox's network lockdown off/on
 *   redact         = ["email", "phone", "rrn", "card", "ip"]   what is redacted in anything
 *                                                  sov stores or logs (default: all)
 *   redact_prompts = true|false                    redact prompts before inference too
 *
 * A policy is plain data: parsing is a pure function of the text (fuzzed). */
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

#endif
