/* fuzz_gguf.c - libFuzzer target for the GGUF parser: any byte string must parse or fail
 * cleanly, and a parsed file's every tensor must lie inside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* copy so that reads past the end are caught by ASan exactly at the boundary */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    gguf_file *f;
    if (gguf_parse(copy, size, &f) == SOV_OK) {
        for (uint64_t i = 0; i < f->n_tensors; i++) {
            const gguf_tensor *t = &f->tensors[i];
            if ((const uint8_t *)t->data < copy || (const uint8_t *)t->data + t->nbytes > copy + size) abort();
            if (t->nbytes) (void)((volatile const uint8_t *)t->data)[t->nbytes - 1];
        }
        for (uint64_t i = 0; i < f->n_kv; i++) {
            char buf[256];
            gguf_kv_format(&f->kv[i], buf, sizeof buf);
            const gguf_kv *kv = &f->kv[i];
            if (kv->type == GGUF_ARRAY && kv->arr_type == GGUF_STRING)
                for (uint64_t j = 0; j < kv->arr_n; j++) (void)gguf_arr_str(kv, j);
        }
        gguf_close(f);
    }
    free(copy);
    return 0;
}
