/* fuzz_model_load.c - libFuzzer target for model loading on top of the GGUF parser: any byte
 * string must load as a model or fail cleanly. This covers the metadata and tensor checks
 * of every architecture (model.c: hyperparameters, sliding-window patterns, fused-tensor
 * shapes, LongRoPE factors, per-layer tensors), which read outside input. The bytes are
 * written to an in-memory file because sov_model_load takes a path. Seeds: small files of
 * each architecture from `sov gen-model --arch ARCH --dim 64 --layers 2 --vocab 300`. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sov.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
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
    close(fd);
    return 0;
}
