/* verify.c - the verification walk over an audit chain (see audit.h; docs/AUDIT.md).
 *
 * Records arrive in stored order. L is the hash the next record must link to (its prev);
 * it starts at the anchor (zeros at record 1). Each record is judged, looking at most one
 * record ahead:
 *
 *   its hash does not recompute from its fields  -> EDITED     (the chain goes on from its
 *                                                               stored hash)
 *   it links to L                                -> fine       (a gap in the numbers: DELETED,
 *                                                               the next one was re-linked)
 *   the NEXT one links to L, and this one links
 *     to the next one                            -> REORDERED  (the two were swapped)
 *     to something else                          -> INSERTED   (this one is not in the chain)
 *   it links to the hash before L                -> INSERTED   (the previous one was not)
 *   anything else                                -> DELETED    (what it links to is gone)
 *
 * Signed heads are checked first (signature, trusted key); each good one must then match
 * the hash of the record at its number as the walk passes it (else REWRITTEN: records
 * before it were changed and re-hashed), and a head past the last record means the tail
 * was TRUNCATED. The store's own chain row is a last tripwire for the tail. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"

struct audit_verifier {
    uint8_t L[AUDIT_HASH_BYTES];  /* what the next record must link to */
    uint8_t L2[AUDIT_HASH_BYTES]; /* what L's record linked to */
    bool have_L2;
    int64_t last_seq;    /* number of the last record accepted */
    audit_link cur;      /* judged when the next arrives (the one-record look-ahead) */
    bool have_cur, skip; /* skip: cur was already taken as half of a swap */
    audit_head *heads;   /* trusted, valid heads by seq */
    size_t n_heads, next_head;
    int64_t last_matched; /* seq of the last head matched */
    audit_report r;
};

static bool same(const uint8_t *a, const uint8_t *b) { return memcmp(a, b, AUDIT_HASH_BYTES) == 0; }

/* The record a problem is reported at: a rewrite is seen at the head that caught it (it
 * happened somewhere before, back to the last head that matched). */
static int64_t where(const audit_problem *p) { return p->kind == AUDIT_REWRITTEN ? p->seq_end : p->seq; }

static void problem(audit_verifier *v, audit_problem_kind kind, int64_t seq, int64_t seq_end, const char *fmt,
                    ...) __attribute__((format(printf, 5, 6)));

static void problem(audit_verifier *v, audit_problem_kind kind, int64_t seq, int64_t seq_end, const char *fmt,
                    ...) {
    audit_problem p = {kind, seq, seq_end, ""};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p.detail, sizeof p.detail, fmt, ap);
    va_end(ap);
    audit_report *r = &v->r;
    if (r->n_problems < AUDIT_PROBLEMS_KEPT) r->problems[r->n_problems] = p;
    const int64_t at = where(&p), first_at = where(&r->first);
    if (r->n_problems == 0 || at < first_at || (at == first_at && p.kind < r->first.kind)) r->first = p;
    r->n_problems++;
}

/* ---- heads ---- */

/* Heads that pass their matching record's number unmatched belonged to a missing record
 * (already a problem); a head at the record's number must carry its hash. */
static void match_heads(audit_verifier *v, const audit_link *c) {
    for (; v->next_head < v->n_heads && v->heads[v->next_head].seq <= c->seq; v->next_head++) {
        const audit_head *h = &v->heads[v->next_head];
        if (h->seq < c->seq) continue;
        if (same(h->hash, c->hash)) {
            v->r.heads_matched++;
            v->r.signed_through = c->seq;
            v->last_matched = c->seq;
        } else {
            problem(
                v, AUDIT_REWRITTEN, v->last_matched + 1, c->seq,
                "the chain differs from the head signed at record %lld by key %s: records %lld..%lld were "
                "changed and re-hashed",
                (long long)h->seq, h->key_id, (long long)v->last_matched + 1, (long long)c->seq);
        }
    }
}

/* ---- the walk ---- */

static void accept(audit_verifier *v, const audit_link *c, bool check_heads) {
    memcpy(v->L2, v->L, AUDIT_HASH_BYTES);
    v->have_L2 = true;
    memcpy(v->L, c->hash, AUDIT_HASH_BYTES);
    v->last_seq = c->seq;
    if (check_heads) match_heads(v, c);
}

