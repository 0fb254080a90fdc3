/* redact.h - finds personal data in text and replaces each finding with a typed
 * placeholder, before sov stores or logs the text (and, with redact_prompts, before the
 * model sees a prompt).
 *
 *   "연락처 010-1234-5678, kim@example.com"  ->  "연락처 [PHONE], [EMAIL]"
 *
 * Kinds (the POLICY_REDACT_* bits of policy/policy.h) and their placeholders:
 *   email  [EMAIL]  a practical RFC 5322 subset: local part [A-Za-z0-9._%+-]{1,64}, a domain
 *                   of two labels or more (IDN labels in UTF-8 allowed) ending in a real
 *                   looking TLD; user@localhost stays
 *   phone  [PHONE]  Korean mobile and landline numbers (010-1234-5678, 01012345678,
 *                   02-123-4567, (031) 123-4567), +CC international numbers of 8..15
 *                   digits, North American (415) 555-0100 / 415-555-0100
 *   rrn    [RRN]    Korean resident registration numbers YYMMDD-GNNNNNN (or 13 digits): a
 *                   real date, gender digit 1-8 and the mod-11 check digit; see rrn.c for
 *                   the numbers issued since October 2020, whose last digit is random
 *   card   [CARD]   payment cards: 13-19 digits, contiguous or in the usual groups, a
 *                   plausible issuer prefix and length, Luhn valid
 *   ip     [IP]     IPv4 dotted quads (each 0-255, no leading zeros; not 1.2.3 or 1.2.3.4.5)
 *                   and IPv6 (full, compressed, IPv4-mapped)
 *
 * How it works: one pass over the bytes; at each position where a finding could start,
 * hand-written scanners (one per kind, one file each) try to read one, each reading a
 * bounded number of bytes; e-mail addresses are found from their '@'. No regular
 * expressions, no allocation in the scan, no backtracking beyond a constant window, so
 * the time is linear in the input whatever it holds (tests/redact: 1 MB of adversarial
 * text). Everything a scanner matches is ASCII except IDN domain labels, which end only
 * on a character boundary, so the text around a finding — Korean included — is copied
 * byte for byte; bytes that are not UTF-8 are copied too. Rules, limits and the
 * precision/recall on the test corpus: docs/POLICY.md. */
#ifndef SOV_REDACT_REDACT_H
#define SOV_REDACT_REDACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/policy.h"

typedef enum redact_kind {
    REDACT_EMAIL = 0, /* bit POLICY_REDACT_EMAIL == 1u << REDACT_EMAIL, and so on */
    REDACT_PHONE,
    REDACT_RRN,
    REDACT_CARD,
    REDACT_IP,
    REDACT_KIND_COUNT
} redact_kind;

typedef struct redact_counts {
    uint64_t n[REDACT_KIND_COUNT]; /* findings replaced, by kind */
} redact_counts;

typedef struct redact_span {
    size_t start, end; /* the finding is in[start, end) */
    redact_kind kind;
} redact_span;

/* The output is never longer than twice the input: every finding is at least 3 bytes and
 * its placeholder at most 7 (a 3-byte finding gets a 4-byte one). */
#define REDACT_MAX_OUT(len) (2 * (len))

/* The first finding of the kinds (POLICY_REDACT_* bits) in in[from, len); false when
 * there is none. A finding never starts before from (so a caller can go on from the end
 * of the last one). */
bool redact_next(uint32_t kinds, const char *in, size_t len, size_t from, redact_span *out);

/* Writes in[0, len) with every finding of the kinds replaced by its placeholder into out:
 * at most cap - 1 bytes and a NUL when cap > 0 (out may be NULL when cap is 0). Returns
 * the length of the whole redacted text (as snprintf: a return >= cap means it was cut).
 * counts, when not NULL, is added to (so several texts can share one). */
size_t redact_text(uint32_t kinds, const char *in, size_t len, char *out, size_t cap, redact_counts *counts);

/* The same into a new NUL-terminated string (free() it); its length in *out_len when not
 * NULL. NULL when out of memory. */
char *redact_dup(uint32_t kinds, const char *in, size_t len, size_t *out_len, redact_counts *counts);

/* "[EMAIL]", "[PHONE]", "[RRN]", "[CARD]", "[IP]". */
const char *redact_placeholder(redact_kind kind);

/* "email", "phone", "rrn", "card", "ip" (the names of the policy file). */
const char *redact_kind_name(redact_kind kind);

#endif
