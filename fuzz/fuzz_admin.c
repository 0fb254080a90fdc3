/* fuzz_admin.c - libFuzzer target for the admin API's parsers of outside input
 * (src/server/admin.c): any bytes as a POST /console/api/keys body, as the audit list's
 * query and as a revoke path's key id must give an answer, never a crash or a read past
 * the input; what is accepted must satisfy the limits the parser promises.
 * Seeds: tests/server/corpus_admin. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/admin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    admin_key_req k;
    char err[300];
    if (admin_parse_key_create((const char *)data, size, &k, err, sizeof err)) {
        const size_t n = strlen(k.tenant);
        if (n < 1 || n > STORE_TENANT_MAX || k.rpm < 0 || k.tpm < 0 || k.tpd < 0 || strlen(k.models) > STORE_MODELS_MAX)
            abort();
    }
    char *q = malloc(size + 1);
    if (!q) return 0;
    memcpy(q, data, size);
    q[size] = '\0'; /* a query string from libevent is NUL-terminated */
    int64_t after, id;
    int limit;
    if (admin_parse_audit_query(q, &after, &limit, err, sizeof err) && (limit < 1 || limit > ADMIN_AUDIT_LIMIT_MAX))
        abort();
    if (admin_parse_key_id((const char *)data, size, &id) && id <= 0) abort();
    free(q);
    return 0;
}