static void judge(audit_verifier *v, const audit_link *c, const audit_link *next) {
    if (v->skip) {
        v->skip = false;
        return;
    }
    const int64_t want = v->last_seq + 1;
    if (!c->intact) {
        problem(v, AUDIT_EDITED, c->seq, c->seq, "record %lld was edited: %s", (long long)c->seq, c->why);
        accept(v, c, false);
    } else if (same(c->prev, v->L)) {
        if (c->seq > want)
            problem(v, AUDIT_DELETED, want, c->seq - 1,
                    "records %lld..%lld were deleted (record %lld was re-linked over the gap)",
                    (long long)want, (long long)c->seq - 1, (long long)c->seq);
        accept(v, c, c->seq == want);
    } else if (next && same(next->prev, v->L) && same(c->prev, next->hash) && next->intact) {
        problem(v, AUDIT_REORDERED, c->seq, next->seq, "records %lld and %lld were reordered (swapped)",
                (long long)c->seq, (long long)next->seq);
        accept(v, next, false);
        accept(v, c, false);
        v->last_seq = next->seq;
        v->skip = true;
    } else if (next && same(next->prev, v->L)) {
        problem(v, AUDIT_INSERTED, c->seq, c->seq,
                "record %lld was inserted: it is not part of the chain (the record after it links past it)",
                (long long)c->seq);
        v->last_seq = c->seq; /* its number is taken; the chain goes on from L */
    } else if (v->have_L2 && same(c->prev, v->L2)) {
        problem(v, AUDIT_INSERTED, v->last_seq, v->last_seq,
                "record %lld was inserted: record %lld links to the record before it", (long long)v->last_seq,
                (long long)c->seq);
        memcpy(v->L, v->L2, AUDIT_HASH_BYTES);
        accept(v, c, false);
    } else {
        if (c->seq > want)
            problem(v, AUDIT_DELETED, want, c->seq - 1, "records %lld..%lld were deleted", (long long)want,
                    (long long)c->seq - 1);
        else
            problem(v, AUDIT_DELETED, c->seq, c->seq,
                    "a record before record %lld was deleted (it links to a record that is not there)",
                    (long long)c->seq);
        accept(v, c, false);
    }
}

/* ---- start and end ---- */

static int by_seq(const void *a, const void *b) {
    const audit_head *x = a, *y = b;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

audit_verifier *audit_verifier_new(const uint8_t anchor[AUDIT_HASH_BYTES], int64_t anchor_seq,
                                   const audit_head *heads, size_t n_heads, const audit_pub *keys,
                                   size_t n_keys) {
    audit_verifier *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->heads = calloc(n_heads ? n_heads : 1, sizeof *v->heads);
    if (!v->heads) {
        free(v);
        return NULL;
    }
    memcpy(v->L, anchor, AUDIT_HASH_BYTES);
    v->last_seq = v->last_matched = anchor_seq;
    for (size_t i = 0; i < n_heads; i++) {
        const audit_head *h = &heads[i];
        const audit_head_check c = audit_head_verify(h, keys, n_keys);
        if (c == AUDIT_HEAD_OK) {
            v->heads[v->n_heads++] = *h;
            v->r.heads++;
        } else if (c == AUDIT_HEAD_BAD_SIGNATURE) {
            problem(v, AUDIT_HEAD_FORGED, h->seq, h->seq,
                    "the head at record %lld has an invalid signature (key %s)", (long long)h->seq,
                    h->key_id);
        } else {
            problem(v, AUDIT_HEAD_UNKNOWN, h->seq, h->seq,
                    "the head at record %lld is signed by key %s, which is not trusted: pass its public key "
                    "with --pub",
                    (long long)h->seq, h->key_id);
        }
    }
    qsort(v->heads, v->n_heads, sizeof *v->heads, by_seq);
    return v;
}

void audit_verifier_push(audit_verifier *v, const audit_link *l) {
    if (v->r.records++ == 0) v->r.first_seq = l->seq;
    if (v->have_cur) judge(v, &v->cur, l);
    v->cur = *l;
    v->have_cur = true;
}

/* The tail: signed heads and the store's chain row must not lie past the last record. */
static void check_tail(audit_verifier *v, const audit_claim *claim) {
    const int64_t last = v->last_seq;
    for (size_t i = v->next_head; i < v->n_heads; i++)
        if (v->heads[i].seq > last) {
            problem(v, AUDIT_TRUNCATED, last + 1, v->heads[i].seq,
                    "the tail was truncated: a head signed by key %s covers %lld records, the chain ends at "
                    "record %lld",
                    v->heads[i].key_id, (long long)v->heads[i].seq, (long long)last);
            break;
        }
    if (!claim || !claim->known) return;
    if (claim->seq > last)
        problem(
            v, AUDIT_TRUNCATED, last + 1, claim->seq,
            "the tail was truncated: the store's chain head is at record %lld, the chain ends at record %lld",
            (long long)claim->seq, (long long)last);
    else if (claim->seq < last)
        problem(
            v, AUDIT_INSERTED, claim->seq + 1, last,
            "records %lld..%lld were appended behind the server's back (the store's chain head is at %lld)",
            (long long)claim->seq + 1, (long long)last, (long long)claim->seq);
    else if (last > 0 && !same(claim->hash, v->L))
        problem(v, AUDIT_REWRITTEN, last, last, "the store's chain head disagrees with record %lld's hash",
                (long long)last);
}

void audit_verifier_finish(audit_verifier *v, const audit_claim *claim, audit_report *out) {
    if (v->have_cur) judge(v, &v->cur, NULL);
    check_tail(v, claim);
    v->r.last_seq = v->last_seq;
    memcpy(v->r.last_hash, v->L, AUDIT_HASH_BYTES);
    v->r.unsigned_tail =
        v->r.records ? v->last_seq - (v->r.signed_through ? v->r.signed_through : v->r.first_seq - 1) : 0;
    *out = v->r;
    free(v->heads);
    free(v);
}

const char *audit_problem_name(audit_problem_kind k) {
    static const char *const names[] = {"edited",    "deleted",   "inserted",    "reordered",
                                        "rewritten", "truncated", "head forged", "head by an unknown key"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}
