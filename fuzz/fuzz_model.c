/* fuzz_model.c - libFuzzer target for the model loader behind the GGUF parser: the
 * hyperparameters (including the mixture-of-experts keys), every tensor's presence, shape
 * and type (including the 3-D expert tensors) and the vocabulary. Any input must load or
 * fail with an error, never crash or read outside the file.
 *
 * Seeds: small models of each architecture, e.g.
 *   sov gen-model --arch qwen3moe --dim 32 --layers 1 --heads 2 --kv-heads 1 --ffn 32 \
 *       --expert-ffn 32 --experts 4 --vocab 300 -o corpus/qwen3moe.gguf
 *   sov gen-model --experts 4 --experts-used 2 --dim 32 --layers 1 --heads 2 --kv-heads 1 \
 *       --ffn 32 --vocab 300 -o corpus/mixtral.gguf */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/status.h"
#include "sov.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* the loader maps a path: give it one backed by memory */
    const int fd = memfd_create("fuzz_model", 0);
    if (fd < 0) return 0;
    size_t done = 0;
    while (done < size) {
        const ssize_t w = write(fd, data + done, size - done);
        if (w <= 0) break;
        done += (size_t)w;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    sov_model *m = NULL;
    if (done == size && sov_model_load(path, NULL, &m) == SOV_OK) sov_model_free(m);
    else sov_clear_error();
    close(fd);
    return 0;
}
