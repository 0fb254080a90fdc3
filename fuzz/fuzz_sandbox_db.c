/* fuzz_sandbox_db.c - libFuzzer target for the sandbox's reading of the store URL (which
 * ports and sockets PostgreSQL reconnects need: sandbox_db_routes_of): any bytes after
 * "postgresql://" must give routes or SOV_ERR_ARG, never a crash, at most
 * SANDBOX_MAX_PORTS ports, each 1..65535, and files that point into the result's buffer.
 * Seeds: tests/sandbox/corpus. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox/sandbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *url = malloc(size + 1);
    if (!url) return 0;
    memcpy(url, data, size);
    url[size] = '\0'; /* a command-line argument ends at its first NUL */
    sandbox_db_routes r;
    const sov_status st = sandbox_db_routes_of(url, &r);
    if (st != SOV_OK && st != SOV_ERR_ARG) abort();
    if (r.n_ports > SANDBOX_MAX_PORTS || r.n_files > 4) abort();
    for (size_t i = 0; i < r.n_ports; i++)
        if (r.ports[i] < 1 || r.ports[i] > 65535) abort();
    for (size_t i = 0; i < r.n_files; i++)
        if (r.files[i] < r.buf || r.files[i] >= r.buf + sizeof r.buf) abort();
    free(url);
    return 0;
}
