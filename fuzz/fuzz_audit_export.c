/* fuzz_audit_export.c - libFuzzer target for the audit export's line parser (the input of
 * `sov audit verify --export FILE`, which comes from anyone): any bytes must parse or be
 * refused with a message, never crash; a line that parses must survive the verifier's use
 * (its link, a walk step) and write back as JSON that parses to the same line. Seeds:
 * tests/audit/corpus. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    audit_line l;
    if (audit_line_parse((const char *)data, size, &l) == SOV_OK) {
        audit_link link;
        audit_line_link(&l, &link);
        const uint8_t zero[AUDIT_HASH_BYTES] = {0};
        audit_verifier *v = audit_verifier_new(zero, 0, l.kind == AUDIT_LINE_HEAD ? &l.head : NULL,
                                               l.kind == AUDIT_LINE_HEAD, NULL, 0);
        if (v) {
            audit_verifier_push(v, &link);
            audit_report r;
            audit_verifier_finish(v, NULL, &r);
        }
        char *back = audit_line_json(&l);
        audit_line again;
        if (back && audit_line_parse(back, strlen(back), &again) != SOV_OK) abort();
        if (back && (again.kind != l.kind || memcmp(&again.rec, &l.rec, sizeof l.rec) != 0)) abort();
        if (back) audit_line_free(&again);
        free(back);
    }
    audit_line_free(&l);
    return 0;
}
