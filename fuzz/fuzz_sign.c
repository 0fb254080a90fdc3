/* fuzz_sign.c - libFuzzer target for the signature file parser (src/sign/record.c): any
 * bytes must give SOV_OK or SOV_ERR_FORMAT, never a crash; a record that parses must give
 * a signed message and print back to JSON that parses again to the same record.
 * Seeds: tests/sign/corpus/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sign/sign.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sign_record r;
    const sov_status s = sign_record_parse((const char *)data, size, &r);
    if (s != SOV_OK) {
        if (s != SOV_ERR_FORMAT) abort();
        return 0;
    }
    char msg[SIGN_MESSAGE_MAX];
    if (sign_message(&r, msg, sizeof msg) <= 0) abort();
    char *json = sign_record_json(&r);
    if (!json) return 0;
    sign_record again;
    if (sign_record_parse(json, strlen(json), &again) != SOV_OK || memcmp(&r, &again, sizeof r) != 0) abort();
    free(json);
    return 0;
}
