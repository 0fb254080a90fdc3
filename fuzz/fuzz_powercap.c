/* fuzz_powercap.c - libFuzzer target for the powercap value parser (src/energy/energy.c):
 * any bytes give true or false, never a crash; a value that parses prints back to the same
 * digits (without leading zeros) and parses again to the same number.
 * Seeds: tests/energy/corpus/. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "energy/energy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint64_t v = 0, again = 0;
    if (!energy_parse_uj((const char *)data, size, &v)) return 0;
    char buf[32];
    const int n = snprintf(buf, sizeof buf, "%" PRIu64 "\n", v);
    if (n <= 0 || !energy_parse_uj(buf, (size_t)n, &again) || again != v) abort();
    /* a counter step with this value as the range never exceeds the range */
    if (v > 0 && energy_counter_delta(v, v / 2, v) > v) abort();
    return 0;
}
