/* store_audit_verify.c - the audit chain in a store walked by the verifier (see store.h):
 * the one place that feeds src/audit/verify.c from a store, shared by `sov audit verify
 * --db` and the server's admin API (GET /console/api/audit/verify).
 *
 * Heads are read before the chain row and the chain row before the records: anything a
 * head or the row names was committed before the records are read, so a server appending
 * meanwhile cannot make a sound log look truncated. Records come a page at a time, so any
 * length fits in memory. */
#include "core/status.h"
#include "store/store.h"

#include <stdlib.h>

enum { PAGE = 1000 };

/* Feeds every record from `from` on to v. */
static sov_status walk(store *s, int64_t from, audit_verifier *v) {
    for (;;) {
        store_audit_row *rows = NULL;
        size_t n = 0;
        const sov_status st = store_audit_read(s, from, PAGE, &rows, &n);
        if (st) return st;
        for (size_t i = 0; i < n; i++) {
            audit_link l;
            store_audit_row_link(&rows[i], &l);
            audit_verifier_push(v, &l);
        }
        if (n) from = rows[n - 1].rec.seq + 1;
        store_audit_rows_free(rows, n);
        if (n < PAGE) return SOV_OK;
    }
}

sov_status store_audit_verify(store *s, const audit_pub *keys, size_t n_keys, audit_report *out) {
    audit_head *heads = NULL;
    size_t n_heads = 0;
    audit_claim claim = {.known = true};
    sov_status st = store_audit_heads(s, 0, &heads, &n_heads);
    if (!st) st = store_audit_chain(s, &claim.seq, claim.hash);
    const uint8_t zero[AUDIT_HASH_BYTES] = {0};
    audit_verifier *v = st ? NULL : audit_verifier_new(zero, 0, heads, n_heads, keys, n_keys);
    if (!st && !v) st = sov_fail(SOV_ERR_NOMEM, "out of memory");
    if (!st) st = walk(s, 1, v);
    if (v) audit_verifier_finish(v, &claim, out);
    if (!st && out->last_seq > claim.seq) { /* appended while we read: read the row again */
        st = store_audit_chain(s, &claim.seq, claim.hash);
        if (!st && claim.seq >= out->last_seq) {
            audit_verifier *again = audit_verifier_new(zero, 0, heads, n_heads, keys, n_keys);
            st = again ? walk(s, 1, again) : sov_fail(SOV_ERR_NOMEM, "out of memory");
            if (again) audit_verifier_finish(again, &claim, out);
        }
    }
    free(heads);
    return st;
}
